"""Learnable orthogonal wavelets parametrised by their lowpass filter.

The only parameter is the lowpass synthesis filter ``h0`` (pywt's ``rec_lo``). The other
three filters of the orthogonal filter bank follow from it:

- highpass synthesis ``h1[k] = (-1)**k * h0[L-1-k]`` (the alternating flip, pywt's ``rec_hi``);
- analysis filters are the time reverses, ``dec_lo = h0[::-1]``, ``dec_hi = h1[::-1]``.

A filter only yields an orthogonal wavelet when it satisfies the constraints reported by
:meth:`LearnableWavelet.constraint_residuals`; during distillation they are enforced softly
by the penalties in :mod:`shared.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pywt
import torch
from torch import Tensor, nn

__all__ = ["ORTHOGONAL_FAMILIES", "LearnableWavelet", "alternating_flip", "orthogonal_names"]

#: pywt families whose members are orthogonal (and so can seed a LearnableWavelet).
ORTHOGONAL_FAMILIES = ("haar", "db", "sym", "coif")


def orthogonal_names(max_taps: int | None = None) -> list[str]:
    """Return every pywt wavelet name that can initialise a :class:`LearnableWavelet`,
    with at most ``max_taps`` filter taps if given.

    Examples
    --------
    >>> names = orthogonal_names()
    >>> "db5" in names and "bior2.2" not in names
    True
    >>> orthogonal_names(max_taps=4)
    ['haar', 'db1', 'db2', 'sym2']
    """
    names: list[str] = []
    for family in ORTHOGONAL_FAMILIES:
        names.extend(pywt.wavelist(family, kind="discrete"))
    if max_taps is not None:
        names = [n for n in names if pywt.Wavelet(n).dec_len <= max_taps]
    return names


def alternating_flip(h0: Tensor) -> Tensor:
    """Highpass filter of an orthogonal bank: ``h1[k] = (-1)**k * h0[L-1-k]``.

    Parameters
    ----------
    h0 : Tensor
        Lowpass synthesis filter of shape ``(L,)``.

    Returns
    -------
    Tensor
        The highpass synthesis filter, equal to pywt's ``rec_hi`` for pywt's ``rec_lo``.

    Examples
    --------
    >>> import pywt, torch
    >>> w = pywt.Wavelet("db2")
    >>> h1 = alternating_flip(torch.tensor(w.rec_lo, dtype=torch.float64))
    >>> bool(torch.allclose(h1, torch.tensor(w.rec_hi, dtype=torch.float64)))
    True
    """
    sign = torch.ones(h0.shape[-1], dtype=h0.dtype, device=h0.device)
    sign[1::2] = -1.0
    return h0.flip(-1) * sign


def _filter_from_name(name: str) -> np.ndarray:
    try:
        wavelet = pywt.Wavelet(name)
    except ValueError:
        raise ValueError(
            f"unknown wavelet {name!r}; accepted are the orthogonal pywt wavelets: "
            "haar, db1-db38, sym2-sym20, coif1-coif17"
        ) from None
    if not wavelet.orthogonal:
        raise ValueError(
            f"wavelet {name!r} is not orthogonal (biorthogonal wavelets have separate analysis "
            "and synthesis filters); accepted are haar, dbN, symN and coifN"
        )
    return np.asarray(wavelet.rec_lo, dtype=np.float64)


class LearnableWavelet(nn.Module):
    """An orthogonal wavelet whose lowpass filter ``h0`` is a trainable parameter.

    Parameters
    ----------
    init : str or array_like, default "db5"
        A pywt orthogonal wavelet name (``haar``, ``dbN``, ``symN``, ``coifN``) or the filter
        taps of ``h0`` (pywt's ``rec_lo`` convention). Its length must be even.
    noise : float, default 0.0
        Standard deviation of Gaussian noise added to the initial taps.
    random : bool, default False
        Start from pure noise of the init's length (scaled to unit norm) instead of the
        init's taps; ``noise`` is then ignored.
    seed : int, optional
        Seed of the noise, so a perturbed start is reproducible.
    dtype : torch.dtype, default torch.float64
        dtype of the parameter. Transforms cast the taps to their input's dtype on every
        call, so a float64 parameter serves float32 data too and keeps full precision of
        the pywt initialisation and of the optimizer's updates.

    Examples
    --------
    >>> w = LearnableWavelet("db2")
    >>> w.h0.shape
    torch.Size([4])
    >>> float(w.constraint_residuals()["unit_norm"].detach().abs()) < 1e-6
    True
    """

    def __init__(
        self,
        init: str | Sequence[float] | np.ndarray | Tensor = "db5",
        *,
        noise: float = 0.0,
        random: bool = False,
        seed: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if isinstance(init, str):
            taps = _filter_from_name(init)
            self.init_name: str | None = init
        else:
            taps = np.asarray(
                init.detach().cpu().numpy() if isinstance(init, Tensor) else init,
                dtype=np.float64,
            )
            self.init_name = None
            if taps.ndim != 1:
                raise ValueError(f"a filter must be 1-D, got an array of shape {taps.shape}")
            if not np.all(np.isfinite(taps)):
                raise ValueError("the filter contains NaN or inf")
        if taps.size < 2 or taps.size % 2:
            raise ValueError(
                f"the filter length must be even and at least 2 (orthogonal wavelets have even "
                f"length), got {taps.size}"
            )
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        rng = np.random.default_rng(seed)
        if random:
            taps = rng.standard_normal(taps.size)
            taps /= np.linalg.norm(taps)
        elif noise > 0:
            taps = taps + noise * rng.standard_normal(taps.size)
        self.h0 = nn.Parameter(torch.as_tensor(taps, dtype=dtype))

    def __len__(self) -> int:
        return self.h0.shape[0]

    def extra_repr(self) -> str:
        init = self.init_name if self.init_name is not None else "array"
        return f"init={init}, length={len(self)}"

    # -- filter bank ---------------------------------------------------------------------
    @property
    def rec_lo(self) -> Tensor:
        """Lowpass synthesis filter (the parameter itself)."""
        return self.h0

    @property
    def rec_hi(self) -> Tensor:
        """Highpass synthesis filter, the alternating flip of ``h0``."""
        return alternating_flip(self.h0)

    @property
    def dec_lo(self) -> Tensor:
        """Lowpass analysis filter, ``h0`` reversed."""
        return self.h0.flip(-1)

    @property
    def dec_hi(self) -> Tensor:
        """Highpass analysis filter, ``rec_hi`` reversed."""
        return self.rec_hi.flip(-1)

    @property
    def filter_bank(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(dec_lo, dec_hi, rec_lo, rec_hi)`` in pywt's order."""
        return self.dec_lo, self.dec_hi, self.rec_lo, self.rec_hi

    def to_pywt(self) -> pywt.Wavelet:
        """The current filter bank as a :class:`pywt.Wavelet` (detached, float64)."""
        bank = [f.detach().cpu().double().numpy().tolist() for f in self.filter_bank]
        return pywt.Wavelet(name=f"learned({self.init_name or 'array'})", filter_bank=bank)

    # -- constraints ---------------------------------------------------------------------
    def constraint_residuals(self) -> dict[str, Tensor]:
        """Residuals of the conditions that make ``h0`` an orthogonal wavelet filter.

        All are zero (to float precision) for every orthogonal pywt wavelet.

        Returns
        -------
        dict of str to Tensor
            ``lowpass_sum``: ``sum(h0) - sqrt(2)``;
            ``unit_norm``: ``||h0||^2 - 1``;
            ``double_shift``: vector over the even lags ``2m`` (m = 1 .. L/2-1) of the
            autocorrelation, ``sum_k h0[k] h0[k+2m]`` (orthogonality to even shifts);
            ``vanishing_moment``: ``sum(h1)``, i.e. the highpass kills constants
            (H(pi) = 0).

        Examples
        --------
        >>> r = LearnableWavelet("db4").constraint_residuals()
        >>> max(float(v.detach().abs().max()) for v in r.values()) < 1e-6
        True
        """
        h = self.h0
        length = h.shape[0]
        lags = [(h[: length - 2 * m] * h[2 * m :]).sum() for m in range(1, length // 2)]
        double_shift = torch.stack(lags) if lags else h.new_zeros(0)
        return {
            "lowpass_sum": h.sum() - math.sqrt(2.0),
            "unit_norm": (h * h).sum() - 1.0,
            "double_shift": double_shift,
            "vanishing_moment": self.rec_hi.sum(),
        }

    # -- scaling function and wavelet ------------------------------------------------------
    def wavefun(self, level: int = 8) -> tuple[Tensor, Tensor, Tensor]:
        """Scaling function phi and wavelet psi by the cascade algorithm.

        Same grid and normalisation as :meth:`pywt.Wavelet.wavefun` for orthogonal
        wavelets; differentiable with respect to ``h0``.

        Parameters
        ----------
        level : int, default 8
            Number of refinement steps; the grid spacing is ``2**-level``.

        Returns
        -------
        phi, psi, x : Tensor
            Values on the grid ``x``, each of length ``(L-1) * 2**level + 1``.

        Examples
        --------
        >>> phi, psi, x = LearnableWavelet("db2").wavefun(level=4)
        >>> phi.shape == psi.shape == x.shape
        True
        """
        if level < 1:
            raise ValueError(f"level must be >= 1, got {level}")
        h0, h1 = self.rec_lo, self.rec_hi
        scale = math.sqrt(2.0) ** level
        phi = _upcoef(h0, h0, level, scale)
        psi = _upcoef(h1, h0, level, scale)
        length = len(self)
        p = 2**level
        n_out = max((length - 1) * p + 1, phi.shape[0] + 2)
        right = n_out - phi.shape[0] - 1
        zero = phi.new_zeros(1)
        pad = phi.new_zeros(right)
        x = torch.linspace(0.0, (n_out - 1) / p, n_out, dtype=h0.dtype, device=h0.device)
        return torch.cat([zero, phi, pad]), torch.cat([zero, psi, pad]), x


def _upcoef(first: Tensor, lowpass: Tensor, level: int, value: float) -> Tensor:
    """Reconstruct from one coefficient ``value`` through ``level`` synthesis steps."""
    signal = first * value
    for _ in range(level - 1):
        up = signal.new_zeros(2 * signal.shape[0] - 1)
        up[::2] = signal
        signal = _full_convolution(up, lowpass)
    return signal


def _full_convolution(a: Tensor, b: Tensor) -> Tensor:
    kernel = b.flip(-1).reshape(1, 1, -1)
    pad = b.shape[0] - 1
    return torch.nn.functional.conv1d(a.reshape(1, 1, -1), kernel, padding=pad).reshape(-1)
