"""Contextual-decomposition rules of single layers and tensor operations.

Every rule maps its inputs, where the tensors the input depends on are given as
:class:`Parts` (relevant, irrelevant), to outputs of the same structure as the
operation's own, with :class:`Parts` in place of the output tensors. The engine
(:mod:`shared.interpret.cd`) decides which rule applies and in what order; this module
only knows how one step splits. The bias convention is :func:`split_offset`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Parts", "UnsupportedOperationError", "split_offset"]


class UnsupportedOperationError(NotImplementedError):
    """A layer or tensor operation that contextual decomposition has no rule for."""


@dataclass(frozen=True, slots=True)
class Parts:
    """A tensor carried as its relevant and irrelevant parts (``rel + irrel`` is the value)."""

    rel: Tensor
    irrel: Tensor


Rule = Callable[..., Any]


# -- the bias convention --------------------------------------------------------------------------
def split_offset(lin_rel: Tensor, lin_irrel: Tensor, offset: Tensor | float) -> Parts:
    """Add a constant ``offset`` to the linear parts, split in proportion to their sizes.

    ``rel = lin_rel + w * offset`` and ``irrel = lin_irrel + (1 - w) * offset`` with
    ``w = |lin_rel| / (|lin_rel| + |lin_irrel|)``; where both linear parts are exactly 0 (a
    tie) ``w = 0``: the offset is irrelevant. A share of exactly 0 or 1 leaves the other part
    untouched, so an empty relevant part stays exactly empty.

    Examples
    --------
    >>> p = split_offset(torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 0.0]]), 4.0)
    >>> p.rel.tolist(), p.irrel.tolist()
    ([[2.0, 0.0]], [[6.0, 4.0]])
    """
    offset_t = torch.as_tensor(offset, dtype=lin_rel.dtype, device=lin_rel.device)
    shape = torch.broadcast_shapes(lin_rel.shape, lin_irrel.shape, offset_t.shape)
    if lin_rel.shape != shape or lin_irrel.shape != shape:
        lin_rel, lin_irrel = lin_rel.expand(shape), lin_irrel.expand(shape)
    needs_grad = torch.is_grad_enabled() and (
        lin_rel.requires_grad or lin_irrel.requires_grad or offset_t.requires_grad
    )
    a_rel = lin_rel.abs()
    total = lin_irrel.abs().add_(a_rel)
    if needs_grad:
        # A safe denominator: 0/0 would poison the gradient even where it is masked out.
        share = a_rel / torch.where(total == 0, torch.ones_like(total), total)
        given = share * offset_t
        return Parts(lin_rel + given, lin_irrel + (offset_t - given))
    # Without autograd the temporaries are reused in place (this runs on every activation).
    given = a_rel.div_(total).nan_to_num_(nan=0.0).mul_(offset_t)  # 0/0 at the ties
    return Parts(lin_rel + given, torch.sub(offset_t, given, out=total).add_(lin_irrel))


# -- structure helpers ----------------------------------------------------------------------------
def pick(obj: Any, which: int) -> Any:
    """Replace every :class:`Parts` in a nested structure by its rel (0) or irrel (1) part."""
    if isinstance(obj, Parts):
        return obj.rel if which == 0 else obj.irrel
    if isinstance(obj, tuple):
        return tuple(pick(o, which) for o in obj)
    if isinstance(obj, list):
        return [pick(o, which) for o in obj]
    if isinstance(obj, dict):
        return {k: pick(v, which) for k, v in obj.items()}
    return obj


def zip_parts(rel: Any, irrel: Any) -> Any:
    """Pair two equal structures of tensors into one structure of :class:`Parts`."""
    if isinstance(rel, Tensor):
        return Parts(rel, irrel)
    if isinstance(rel, (tuple, list)):
        return type(rel)(zip_parts(r, i) for r, i in zip(rel, irrel, strict=True))
    return rel


def count_parts(obj: Any) -> int:
    """Number of :class:`Parts` in a nested structure."""
    if isinstance(obj, Parts):
        return 1
    if isinstance(obj, (tuple, list)):
        return sum(count_parts(o) for o in obj)
    if isinstance(obj, dict):
        return sum(count_parts(v) for v in obj.values())
    return 0


def _has_tensor(obj: Any) -> bool:
    if isinstance(obj, Tensor):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_has_tensor(o) for o in obj)
    if isinstance(obj, dict):
        return any(_has_tensor(v) for v in obj.values())
    return False


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _both(fn: Callable[[Tensor], Tensor], x: Parts) -> tuple[Tensor, Tensor]:
    return fn(x.rel), fn(x.irrel)


def _first_parts(args: tuple, kwargs: dict, name: str = "input") -> Parts:
    x = args[0] if args else kwargs.get(name)
    if not isinstance(x, Parts):
        raise UnsupportedOperationError("the decomposed tensor must be the first argument")
    return x


# -- nonlinearities -------------------------------------------------------------------------------
def relu_rule(x: Parts, act: Callable[[Tensor], Tensor] = F.relu) -> Parts:
    """Relevant part first (acd's rule): ``rel = act(rel)``, ``irrel = act(rel+irrel) - rel'``."""
    rel = act(x.rel)
    return Parts(rel, act(x.rel + x.irrel) - rel)


def exact_zero(part: Tensor, contribution: Tensor) -> Tensor:
    """``contribution`` set to exactly 0 where ``part`` is exactly 0.

    A Shapley term such as ``f(a + c) - f(c)`` is 0 for ``a = 0`` in exact arithmetic, but
    vectorised ``tanh``/``sigmoid`` kernels may round the same value differently at
    different memory positions; this keeps empty parts exactly empty.
    """
    return torch.where(part == 0, torch.zeros_like(contribution), contribution)


def shapley_rule(x: Parts, act: Callable[[Tensor], Tensor]) -> Parts:
    """Two-part Shapley split of ``act(rel + irrel)``; ``act(0)`` is split as an offset."""
    zero = act(torch.zeros((), dtype=x.rel.dtype, device=x.rel.device))
    a, b, ab = act(x.rel), act(x.irrel), act(x.rel + x.irrel)
    lin_rel = exact_zero(x.rel, 0.5 * ((a - zero) + (ab - b)))
    lin_irrel = exact_zero(x.irrel, 0.5 * ((b - zero) + (ab - a)))
    return split_offset(lin_rel, lin_irrel, zero)


def gather_max(x: Parts, pool: Callable[[Tensor], tuple[Tensor, Tensor]], spatial: int) -> Parts:
    """Max pooling: both parts taken where ``rel + irrel`` is largest."""
    _, idx = pool(x.rel + x.irrel)
    flat_idx = idx.flatten(-spatial)

    def take(t: Tensor) -> Tensor:
        return t.flatten(-spatial).gather(-1, flat_idx).view_as(idx)

    return Parts(take(x.rel), take(x.irrel))


# -- module rules ---------------------------------------------------------------------------------
def _check_eval(module: nn.Module) -> None:
    if module.training:
        raise UnsupportedOperationError(
            f"{type(module).__name__} is in training mode; contextual decomposition needs "
            "model.eval() (batch statistics and dropout couple or perturb the parts)"
        )


def _linear_module(module: nn.Module, args: tuple, kwargs: dict) -> Parts:
    x = _first_parts(args, kwargs)
    if isinstance(module, nn.Linear):
        lin = _both(lambda t: F.linear(t, module.weight), x)
        bias: Tensor | None = module.bias
    else:
        conv: Any = module
        lin = _both(lambda t: conv._conv_forward(t, conv.weight, None), x)
        bias = None if conv.bias is None else conv.bias.view(-1, *[1] * (x.rel.ndim - 2))
    return Parts(*lin) if bias is None else split_offset(lin[0], lin[1], bias)


def _batchnorm_module(module: nn.Module, args: tuple, kwargs: dict) -> Parts:
    bn: Any = module
    _check_eval(bn)
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedOperationError(
            f"{type(bn).__name__} without running statistics normalises by batch statistics, "
            "which couples the parts; contextual decomposition needs track_running_stats=True"
        )
    x = _first_parts(args, kwargs)
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    shape = (-1,) + (1,) * (x.rel.ndim - 2)
    scale, shift = scale.view(shape), shift.view(shape)
    return split_offset(x.rel * scale, x.irrel * scale, shift)


def _relu_module(module: nn.Module, args: tuple, kwargs: dict) -> Parts:
    x = _first_parts(args, kwargs)
    if isinstance(module, nn.LeakyReLU):
        slope = module.negative_slope
        return relu_rule(x, lambda t: F.leaky_relu(t, slope))
    return relu_rule(x)


def _tanh_module(module: nn.Module, args: tuple, kwargs: dict) -> Parts:
    return shapley_rule(_first_parts(args, kwargs), torch.tanh)


def _sigmoid_module(module: nn.Module, args: tuple, kwargs: dict) -> Parts:
    return shapley_rule(_first_parts(args, kwargs), torch.sigmoid)


def _maxpool_module(module: nn.Module, args: tuple, kwargs: dict) -> Parts:
    pool: Any = module
    if getattr(pool, "return_indices", False):
        raise UnsupportedOperationError(f"{type(pool).__name__} with return_indices=True")
    x = _first_parts(args, kwargs)
    if isinstance(pool, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
        spatial = 1 if isinstance(pool, nn.AdaptiveMaxPool1d) else 2
        fn = F.adaptive_max_pool1d if spatial == 1 else F.adaptive_max_pool2d

        def adaptive(t: Tensor) -> tuple[Tensor, Tensor]:
            return fn(t, pool.output_size, return_indices=True)  # type: ignore[call-overload]

        return gather_max(x, adaptive, spatial)
    spatial = 1 if isinstance(pool, nn.MaxPool1d) else 2
    mp = F.max_pool1d if spatial == 1 else F.max_pool2d

    def fixed(t: Tensor) -> tuple[Tensor, Tensor]:
        return mp(
            t,
            pool.kernel_size,
            pool.stride,
            pool.padding,
            pool.dilation,
            ceil_mode=pool.ceil_mode,
            return_indices=True,
        )

    return gather_max(x, fixed, spatial)


def _independent_module(module: nn.Module, args: tuple, kwargs: dict) -> Parts:
    if isinstance(module, nn.modules.dropout._DropoutNd):
        _check_eval(module)
    x = _first_parts(args, kwargs)
    return Parts(*_both(module, x))


def _lstm_module(module: nn.Module, args: tuple, kwargs: dict) -> Any:
    from shared.interpret._lstm import lstm_rule

    return lstm_rule(module, args, kwargs)


MODULE_RULES: dict[type, Rule] = {
    nn.Linear: _linear_module,
    nn.Conv1d: _linear_module,
    nn.Conv2d: _linear_module,
    nn.BatchNorm1d: _batchnorm_module,
    nn.BatchNorm2d: _batchnorm_module,
    nn.ReLU: _relu_module,
    nn.LeakyReLU: _relu_module,
    nn.Tanh: _tanh_module,
    nn.Sigmoid: _sigmoid_module,
    nn.MaxPool1d: _maxpool_module,
    nn.MaxPool2d: _maxpool_module,
    nn.AdaptiveMaxPool1d: _maxpool_module,
    nn.AdaptiveMaxPool2d: _maxpool_module,
    nn.AvgPool1d: _independent_module,
    nn.AvgPool2d: _independent_module,
    nn.AdaptiveAvgPool1d: _independent_module,
    nn.AdaptiveAvgPool2d: _independent_module,
    nn.Flatten: _independent_module,
    nn.Unflatten: _independent_module,
    nn.Identity: _independent_module,
    nn.Dropout: _independent_module,
    nn.Dropout1d: _independent_module,
    nn.Dropout2d: _independent_module,
    nn.LSTM: _lstm_module,
}


def module_rule(module: nn.Module) -> Rule | None:
    """The rule of ``module``: registered for its class or a base whose ``forward`` it keeps."""
    cls = type(module)
    for base in cls.__mro__:
        rule = MODULE_RULES.get(base)
        if rule is not None:
            # A subclass with its own forward computes something else: trace it instead.
            return rule if getattr(cls, "forward", None) is getattr(base, "forward", None) else None
    return None


# -- function rules -------------------------------------------------------------------------------
_SHAPE_ONLY_SECOND = {"expand_as", "view_as", "reshape_as", "type_as"}


def _separable(func: Any, args: tuple, kwargs: dict) -> Any:
    """A linear map without offset of one decomposed tensor: applied to each part."""
    name = getattr(func, "__name__", "")
    extra = count_parts(args[1:]) + count_parts(kwargs)
    if not isinstance(args[0] if args else None, Parts) or (
        extra and not (name in _SHAPE_ONLY_SECOND and extra == 1)
    ):
        raise UnsupportedOperationError(
            f"{_name(func)} with a decomposed tensor in a position other than its input"
        )
    return zip_parts(
        func(*pick(args, 0), **pick(kwargs, 0)), func(*pick(args, 1), **pick(kwargs, 1))
    )


def _concatenate(func: Any, args: tuple, kwargs: dict) -> Any:
    tensors = args[0] if args else kwargs["tensors"]
    if not all(isinstance(t, Parts) for t in tensors):
        raise UnsupportedOperationError(
            f"{_name(func)} of decomposed and constant tensors (a constant block is an offset "
            "with no rule)"
        )
    return Parts(func(*pick(args, 0), **kwargs), func(*pick(args, 1), **kwargs))


def _one_linear_operand(func: Any, args: tuple, kwargs: dict) -> Any:
    """A product, matmul or quotient with exactly one decomposed operand: linear in it."""
    if count_parts(args) + count_parts(kwargs) != 1:
        raise UnsupportedOperationError(
            f"{_name(func)} of two decomposed tensors (a bilinear term has no rule here; give "
            "the module a contextual_decomposition method)"
        )
    return zip_parts(func(*pick(args, 0), **pick(kwargs, 0)), func(*pick(args, 1), **kwargs))


def _divide(func: Any, args: tuple, kwargs: dict) -> Any:
    if not isinstance(args[0], Parts) or count_parts(args[1:]) or count_parts(kwargs):
        raise UnsupportedOperationError(f"{_name(func)} by a decomposed tensor (not linear)")
    if kwargs.get("rounding_mode") is not None:
        raise UnsupportedOperationError(f"{_name(func)} with rounding (not linear)")
    return _one_linear_operand(func, args, kwargs)


_SUBTRACTS = {"sub", "sub_", "subtract", "__sub__", "__isub__"}
_REVERSED = {"__rsub__", "rsub"}


def _add(func: Any, args: tuple, kwargs: dict) -> Parts:
    """``a + alpha * b`` (or a subtraction): sums of parts, a constant as an offset."""
    name = getattr(func, "__name__", "")
    a = args[0] if args else kwargs["input"]
    b = args[1] if len(args) > 1 else kwargs["other"]
    alpha = kwargs.get("alpha", 1)
    if name in _REVERSED:
        a, b = b, a
        a_sign, b_sign = 1.0, -float(alpha)
    else:
        a_sign, b_sign = 1.0, (-1.0 if name in _SUBTRACTS else 1.0) * float(alpha)
    if isinstance(a, Parts) and isinstance(b, Parts):
        return Parts(a_sign * a.rel + b_sign * b.rel, a_sign * a.irrel + b_sign * b.irrel)
    if isinstance(a, Parts):
        return split_offset(a_sign * a.rel, a_sign * a.irrel, b_sign * torch.as_tensor(b))
    if isinstance(b, Parts):
        return split_offset(b_sign * b.rel, b_sign * b.irrel, a_sign * torch.as_tensor(a))
    raise UnsupportedOperationError(f"{_name(func)} without a decomposed operand")


def _relu_function(func: Any, args: tuple, kwargs: dict) -> Parts:
    x = _first_parts(args, kwargs)
    name = getattr(func, "__name__", "")
    if name.startswith("leaky_relu"):
        slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
        return relu_rule(x, lambda t: F.leaky_relu(t, slope))
    return relu_rule(x)


def _tanh_function(func: Any, args: tuple, kwargs: dict) -> Parts:
    return shapley_rule(_first_parts(args, kwargs), torch.tanh)


def _sigmoid_function(func: Any, args: tuple, kwargs: dict) -> Parts:
    return shapley_rule(_first_parts(args, kwargs), torch.sigmoid)


def _affine_function(func: Any, args: tuple, kwargs: dict) -> Parts:
    """``F.linear`` / ``F.conv1d`` / ``F.conv2d`` with constant weight: bias as an offset."""
    x = _first_parts(args, kwargs)
    rest = list(args[1:])
    if count_parts(rest) or count_parts(kwargs):
        raise UnsupportedOperationError(f"{_name(func)} with decomposed weights")
    weight = rest[0] if rest else kwargs["weight"]
    bias = rest[1] if len(rest) > 1 else kwargs.get("bias")
    options = rest[2:]
    kw = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
    lin = _both(lambda t: func(t, weight, None, *options, **kw), x)
    if bias is None:
        return Parts(*lin)
    if func is not F.linear:
        bias = bias.view(-1, *[1] * (x.rel.ndim - 2))
    return split_offset(lin[0], lin[1], bias)


def _max_pool_function(func: Any, args: tuple, kwargs: dict) -> Parts:
    name = getattr(func, "__name__", "")
    position = 2 if "adaptive" in name else 6  # of return_indices in the signature
    if kwargs.get("return_indices") or (len(args) > position and args[position]):
        raise UnsupportedOperationError(f"{_name(func)} with return_indices=True")
    x = _first_parts(args, kwargs)
    spatial = 1 if "1d" in name else 2
    positional = args[1:position]
    kw = {k: v for k, v in kwargs.items() if k not in ("return_indices", "input")}

    def pool(t: Tensor) -> tuple[Tensor, Tensor]:
        return func(t, *positional, **kw, return_indices=True)

    return gather_max(x, pool, spatial)


def _dropout_function(func: Any, args: tuple, kwargs: dict) -> Parts:
    training = args[2] if len(args) > 2 else kwargs.get("training", True)
    if training:
        raise UnsupportedOperationError(
            f"{_name(func)} with training=True (pass training=self.training and call eval())"
        )
    return Parts(*_both(lambda t: t, _first_parts(args, kwargs)))


def _pad_function(func: Any, args: tuple, kwargs: dict) -> Any:
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    value = args[3] if len(args) > 3 else kwargs.get("value")
    if mode == "constant" and value not in (None, 0, 0.0):
        raise UnsupportedOperationError("F.pad with a nonzero constant (an offset)")
    return _separable(func, args, kwargs)


T = torch.Tensor
_SEPARABLE_FUNCS: list[Any] = [
    T.view, T.reshape, T.flatten, T.unflatten, T.squeeze, T.unsqueeze, T.permute,
    T.transpose, T.t, T.contiguous, T.expand, T.expand_as, T.view_as, T.reshape_as,
    T.movedim, T.__getitem__, T.narrow, T.select, T.split, T.chunk, T.unbind, T.clone,
    T.detach, T.to, T.float, T.double, T.type_as, T.mean, T.sum, T.neg, T.flip, T.roll,
    T.repeat, T.__neg__,
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute,
    torch.transpose, torch.mean, torch.sum, torch.neg, torch.split, torch.chunk,
    torch.unbind, torch.narrow, torch.select, torch.movedim, torch.flip, torch.roll,
    torch.clone,
    F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
]  # fmt: skip

FUNCTION_RULES: dict[Any, Rule] = {f: _separable for f in _SEPARABLE_FUNCS}
FUNCTION_RULES.update({f: _concatenate for f in (torch.cat, torch.concat, torch.stack)})
FUNCTION_RULES.update(
    {f: _add for f in (T.add, T.add_, T.sub, T.sub_, T.__rsub__, torch.add, torch.sub, torch.rsub)}
)
FUNCTION_RULES.update(
    {f: _one_linear_operand for f in (T.mul, T.mul_, torch.mul, T.matmul, torch.matmul)}
)
FUNCTION_RULES.update({f: _divide for f in (T.div, T.div_, torch.div)})
FUNCTION_RULES.update(
    {
        f: _relu_function
        for f in (F.relu, torch.relu, T.relu, T.relu_, F.relu_, F.leaky_relu, F.leaky_relu_)
    }
)
FUNCTION_RULES.update({f: _tanh_function for f in (torch.tanh, T.tanh, F.tanh)})
FUNCTION_RULES.update({f: _sigmoid_function for f in (torch.sigmoid, T.sigmoid, F.sigmoid)})
FUNCTION_RULES.update({f: _affine_function for f in (F.linear, F.conv1d, F.conv2d)})
FUNCTION_RULES.update(
    {
        f: _max_pool_function
        for f in (F.max_pool1d, F.max_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d)
    }
)
FUNCTION_RULES[F.dropout] = _dropout_function
FUNCTION_RULES[F.pad] = _pad_function


def has_tensor(obj: Any) -> bool:
    """Whether a nested structure holds a tensor."""
    return _has_tensor(obj)


def describe(func: Any) -> str:
    """A readable name of a function for error messages."""
    return _name(func)
