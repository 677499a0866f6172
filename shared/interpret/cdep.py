"""CDEP: the contextual-decomposition explanation penalty (Rieger et al., ICML 2020).

Training with ``loss = prediction_loss + lam * cdep_penalty(model, x, groups)`` pushes the
CD score of named feature groups (a pixel mask, a wavelet level or band, a Fourier
annulus) towards a prior, usually "this group should not matter". The CD scores are
computed differentiably (:mod:`shared.interpret.cd`), so the penalty trains the model's
parameters. Two forms (``science_anchors.md`` §D1):

- ``"l1"`` (the paper's objective, the default): the mean of ``|rel - prior|`` with the
  prior explanation ``prior`` (0 by default);
- ``"softmax"`` (the published code, ``score_funcs.cdep``): the mean over inputs, groups and
  outputs of ``softmax([rel, irrel])[0] = sigmoid(rel - irrel)``, the relevant share of
  each output. For logits it can be met without touching the group: adding the same
  constant to every logit leaves the prediction loss unchanged and raises ``irrel``. On the
  synthetic decoy of the tests it leaves the decoy in use where ``"l1"`` removes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from shared.interpret.cd import cd_masks
from shared.interpret.trim_cd import CoefficientGroup, trim_cd

__all__ = ["cdep_penalty"]

PenaltyKind = Literal["softmax", "l1"]


def cdep_penalty(
    model: nn.Module,
    x: Tensor,
    groups: Tensor | Sequence[CoefficientGroup],
    *,
    transform: Any = None,
    target: int | Sequence[int] | None = None,
    loss: PenaltyKind = "l1",
    prior: float | Tensor = 0.0,
    chunk_size: int | None = None,
) -> Tensor:
    """The CDEP penalty of ``groups`` for a batch ``x``, differentiable in the model.

    Parameters
    ----------
    model : nn.Module
        The model being trained, in eval mode while the penalty is computed (batch norm and
        dropout must not act on the decomposed parts; switch back with ``model.train()``).
    x : Tensor
        The input batch ``(N, ...)``.
    groups : Tensor or sequence of CoefficientGroup
        Without ``transform``: input masks ``(G, *x.shape[1:])``, or one mask of lower rank
        broadcastable to ``x[0]``. With ``transform``: coefficient groups, e.g.
        :func:`~shared.interpret.trim_cd.fourier_groups` or ``level_groups``.
    transform : object, optional
        A linear transform (``forward``/``inverse``) in whose domain the groups live.
    target : int or sequence of int, optional
        Output index or indices to penalise (all outputs by default).
    loss : {"l1", "softmax"}
        The paper's ``|rel - prior|``, or the published code's relevant share.
    prior : float or Tensor, default 0
        The prior explanation of the ``"l1"`` form, broadcastable to ``(G, N, outputs)``.
    chunk_size : int, optional
        Rows (group x input) per forward pass.

    Returns
    -------
    Tensor
        A scalar; ``backward()`` reaches the model's parameters.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    >>> x = torch.randn(16, 4)
    >>> mask = torch.tensor([0.0, 0.0, 0.0, 1.0])
    >>> penalty = cdep_penalty(net, x, mask)
    >>> penalty.backward()
    >>> net[0].weight.grad is not None and float(penalty.detach()) > 0.0
    True
    """
    if loss not in ("softmax", "l1"):
        raise ValueError(f"loss must be 'softmax' or 'l1', got {loss!r}")
    if transform is None:
        if not isinstance(groups, Tensor):
            raise ValueError("without a transform, groups must be a tensor of input masks")
        # A mask of lower rank than a batch of them is one mask.
        masks = groups if groups.ndim == x.ndim else groups.unsqueeze(0)
        rel, irrel = cd_masks(model, x, masks, chunk_size=chunk_size)
    else:
        if isinstance(groups, Tensor):
            raise ValueError("with a transform, groups must be CoefficientGroups")
        result = trim_cd(model, x, transform, list(groups), chunk_size=chunk_size)
        rel, irrel = result.rel, result.irrel
    if rel.ndim == 2:  # one output per input
        rel, irrel = rel.unsqueeze(-1), irrel.unsqueeze(-1)
    rel, irrel = rel.flatten(2), irrel.flatten(2)
    if target is not None:
        index = [target] if isinstance(target, int) else list(target)
        rel, irrel = rel[..., index], irrel[..., index]
    if loss == "softmax":
        return torch.sigmoid(rel - irrel).mean()
    return (rel - torch.as_tensor(prior, dtype=rel.dtype, device=rel.device)).abs().mean()
