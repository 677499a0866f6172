"""Contextual decomposition (CD) of any traced PyTorch model, batched over feature groups.

CD (Murdoch et al. 2018; Singh et al. 2019) carries every activation as two parts, a
*relevant* part (the contribution of a feature group) and an *irrelevant* part (everything
else, and the group's interactions with it), from the input ``x = rel + irrel`` to the
output, where ``rel_out`` is the CD score of the group.

How the model is followed
    One ordinary forward pass (the *recording*) runs the model on ``rel + irrel`` under a
    :class:`~torch.overrides.TorchFunctionMode` and forward hooks, and writes down, in
    execution order, every layer call and every tensor operation that depends on the input
    (functional ops in ``forward`` such as ``torch.flatten``, ``x - mean``, ``F.relu``,
    ``h[-1]`` or a residual ``out + identity`` included). The record is then *replayed*
    with a CD rule per step on the two parts; registration order plays no role. Layers with
    a rule are replayed as a whole; other modules are traced through. A layer of
    ``torch.nn`` without a rule, an operation without a rule (comparisons, products of two
    input-dependent tensors, ``F.gelu``, ...), an operation that reads tensor values into
    Python (``bool(x.sum())``, ``x.item()``: data-dependent control flow) and training-mode
    batch norm or dropout raise :class:`UnsupportedOperationError` naming it; nothing is
    skipped. After the replay the parts are checked against the recorded output. One record
    serves every chunk of the same shape; tensors the forward pass builds without the input
    (buffers, shapes, constants from parameters) enter it as constants, recorded in the
    caller's autograd mode.

Rules (per step)
    Linear, Conv1d, Conv2d, BatchNorm1d/2d (eval), ``F.linear``/``F.conv*``, adding a
    constant: the linear map is applied to each part and the constant (bias) is split by
    the bias convention below. ReLU, LeakyReLU: relevant first,
    ``rel' = relu(rel)``, ``irrel' = relu(rel + irrel) - relu(rel)`` (acd's rule). Tanh,
    Sigmoid: two-part Shapley split ``rel' = [f(rel) - f(0) + f(rel+irrel) - f(irrel)] / 2``
    (and symmetrically; exactly 0 where the part is 0), ``f(0)`` split as a bias. Max
    pooling (fixed and adaptive, 1D and 2D): both parts are gathered where ``rel + irrel``
    is largest. Average pooling, flatten, reshapes, indexing, means, sums, dropout (eval),
    identity, products with constants: each part separately. Residual sums add the parts.
    ``nn.LSTM``: see :mod:`shared.interpret._lstm`.

Bias convention (one for every additive constant)
    A constant ``b`` added to linear parts ``B_rel``, ``B_irrel`` is split in proportion to
    their magnitudes, ``rel' = B_rel + b |B_rel| / (|B_rel| + |B_irrel|)`` and
    ``irrel' = B_irrel + b |B_irrel| / (|B_rel| + |B_irrel|)``; where both are exactly 0
    (a tie) the whole constant goes to the irrelevant part. Hence ``rel + irrel`` equals
    the model output (to rounding; 1e-10 in float64) and an empty group scores exactly 0.
    Whole inputs: an input row whose irrelevant part is zero everywhere (a full group) gets
    the whole output as relevant and ``irrel = 0`` exactly, also where every unit of some
    layer is dead for it and the layer's bias would otherwise be a tie; a row whose relevant
    part is zero everywhere gets ``rel = 0``. (This needs the output's first dimension to be
    the batch.) acd adds 1e-20 to both magnitudes and so gives half of the bias to an empty
    group at ties; the CDEP code drops the bias there and breaks conservation.

Custom modules
    A module defining ``contextual_decomposition(self, rel, irrel) -> (rel, irrel)`` is
    replayed by calling that method with the parts of its single input (its submodules are
    not traced; the modules of :mod:`shared.taylornet` do this); it must return parts that
    sum to its forward output. A model that defines it is decomposed by it directly. New
    rules for existing classes can be registered with :func:`register_rule`.

Groups are batched: ``G`` groups of ``N`` inputs are ``G * N`` rows of one batch, cut into
chunks of ``chunk_size`` rows. Everything runs on the device and in the dtype of the
inputs, which the model must already have; gradients flow to the model's parameters (the
scores are differentiable, see :mod:`shared.interpret.cdep`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from shared.interpret._rules import (
    FUNCTION_RULES,
    MODULE_RULES,
    Parts,
    Rule,
    UnsupportedOperationError,
    describe,
    has_tensor,
    module_rule,
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

logger = logging.getLogger(__name__)

#: Name of the method by which a module supplies its own CD rule.
CD_METHOD = "contextual_decomposition"

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
T = torch.Tensor
# Functions that return no tensor yet depend only on shapes and types.
_METADATA: set[Any] = {
    T.size, T.dim, T.numel, T.stride, T.is_contiguous, T.is_floating_point, T.is_complex,
    T.element_size, T.__len__, T.data_ptr, T.get_device, T.nelement, T.ndimension,
    T.storage_offset, T.__repr__, T.__format__, T.__hash__,
}  # fmt: skip
# Functions whose tensor result depends on shapes and types only: constants.
_FACTORIES: set[Any] = {
    torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like,
    T.new_zeros, T.new_ones, T.new_empty, T.new_full,
}  # fmt: skip


class CDScores(NamedTuple):
    """Relevant and irrelevant parts of the model output, ``(G, N, *output_shape)``."""

    rel: Tensor
    irrel: Tensor


def register_rule(cls: type[nn.Module], rule: Rule) -> None:
    """Register a CD rule for a module class (and subclasses that keep its ``forward``).

    ``rule(module, args, kwargs)`` receives the call's arguments with every decomposed
    tensor as :class:`Parts` and returns the module's output structure with :class:`Parts`
    in place of tensors.

    Examples
    --------
    >>> class Double(nn.Module):
    ...     def forward(self, x):
    ...         return 2 * x
    >>> register_rule(Double, lambda m, args, kwargs: Parts(2 * args[0].rel, 2 * args[0].irrel))
    >>> rel, irrel = contextual_decomposition(Double(), torch.ones(1, 2), torch.zeros(1, 2))
    >>> rel.tolist()
    [[2.0, 2.0]]
    """
    MODULE_RULES[cls] = rule


# -- recording ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Slot:
    index: int


@dataclass
class _Step:
    kind: str  # "module", "protocol" or "function"
    target: Any
    rule: Rule | None
    args: Any
    kwargs: Any
    outs: Any
    where: str


@dataclass
class _Tape:
    steps: list[_Step] = field(default_factory=list)
    output: Any = None
    driver_output: Tensor | None = None


def _is_getter(func: Any) -> bool:
    return getattr(func, "__name__", "") == "__get__"


class _Recorder(TorchFunctionMode):
    """Writes the input-dependent layer calls and tensor operations of one forward pass."""

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.tape = _Tape()
        self.names = names
        self._slots: dict[int, tuple[weakref.ref, int]] = {}
        self._count = 0
        self.depth = 0  # > 0 while inside a module replayed as a whole
        self.where: list[str] = []
        self.pending: list[tuple[nn.Module, Any, Any, bool]] = []

    # slots
    def new_slot(self, tensor: Tensor) -> _Slot:
        slot = _Slot(self._count)
        self._count += 1
        self._slots[id(tensor)] = (weakref.ref(tensor), slot.index)
        return slot

    def slot_of(self, tensor: Tensor) -> _Slot | None:
        entry = self._slots.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return _Slot(entry[1])

    def encode(self, obj: Any) -> tuple[Any, bool]:
        """Replace tracked tensors by their slots; say whether any was found."""
        if isinstance(obj, Tensor):
            slot = self.slot_of(obj)
            return (obj, False) if slot is None else (slot, True)
        if isinstance(obj, (tuple, list)):
            items = [self.encode(o) for o in obj]
            return type(obj)(i[0] for i in items), any(i[1] for i in items)
        if isinstance(obj, dict):
            enc = {k: self.encode(v) for k, v in obj.items()}
            return {k: v[0] for k, v in enc.items()}, any(v[1] for v in enc.values())
        return obj, False

    def assign(self, obj: Any) -> Any:
        """Give every tensor of an output structure a new slot."""
        if isinstance(obj, Tensor):
            return self.new_slot(obj)
        if isinstance(obj, (tuple, list)):
            return type(obj)(self.assign(o) for o in obj)
        return obj

    def location(self) -> str:
        return f" (in {self.where[-1]})" if self.where else ""

    # functions
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth:
            return func(*args, **kwargs)
        (enc_args, enc_kwargs), tracked = self.encode((args, kwargs))
        if not tracked:
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if func in _FACTORIES:
            return out
        if not has_tensor(out):
            if func in _METADATA or _is_getter(func):
                return out
            raise UnsupportedOperationError(
                f"{describe(func)} reads the values of a decomposed tensor{self.location()}; "
                "data-dependent control flow cannot be decomposed"
            )
        rule = FUNCTION_RULES.get(func)
        if rule is None:
            raise UnsupportedOperationError(
                f"no contextual-decomposition rule for the operation {describe(func)}"
                f"{self.location()}"
            )
        if _is_inplace(func) and isinstance(args[0], Tensor) and args[0]._is_view():
            raise UnsupportedOperationError(
                f"in-place {describe(func)} on a view of a decomposed tensor{self.location()}"
            )
        step = _Step("function", func, rule, enc_args, enc_kwargs, None, self.location())
        step.outs = self.assign(out)
        self.tape.steps.append(step)
        return out

    # modules
    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.depth:
            self.depth += 1
            self.pending.append((module, None, None, False))
            return
        name = self.names.get(id(module), type(module).__name__)
        whole = _replayed_whole(module)
        (enc_args, enc_kwargs), tracked = self.encode((args, kwargs))
        if whole and tracked:
            self.depth += 1
        self.where.append(f"{name} ({type(module).__name__})")
        self.pending.append((module, enc_args, enc_kwargs, whole and tracked))
        if tracked and not whole and _unsupported_torch_layer(module):
            raise UnsupportedOperationError(
                f"no contextual-decomposition rule for the layer {type(module).__name__} "
                f"at '{name}'"
            )

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        _, enc_args, enc_kwargs, whole = self.pending.pop()
        if enc_args is None:
            self.depth -= 1
            return
        here = self.location()
        self.where.pop()
        if not whole:
            return
        self.depth -= 1
        if callable(getattr(module, CD_METHOD, None)):
            kind, rule = "protocol", None
        else:
            kind, rule = "module", module_rule(module)
        step = _Step(kind, module, rule, enc_args, enc_kwargs, None, here)
        step.outs = self.assign(output)
        self.tape.steps.append(step)


def _is_inplace(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    return name.endswith("_") and not name.endswith("__")


def _replayed_whole(module: nn.Module) -> bool:
    return callable(getattr(module, CD_METHOD, None)) or module_rule(module) is not None


def _unsupported_torch_layer(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.nn.") and not isinstance(module, _CONTAINERS)


@contextmanager
def _hooked(model: nn.Module, recorder: _Recorder) -> Iterator[None]:
    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(recorder.pre_hook, with_kwargs=True))
            handles.append(
                module.register_forward_hook(recorder.post_hook, with_kwargs=True, always_call=True)
            )
        yield
    finally:
        for h in handles:
            h.remove()


def _record(model: nn.Module, driver: Tensor) -> _Tape:
    names = {id(m): (n or type(model).__name__) for n, m in model.named_modules()}
    recorder = _Recorder(names)
    driver = driver.detach()
    first = recorder.new_slot(driver)
    assert first.index == 0
    with _hooked(model, recorder), recorder:
        out = model(driver)
    if not isinstance(out, Tensor):
        raise UnsupportedOperationError(
            f"the model returns {type(out).__name__}; contextual decomposition needs one tensor"
        )
    slot = recorder.slot_of(out)
    if slot is None:
        raise UnsupportedOperationError(
            "the model output does not depend on its input through any traced operation"
        )
    recorder.tape.output = slot
    recorder.tape.driver_output = out.detach()
    return recorder.tape


# -- replay ---------------------------------------------------------------------------------------
def _decode(obj: Any, env: dict[int, Any]) -> Any:
    if isinstance(obj, _Slot):
        return env[obj.index]
    if isinstance(obj, (tuple, list)):
        return type(obj)(_decode(o, env) for o in obj)
    if isinstance(obj, dict):
        return {k: _decode(v, env) for k, v in obj.items()}
    return obj


def _bind(outs: Any, result: Any, env: dict[int, Any], step: _Step) -> None:
    if isinstance(outs, _Slot):
        if not isinstance(result, Parts):
            raise UnsupportedOperationError(
                f"the rule of {describe(step.target)}{step.where} returned "
                f"{type(result).__name__} where the operation returned a tensor"
            )
        env[outs.index] = result
    elif isinstance(outs, (tuple, list)):
        if not isinstance(result, (tuple, list)) or len(result) != len(outs):
            raise UnsupportedOperationError(
                f"the rule of {describe(step.target)}{step.where} returned a different structure"
            )
        for o, r in zip(outs, result, strict=True):
            _bind(o, r, env, step)


def _run_step(step: _Step, env: dict[int, Any]) -> Any:
    args, kwargs = _decode(step.args, env), _decode(step.kwargs, env)
    if step.kind == "protocol":
        x = args[0] if len(args) == 1 and not kwargs else None
        if not isinstance(x, Parts):
            raise UnsupportedOperationError(
                f"{type(step.target).__name__}.{CD_METHOD} takes one decomposed input; the "
                "module was called with other arguments"
            )
        rel, irrel = getattr(step.target, CD_METHOD)(x.rel, x.irrel)
        return Parts(rel, irrel)
    assert step.rule is not None
    return step.rule(step.target, args, kwargs)


def _replay(tape: _Tape, rel: Tensor, irrel: Tensor) -> Parts:
    env: dict[int, Any] = {0: Parts(rel, irrel)}
    for step in tape.steps:
        _bind(step.outs, _run_step(step, env), env, step)
    return env[tape.output.index]


def _check_conservation(parts: Parts, reference: Tensor) -> None:
    """Fail loudly if the replay does not sum to the recorded output (an untraced path)."""
    if reference.dtype not in (torch.float32, torch.float64):
        return
    tol = 1e-8 if reference.dtype == torch.float64 else 1e-3
    with torch.no_grad():
        scale = float(reference.abs().max()) + 1e-30
        err = float((parts.rel + parts.irrel - reference).abs().max()) / scale
    if not err <= tol:
        raise UnsupportedOperationError(
            f"the decomposition does not sum to the model output (relative error {err:.2e}); "
            "the forward pass uses an operation the recording could not see (e.g. an "
            "in-place change of a view, or a module called through .forward)"
        )


# -- public API -----------------------------------------------------------------------------------
def _check_parts(rel: Tensor, irrel: Tensor) -> None:
    if not isinstance(rel, Tensor) or not isinstance(irrel, Tensor):
        raise TypeError("rel and irrel must be tensors")
    if rel.shape != irrel.shape or rel.dtype != irrel.dtype or rel.device != irrel.device:
        raise ValueError(
            "rel and irrel must have the same shape, dtype and device; got "
            f"{tuple(rel.shape)} {rel.dtype} {rel.device} and "
            f"{tuple(irrel.shape)} {irrel.dtype} {irrel.device}"
        )


class _Engine:
    """Records a model once per input shape and replays the record on parts."""

    def __init__(self, model: nn.Module, check: bool = True) -> None:
        self.model = model
        self.check = check
        self.tapes: dict[tuple, _Tape] = {}

    def __call__(self, rel: Tensor, irrel: Tensor) -> Parts:
        _check_parts(rel, irrel)
        if callable(getattr(self.model, CD_METHOD, None)):
            out_rel, out_irrel = getattr(self.model, CD_METHOD)(rel, irrel)
            return _settle_whole_rows(rel, irrel, Parts(out_rel, out_irrel))
        key = (tuple(rel.shape), rel.dtype, rel.device)
        tape = self.tapes.get(key)
        fresh = tape is None
        if tape is None:
            tape = self.tapes[key] = _record(self.model, rel + irrel)
        parts = _replay(tape, rel, irrel)
        if fresh and self.check:
            assert tape.driver_output is not None
            _check_conservation(parts, tape.driver_output)
        return _settle_whole_rows(rel, irrel, parts)


def _empty_rows(t: Tensor) -> Tensor:
    return (t == 0).reshape(t.shape[0], -1).all(1)


def _settle_whole_rows(rel: Tensor, irrel: Tensor, parts: Parts) -> Parts:
    """Rows with an empty input part: the output goes wholly to the other part."""
    if rel.ndim == 0 or parts.rel.ndim == 0 or parts.rel.shape[0] != rel.shape[0]:
        return parts
    rel_empty = _empty_rows(rel)
    only_rel = _empty_rows(irrel) & ~rel_empty
    if not bool(only_rel.any() or rel_empty.any()):
        return parts
    shape = (-1,) + (1,) * (parts.rel.ndim - 1)
    only_rel, rel_empty = only_rel.view(shape), rel_empty.view(shape)
    total = parts.rel + parts.irrel
    zero = torch.zeros_like(total)
    return Parts(
        torch.where(only_rel, total, torch.where(rel_empty, zero, parts.rel)),
        torch.where(only_rel, zero, torch.where(rel_empty, total, parts.irrel)),
    )


def contextual_decomposition(
    model: nn.Module, rel: Tensor, irrel: Tensor, *, check: bool = True
) -> tuple[Tensor, Tensor]:
    """Propagate a relevant and an irrelevant input part through ``model``.

    Parameters
    ----------
    model : nn.Module
        In eval mode, on the device and in the dtype of the parts; returns one tensor.
    rel, irrel : Tensor
        The two parts of the input (same shape); the model sees ``rel + irrel``.
    check : bool, default True
        Check that the output parts sum to the recorded model output (raises otherwise).

    Returns
    -------
    (Tensor, Tensor)
        Relevant and irrelevant parts of the output; they sum to ``model(rel + irrel)``.

    Raises
    ------
    UnsupportedOperationError
        For a layer or operation without a rule (named in the message).

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).double().eval()
    >>> x = torch.randn(2, 3, dtype=torch.float64)
    >>> mask = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    >>> rel, irrel = contextual_decomposition(net, mask * x, (1 - mask) * x)
    >>> bool(torch.allclose(rel + irrel, net(x), atol=1e-12))
    True
    """
    parts = _Engine(model, check)(rel, irrel)
    return parts.rel, parts.irrel


def cd_batched(
    model: nn.Module,
    x: Tensor,
    relevant: Callable[[Tensor, Tensor, Tensor], Tensor],
    n_groups: int,
    *,
    chunk_size: int | None = None,
    check: bool = True,
) -> CDScores:
    """CD scores of ``n_groups`` groups for every input, many groups per forward pass.

    Row ``g * N + n`` of the batch carries input ``n`` split for group ``g``; its relevant
    part is ``relevant(x_rows, groups, samples)`` and its irrelevant part
    ``x_rows - relevant``.

    Parameters
    ----------
    model : nn.Module
        In eval mode, on the device and in the dtype of ``x``.
    x : Tensor
        Inputs ``(N, ...)``.
    relevant : callable
        ``(x_rows (B, ...), groups (B,), samples (B,)) -> rel (B, ...)``: the relevant
        part of each row's input ``x_rows = x[samples]`` for the row's group (int64 indices).
    n_groups : int
        Number of groups ``G``.
    chunk_size : int, optional
        Rows per forward pass (bounds memory); default all ``G * N`` at once.
    check : bool, default True
        See :func:`contextual_decomposition`.

    Returns
    -------
    CDScores
        ``rel`` and ``irrel`` of shape ``(G, N, *output_shape)``; differentiable in the
        model's parameters (call under ``torch.no_grad()`` to score without a graph).

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double().eval()
    >>> x = torch.randn(5, 4, dtype=torch.float64)
    >>> masks = torch.eye(4, dtype=torch.float64)
    >>> scores = cd_batched(net, x, lambda xs, g, s: masks[g] * xs, 4, chunk_size=7)
    >>> scores.rel.shape
    torch.Size([4, 5, 2])
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("the input batch is empty")
    total = n_groups * n
    chunk = total if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    engine = _Engine(model, check)
    rels, irrels = [], []
    for start in range(0, total, chunk):
        rows = torch.arange(start, min(start + chunk, total), device=x.device)
        groups, samples = rows // n, rows % n
        x_rows = x[samples]
        rel_in = relevant(x_rows, groups, samples)
        if rel_in.shape != x_rows.shape:
            raise ValueError(
                f"relevant() returned shape {tuple(rel_in.shape)} for inputs of shape "
                f"{tuple(x_rows.shape)}"
            )
        parts = engine(rel_in, x_rows - rel_in)
        rels.append(parts.rel)
        irrels.append(parts.irrel)
    rel, irrel = torch.cat(rels), torch.cat(irrels)
    shape = (n_groups, n, *rel.shape[1:])
    return CDScores(rel.reshape(shape), irrel.reshape(shape))


def cd_masks(
    model: nn.Module,
    x: Tensor,
    masks: Tensor,
    *,
    chunk_size: int | None = None,
    check: bool = True,
) -> CDScores:
    """CD scores of input masks: ``rel = mask * x``, ``irrel = (1 - mask) * x``.

    Parameters
    ----------
    model : nn.Module
        In eval mode, on the device and in the dtype of ``x``.
    x : Tensor
        Inputs ``(N, ...)``.
    masks : Tensor
        ``(G, ...)``: ``G`` masks, each broadcastable to one input ``x[0]`` (aligned on
        the trailing dimensions; values in [0, 1]).
    chunk_size : int, optional
        Rows (group x input pairs) per forward pass.
    check : bool, default True
        See :func:`contextual_decomposition`.

    Returns
    -------
    CDScores
        ``(G, N, *output_shape)`` relevant and irrelevant parts.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 1))
    >>> net = net.double().eval()
    >>> x = torch.randn(3, 1, 8, dtype=torch.float64)
    >>> masks = torch.zeros(2, 1, 8, dtype=torch.float64)
    >>> masks[0, :, :4] = 1
    >>> masks[1, :, 4:] = 1
    >>> rel, irrel = cd_masks(net, x, masks)
    >>> rel.shape, bool(torch.allclose(rel[0] + irrel[0], net(x), atol=1e-12))
    (torch.Size([2, 3, 1]), True)
    """
    masks = masks.to(device=x.device, dtype=x.dtype)
    if masks.ndim > x.ndim:
        raise ValueError(f"masks {tuple(masks.shape)} have more dimensions than G + x[0]")
    # Align each mask with the trailing dimensions of an input (broadcasting).
    aligned = masks.reshape(masks.shape[0], *[1] * (x.ndim - masks.ndim), *masks.shape[1:])
    return cd_batched(
        model,
        x,
        lambda xs, g, s: aligned[g] * xs,
        masks.shape[0],
        chunk_size=chunk_size,
        check=check,
    )
