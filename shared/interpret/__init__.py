"""Interpretation of models in any transformed domain: contextual decomposition and friends.

- :mod:`shared.interpret.cd`: contextual decomposition (CD) of traced PyTorch models,
  batched over feature groups, with one exact bias convention;
- :mod:`shared.interpret.trim_cd`: CD scores of groups of transform coefficients (wavelet
  levels, bands, blocks of positions, Fourier annuli) through TRIM;
- :mod:`shared.interpret.acd`: agglomerative CD hierarchies over scales and positions;
- :mod:`shared.interpret.cdep`: the CD explanation penalty for training;
- :mod:`shared.interpret.checks`: model- and label-randomisation reality checks.

Examples
--------
>>> import torch
>>> from shared.interpret import cd_masks
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 1)).double().eval()
>>> x = torch.randn(2, 4, dtype=torch.float64)
>>> scores = cd_masks(net, x, torch.eye(4, dtype=torch.float64))
>>> bool(torch.allclose(scores.rel.sum(0), net(x) - net[0].bias * 0, atol=1e-12))
True
"""

from shared.interpret.cd import (
    CD_METHOD,
    CDScores,
    Parts,
    UnsupportedOperationError,
    cd_batched,
    cd_masks,
    contextual_decomposition,
    register_rule,
)

__all__ = [
    "CD_METHOD",
    "CDScores",
    "Parts",
    "UnsupportedOperationError",
    "cd_batched",
    "cd_masks",
    "contextual_decomposition",
    "register_rule",
]
