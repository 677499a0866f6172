"""The teacher's input gradients, computed once: an AWD step without the teacher.

TRIM evaluates the teacher on wavelet coefficients, ``f(W^-1 s + r)`` with the residual
``r = x - W^-1 W x`` held fixed, so at ``s = W x`` the teacher sees exactly ``x``. In the
modes where the implemented inverse is the exact adjoint of the forward transform for any
filter (``zero``, and ``periodization`` when every level has an even length) the
attributions are then transforms of the teacher's input gradient ``g = grad f(x)``::

    saliency          = W g
    input x gradient  = (W x) * (W g)
    integrated grad.  = (W x) * (W G),   G = int_0^1 grad f(alpha x) d alpha

and ``g`` depends on the data and the frozen teacher only, not on the filter. Autograd's
exact path (:func:`~shared.attributions.trim_attributions` with ``create_graph=True``)
adds one term to the filter gradient: the teacher's Hessian times the motion of the point
``W^-1 W x + r`` with the filter. For a teacher made only of piecewise-linear layers that
Hessian is zero, so the cached path gives the same loss and the same filter gradient (to
rounding) at the cost of a few transforms, whatever the teacher's size.

Where the cached path differs from the exact one (opt-in only, ``attribution_path="cached"``),
measured by ``bench/distill_cached.py --deviation`` (float64, zero mode, db5 with noise of
SD 0, 0.05, 0.2 on its taps; the h0-gradient of the attribution penalty, cached vs exact;
``results/benchmarks/distill_cached_deviation.md``):

- **smooth teachers** (LSTM, tanh, sigmoid, GELU...): the Hessian term is dropped. On the
  project's LSTM teacher (``molecular_partner.teacher.LSTMTeacher``, hidden 20, trained 15
  epochs on 2000 simulated traces; 256 traces of 40, J=4): saliency cosine -0.86 / -0.65 /
  -0.76, relative error 1.3 / 1.25 / 1.1; input x gradient cosine -0.95 / -0.86 / -0.94,
  relative error 1.9 / 1.6 / 1.2. Untrained (the reference note's setting): saliency
  cosine 0.996 / 0.996 / 0.976, relative error 0.20 / 0.21 / 0.40; input x gradient cosine
  0.9997 / 0.9997 / 0.997, relative error 0.09 / 0.09 / 0.21. The two paths compute the
  same penalty *value*, and the cached gradient is its derivative (it matches central
  finite differences of the value to 1e-10 relative, 1e-4 at db5 itself); the double
  backward adds the derivative through the residual that TRIM holds fixed, which no
  computed value has, and on a trained LSTM that term dominates.
- **integrated gradients**: the exact path integrates through ``alpha (x - r) + r``, which
  moves with the filter; the cached path integral ``G`` is taken through ``alpha x`` and is
  exact only when the wavelet reconstructs perfectly (``r = 0``). Small ReLU CNN (8 maps of
  32x32, J=3): cosine 1.0000000 / 0.9997 / 0.990, relative error 2e-16 / 0.30 / 0.42;
  trained LSTM: cosine 0.86 / 0.85 / 0.92, relative error 1.6 / 1.2 / 1.2.

:class:`GradientCache` stores the gradients per training sample and target, float32 by
default, in memory or memory-mapped from a folder several processes of one run share; the
files carry a fingerprint of the teacher, the data, the target and the method, and a cache
made for other inputs is refused. :func:`plan_attributions` decides which path a
distillation takes (:class:`~shared.distill.DistillConfig` ``attribution_path``).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import operator
import os
import re
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from shared.attributions import (
    METHODS,
    _gauss_legendre,
    _normalise_targets,
    _select,
)
from shared.coeffs import flatten_coeffs, unflatten_coeffs
from shared.runs import atomic_write, write_json

__all__ = [
    "ADJOINT_MODES",
    "ATTRIBUTION_PATHS",
    "DEFAULT_MEMORY_BUDGET",
    "AttributionPlan",
    "GradientCache",
    "GradientSource",
    "StaleCacheError",
    "TeacherGradients",
    "attributions_from_gradients",
    "input_gradients",
    "is_adjoint",
    "piecewise_linear",
    "plan_attributions",
]

logger = logging.getLogger(__name__)

#: Bytes of gradients a cache keeps in memory; larger caches are memory-mapped from disk.
DEFAULT_MEMORY_BUDGET = 1 << 30
#: Values of ``DistillConfig.attribution_path``.
ATTRIBUTION_PATHS: tuple[str, ...] = ("auto", "exact", "cached")
#: Modes whose inverse is the adjoint of the forward transform for any filter.
ADJOINT_MODES: tuple[str, ...] = ("zero", "periodization")

_FORMAT = "awd-gradient-cache"
_FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

AttributionPath = Literal["auto", "exact", "cached"]


class StaleCacheError(ValueError):
    """A stored gradient cache was made for another teacher, data, target or method."""


# -- which path -------------------------------------------------------------------------------
_PIECEWISE_LINEAR_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
)
# Affine (or the identity) only in eval mode; in training mode batch statistics or random
# masks make them something else.
_EVAL_ONLY_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
)
_CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

# Functions and methods that are piecewise linear in every tensor argument.
_LINEAR_FUNCTIONS: set[Any] = {
    operator.add,
    operator.sub,
    operator.neg,
    operator.pos,
    operator.getitem,
    torch.add,
    torch.sub,
    torch.neg,
    torch.cat,
    torch.stack,
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.transpose,
    torch.permute,
    torch.mean,
    torch.sum,
    torch.relu,
    torch.abs,
    torch.maximum,
    torch.minimum,
    torch.amax,
    torch.amin,
    F.relu,
    F.leaky_relu,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
}
# Linear in their first argument only (the others are weights).
_LINEAR_IN_FIRST: set[Any] = {
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.conv_transpose1d,
    F.conv_transpose2d,
    F.conv_transpose3d,
    torch.clamp,
    F.pad,
}
# Bilinear: piecewise linear when at most one operand depends on the input.
_PRODUCTS: set[Any] = {operator.mul, torch.mul, operator.matmul, torch.matmul, torch.mm, torch.bmm}
_DIVISIONS: set[Any] = {operator.truediv, torch.div, torch.true_divide}
_LINEAR_METHODS = {
    "add",
    "sub",
    "neg",
    "view",
    "view_as",
    "reshape",
    "reshape_as",
    "flatten",
    "mean",
    "sum",
    "permute",
    "transpose",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "relu",
    "abs",
    "clone",
    "expand",
    "expand_as",
    "repeat",
    "flip",
    "roll",
    "narrow",
    "select",
    "chunk",
    "split",
    "unbind",
    "amax",
    "amin",
    "max",
    "min",
    "clamp",
    "to",
    "float",
    "double",
    "type_as",
}
_METADATA_METHODS = {"size", "dim", "numel"}
# Position and default of the ``training`` argument: piecewise linear only when False.
_TRAINING_FLAG: dict[Any, tuple[int, bool]] = {F.dropout: (2, True), F.batch_norm: (5, False)}
_PRODUCT_METHODS = {"mul", "matmul", "mm", "bmm"}
_DIVISION_METHODS = {"div", "true_divide"}
_METADATA_ATTRIBUTES = {"shape", "ndim", "dtype", "device"}


def _module_verdict(name: str, module: nn.Module) -> str | None:
    """Why a torch.nn module is not piecewise linear, or None when it is (or is a container)."""
    label = f"{name or 'the teacher'} ({type(module).__name__})"
    if isinstance(module, _CONTAINERS) or type(module) in _PIECEWISE_LINEAR_MODULES:
        return None
    if type(module) in _EVAL_ONLY_MODULES:
        return f"{label} is in training mode" if module.training else None
    return f"{label} is not on the piecewise-linear allow-list"


def _is_builtin(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.nn", "torch.ao.nn"))


def _method_kind(node: torch.fx.Node, dependent) -> str:
    """``"linear"``, ``"metadata"`` (no value of the input) or ``"smooth"`` for a method call."""
    target = node.target
    if target in _METADATA_METHODS:
        return "metadata"
    if target in _LINEAR_METHODS:
        return "linear"
    if target in _PRODUCT_METHODS and len(dependent((node.args, node.kwargs))) <= 1:
        return "linear"
    if target in _DIVISION_METHODS and not dependent((node.args[1:], node.kwargs)):
        return "linear"
    return "smooth"


def _function_kind(node: torch.fx.Node, dependent) -> str:
    """``"linear"``, ``"metadata"`` or ``"smooth"`` for a function call."""
    target, args, kwargs = node.target, node.args, node.kwargs
    if target is getattr:
        if args[1] in _METADATA_ATTRIBUTES:
            return "metadata"
        return "linear" if args[1] in ("T", "mT") else "smooth"
    if target in _LINEAR_FUNCTIONS:
        return "linear"
    others_constant = not dependent((args[1:], kwargs))
    if target in _LINEAR_IN_FIRST and others_constant:
        return "linear"
    if target in _PRODUCTS and len(dependent((args, kwargs))) <= 1:
        return "linear"
    if target in _DIVISIONS and others_constant and "rounding_mode" not in kwargs:
        return "linear"
    if target in _TRAINING_FLAG:
        position, default = _TRAINING_FLAG[target]
        training = kwargs.get("training", args[position] if len(args) > position else default)
        return "linear" if training is False else "smooth"
    return "smooth"


def _graph_verdict(root: nn.Module, graph: torch.fx.Graph) -> str | None:
    """Walk the traced forward: every operation on the input must be piecewise linear."""
    # Only the first argument is the input; others keep their defaults.
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    depends: set[torch.fx.Node] = set(placeholders[:1])

    def dependent(values) -> list[torch.fx.Node]:
        found: list[torch.fx.Node] = []
        torch.fx.node.map_arg(values, lambda n: found.append(n) if n in depends else None)
        return found

    for node in graph.nodes:
        if node.op in ("placeholder", "get_attr", "output"):
            continue
        if not dependent((node.args, node.kwargs)):
            continue  # arithmetic on weights and constants only
        what = getattr(node.target, "__name__", str(node.target))
        if node.op == "call_module":
            verdict = _module_verdict(str(node.target), root.get_submodule(str(node.target)))
            if verdict is not None:
                return verdict
            kind = "linear"
        elif node.op == "call_method":
            kind = _method_kind(node, dependent)
            what = f"the method .{what}()"
        else:
            kind = _function_kind(node, dependent)
        if kind == "smooth":
            return f"its forward calls {what} on the input"
        if kind == "linear":
            depends.add(node)
    return None


def piecewise_linear(teacher: nn.Module) -> tuple[bool, str]:
    """Whether ``teacher`` is made only of piecewise-linear operations, and why (not).

    Two checks, both conservative (anything unknown counts as smooth):

    1. every built-in module (``torch.nn.*``) is on an allow-list: Linear, Conv* and
       ConvTranspose*, ReLU, LeakyReLU, MaxPool*, AvgPool*, AdaptiveAvgPool*,
       AdaptiveMaxPool*, BatchNorm* and Dropout* in eval mode, Flatten, Unflatten,
       Identity, and the containers;
    2. the forward, traced symbolically (``torch.fx``, on a copy of the teacher), applies
       to the input only allow-listed modules and piecewise-linear functions: sums,
       differences, products and quotients by input-independent values (weights,
       buffers, constants), reshapes, indexing, means and sums, ReLU, pooling, linear
       layers and convolutions. A forward that cannot be traced (control flow on the
       input, for instance) counts as smooth.

    Parameters
    ----------
    teacher : nn.Module
        The model, in the mode it will be used in (eval for distillation).

    Returns
    -------
    ok : bool
    reason : str
        What failed, or what was checked.

    Examples
    --------
    >>> from torch import nn
    >>> cnn = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 1))
    >>> piecewise_linear(cnn)[0], piecewise_linear(nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
    (True, (False, '1 (Tanh) is not on the piecewise-linear allow-list'))
    """
    for name, module in teacher.named_modules():
        if _is_builtin(module):
            verdict = _module_verdict(name, module)
            if verdict is not None:
                return False, verdict
    try:
        # Tracing runs the forward on proxies; a copy keeps any side effect off the teacher.
        root = copy.deepcopy(teacher)
        graph = torch.fx.Tracer().trace(root)
    except Exception as err:  # any failure to trace means "not known to be piecewise linear"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return False, f"its forward cannot be traced ({type(err).__name__}: {first_line})"
    verdict = _graph_verdict(root, graph)
    if verdict is not None:
        return False, verdict
    return True, "every module and operation on the input is piecewise linear"


def _second_order_free(teacher: nn.Module, probe: Tensor, target) -> bool:
    """Autograd's Hessian-vector product of the teacher is exactly zero at ``probe``."""
    x = probe.detach().requires_grad_(True)
    with torch.enable_grad():
        for tgt in _normalise_targets(target)[0]:
            out = _select(teacher(x), tgt).sum()
            (grad,) = torch.autograd.grad(out, x, create_graph=True)
            if not grad.requires_grad:
                continue
            v = torch.randn(grad.shape, generator=torch.Generator().manual_seed(0))
            (hvp,) = torch.autograd.grad(
                (grad * v.to(grad)).sum(), x, allow_unused=True, materialize_grads=True
            )
            if bool(hvp.abs().max() > 0):
                return False
    return True


def is_adjoint(mode: str, levels: int, sample_shape: Sequence[int] | None) -> bool:
    """Whether the transform's inverse is the adjoint of its forward for any filter.

    Always in ``zero`` mode; in ``periodization`` when every level has even lengths
    (each spatial size divisible by ``2**levels``); never in the other modes.

    Examples
    --------
    >>> is_adjoint("zero", 4, None), is_adjoint("periodization", 3, (1, 40))
    (True, True)
    >>> is_adjoint("periodization", 4, (1, 40)), is_adjoint("symmetric", 1, (1, 8))
    (False, False)
    """
    if mode == "zero":
        return True
    if mode != "periodization" or sample_shape is None:
        return False
    return all(int(n) % (2**levels) == 0 for n in list(sample_shape)[1:])


@dataclass(frozen=True)
class AttributionPlan:
    """How a distillation computes the teacher's attributions.

    ``path`` is ``"exact"`` (autograd through the teacher, double backward) or
    ``"cached"`` (transforms of the cached input gradients); ``exact_equivalent`` says
    whether the cached path equals the exact one (piecewise-linear teacher, adjoint mode,
    saliency or input x gradient); ``reason`` says why.
    """

    path: str
    exact_equivalent: bool
    reason: str


def plan_attributions(
    setting: str,
    teacher: nn.Module,
    mode: str,
    levels: int,
    method: str,
    *,
    sample_shape: Sequence[int] | None = None,
    probe: Tensor | None = None,
    target=0,
) -> AttributionPlan:
    """Choose the attribution path of a distillation.

    Parameters
    ----------
    setting : {"auto", "exact", "cached"}
        ``auto``: cached wherever it equals the exact path (a piecewise-linear teacher, an
        adjoint mode, saliency or input x gradient), exact elsewhere. ``exact``: always
        the double backward through the teacher. ``cached``: always the cached gradients
        (an approximation for smooth teachers and for integrated gradients; refused in a
        mode that is not adjoint).
    teacher : nn.Module
        The frozen teacher, in eval mode.
    mode, levels
        The transform's boundary mode and number of levels.
    method : str
        Attribution method (see :func:`~shared.attributions.trim_attributions`).
    sample_shape : sequence of int, optional
        ``(C, L)`` or ``(C, H, W)``; needed to tell whether ``periodization`` is adjoint.
    probe : Tensor, optional
        A few inputs on which autograd's second derivative of the teacher is checked to be
        zero, as a second guard behind the structural check.
    target
        The attributed output(s), for the probe.

    Returns
    -------
    AttributionPlan

    Examples
    --------
    >>> from torch import nn
    >>> relu_net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> plan_attributions("auto", relu_net, "zero", 2, "saliency").path
    'cached'
    >>> plan_attributions("auto", nn.Sequential(nn.Flatten(), nn.Tanh()), "zero", 2,
    ...                   "saliency").path
    'exact'
    """
    if setting not in ATTRIBUTION_PATHS:
        raise ValueError(
            f"attribution_path must be one of {', '.join(ATTRIBUTION_PATHS)}; got {setting!r}"
        )
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
    adjoint = is_adjoint(mode, levels, sample_shape)
    if setting == "exact":
        return AttributionPlan("exact", False, "asked for the exact path")
    reasons: list[str] = []
    if not adjoint:
        if mode in ADJOINT_MODES and sample_shape is None:
            reasons.append(f"{mode} mode with an unknown sample shape may not be adjoint")
        else:
            reasons.append(f"{mode} mode is not adjoint for these sizes")
    if method == "integrated_gradients":
        reasons.append("the cached path integral is exact only for a perfect reconstruction")
    linear, why = piecewise_linear(teacher)
    if not linear:
        reasons.append(f"the teacher is not known to be piecewise linear: {why}")
    elif probe is not None and not _second_order_free(teacher, probe, target):
        linear = False
        reasons.append("the teacher's second derivative is not zero on the data")
    if setting == "cached":
        if not adjoint and not (mode in ADJOINT_MODES and sample_shape is None):
            raise ValueError(
                f"the cached attribution path needs an adjoint mode ({', '.join(ADJOINT_MODES)};"
                f" periodization with sizes divisible by 2**levels); got {mode!r}"
            )
        if reasons:
            logger.warning("cached attributions are an approximation here: %s", "; ".join(reasons))
            return AttributionPlan("cached", False, "asked for; approximate: " + "; ".join(reasons))
        return AttributionPlan("cached", True, "asked for; " + why)
    if reasons:
        return AttributionPlan("exact", False, "; ".join(reasons))
    return AttributionPlan("cached", True, why)


# -- gradients ----------------------------------------------------------------------------
def input_gradients(
    teacher: nn.Module,
    x: Tensor,
    target=0,
    method: str = "saliency",
    *,
    n_steps: int = 32,
) -> Tensor:
    """The teacher's input gradient per sample and target, ``(N, T, *x.shape[1:])``.

    For saliency and input x gradient ``grad f_t(x)``; for integrated gradients the
    Gauss-Legendre path integral ``sum_k w_k grad f_t(alpha_k x)`` at the nodes
    :func:`~shared.attributions.trim_attributions` uses (``n_steps`` points, baseline 0).
    ``T`` is the number of targets (1 for an index or output weights).

    Examples
    --------
    >>> import torch
    >>> teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2))
    >>> g = input_gradients(teacher, torch.randn(3, 1, 8), target=[0, 1])
    >>> tuple(g.shape), bool(torch.allclose(g[0, 1, 0], teacher[1].weight[1]))
    ((3, 2, 1, 8), True)
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
    targets, _ = _normalise_targets(target)
    x = x.detach()
    per_target = []
    with torch.enable_grad():
        for tgt in targets:
            if method == "integrated_gradients":
                alphas, weights = _gauss_legendre(n_steps)
                total = torch.zeros_like(x)
                for alpha, weight in zip(alphas, weights, strict=True):
                    point = (float(alpha) * x).requires_grad_(True)
                    out = _select(teacher(point), tgt).sum()
                    (grad,) = torch.autograd.grad(out, point, materialize_grads=True)
                    total = total + float(weight) * grad
                per_target.append(total)
            else:
                point = x.clone().requires_grad_(True)
                out = _select(teacher(point), tgt).sum()
                (grad,) = torch.autograd.grad(out, point, materialize_grads=True)
                per_target.append(grad)
    return torch.stack(per_target, dim=1).detach()


def attributions_from_gradients(transform, coeffs, gradients: Tensor, method: str, several=False):
    """TRIM attributions from the teacher's input gradients, in an adjoint mode.

    Parameters
    ----------
    transform : DWT1d or DWT2d
        The wavelet transform, in ``zero`` or (even-sized) ``periodization`` mode.
    coeffs : list
        ``transform(x)`` for the batch (kept in the graph: input x gradient and integrated
        gradients multiply by it).
    gradients : Tensor
        ``(N, T, *x.shape[1:])`` from :func:`input_gradients` or a :class:`GradientCache`.
    method : str
        ``saliency`` (``W g``), ``input_x_gradient`` (``W x * W g``) or
        ``integrated_gradients`` (``W x * W G``).
    several : bool, default False
        Return a list with one attribution per target (as ``trim_attributions`` does for a
        list target).

    Returns
    -------
    Attributions with the nesting of ``coeffs``; a list of them when ``several``.

    Examples
    --------
    >>> import torch
    >>> from shared import DWT1d
    >>> from shared.attributions import trim_attributions
    >>> dwt = DWT1d("db2", levels=2).double()
    >>> teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1)).double().eval()
    >>> x = torch.randn(3, 1, 16, dtype=torch.float64)
    >>> cached = attributions_from_gradients(dwt, dwt(x), input_gradients(teacher, x),
    ...                                      "saliency")
    >>> exact = trim_attributions(teacher, dwt, x)
    >>> all(torch.allclose(a, b) for a, b in zip(cached, exact))
    True
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
    if not is_adjoint(transform.mode, transform.levels, gradients.shape[2:]):
        raise ValueError(
            f"attributions from gradients need an adjoint transform; {transform.mode!r} mode "
            f"with {transform.levels} levels on samples of shape {tuple(gradients.shape[2:])} "
            "is not (use zero mode, or periodization with sizes divisible by 2**levels)"
        )
    n_batch, n_targets = gradients.shape[:2]
    # All targets through one transform call.
    flat = gradients.reshape(n_batch * n_targets, *gradients.shape[2:])
    # A non-finite gradient must reach the loss (whose check names the attribution term),
    # as on the exact path, rather than be refused as a bad input by the transform.
    check, transform.check_finite = transform.check_finite, False
    try:
        of_gradients = transform(flat)
    finally:
        transform.check_finite = check
    transformed = [
        leaf.reshape(n_batch, n_targets, *leaf.shape[1:]) for leaf in flatten_coeffs(of_gradients)
    ]
    leaves = flatten_coeffs(coeffs)
    results = []
    for t in range(n_targets):
        grads = [leaf[:, t] for leaf in transformed]
        if method != "saliency":
            grads = [g * c for g, c in zip(grads, leaves, strict=True)]
        results.append(unflatten_coeffs(grads, coeffs))
    return results if several else results[0]


# -- fingerprints -------------------------------------------------------------------------
_HASH_CHUNK = 1 << 24  # elements per hashed chunk


def _hash_tensor(digest, tensor: Tensor) -> None:
    flat = tensor.detach().reshape(-1)
    for start in range(0, flat.numel(), _HASH_CHUNK):
        chunk = flat[start : start + _HASH_CHUNK].cpu().contiguous()
        digest.update(chunk.view(torch.uint8).numpy())


def _teacher_fingerprint(teacher: nn.Module) -> dict[str, str]:
    digest = hashlib.sha256()
    for name, value in sorted(teacher.state_dict().items()):
        if not isinstance(value, Tensor):  # a module's extra state
            digest.update(f"{name}|{value!r}|".encode())
            continue
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        _hash_tensor(digest, value)
    cls = type(teacher)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "sha256": digest.hexdigest()}


def _target_key(target) -> Any:
    targets, several = _normalise_targets(target)
    keys = [
        t.detach().cpu().double().tolist() if isinstance(t, Tensor) else int(t) for t in targets
    ]
    return keys if several else keys[0]


def _storage_dtype(dtype, data_dtype: torch.dtype) -> np.dtype:
    if dtype is None:
        # float32 unless the data are float64: the cache never loses precision on them.
        return np.dtype(np.float64 if data_dtype == torch.float64 else np.float32)
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    out = np.dtype(dtype)
    if out not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"the cache stores float32 or float64, got {dtype!r}")
    return out


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    keys = list(dict.fromkeys([*wanted, *stored]))
    return [k for k in keys if stored.get(k) != wanted.get(k)]


# -- the cache ----------------------------------------------------------------------------
@dataclass
class TeacherGradients:
    """One cached gradient array, ``(N, T, *sample_shape)``.

    Attributes
    ----------
    values : ndarray
        The gradients (a read-only memory map when larger than the cache's budget).
    fingerprint : dict
        Teacher, data, target, method and storage of the array.
    several : bool
        Whether the target was a list (one attribution per target).
    path : Path or None
        The ``.npy`` file, if any.
    seconds : float
        How long building it took.
    """

    values: np.ndarray
    fingerprint: dict[str, Any]
    several: bool
    path: Path | None = None
    seconds: float = 0.0
    file_id: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def memory_mapped(self) -> bool:
        """Whether the values are read from disk on demand."""
        return isinstance(self.values, np.memmap)

    def batch(self, index, *, device=None, dtype: torch.dtype | None = None) -> Tensor:
        """Gradients of the samples ``index`` (in that order), ``(B, T, ...)``."""
        index = np.asarray(index.cpu() if isinstance(index, Tensor) else index, dtype=np.int64)
        out = torch.from_numpy(np.ascontiguousarray(self.values[index]))
        return out.to(device=device, dtype=dtype or out.dtype)


class GradientCache:
    """The teacher's input gradients per training sample and target, computed once.

    One cache serves any number of distillations of one run (every point of a lambda x
    gamma grid): the gradients do not depend on the filter. Each entry is identified by a
    ``name`` (``distill`` uses ``"train"`` and ``"val"``) and carries a fingerprint of the
    teacher's weights, the data, the target(s) and the method; asking for an entry with
    another fingerprint raises :class:`StaleCacheError` naming what differs, or recomputes
    it with ``on_stale="recompute"``.

    Parameters
    ----------
    folder : path, optional
        Where the entries live, shared by the processes (or Ray workers) of one run:
        ``NAME.json`` (the fingerprint, written last, atomically), ``NAME.<id>.npy`` (the
        array, written to a temporary file and renamed) and ``NAME.lock`` (held while an
        entry is built, so two workers never build one entry at once; the others wait and
        then read it). Readers open the arrays read-only. Without a folder the entries
        live in memory, or in a temporary folder removed with the cache when larger than
        ``memory_budget``.
    memory_budget : int, default DEFAULT_MEMORY_BUDGET (1 GiB)
        Largest entry, in bytes, held in memory; larger ones are memory-mapped from disk.
    dtype : {"float32", "float64"} or torch.dtype, optional
        Storage type; default float32 (float64 for float64 data, so float64 runs stay
        exact).
    on_stale : {"error", "recompute"}, default "error"
        What to do with an entry made for another teacher, data, target or method.
    batch_size : int, default 64
        Samples per teacher pass while building.

    Examples
    --------
    >>> import torch
    >>> teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 1))
    >>> cache = GradientCache()
    >>> entry = cache.gradients(teacher, torch.randn(10, 1, 8))
    >>> entry.values.shape, entry.values.dtype.name, entry.memory_mapped
    ((10, 1, 1, 8), 'float32', False)
    """

    def __init__(
        self,
        folder: str | os.PathLike | None = None,
        *,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        dtype: str | torch.dtype | None = None,
        on_stale: Literal["error", "recompute"] = "error",
        batch_size: int = 64,
    ) -> None:
        if memory_budget < 0:
            raise ValueError(f"memory_budget must be >= 0 bytes, got {memory_budget}")
        if on_stale not in ("error", "recompute"):
            raise ValueError(f"on_stale must be 'error' or 'recompute', got {on_stale!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if dtype is not None:
            _storage_dtype(dtype, torch.float32)  # validate early
        self.folder = Path(folder) if folder is not None else None
        self.memory_budget = int(memory_budget)
        self.dtype = dtype
        self.on_stale = on_stale
        self.batch_size = batch_size
        self._entries: dict[str, TeacherGradients] = {}
        self._data_hashes: dict[int, tuple[weakref.ref, int, str]] = {}
        self._scratch: Path | None = None
        self._finalizer: weakref.finalize | None = None

    def __repr__(self) -> str:
        where = str(self.folder) if self.folder is not None else "memory"
        return f"GradientCache({where!r}, memory_budget={self.memory_budget})"

    def __enter__(self) -> GradientCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Forget the entries and remove the temporary folder, if one was made."""
        self._entries.clear()
        if self._finalizer is not None:
            self._finalizer()

    # -- fingerprints --------------------------------------------------------------------
    def _data_fingerprint(self, data: Tensor, given: str | None) -> dict[str, Any]:
        base = {"shape": list(data.shape), "dtype": str(data.dtype).removeprefix("torch.")}
        if given is not None:
            return base | {"fingerprint": str(given)}
        # Hashing large data takes a while: remember the hash of this very tensor (a weak
        # reference, so a new tensor at a reused address is never mistaken for it) at
        # this version (in-place changes bump it).
        known = self._data_hashes.get(id(data))
        if known is not None and known[0]() is data and known[1] == data._version:
            return base | {"sha256": known[2]}
        digest = hashlib.sha256()
        _hash_tensor(digest, data)
        if len(self._data_hashes) >= 8:
            self._data_hashes.clear()
        self._data_hashes[id(data)] = (weakref.ref(data), data._version, digest.hexdigest())
        return base | {"sha256": digest.hexdigest()}

    def fingerprint(
        self,
        teacher: nn.Module,
        data: Tensor,
        target=0,
        method: str = "saliency",
        *,
        data_fingerprint: str | None = None,
        n_steps: int = 32,
    ) -> dict[str, Any]:
        """What an entry for these inputs must have been made from."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
        ig = method == "integrated_gradients"
        return {
            "teacher": _teacher_fingerprint(teacher),
            "data": self._data_fingerprint(data, data_fingerprint),
            "target": _target_key(target),
            # Saliency and input x gradient need the same gradient, so they share entries.
            "method": "integrated_gradients" if ig else "gradient",
            "n_steps": int(n_steps) if ig else None,
            "dtype": _storage_dtype(self.dtype, data.dtype).name,
        }

    # -- entries -------------------------------------------------------------------------
    def gradients(
        self,
        teacher: nn.Module,
        data,
        target=0,
        method: str = "saliency",
        *,
        name: str = "train",
        data_fingerprint: str | None = None,
        n_steps: int = 32,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
    ) -> TeacherGradients:
        """The entry ``name`` for these inputs: read if it exists and matches, else built.

        Parameters
        ----------
        teacher : nn.Module
            The frozen teacher (switched to eval mode with a warning if training).
        data : Tensor or ndarray
            All samples, ``(N, C, L)`` or ``(N, C, H, W)``; row ``i`` of the entry is the
            gradient at ``data[i]``.
        target : int, list of int or float Tensor
            Attributed output(s), as in :func:`~shared.attributions.trim_attributions`.
        method : str
            ``saliency`` or ``input_x_gradient`` (the input gradient) or
            ``integrated_gradients`` (the path integral at ``n_steps`` nodes).
        name : str, default "train"
            Entry name (file stem in the folder).
        data_fingerprint : str, optional
            A caller's identifier of the data, used instead of hashing their bytes.
        n_steps : int, default 32
            Integration nodes (integrated gradients only).
        batch_size : int, optional
            Samples per teacher pass (default: the cache's ``batch_size``).
        device : optional
            Where the teacher runs (default: where its parameters are).

        Returns
        -------
        TeacherGradients

        Raises
        ------
        StaleCacheError
            The stored entry was made from other inputs and ``on_stale="error"``.
        """
        if not _NAME.match(name):
            raise ValueError(f"a cache entry name must be a plain file stem, got {name!r}")
        data = _as_data(data)
        if teacher.training:
            logger.warning("the teacher was in training mode; caching its gradients in eval mode")
            teacher.eval()
        wanted = self.fingerprint(
            teacher, data, target, method, data_fingerprint=data_fingerprint, n_steps=n_steps
        )
        several = _normalise_targets(target)[1]

        def build(out: np.ndarray) -> None:
            self._fill(out, teacher, data, target, method, n_steps, batch_size, device)

        entry = self._entries.get(name)
        if entry is not None and entry.fingerprint == wanted:
            stored = self._read_meta(name) if self.folder is not None else None
            if self.folder is None or (stored is not None and stored["file"] == entry.file_id):
                return entry
        if self.folder is None:
            if entry is not None:
                self._refuse_if_stale(name, entry.fingerprint, wanted, "in memory")
            entry = self._build_in_memory(name, wanted, several, data, target, build)
        else:
            entry = self._open_or_build(name, wanted, several, data, target, build)
        self._entries[name] = entry
        return entry

    def _shape(self, data: Tensor, target) -> tuple[int, ...]:
        return (data.shape[0], len(_normalise_targets(target)[0]), *data.shape[1:])

    def _refuse_if_stale(self, name: str, stored: dict, wanted: dict, where: str) -> None:
        diff = _differences(stored, wanted)
        if diff and self.on_stale == "error":
            raise StaleCacheError(
                f"the gradient cache entry {name!r} ({where}) was made for another "
                f"{', '.join(diff)}; pass on_stale='recompute' to rebuild it, or another "
                "name or folder"
            )
        if diff:
            logger.info("gradient cache entry %r is stale (%s); recomputing", name, diff)

    def _fill(
        self,
        out: np.ndarray,
        teacher: nn.Module,
        data: Tensor,
        target,
        method: str,
        n_steps: int,
        batch_size: int | None,
        device,
    ) -> None:
        if device is None:
            param = next(iter(teacher.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")
        step = batch_size or self.batch_size
        tic = time.perf_counter()
        for start in range(0, data.shape[0], step):
            xb = data[start : start + step].to(device)
            if not xb.is_floating_point():
                xb = xb.to(torch.get_default_dtype())
            grads = input_gradients(teacher, xb, target, method, n_steps=n_steps)
            out[start : start + xb.shape[0]] = grads.cpu().numpy().astype(out.dtype, copy=False)
        logger.info(
            "cached the teacher's %s of %d samples in %.1f s",
            "path integrals" if method == "integrated_gradients" else "input gradients",
            data.shape[0],
            time.perf_counter() - tic,
        )

    def _build_in_memory(self, name, wanted, several, data, target, build) -> TeacherGradients:
        shape = self._shape(data, target)
        dtype = np.dtype(wanted["dtype"])
        tic = time.perf_counter()
        if int(np.prod(shape)) * dtype.itemsize <= self.memory_budget:
            values = np.empty(shape, dtype=dtype)
            build(values)
            values.setflags(write=False)  # shared by every distillation that uses it
            return TeacherGradients(values, wanted, several, None, time.perf_counter() - tic)
        path = self._scratch_folder() / f"{name}.{uuid.uuid4().hex[:12]}.npy"
        values = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        build(values)
        values.flush()
        del values
        return TeacherGradients(
            np.load(path, mmap_mode="r"), wanted, several, path, time.perf_counter() - tic
        )

    def _scratch_folder(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="awd-gradients-"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._scratch, True)
        return self._scratch

    # -- files -----------------------------------------------------------------------------
    def _meta_path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{name}.json"

    def _read_meta(self, name: str) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._meta_path(name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{self._meta_path(name)}: unreadable gradient cache ({err})"
            ) from None
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{self._meta_path(name)} is not a gradient cache description")
        return meta

    def _open(self, meta: dict[str, Any], several: bool) -> TeacherGradients:
        assert self.folder is not None
        path = self.folder / meta["file"]
        nbytes = int(np.prod(meta["shape"])) * np.dtype(meta["dtype"]).itemsize
        values = np.load(path, mmap_mode="r" if nbytes > self.memory_budget else None)
        values.setflags(write=False)
        if list(values.shape) != list(meta["shape"]) or values.dtype.name != meta["dtype"]:
            raise ValueError(f"{path}: the array does not match its description")
        return TeacherGradients(
            values, meta["fingerprint"], several, path, meta["seconds"], meta["file"]
        )

    def _try_open(self, name: str, wanted: dict, several: bool) -> TeacherGradients | None:
        """The stored entry if it matches ``wanted``; None if absent or to be rebuilt."""
        for _ in range(3):
            meta = self._read_meta(name)
            if meta is None:
                return None
            if meta["fingerprint"] != wanted:
                self._refuse_if_stale(name, meta["fingerprint"], wanted, str(self.folder))
                return None
            try:
                return self._open(meta, several)
            except FileNotFoundError:
                continue  # replaced by a rebuild between reading the description and the array
        raise RuntimeError(f"the gradient cache entry {name!r} in {self.folder} keeps changing")

    def _open_or_build(self, name, wanted, several, data, target, build) -> TeacherGradients:
        assert self.folder is not None
        entry = self._try_open(name, wanted, several)
        if entry is not None:
            return entry
        self.folder.mkdir(parents=True, exist_ok=True)
        with _locked(self.folder / f"{name}.lock"):
            # Another process may have built it while this one waited for the lock.
            entry = self._try_open(name, wanted, several)
            if entry is not None:
                return entry
            old = self._read_meta(name)
            data_name = f"{name}.{uuid.uuid4().hex[:12]}.npy"
            shape = self._shape(data, target)
            dtype = np.dtype(wanted["dtype"])
            tic = time.perf_counter()

            def write(tmp: Path) -> None:
                values = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
                build(values)
                values.flush()
                del values

            atomic_write(self.folder / data_name, write, suffix=".npy")
            meta = {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "fingerprint": wanted,
                "file": data_name,
                "shape": list(shape),
                "dtype": dtype.name,
                "seconds": time.perf_counter() - tic,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            # The description is the commit point: readers never see a half-written array.
            write_json(self._meta_path(name), meta)
            if old is not None and old.get("file") != data_name:
                # Readers that opened it keep their mapping (POSIX); new readers use the new one.
                (self.folder / old["file"]).unlink(missing_ok=True)
            return self._open(meta, several)

    def source(
        self,
        teacher: nn.Module,
        data,
        target=0,
        method: str = "saliency",
        *,
        name: str = "train",
        **kwargs: Any,
    ) -> GradientSource:
        """A :class:`GradientSource` for ``data``: cached rows, or per batch for a DataLoader."""
        if isinstance(data, (Tensor, np.ndarray)):
            entry = self.gradients(teacher, data, target, method, name=name, **kwargs)
            return GradientSource(teacher, target, method, entry=entry)
        return GradientSource(teacher, target, method, n_steps=kwargs.get("n_steps", 32))


@dataclass
class GradientSource:
    """Input gradients for a batch: rows of a cache entry, or computed on the batch.

    Data without sample indices (a DataLoader) cannot use a cache; their gradients are
    then computed per batch (one teacher forward and backward, no double backward).
    """

    teacher: nn.Module
    target: Any
    method: str
    entry: TeacherGradients | None = None
    n_steps: int = 32
    several: bool = field(init=False)

    def __post_init__(self) -> None:
        self.several = _normalise_targets(self.target)[1]

    @property
    def kind(self) -> str:
        """``"cache"`` or ``"per_batch"``."""
        return "cache" if self.entry is not None else "per_batch"

    def for_batch(self, index: Tensor | None, x: Tensor) -> Tensor:
        """``(B, T, *x.shape[1:])`` gradients of the batch ``x`` (rows ``index`` of the data)."""
        if self.entry is None or index is None:
            return input_gradients(self.teacher, x, self.target, self.method, n_steps=self.n_steps)
        return self.entry.batch(index, device=x.device, dtype=x.dtype)


def _as_data(data) -> Tensor:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, Tensor):
        raise ValueError(f"expected a tensor or an array, got {type(data).__name__}")
    if data.ndim < 2 or data.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch of samples, got shape {tuple(data.shape)}")
    return data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (released when the process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process to finish %s", path.with_suffix(""))
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def as_gradient_cache(value: GradientCache | str | os.PathLike | None) -> GradientCache:
    """A :class:`GradientCache` from a folder, a cache, or ``None`` (in memory)."""
    if isinstance(value, GradientCache):
        return value
    return GradientCache(value)
