"""Differentiable discrete wavelet transforms, 1D and 2D, with a learnable filter.

The engine is plain PyTorch. One level of the DWT along an axis of length ``n`` is a
linear map: an *analysis matrix* ``A(h0)`` of shape ``(2*m, n)`` whose first ``m`` rows
give the approximation and the last ``m`` the detail coefficients. Its nonzero pattern
depends only on ``(n, filter length, mode)``; it is computed once, cached, and the matrix
is rebuilt from ``h0`` on every call by one ``index_add`` (so gradients, and gradients of
gradients, reach ``h0``). Applying it is a matrix product, which runs at GEMM speed where
one-channel strided convolutions are slow, and keeps double backward free of custom
kernels.

Conventions follow pywt: coefficient lengths are ``pywt.dwt_coeff_len``, the 1D output is
``[cA_J, cD_J, ..., cD_1]`` and the 2D output is ``[cA_J, (cH_J, cV_J, cD_J), ..., (cH_1,
cV_1, cD_1)]``. At initialisation from a pywt wavelet the coefficients equal pywt's in every
mode. Synthesis follows pywt's ``idwt`` too: for every mode but ``periodization`` it is
the transpose of the ``zero``-mode analysis; for ``periodization`` the transpose of the
periodic analysis of the even-extended signal. Hence in ``zero`` and (for even lengths)
``periodization`` the inverse is exactly the adjoint of the forward, for any filter.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from shared.wavelet import LearnableWavelet

__all__ = [
    "MODES",
    "Coeffs1d",
    "Coeffs2d",
    "DWT1d",
    "DWT2d",
    "Mode",
    "analysis_matrix",
    "coeff_len",
    "max_levels",
]

Mode = Literal["zero", "periodization", "symmetric", "reflect", "periodic"]
#: The boundary modes the transforms accept (pywt's names).
MODES: tuple[str, ...] = ("zero", "periodization", "symmetric", "reflect", "periodic")

Coeffs1d = list[Tensor]
Coeffs2d = list  # [Tensor, (Tensor, Tensor, Tensor), ...]

# Below this length the whole J-level 1D transform is composed into one matrix: for the
# short traces AWD distils (length 40) the per-level products are dominated by op overhead.
_COMPOSE_MAX_LENGTH = 512


def coeff_len(n: int, filter_len: int, mode: str) -> int:
    """Number of coefficients per band after one level (``pywt.dwt_coeff_len``).

    Examples
    --------
    >>> coeff_len(40, 10, "zero"), coeff_len(41, 10, "periodization")
    (24, 21)
    """
    _check_mode(mode)
    if mode == "periodization":
        return (n + 1) // 2
    return (n + filter_len - 1) // 2


def max_levels(n: int) -> int:
    """Largest number of levels accepted for an axis of length ``n``: ``floor(log2(n))``.

    This admits more levels than ``pywt.dwt_max_level`` (which stops once boundary effects
    reach every coefficient); the AWD paper itself uses 4 levels of db5 on length-40 traces.

    Examples
    --------
    >>> max_levels(40), max_levels(256)
    (5, 8)
    """
    return n.bit_length() - 1 if n >= 2 else 0


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; accepted modes are {', '.join(MODES)}")


def _extend_index(m: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map positions of the extended signal to positions in ``[0, n)`` (-1: a zero)."""
    inside = (m >= 0) & (m < n)
    if mode == "zero":
        return np.where(inside, m, -1)
    if mode == "symmetric":
        r = np.mod(m, 2 * n)
        return np.where(r < n, r, 2 * n - 1 - r)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(m)
        r = np.mod(m, 2 * n - 2)
        return np.where(r < n, r, 2 * n - 2 - r)
    if mode == "periodic":
        return np.mod(m, n)
    raise AssertionError(mode)


_PATTERN_CACHE: dict[tuple[int, int, str, str], tuple[Tensor, Tensor, int, int]] = {}


def _pattern(n: int, filter_len: int, mode: str, device: torch.device):
    """Sparsity pattern of one analysis level: (flat positions, tap index, rows, cols).

    Entry ``A[k, j] += h0[t]`` for every (k, j, t) of the pattern; the highpass half uses
    the alternating flip at the same positions.
    """
    key = (n, filter_len, mode, str(device))
    cached = _PATTERN_CACHE.get(key)
    if cached is not None:
        return cached
    k = np.arange(coeff_len(n, filter_len, mode))[:, None]
    t = np.arange(filter_len)[None, :]
    if mode == "periodization":
        # pywt extends an odd signal by repeating its last sample, then wraps periodically.
        n_even = n + n % 2
        cols = np.mod(2 * k + t + 1 - filter_len // 2, n_even)
        cols = np.where(cols == n, n - 1, cols)
    else:
        cols = _extend_index(2 * k + t + 2 - filter_len, n, mode)
    cols, taps = np.broadcast_arrays(cols, t)
    kk = np.broadcast_to(k, cols.shape)
    keep = cols >= 0
    flat = torch.as_tensor((kk * n + cols)[keep], dtype=torch.long, device=device)
    tap = torch.as_tensor(taps[keep], dtype=torch.long, device=device)
    result = (flat, tap, k.shape[0], n)
    _PATTERN_CACHE[key] = result
    return result


def _bank(h0: Tensor) -> Tensor:
    """``(2, L)`` stack of the lowpass filter and its alternating flip, indexed like h0."""
    h1 = h0.flip(-1).clone()
    h1[1::2] = -h1[1::2]
    return torch.stack([h0, h1])


def analysis_matrix(h0: Tensor, n: int, mode: str) -> Tensor:
    """One-level analysis matrix ``A`` of shape ``(2*m, n)``: ``A @ x = [cA; cD]``.

    Parameters
    ----------
    h0 : Tensor
        Lowpass synthesis filter (pywt's ``rec_lo``), shape ``(L,)``.
    n : int
        Signal length.
    mode : str
        Boundary mode, one of :data:`MODES`.

    Returns
    -------
    Tensor
        The matrix, differentiable with respect to ``h0``, on ``h0``'s device and dtype.

    Examples
    --------
    >>> import pywt, torch
    >>> h0 = torch.tensor(pywt.Wavelet("db2").rec_lo, dtype=torch.float64)
    >>> x = torch.randn(8, dtype=torch.float64)
    >>> a, d = (analysis_matrix(h0, 8, "periodization") @ x).split(4)
    >>> ca, cd = pywt.dwt(x.numpy(), "db2", "periodization")
    >>> bool(abs(a.numpy() - ca).max() < 1e-12)
    True
    """
    _check_mode(mode)
    flat, tap, rows, cols = _pattern(n, h0.shape[-1], mode, h0.device)
    values = _bank(h0)[:, tap]
    matrix = h0.new_zeros(2, rows * cols).index_add(1, flat, values)
    return matrix.reshape(2 * rows, cols)


def _synthesis_matrix(h0: Tensor, n: int, mode: str) -> Tensor:
    """``M`` with ``x = [cA, cD] @ M`` (shape ``(2*m, n)``), as pywt's ``idwt`` cropped to n."""
    if mode == "periodization":
        if n % 2:
            return analysis_matrix(h0, n + 1, "periodization")[:, :n]
        return analysis_matrix(h0, n, "periodization")
    return analysis_matrix(h0, n, "zero")


# -- block-banded products ----------------------------------------------------------------
# A level's matrix is banded (each row touches ~L columns, plus wrap-around at the edges in
# the periodic modes). For long axes a dense product wastes most of its flops on zeros, so
# the rows are cut into blocks and each block multiplies only the columns it touches.
_BLOCK_ROWS = 48
_BLOCKED_MIN_COLS = 96
Plan = tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...]
_PLAN_CACHE: dict[tuple, Plan] = {}


def _band_mask(n: int, filter_len: int, mode: str, synthesis: bool) -> np.ndarray:
    """Nonzero pattern ``(m, n)`` of one band's analysis (or synthesis) matrix."""
    if synthesis:
        if mode == "periodization":
            return _band_mask(n + n % 2, filter_len, "periodization", False)[:, :n]
        mode = "zero"
    flat, _, rows, cols = _pattern(n, filter_len, mode, torch.device("cpu"))
    mask = np.zeros(rows * cols, dtype=bool)
    mask[flat.numpy()] = True
    # Both bands share the pattern; keep the lowpass half.
    return mask.reshape(rows, cols)


def _plan_of(mask: np.ndarray) -> Plan:
    """Row blocks with the column ranges each touches (one full range when not worth it)."""
    rows, cols = mask.shape
    full = ((0, rows, ((0, cols),)),)
    if cols < _BLOCKED_MIN_COLS or rows < 2 * _BLOCK_ROWS:
        return full
    plan = []
    touched = 0
    # Equal blocks of about _BLOCK_ROWS rows (no thin remainder block).
    size = -(-rows // -(-rows // _BLOCK_ROWS))
    for r0 in range(0, rows, size):
        r1 = min(rows, r0 + size)
        used = np.flatnonzero(mask[r0:r1].any(0))
        if used.size == 0:
            continue
        # Contiguous runs, merged across small gaps (one product beats two thin ones).
        breaks = np.flatnonzero(np.diff(used) > 16)
        starts = np.concatenate([[used[0]], used[breaks + 1]])
        ends = np.concatenate([used[breaks], [used[-1]]]) + 1
        ranges = tuple((int(a), int(b)) for a, b in zip(starts, ends, strict=True))
        touched += sum(b - a for a, b in ranges) * (r1 - r0)
        plan.append((r0, r1, ranges))
    if touched > 0.6 * rows * cols:
        return full
    return tuple(plan)


def _plan(n: int, filter_len: int, mode: str, synthesis: bool, transpose: bool) -> Plan:
    key = (n, filter_len, mode, synthesis, transpose)
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        mask = _band_mask(n, filter_len, mode, synthesis)
        plan = _plan_of(mask.T if transpose else mask)
        _PLAN_CACHE[key] = plan
    return plan


def _rows_product(x: Tensor, matrix: Tensor, plan: Plan) -> Tensor:
    """``x @ matrix.T`` for a banded ``matrix`` (p, q) and ``x`` (..., q)."""
    if len(plan) == 1 and plan[0][2] == ((0, matrix.shape[1]),):
        return x @ matrix.T
    parts: list[Tensor] = []
    for r0, r1, ranges in plan:
        terms = [x[..., c0:c1] @ matrix[r0:r1, c0:c1].T for c0, c1 in ranges]
        parts.append(functools.reduce(torch.add, terms))
    return torch.cat(parts, dim=-1)


def _cols_product(matrix: Tensor, x: Tensor, plan: Plan) -> Tensor:
    """``matrix @ x`` for a banded ``matrix`` (p, q) and ``x`` (B, q, W)."""
    if len(plan) == 1 and plan[0][2] == ((0, matrix.shape[1]),):
        return matrix @ x
    parts: list[Tensor] = []
    for r0, r1, ranges in plan:
        terms = [matrix[r0:r1, c0:c1] @ x[..., c0:c1, :] for c0, c1 in ranges]
        parts.append(functools.reduce(torch.add, terms))
    return torch.cat(parts, dim=-2)


def _as_wavelet(wavelet: str | Sequence[float] | np.ndarray | Tensor | LearnableWavelet):
    if isinstance(wavelet, LearnableWavelet):
        return wavelet
    if isinstance(wavelet, Tensor):
        return LearnableWavelet(wavelet, dtype=wavelet.dtype)
    return LearnableWavelet(wavelet)


class _DWTBase(nn.Module):
    ndim: int = 0

    def __init__(
        self,
        wavelet: str | Sequence[float] | np.ndarray | Tensor | LearnableWavelet = "db5",
        levels: int = 4,
        mode: Mode = "zero",
        *,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        _check_mode(mode)
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}")
        self.wavelet = _as_wavelet(wavelet)
        self.levels = int(levels)
        self.mode = mode
        self.check_finite = check_finite

    @property
    def h0(self) -> Tensor:
        """The learnable lowpass filter (``self.wavelet.h0``)."""
        return self.wavelet.h0

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"

    def _filter_for(self, x: Tensor) -> Tensor:
        return self.wavelet.h0.to(device=x.device, dtype=x.dtype)

    def _check_input(self, x: Tensor, what: str) -> None:
        if not isinstance(x, Tensor):
            raise ValueError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
        if self.check_finite and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{what} contains NaN or inf values")

    def _coefficient_list(self, coeffs: Sequence, layout: str) -> tuple[list, Tensor]:
        """Check a pywt-ordered list for the inverse; return it and its cA_J."""
        coeffs = list(coeffs)
        if len(coeffs) != self.levels + 1:
            raise ValueError(
                f"expected {self.levels + 1} coefficient arrays (cA_J and J={self.levels} "
                f"detail levels), got {len(coeffs)}"
            )
        approx = coeffs[0]
        self._check_input(approx, "cA")
        if approx.ndim != self.ndim + 2:
            raise ValueError(f"coefficients must have shape {layout}, got {tuple(approx.shape)}")
        return coeffs, approx

    def _level_sizes(self, n: int, axis: str) -> list[int]:
        if self.levels > max_levels(n):
            raise ValueError(
                f"levels={self.levels} is too many for {axis} of length {n}: at most "
                f"{max_levels(n)} (floor(log2({n}))) levels are accepted"
            )
        sizes = [n]
        for _ in range(self.levels):
            sizes.append(coeff_len(sizes[-1], len(self.wavelet), self.mode))
        return sizes

    def _default_size(self, coeff_length: int) -> int:
        if self.mode == "periodization":
            return 2 * coeff_length
        return 2 * coeff_length - len(self.wavelet) + 2


class DWT1d(_DWTBase):
    """Multilevel 1D discrete wavelet transform with a learnable orthogonal wavelet.

    Parameters
    ----------
    wavelet : str, array_like or LearnableWavelet, default "db5"
        The wavelet: a pywt orthogonal name, lowpass taps (``rec_lo`` convention), or a
        :class:`~shared.wavelet.LearnableWavelet` (shared, not copied).
    levels : int, default 4
        Number of decomposition levels J.
    mode : str, default "zero"
        Boundary mode: ``zero`` (the AWD paper's), ``periodization``, ``symmetric``,
        ``reflect`` or ``periodic``.
    check_finite : bool, default True
        Reject inputs with NaN or inf (costs one pass over the input).

    Examples
    --------
    >>> import torch
    >>> dwt = DWT1d("db5", levels=4, mode="zero")
    >>> x = torch.randn(2, 1, 40)
    >>> [c.shape[-1] for c in dwt(x)]
    [10, 10, 12, 16, 24]
    >>> bool(torch.allclose(dwt.inverse(dwt(x)), x, atol=1e-5))
    True
    """

    ndim = 1

    def forward(self, x: Tensor) -> Coeffs1d:
        """Decompose ``x`` of shape ``(N, C, L)`` into ``[cA_J, cD_J, ..., cD_1]``."""
        self._check_input(x, "the input")
        if x.ndim != 3:
            raise ValueError(f"DWT1d expects an input of shape (N, C, L), got {tuple(x.shape)}")
        n_batch, channels, n = x.shape
        sizes = self._level_sizes(n, "a signal")
        h0 = self._filter_for(x)
        flat = x.reshape(n_batch * channels, n)
        mats = [analysis_matrix(h0, s, self.mode) for s in sizes[:-1]]
        if n <= _COMPOSE_MAX_LENGTH:
            whole = _compose_analysis(mats, sizes)
            parts = (flat @ whole.T).split([sizes[-1], *sizes[:0:-1]], dim=-1)
            coeffs = list(parts)
        else:
            details = []
            approx = flat
            for mat, m in zip(mats, sizes[1:], strict=True):
                approx, detail = (approx @ mat.T).split([m, m], dim=-1)
                details.append(detail)
            coeffs = [approx, *details[::-1]]
        return [c.reshape(n_batch, channels, c.shape[-1]) for c in coeffs]

    def inverse(self, coeffs: Sequence[Tensor], size: int | Sequence[int] | None = None) -> Tensor:
        """Reconstruct ``(N, C, L)`` from ``[cA_J, cD_J, ..., cD_1]``.

        Parameters
        ----------
        coeffs : sequence of Tensor
            Coefficients in pywt order; ``None`` for a detail band means zeros.
        size : int, optional
            Length of the signal to return (also as a 1-sequence, e.g. ``x.shape[2:]``).
            By default the even length pywt returns: coefficients of an odd-length
            signal need ``size`` to come back at that length.
        """
        coeffs, approx = self._coefficient_list(coeffs, "(N, C, n)")
        details = [torch.zeros_like(approx) if d is None else d for d in coeffs[1:]]
        finest = details[-1].shape[-1]
        if size is not None and not isinstance(size, (int, np.integer)):
            (size,) = tuple(size)
        n = int(size) if size is not None else self._default_size(finest)
        sizes = [n] + [d.shape[-1] for d in details[::-1][:-1]]
        h0 = self._filter_for(approx)
        n_batch, channels = approx.shape[:2]
        a = approx.reshape(n_batch * channels, -1)
        for detail, s in zip(details, sizes[::-1], strict=True):
            d = detail.reshape(n_batch * channels, -1)
            if d.shape[-1] != a.shape[-1]:
                raise ValueError(
                    f"coefficient lengths do not fit together: approximation {a.shape[-1]} "
                    f"vs detail {d.shape[-1]}"
                )
            synth = _synthesis_matrix(h0, s, self.mode)
            if synth.shape[0] != 2 * d.shape[-1]:
                raise ValueError(
                    f"a band of length {d.shape[-1]} cannot come from a signal of length {s}"
                )
            a = torch.cat([a, d], dim=-1) @ synth
        return a.reshape(n_batch, channels, -1)


def _compose_analysis(mats: list[Tensor], sizes: list[int]) -> Tensor:
    """Rows ``[cA_J; cD_J; ...; cD_1]`` of the whole J-level analysis as one matrix."""
    details = []
    chain: Tensor | None = None
    for mat, m in zip(mats, sizes[1:], strict=True):
        step = mat if chain is None else mat @ chain
        low, high = step.split([m, m], dim=0)
        details.append(high)
        chain = low
    assert chain is not None  # levels >= 1
    return torch.cat([chain, *details[::-1]], dim=0)


class DWT2d(_DWTBase):
    """Multilevel separable 2D discrete wavelet transform with a learnable wavelet.

    The same filter acts along rows and columns (as in pywt and the AWD paper).

    Parameters
    ----------
    wavelet : str, array_like or LearnableWavelet, default "db5"
        See :class:`DWT1d`.
    levels : int, default 4
        Number of decomposition levels J.
    mode : str, default "zero"
        Boundary mode, one of :data:`MODES`.
    check_finite : bool, default True
        Reject inputs with NaN or inf.

    Examples
    --------
    >>> import torch
    >>> dwt = DWT2d("db2", levels=2, mode="periodization")
    >>> coeffs = dwt(torch.randn(1, 1, 16, 16))
    >>> coeffs[0].shape, [c.shape[-1] for c in coeffs[1]]
    (torch.Size([1, 1, 4, 4]), [4, 4, 4])
    """

    ndim = 2

    def forward(self, x: Tensor) -> Coeffs2d:
        """Decompose ``(N, C, H, W)`` into ``[cA_J, (cH_J, cV_J, cD_J), ..., (cH_1, ...)]``."""
        self._check_input(x, "the input")
        if x.ndim != 4:
            raise ValueError(f"DWT2d expects an input of shape (N, C, H, W), got {tuple(x.shape)}")
        n_batch, channels, height, width = x.shape
        rows = self._level_sizes(height, "the height")
        cols = self._level_sizes(width, "the width")
        h0 = self._filter_for(x)
        approx = x.reshape(n_batch * channels, height, width)
        details = []
        for j in range(self.levels):
            a_h = analysis_matrix(h0, rows[j], self.mode)
            a_w = a_h if rows[j] == cols[j] else analysis_matrix(h0, cols[j], self.mode)
            mh, mw = rows[j + 1], cols[j + 1]
            lo_h, hi_h = a_h[:mh], a_h[mh:]
            plan_w = _plan(cols[j], len(self.wavelet), self.mode, False, False)
            plan_h = _plan(rows[j], len(self.wavelet), self.mode, False, False)
            # One product per band keeps every output contiguous: slicing one big product
            # instead costs zero-filled copies in every backward pass.
            t_lo = _rows_product(approx, a_w[:mw], plan_w)
            t_hi = _rows_product(approx, a_w[mw:], plan_w)
            details.append(
                (
                    _cols_product(hi_h, t_lo, plan_h),
                    _cols_product(lo_h, t_hi, plan_h),
                    _cols_product(hi_h, t_hi, plan_h),
                )
            )
            approx = _cols_product(lo_h, t_lo, plan_h)

        def shaped(c: Tensor) -> Tensor:
            return c.reshape(n_batch, channels, *c.shape[-2:])

        return [shaped(approx)] + [tuple(shaped(c) for c in band) for band in details[::-1]]

    def inverse(self, coeffs: Sequence, size: Sequence[int] | None = None) -> Tensor:
        """Reconstruct ``(N, C, H, W)`` from ``[cA_J, (cH_J, cV_J, cD_J), ...]``.

        Parameters
        ----------
        coeffs : sequence
            Coefficients in pywt order; a band given as ``None`` means zeros.
        size : (int, int), optional
            ``(H, W)`` to return (e.g. ``x.shape[-2:]``); by default pywt's even size:
            coefficients of an image with an odd side need ``size`` to come back at it.
        """
        coeffs, approx = self._coefficient_list(coeffs, "(N, C, h, w)")
        n_batch, channels = approx.shape[:2]
        triples = []
        for j, band in enumerate(coeffs[1:]):
            if band is None or len(band) != 3:
                raise ValueError(f"detail entry {j + 1} must be a (cH, cV, cD) triple")
            triples.append(band)
        ref = next((c for c in triples[-1] if c is not None), None)
        finest = tuple(ref.shape[-2:]) if ref is not None else None
        if size is None:
            fh, fw = finest if finest is not None else approx.shape[-2:]
            size = (self._default_size(fh), self._default_size(fw))
        size = tuple(int(v) for v in size)
        if len(size) != 2:
            raise ValueError(f"size must be (H, W), got {size}")
        rows = [size[0]] + [self._band_shape(t, approx)[0] for t in triples[::-1][:-1]]
        cols = [size[1]] + [self._band_shape(t, approx)[1] for t in triples[::-1][:-1]]
        h0 = self._filter_for(approx)
        a = approx.reshape(n_batch * channels, *approx.shape[-2:])
        for band, r, c in zip(triples, rows[::-1], cols[::-1], strict=True):
            ch, cv, cd = (
                torch.zeros_like(a) if b is None else b.reshape(n_batch * channels, *b.shape[-2:])
                for b in band
            )
            if not (a.shape == ch.shape == cv.shape == cd.shape):
                raise ValueError(
                    "coefficient shapes do not fit together: "
                    f"{[tuple(t.shape[-2:]) for t in (a, ch, cv, cd)]}"
                )
            s_h = _synthesis_matrix(h0, r, self.mode)
            s_w = s_h if r == c else _synthesis_matrix(h0, c, self.mode)
            if s_h.shape[0] != 2 * a.shape[-2] or s_w.shape[0] != 2 * a.shape[-1]:
                raise ValueError(
                    f"bands of shape {tuple(a.shape[-2:])} cannot come from an image of "
                    f"shape {(r, c)}"
                )
            mh, mw = a.shape[-2:]
            length = len(self.wavelet)
            plan_w = _plan(c, length, self.mode, True, True)
            plan_h = _plan(r, length, self.mode, True, True)
            w_lo, w_hi = s_w[:mw].T, s_w[mw:].T
            upper = _rows_product(a, w_lo, plan_w) + _rows_product(cv, w_hi, plan_w)
            lower = _rows_product(ch, w_lo, plan_w) + _rows_product(cd, w_hi, plan_w)
            a = _cols_product(s_h[:mh].T, upper, plan_h) + _cols_product(s_h[mh:].T, lower, plan_h)
        return a.reshape(n_batch, channels, *a.shape[-2:])

    @staticmethod
    def _band_shape(band, approx: Tensor) -> tuple[int, int]:
        ref = next((c for c in band if c is not None), approx)
        return tuple(ref.shape[-2:])
