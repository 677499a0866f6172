"""The terms of the AWD objective, each a pure function, and their weighted sum.

The objective of adaptive wavelet distillation (Ha et al., NeurIPS 2021) is

    ||x - W^-1 W x||^2                      reconstruction
    + wavelet constraints on h0             lowpass sum, highpass sum, unit norm, CMF,
                                            double-shift orthogonality
    + lambda * ||W x||_1                    sparsity of the coefficients
    + gamma  * ||TRIM attributions||_1      sparsity of the teacher's attributions

By default every term is computed as the paper's code computes it (per-sample sums,
averaged over the batch and over the ``J + 1`` coefficient arrays), so published
settings can be typed in. ``normalize=True`` averages over elements instead, which makes
weights comparable across data sizes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor

from shared.wavelet import alternating_flip

__all__ = [
    "LEGACY_NAMES",
    "AWDLoss",
    "PenaltyWeights",
    "check_finite_terms",
    "cmf_loss",
    "highpass_sum_loss",
    "l1_attribution_loss",
    "l1_coeffs_loss",
    "lowpass_sum_loss",
    "orthogonality_loss",
    "reconstruction_loss",
    "unit_norm_loss",
]


def _groups(coeffs: Sequence) -> list[list[Tensor]]:
    """One group per entry of the pywt list: cA_J, then each level's band(s)."""
    return [list(c) if isinstance(c, (tuple, list)) else [c] for c in coeffs]


# -- data terms ------------------------------------------------------------------------------
def reconstruction_loss(x: Tensor, x_rec: Tensor, *, normalize: bool = False) -> Tensor:
    """Squared reconstruction error: per-sample sum, averaged over the batch.

    Parameters
    ----------
    x, x_rec : Tensor
        Input and reconstruction, batch first, same shape.
    normalize : bool, default False
        Average over all elements instead of summing within each sample.

    Examples
    --------
    >>> import torch
    >>> float(reconstruction_loss(torch.zeros(2, 1, 3), torch.ones(2, 1, 3)))
    3.0
    """
    if x.shape != x_rec.shape:
        raise ValueError(
            f"shapes differ: input {tuple(x.shape)}, reconstruction {tuple(x_rec.shape)}"
        )
    sq = (x_rec - x).square()
    return sq.mean() if normalize else sq.sum() / x.shape[0]


def _l1_of_groups(coeffs: Sequence, normalize: bool) -> Tensor:
    groups = _groups(coeffs)
    if not groups:
        raise ValueError("no coefficients given")
    n_batch = groups[0][0].shape[0]
    per_group = [
        functools.reduce(torch.add, [t.abs().mean() for t in group]) / len(group)
        if normalize
        else functools.reduce(torch.add, [t.abs().sum() for t in group]) / n_batch
        for group in groups
    ]
    return functools.reduce(torch.add, per_group) / len(groups)


def l1_coeffs_loss(coeffs: Sequence, *, normalize: bool = False) -> Tensor:
    """L1 norm of the wavelet coefficients (the paper's lambda term).

    Summed over the coefficients of each of the ``J + 1`` entries of the pywt list,
    averaged over those entries and over the batch (the reference's ``_L1_wave_loss``).

    Examples
    --------
    >>> import torch
    >>> float(l1_coeffs_loss([torch.ones(2, 1, 3), -torch.ones(2, 1, 5)]))
    4.0
    """
    return _l1_of_groups(coeffs, normalize)


def l1_attribution_loss(attributions: Sequence, *, normalize: bool = False) -> Tensor:
    """L1 norm of the attributions in the wavelet domain (the paper's gamma term).

    Same reduction as :func:`l1_coeffs_loss`. Several targets (a list of attribution
    lists) are summed.

    Examples
    --------
    >>> import torch
    >>> float(l1_attribution_loss([torch.ones(1, 1, 4)]))
    4.0
    """
    # A list of coefficient lists holds one attribution per target (2D triples are tuples).
    if attributions and isinstance(attributions[0], list):
        return functools.reduce(torch.add, [_l1_of_groups(a, normalize) for a in attributions])
    return _l1_of_groups(attributions, normalize)


# -- wavelet constraints ------------------------------------------------------------------------
def lowpass_sum_loss(h0: Tensor) -> Tensor:
    """``0.5 * (sum(h0) - sqrt(2))**2`` (reference ``lamlSum``)."""
    return 0.5 * (h0.sum() - math.sqrt(2.0)).square()


def highpass_sum_loss(h0: Tensor) -> Tensor:
    """``0.5 * sum(h1)**2``: the highpass has a vanishing moment (reference ``lamhSum``)."""
    return 0.5 * alternating_flip(h0).sum().square()


def unit_norm_loss(h0: Tensor) -> Tensor:
    """``0.5 * (||h0||^2 - 1)**2`` (reference ``lamL2norm``)."""
    return 0.5 * (h0.square().sum() - 1.0).square()


def cmf_loss(h0: Tensor, n_freq: int | None = None) -> Tensor:
    """Conjugate-mirror-filter condition ``|H(w)|^2 + |H(w + pi)|^2 = 2`` on a dense grid.

    The reference samples the condition at only ``L`` DFT points, where autocorrelation lag
    ``l`` aliases with ``L - l``, so a non-orthogonal filter can score zero. Here the grid
    has ``n_freq >= 2L`` points (default ``4L``), enough to see every lag; the sum is scaled
    by ``L / n_freq`` so its size matches the reference's on orthogonal-ish filters.

    Examples
    --------
    >>> import pywt, torch
    >>> h = torch.tensor(pywt.Wavelet("db4").rec_lo, dtype=torch.float64)
    >>> float(cmf_loss(h)) < 1e-20
    True
    """
    length = h0.shape[-1]
    m = n_freq if n_freq is not None else 4 * length
    if m < 2 * length or m % 2:
        raise ValueError(f"n_freq must be even and >= 2 * filter length ({2 * length}), got {m}")
    power = torch.fft.fft(h0, n=m).abs().square()
    half = m // 2
    residual = power[:half] + power[half:] - 2.0
    return 0.5 * residual.square().sum() * (length / m)


def orthogonality_loss(h0: Tensor) -> Tensor:
    """Double-shift orthogonality: ``0.5 * sum_m (r[2m] - delta_m)**2`` over all even lags.

    ``r`` is the autocorrelation of ``h0``; this is the exact condition for the shifts of
    ``h0`` by even amounts to be orthonormal (reference ``lamConv``).

    Examples
    --------
    >>> import pywt, torch
    >>> h = torch.tensor(pywt.Wavelet("sym5").rec_lo, dtype=torch.float64)
    >>> float(orthogonality_loss(h)) < 1e-20
    True
    """
    length = h0.shape[-1]
    lags = torch.stack([(h0[: length - k] * h0[k:]).sum() for k in range(0, length, 2)])
    target = torch.zeros_like(lags)
    target[0] = 1.0
    # Negative lags mirror positive ones; count them as the reference's full correlation does.
    weights = torch.full_like(lags, 2.0)
    weights[0] = 1.0
    return 0.5 * (weights * (lags - target).square()).sum()


# -- weights ---------------------------------------------------------------------------------------
#: Reference (``awave``) argument names of each weight.
LEGACY_NAMES: dict[str, str] = {
    "lamlSum": "lowpass_sum",
    "lamhSum": "highpass_sum",
    "lamL2norm": "unit_norm",
    "lamCMF": "cmf",
    "lamConv": "orthogonality",
    "lamL1wave": "l1_coeffs",
    "lamL1attr": "l1_attr",
}


@dataclass(frozen=True)
class PenaltyWeights:
    """Weights of the AWD objective's terms (the reconstruction term has weight 1).

    ============== ================== ==================== =========================
    field          paper symbol       reference name       term
    ============== ================== ==================== =========================
    lowpass_sum    --                 ``lamlSum``          :func:`lowpass_sum_loss`
    highpass_sum   --                 ``lamhSum``          :func:`highpass_sum_loss`
    unit_norm      --                 ``lamL2norm``        :func:`unit_norm_loss`
    cmf            --                 ``lamCMF``           :func:`cmf_loss`
    orthogonality  --                 ``lamConv``          :func:`orthogonality_loss`
    l1_coeffs      lambda             ``lamL1wave``        :func:`l1_coeffs_loss`
    l1_attr        gamma              ``lamL1attr``        :func:`l1_attribution_loss`
    ============== ================== ==================== =========================

    The paper's grids vary ``l1_coeffs`` (lambda) and ``l1_attr`` (gamma); the wavelet
    constraint weights were all 1.

    Examples
    --------
    >>> w = PenaltyWeights(l1_coeffs=0.02, l1_attr=0.00368)  # the paper's cosmology pick
    >>> PenaltyWeights.from_legacy({"lamL1wave": 0.02, "lamL1attr": 0.00368}) == w
    True
    """

    lowpass_sum: float = 1.0
    highpass_sum: float = 1.0
    unit_norm: float = 1.0
    cmf: float = 1.0
    orthogonality: float = 1.0
    l1_coeffs: float = 0.0
    l1_attr: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"weight {f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"weight {f.name} must be finite and >= 0, got {value}")

    @classmethod
    def from_legacy(cls, params: Mapping[str, float]) -> PenaltyWeights:
        """Build from the reference's names (``lamL1wave`` ...); unknown names are errors."""
        unknown = sorted(set(params) - set(LEGACY_NAMES))
        if unknown:
            raise ValueError(
                f"unknown reference weight names {unknown}; known: {sorted(LEGACY_NAMES)}"
            )
        return cls(**{LEGACY_NAMES[k]: float(v) for k, v in params.items()})

    def to_dict(self) -> dict[str, float]:
        """Plain dict of the weights (for JSON and YAML)."""
        return asdict(self)


_CONSTRAINTS = {
    "lowpass_sum": lowpass_sum_loss,
    "highpass_sum": highpass_sum_loss,
    "unit_norm": unit_norm_loss,
    "cmf": cmf_loss,
    "orthogonality": orthogonality_loss,
}


class AWDLoss:
    """The AWD objective: returns the weighted total and the unweighted named terms.

    Parameters
    ----------
    weights : PenaltyWeights
        Weights of the terms.
    normalize : bool, default False
        Average the data terms over elements instead of the paper's per-sample sums.

    Examples
    --------
    >>> import torch
    >>> from shared import DWT1d
    >>> dwt = DWT1d("db2", levels=2).double()
    >>> x = torch.randn(4, 1, 16, dtype=torch.float64)
    >>> coeffs = dwt(x)
    >>> loss = AWDLoss(PenaltyWeights(l1_coeffs=0.1))
    >>> total, terms = loss(dwt.h0, x, dwt.inverse(coeffs), coeffs)
    >>> sorted(terms)[:3]
    ['cmf', 'highpass_sum', 'l1_coeffs']
    """

    def __init__(self, weights: PenaltyWeights | None = None, *, normalize: bool = False) -> None:
        self.weights = weights if weights is not None else PenaltyWeights()
        self.normalize = normalize

    def __call__(
        self,
        h0: Tensor,
        x: Tensor,
        x_rec: Tensor,
        coeffs: Sequence,
        attributions: Sequence | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and ``{term name: unweighted value}``.

        ``attributions`` may be ``None`` when ``weights.l1_attr`` is 0.
        """
        w = self.weights
        terms: dict[str, Tensor] = {
            "reconstruction": reconstruction_loss(x, x_rec, normalize=self.normalize)
        }
        for name, fn in _CONSTRAINTS.items():
            terms[name] = fn(h0)
        terms["l1_coeffs"] = l1_coeffs_loss(coeffs, normalize=self.normalize)
        if attributions is not None:
            terms["l1_attr"] = l1_attribution_loss(attributions, normalize=self.normalize)
        elif w.l1_attr > 0:
            raise ValueError("weights.l1_attr > 0 needs attributions (a teacher)")
        total = terms["reconstruction"]
        for name, value in terms.items():
            if name != "reconstruction":
                total = total + getattr(w, name) * value
        return total, terms


def check_finite_terms(terms: Mapping[str, Tensor], where: str) -> None:
    """Raise ``FloatingPointError`` naming the first non-finite term."""
    for name, value in terms.items():
        if not bool(torch.isfinite(value).all()):
            raise FloatingPointError(f"the loss term {name!r} is {float(value.detach())} {where}")
