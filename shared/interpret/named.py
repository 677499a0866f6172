"""Feature groups named in settings: wavelet levels and bands, Fourier annuli, time windows.

A training or evaluation setting names the groups whose use by a model is penalised
(:func:`~shared.interpret.cdep.cdep_penalty`) or scored. :class:`NamedGroups` turns the
names into one linear "transform" for :func:`~shared.interpret.trim_cd.trim_cd`:
``forward(x)`` returns each group's part of ``x`` followed by the rest, and ``inverse``
sums them, so group ``g``'s relevant input is exactly its part ``R_g x`` and every group
of every input is scored in one batched CD pass. Names (``j >= 1``; ``lo``, ``hi`` in
cycles per pixel; ``a``, ``b`` sample indices, ``b`` excluded):

=================  ===========================================================  ========
name               group                                                        inputs
=================  ===========================================================  ========
``level<j>``       all detail bands of wavelet level ``j`` (1D: ``cD<j>``)       1D, 2D
``cA<j>``          the approximation after ``j`` levels                          1D, 2D
``cD<j>``          the detail band of level ``j`` (2D: the diagonal band)        1D, 2D
``cH<j>``          the horizontal (``cV<j>``: vertical) detail band of level j   2D
``f<lo>-<hi>``     the Fourier annulus ``lo <= |f| < hi``                        2D
``t<a>-<b>``       samples ``a`` to ``b - 1`` along the last axis                1D
=================  ===========================================================  ========

The wavelet groups use a ``j``-level transform of the given wavelet (the coefficients of
level ``j`` do not depend on how many levels follow); what a band does not reconstruct
stays in the rest.

Examples
--------
>>> import torch
>>> groups = NamedGroups(["t0-4", "cD1"], dims=1, wavelet="haar")
>>> x = torch.randn(3, 1, 8, dtype=torch.float64)
>>> parts = groups(x)
>>> len(parts), bool(torch.allclose(groups.inverse(parts), x))
(3, True)
>>> bool(torch.equal(parts[0][..., 4:], torch.zeros(3, 1, 4, dtype=torch.float64)))
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from shared.attributions import FourierBands2d
from shared.coeffs import flatten_coeffs, unflatten_coeffs
from shared.interpret.trim_cd import CoefficientGroup, _inverse, band_groups, level_groups
from shared.transform import DWT1d, DWT2d, Mode

__all__ = ["NamedGroups", "check_group_names", "parse_group_name", "penalty_record"]

_CORNER = math.sqrt(2.0) / 2.0
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_PATTERNS = {
    "wavelet": re.compile(r"^(level|cA|cD|cH|cV)([1-9]\d*)$"),
    "fourier": re.compile(rf"^f{_NUMBER}-{_NUMBER}$"),
    "window": re.compile(r"^t(\d+)-(\d+)$"),
}
_DIMS = {"wavelet": (1, 2), "fourier": (2,), "window": (1,)}
_HELP = (
    "level<j>, cA<j>, cD<j>, cH<j>, cV<j> (wavelet), f<lo>-<hi> (Fourier annulus in cycles "
    "per pixel, maps) or t<a>-<b> (samples a..b-1, traces)"
)


@dataclass(frozen=True)
class GroupSpec:
    """A parsed group name: ``kind`` (wavelet, fourier, window) and its numbers."""

    name: str
    kind: str
    band: str = ""
    level: int = 0
    lo: float = 0.0
    hi: float = 0.0


def parse_group_name(name: str, dims: int | None = None) -> GroupSpec:
    """Parse one group name; ``dims`` (1 traces, 2 maps) also checks that it applies.

    Raises
    ------
    ValueError
        An unknown name, an empty range, or a kind that does not apply to ``dims``.

    Examples
    --------
    >>> parse_group_name("f0.25-0.5")
    GroupSpec(name='f0.25-0.5', kind='fourier', band='', level=0, lo=0.25, hi=0.5)
    >>> parse_group_name("t10-5")
    Traceback (most recent call last):
    ...
    ValueError: group 't10-5': the window is empty (a >= b)
    """
    name = str(name).strip()
    spec: GroupSpec | None = None
    if m := _PATTERNS["wavelet"].match(name):
        spec = GroupSpec(name, "wavelet", band=m.group(1), level=int(m.group(2)))
    elif m := _PATTERNS["fourier"].match(name):
        lo, hi = float(m.group(1)), float(m.group(2))
        if not lo < hi or lo >= _CORNER:
            raise ValueError(f"group {name!r}: needs lo < hi and lo < {_CORNER:.4f} (the corner)")
        spec = GroupSpec(name, "fourier", lo=lo, hi=hi)
    elif m := _PATTERNS["window"].match(name):
        a, b = int(m.group(1)), int(m.group(2))
        if a >= b:
            raise ValueError(f"group {name!r}: the window is empty (a >= b)")
        spec = GroupSpec(name, "window", lo=a, hi=b)
    if spec is None:
        raise ValueError(f"group {name!r}: unknown name; accepted: {_HELP}")
    if dims is not None:
        if dims not in _DIMS[spec.kind]:
            where = "traces (1D)" if dims == 1 else "maps (2D)"
            raise ValueError(f"group {name!r}: a {spec.kind} group does not apply to {where}")
        if dims == 1 and spec.band in ("cH", "cV"):
            raise ValueError(f"group {name!r}: 1D transforms have cA<j> and cD<j> bands only")
    return spec


def check_group_names(names: Sequence[str], dims: int) -> None:
    """Check every name (syntax, kind, no repeats) before anything runs.

    Examples
    --------
    >>> check_group_names(["level1", "f0.3-0.71"], dims=2)
    >>> check_group_names(["t0-8"], dims=2)
    Traceback (most recent call last):
    ...
    ValueError: group 't0-8': a window group does not apply to maps (2D)
    """
    for name in names:
        parse_group_name(name, dims)
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ValueError(f"groups named twice: {repeated}")


class NamedGroups(nn.Module):
    """Named groups as a linear map ``x -> [R_1 x, ..., R_G x, x - sum_g R_g x]``.

    Parameters
    ----------
    names : sequence of str
        Group names (see the module docstring).
    dims : {1, 2}
        Inputs are traces ``(N, 1, L)`` or maps ``(N, 1, H, W)``.
    wavelet : str, default "db5"
        Wavelet of the wavelet groups.
    mode : str, default "zero"
        Boundary mode of the wavelet groups.

    Attributes
    ----------
    groups : list of CoefficientGroup
        One group per name (a one-hot mask on the parts), for
        :func:`~shared.interpret.trim_cd.trim_cd` and
        :func:`~shared.interpret.cdep.cdep_penalty` with ``transform=self``.

    Examples
    --------
    >>> from shared.interpret import cdep_penalty
    >>> named = NamedGroups(["level1", "f0.35-0.71"], dims=2, wavelet="haar")
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 1))
    >>> value = cdep_penalty(net.eval(), torch.randn(4, 1, 8, 8), named.groups, transform=named)
    >>> float(value.detach()) > 0
    True
    """

    def __init__(
        self, names: Sequence[str], dims: int, wavelet: str = "db5", mode: Mode = "zero"
    ) -> None:
        super().__init__()
        if not names:
            raise ValueError("no groups named")
        check_group_names(names, dims)
        self.specs = [parse_group_name(n, dims) for n in names]
        self.dims, self.wavelet, self.mode = dims, wavelet, mode
        n = len(self.specs)
        self.groups = [
            CoefficientGroup(s.name, tuple(1.0 if k == g else 0.0 for k in range(n + 1)), _info(s))
            for g, s in enumerate(self.specs)
        ]
        self._dwt: dict[int, nn.Module] = {}

    @property
    def names(self) -> list[str]:
        """The group names, in order."""
        return [s.name for s in self.specs]

    def _transform(self, levels: int) -> nn.Module:
        if levels not in self._dwt:
            cls = DWT2d if self.dims == 2 else DWT1d
            dwt = cls(self.wavelet, levels=levels, mode=self.mode)
            dwt.requires_grad_(False)
            self._dwt[levels] = dwt
        return self._dwt[levels]

    def _wavelet_part(self, spec: GroupSpec, x: Tensor) -> Tensor:
        dwt = self._transform(spec.level)
        coeffs = dwt(x)
        name = spec.name
        if spec.band == "level":
            name = f"level{spec.level}" if self.dims == 2 else f"cD{spec.level}"
        pool = level_groups(coeffs) + (band_groups(coeffs) if self.dims == 2 else [])
        group = next(g for g in pool if g.name == name)
        kept = [leaf * m for leaf, m in zip(flatten_coeffs(coeffs), group.masks, strict=True)]
        return _inverse(dwt, unflatten_coeffs(kept, coeffs), x)

    def _part(self, spec: GroupSpec, x: Tensor) -> Tensor:
        if spec.kind == "wavelet":
            return self._wavelet_part(spec, x)
        if spec.kind == "fourier":
            edges = [0.0] + ([spec.lo] if spec.lo > 0 else [])
            band = len(edges) - 1
            edges.append(min(spec.hi, _CORNER + 1e-9))
            if spec.hi < _CORNER:
                edges.append(_CORNER + 1e-9)
            return FourierBands2d(len(edges) - 1, edges)(x)[band]
        length = x.shape[-1]
        if spec.hi > length:
            raise ValueError(f"group {spec.name!r}: the inputs have {length} samples")
        mask = torch.zeros(length, dtype=x.dtype, device=x.device)
        mask[int(spec.lo) : int(spec.hi)] = 1
        return x * mask

    def forward(self, x: Tensor) -> list[Tensor]:
        """Each group's part of ``x`` ``(N, 1, ...)``, then the rest."""
        if x.ndim != self.dims + 2:
            raise ValueError(
                f"inputs must be (N, 1, {'L' if self.dims == 1 else 'H, W'}), got {tuple(x.shape)}"
            )
        with torch.no_grad():
            parts = [self._part(s, x.detach()) for s in self.specs]
        rest = x.detach() - torch.stack(parts).sum(0)
        return [*parts, rest]

    def inverse(self, parts: Sequence[Tensor], size: Any = None) -> Tensor:
        """The sum of the parts (``size`` is accepted for the transforms' interface)."""
        return torch.stack(list(parts)).sum(0)


def _info(spec: GroupSpec) -> dict[str, Any]:
    if spec.kind == "wavelet":
        return {"kind": "wavelet", "band": spec.band, "level": spec.level}
    if spec.kind == "fourier":
        return {"kind": "fourier", "f_min": spec.lo, "f_max": spec.hi}
    return {"kind": "window", "start": int(spec.lo), "stop": int(spec.hi)}


def penalty_record(
    weight: float, names: Sequence[str], wavelet: str, history: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """What a trained model's description says of its CD explanation penalty.

    The penalty (``cdep_penalty`` in ``history``, per epoch, training mean) is given at the
    epoch with the lowest monitored loss (validation, else training), the one kept.

    Examples
    --------
    >>> h = [{"val_loss": 2.0, "cdep_penalty": 0.5}, {"val_loss": 1.0, "cdep_penalty": 0.1}]
    >>> penalty_record(10.0, ["level1"], "haar", h)["penalty_at_kept_epoch"]
    0.1
    """
    kept = min(history, key=lambda r: r.get("val_loss", r.get("train_loss", 0.0)), default={})
    return {
        "weight": float(weight),
        "groups": list(names),
        "wavelet": wavelet,
        "loss": "l1: weight x mean |CD score| of each group and output (prior 0)",
        "penalty_at_kept_epoch": kept.get("cdep_penalty"),
    }
