"""Interpretation of models in any transformed domain: contextual decomposition and friends.

- :mod:`shared.interpret.cd`: contextual decomposition (CD) of traced PyTorch models,
  batched over feature groups, with one exact bias convention;
- :mod:`shared.interpret.trim_cd`: CD scores of groups of transform coefficients (wavelet
  levels, bands, blocks of positions, Fourier annuli) through TRIM;
- :mod:`shared.interpret.acd`: agglomerative CD hierarchies over scales and positions;
- :mod:`shared.interpret.cdep`: the CD explanation penalty for training;
- :mod:`shared.interpret.named`: groups named in settings (wavelet levels and bands,
  Fourier annuli, time windows) as one transform for CD and the penalty;
- :mod:`shared.interpret.checks`: model- and label-randomisation reality checks;
- :mod:`shared.interpret.evaluation`: the documents an evaluation writes (CD per scale,
  ACD examples, reality checks of every named attribution, failures flagged).

Examples
--------
>>> import torch
>>> from shared.interpret import cd_masks
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 1)).double().eval()
>>> x = torch.randn(2, 4, dtype=torch.float64)
>>> scores = cd_masks(net, x, torch.eye(4, dtype=torch.float64))
>>> scores.rel.shape  # (groups, inputs, outputs)
torch.Size([4, 2, 1])
"""

from shared.interpret.acd import acd_hierarchy, plot_hierarchy
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
from shared.interpret.cdep import cdep_penalty
from shared.interpret.checks import (
    cd_attribution,
    label_randomisation_test,
    model_randomisation_test,
    similarity,
    trim_attribution,
)
from shared.interpret.evaluation import acd_examples, band_mass, cd_scale_scores, reality_checks
from shared.interpret.named import NamedGroups, check_group_names, parse_group_name
from shared.interpret.trim_cd import (
    CoefficientGroup,
    TrimCD,
    band_groups,
    block_groups,
    fourier_groups,
    fourier_scales,
    level_groups,
    standard_groups,
    trim_cd,
    wavelet_scales,
)

__all__ = [
    "CD_METHOD",
    "CDScores",
    "CoefficientGroup",
    "NamedGroups",
    "Parts",
    "TrimCD",
    "UnsupportedOperationError",
    "acd_examples",
    "acd_hierarchy",
    "band_groups",
    "band_mass",
    "block_groups",
    "cd_attribution",
    "cd_batched",
    "cd_masks",
    "cd_scale_scores",
    "cdep_penalty",
    "check_group_names",
    "contextual_decomposition",
    "fourier_groups",
    "fourier_scales",
    "label_randomisation_test",
    "level_groups",
    "model_randomisation_test",
    "parse_group_name",
    "plot_hierarchy",
    "reality_checks",
    "register_rule",
    "similarity",
    "standard_groups",
    "trim_attribution",
    "trim_cd",
    "wavelet_scales",
]
