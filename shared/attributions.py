"""Attributions of a frozen teacher in a transform domain (TRIM), differentiable.

TRIM (transformation importance) reparametrises the teacher ``f`` on the coefficients
``s`` of an invertible transform ``W``::

    f'(s) = f(W^-1 s + r),    r = x - W^-1 (W x)  (held fixed)

so the teacher sees exactly its input ``x`` at ``s = W x`` even when a learned wavelet does
not reconstruct perfectly, while gradients flow through the learned inverse. Saliency,
input x gradient and integrated gradients are then taken with respect to ``s``. With
``create_graph=True`` the attributions are themselves differentiable with respect to the
transform's parameters, which is what the AWD attribution penalty trains.

Any object with ``forward(x) -> coeffs`` and ``inverse(coeffs) -> x`` (coefficients as a
tensor or a pywt-style list) works as the transform: the wavelet transforms of
:mod:`shared.transform`, or :class:`FourierBands2d`, which splits the 2D Fourier plane
into annuli to ask which angular scales a CNN uses.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from shared.coeffs import flatten_coeffs, unflatten_coeffs

__all__ = [
    "FourierBands2d",
    "TRIMModel",
    "compression_rate",
    "residual_of",
    "trim_attributions",
]

logger = logging.getLogger(__name__)

Method = Literal["saliency", "input_x_gradient", "integrated_gradients"]
METHODS: tuple[str, ...] = ("saliency", "input_x_gradient", "integrated_gradients")


# -- coefficient structures ------------------------------------------------------------------
# -- the TRIM model -----------------------------------------------------------------------------
class TRIMModel(nn.Module):
    """The teacher as a function of transform coefficients, ``f(W^-1 s + r)``.

    Parameters
    ----------
    teacher : nn.Module
        The frozen model; called on tensors of the input's shape.
    transform : object
        Has ``inverse(coeffs)``; gradients flow through it.
    residual : Tensor
        ``x - W^-1(W x)``, detached; pass ``None`` for a perfectly invertible transform.

    Examples
    --------
    >>> import torch
    >>> from shared import DWT1d
    >>> dwt, teacher = DWT1d("db2", levels=2), torch.nn.Flatten()
    >>> x = torch.randn(2, 1, 8)
    >>> model = TRIMModel(teacher, dwt, residual_of(dwt, x))
    >>> bool(torch.allclose(model(*dwt(x)), x.flatten(1)))
    True
    """

    def __init__(self, teacher: nn.Module, transform, residual: Tensor | None, size=None) -> None:
        super().__init__()
        self.teacher = teacher
        self.transform = transform
        self.residual = residual
        # The input's spatial size: the inverse cannot tell an odd size from the coefficients.
        self.size = (
            tuple(size)
            if size is not None
            else (tuple(residual.shape[2:]) if residual is not None else None)
        )
        self._like = None

    def set_structure(self, like) -> TRIMModel:
        """Declare the coefficient nesting that ``forward(*leaves)`` rebuilds."""
        self._like = like
        return self

    def forward(self, *leaves: Tensor) -> Tensor:
        if self._like is not None:
            coeffs = unflatten_coeffs(leaves, self._like)
        else:
            coeffs = leaves[0] if len(leaves) == 1 else list(leaves)
        x = self.transform.inverse(coeffs, size=self.size)
        if self.residual is not None:
            residual = self.residual
            if x.shape[0] != residual.shape[0]:
                # Integrated gradients stack the path points step-major: tile to match.
                residual = residual.repeat(x.shape[0] // residual.shape[0], *[1] * (x.ndim - 1))
            x = x + residual
        return self.teacher(x)


def residual_of(transform, x: Tensor, coeffs=None) -> Tensor:
    """``x - W^-1(W x)``, detached: what the transform fails to reconstruct."""
    with torch.no_grad():
        return x - transform.inverse(transform(x) if coeffs is None else coeffs, size=x.shape[2:])


# -- targets ------------------------------------------------------------------------------------
def _select(outputs: Tensor, target) -> Tensor:
    """Per-sample scalar of the outputs for one target (an index or a weight vector)."""
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    n_out = outputs.shape[1]
    if isinstance(target, Tensor) and target.ndim == 1 and target.is_floating_point():
        if target.shape[0] != n_out:
            raise ValueError(
                f"target weights have length {target.shape[0]}, the teacher has {n_out} outputs"
            )
        return outputs @ target.to(outputs)
    index = int(target)
    if not -n_out <= index < n_out:
        raise ValueError(f"target {index} is out of range for a teacher with {n_out} outputs")
    return outputs[:, index]


def _normalise_targets(target) -> tuple[list, bool]:
    """(list of single targets, whether several were asked for)."""
    if isinstance(target, Tensor) and target.is_floating_point() and target.ndim == 1:
        return [target], False
    if isinstance(target, (list, tuple)):
        if not target:
            raise ValueError("target list is empty")
        return list(target), True
    if isinstance(target, (int, np.integer)) or (
        isinstance(target, Tensor) and target.numel() == 1
    ):
        return [int(target)], False
    raise ValueError(
        "target must be an output index, a list of indices, or a float tensor of weights "
        f"over the outputs; got {target!r}"
    )


# -- attributions -------------------------------------------------------------------------------
def _grad_of(model: Callable, leaves: list[Tensor], target, create_graph: bool) -> list[Tensor]:
    outputs = _select(model(*leaves), target)
    grads = torch.autograd.grad(outputs.sum(), leaves, create_graph=create_graph, allow_unused=True)
    return [
        torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves, strict=True)
    ]


def _gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes on [0, 1] and weights of the integrated-gradients path (captum's default rule).

    One definition, so the gradient cache integrates at exactly the same points.
    """
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return (nodes + 1.0) / 2.0, weights / 2.0


def _integrated_gradients(
    model: Callable,
    leaves: list[Tensor],
    baselines: list[Tensor],
    target,
    create_graph: bool,
    n_steps: int,
    internal_batch_size: int | None,
) -> list[Tensor]:
    """Gauss-Legendre integrated gradients (captum's default rule), all steps batched."""
    alphas, step_weights = _gauss_legendre(n_steps)
    n_batch = leaves[0].shape[0]
    chunk = internal_batch_size or n_steps * n_batch
    steps_per_chunk = max(1, chunk // n_batch)
    totals = [torch.zeros_like(leaf) for leaf in leaves]
    for start in range(0, n_steps, steps_per_chunk):
        a = alphas[start : start + steps_per_chunk]
        w = step_weights[start : start + steps_per_chunk]
        k = len(a)
        alpha = torch.as_tensor(a, dtype=leaves[0].dtype, device=leaves[0].device)
        scaled = [
            (
                base.unsqueeze(0) + alpha.view(-1, *[1] * leaf.ndim) * (leaf - base).unsqueeze(0)
            ).reshape(k * n_batch, *leaf.shape[1:])
            for leaf, base in zip(leaves, baselines, strict=True)
        ]
        if not create_graph:
            scaled = [s.detach().requires_grad_(True) for s in scaled]
        outputs = _select(model(*scaled), target)
        grads = torch.autograd.grad(
            outputs.sum(), scaled, create_graph=create_graph, allow_unused=True
        )
        wt = torch.as_tensor(w, dtype=leaves[0].dtype, device=leaves[0].device)
        for i, (g, leaf) in enumerate(zip(grads, leaves, strict=True)):
            if g is None:
                continue
            g = g.reshape(k, *leaf.shape)
            totals[i] = totals[i] + (wt.view(-1, *[1] * leaf.ndim) * g).sum(0)
    return [t * (leaf - base) for t, leaf, base in zip(totals, leaves, baselines, strict=True)]


def trim_attributions(
    teacher: nn.Module,
    transform,
    x: Tensor,
    method: Method = "saliency",
    target=0,
    *,
    create_graph: bool = False,
    coeffs=None,
    residual: Tensor | None = None,
    n_steps: int = 32,
    baseline: str | float = 0.0,
    internal_batch_size: int | None = None,
):
    """Attributions of ``teacher`` to the coefficients of ``transform`` at input ``x``.

    Parameters
    ----------
    teacher : nn.Module
        Frozen model. Switched to eval mode (with a warning) if it is training, because
        batch statistics would couple the samples.
    transform : object
        ``forward(x) -> coeffs`` and ``inverse(coeffs) -> x``; e.g. :class:`~shared.DWT1d`,
        :class:`~shared.DWT2d`, :class:`FourierBands2d`.
    x : Tensor
        Input batch.
    method : {"saliency", "input_x_gradient", "integrated_gradients"}
        Saliency is the signed gradient; input x gradient multiplies it by the
        coefficients; integrated gradients integrate the gradient along the straight path
        from the baseline (Gauss-Legendre, ``n_steps`` points, all batched).
    target : int, list of int, or float Tensor
        An output index, several (one attribution each), or weights over the outputs
        (the attribution of their weighted sum).
    create_graph : bool, default False
        Keep the graph so the attributions can be differentiated with respect to the
        transform's parameters (training).
    coeffs : optional
        ``transform(x)`` when the caller already has it (saves a transform).
    residual : Tensor, optional
        The fixed residual ``x - W^-1(W x)``; computed when not given. A caller that
        already reconstructed ``x`` passes ``(x - x_rec).detach()``.
    n_steps : int, default 32
        Integration points of integrated gradients.
    baseline : float or "mean", default 0.0
        Integrated-gradients baseline in the coefficient domain: a constant, or the
        batch mean of each coefficient.
    internal_batch_size : int, optional
        Largest batch the teacher sees at once in integrated gradients.

    Returns
    -------
    Attributions with the nesting of the coefficients; a list of them for a list target.

    Examples
    --------
    >>> import torch
    >>> from shared import DWT1d
    >>> teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> attr = trim_attributions(teacher, DWT1d("db2", levels=2), torch.randn(3, 1, 16))
    >>> [a.shape[-1] for a in attr]
    [6, 6, 9]
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if x.shape[0] == 0:
        raise ValueError("the input batch is empty")
    if teacher.training:
        warnings.warn(
            "the teacher was in training mode; switching it to eval mode for attributions",
            stacklevel=2,
        )
        teacher.eval()
    targets, several = _normalise_targets(target)
    if coeffs is None:
        coeffs = transform(x)
    if residual is None:
        residual = residual_of(transform, x, coeffs)
    model = TRIMModel(teacher, transform, residual).set_structure(coeffs)
    leaves = flatten_coeffs(coeffs)
    if not create_graph or not all(leaf.requires_grad for leaf in leaves):
        leaves = [leaf.detach().requires_grad_(True) for leaf in leaves]
    results = []
    with _no_cudnn_if_needed(x, create_graph), torch.enable_grad():
        for tgt in targets:
            if method == "integrated_gradients":
                baselines = _baselines(leaves, baseline)
                attr = _integrated_gradients(
                    model, leaves, baselines, tgt, create_graph, n_steps, internal_batch_size
                )
            else:
                grads = _grad_of(model, leaves, tgt, create_graph)
                attr = (
                    grads
                    if method == "saliency"
                    else [g * s for g, s in zip(grads, leaves, strict=True)]
                )
            results.append(unflatten_coeffs(attr, coeffs))
    return results if several else results[0]


def compression_rate(
    teacher: nn.Module,
    transform,
    x: Tensor,
    target=0,
    *,
    threshold: float = 1e-3,
    batch_size: int = 1024,
) -> float:
    """Fraction of coefficients that are both non-negligible and used by the teacher.

    The paper's compactness measure: the share of coefficients of ``x`` with
    ``|coefficient| > threshold`` **and** ``|saliency| > threshold`` (TRIM saliency of
    ``teacher`` for ``target``). Lower is more compact.

    Parameters
    ----------
    teacher : nn.Module
        Frozen model on the input domain.
    transform : object
        The wavelet transform (``forward`` / ``inverse``), e.g. :class:`~shared.DWT1d`.
    x : Tensor
        Inputs, batched like the teacher's.
    target : int or float Tensor
        Output index (or output weights) of the saliency.
    threshold : float, default 1e-3
        Magnitude below which a coefficient or an attribution counts as zero.
    batch_size : int, default 1024
        Inputs per attribution pass (memory bound only).

    Returns
    -------
    float
        In ``[0, 1]``.

    Examples
    --------
    >>> import torch
    >>> from shared import DWT1d
    >>> teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    >>> r = compression_rate(teacher, DWT1d("db2", levels=2), torch.randn(4, 1, 16))
    >>> 0.0 <= r <= 1.0
    True
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if x.shape[0] == 0:
        raise ValueError("the input batch is empty")
    kept = total = 0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        with torch.no_grad():
            coeffs = transform(xb)
        attr = trim_attributions(teacher, transform, xb, "saliency", target, coeffs=coeffs)
        for c, a in zip(flatten_coeffs(coeffs), flatten_coeffs(attr), strict=True):
            kept += int(((c.abs() > threshold) & (a.abs() > threshold)).sum())
            total += c.numel()
    return kept / total


def _baselines(leaves: list[Tensor], baseline) -> list[Tensor]:
    if isinstance(baseline, str):
        if baseline != "mean":
            raise ValueError(f"baseline must be a number or 'mean', got {baseline!r}")
        return [leaf.detach().mean(0, keepdim=True).expand_as(leaf) for leaf in leaves]
    return [torch.full_like(leaf, float(baseline)) for leaf in leaves]


def _no_cudnn_if_needed(x: Tensor, create_graph: bool):
    # cuDNN RNN kernels have no double backward; training through an LSTM teacher needs it.
    if create_graph and x.is_cuda:
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


# -- a Fourier transform for TRIM ----------------------------------------------------------
class FourierBands2d(nn.Module):
    """Split images into ``n_bands`` annuli of the 2D Fourier plane (an invertible map).

    ``forward(x)`` returns a list of real images, band ``b`` holding the part of ``x`` whose
    spatial frequency lies in ``[edges[b], edges[b+1])`` (radial, in cycles per pixel, up
    to the corner frequency); ``inverse`` sums them. With :func:`trim_attributions`, the
    attribution mass per band says which angular scales a CNN relies on; multipole
    ``ell = 2 pi f / pixel_angle`` converts a band to the usual cosmology scale.

    Parameters
    ----------
    n_bands : int
        Number of annuli.
    edges : sequence of float, optional
        Band edges in cycles per pixel (``n_bands + 1`` increasing values from 0); default
        equal widths up to the corner frequency ``sqrt(2) / 2``.

    Examples
    --------
    >>> import torch
    >>> bands = FourierBands2d(4)
    >>> x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    >>> parts = bands(x)
    >>> len(parts), bool(torch.allclose(bands.inverse(parts), x))
    (4, True)
    """

    def __init__(self, n_bands: int, edges: Sequence[float] | None = None) -> None:
        super().__init__()
        if n_bands < 1:
            raise ValueError(f"n_bands must be >= 1, got {n_bands}")
        values = np.asarray(
            np.linspace(0.0, np.sqrt(2.0) / 2.0 + 1e-9, n_bands + 1) if edges is None else edges,
            dtype=np.float64,
        )
        if values.shape != (n_bands + 1,) or np.any(np.diff(values) <= 0) or values[0] != 0:
            raise ValueError(f"edges must be {n_bands + 1} increasing values starting at 0")
        self.n_bands = n_bands
        self.edges = values

    def masks(self, height: int, width: int, device=None, dtype=torch.float64) -> Tensor:
        """``(n_bands, H, W // 2 + 1)`` 0/1 masks on the rfft2 grid (the last band open)."""
        fy = torch.fft.fftfreq(height, device=device, dtype=dtype)[:, None]
        fx = torch.fft.rfftfreq(width, device=device, dtype=dtype)[None, :]
        radius = torch.sqrt(fy**2 + fx**2)
        edges = torch.as_tensor(self.edges, device=device, dtype=dtype)
        band = torch.bucketize(radius, edges[1:-1], right=True)
        return torch.stack([(band == b).to(dtype) for b in range(self.n_bands)])

    def forward(self, x: Tensor) -> list[Tensor]:
        height, width = x.shape[-2:]
        spectrum = torch.fft.rfft2(x)
        masks = self.masks(height, width, x.device, x.dtype)
        return [torch.fft.irfft2(spectrum * m, s=(height, width)) for m in masks]

    def inverse(self, bands: Sequence[Tensor], size: Sequence[int] | None = None) -> Tensor:
        """The sum of the bands (``size``, if given, must be their spatial size)."""
        out = torch.stack(list(bands)).sum(0)
        if size is not None and tuple(size) != tuple(out.shape[-2:]):
            raise ValueError(f"bands of size {tuple(out.shape[-2:])} cannot give {tuple(size)}")
        return out
