"""Coarse-grained Taylor layers, the parameter-free standardisation and the TaylorNet.

PROVISIONAL design (``reference/seed_systems.md`` §4.4), not checked against the paper
(arXiv 2211.01779, whose full text was not available): see the package docstring.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from itertools import combinations_with_replacement, permutations
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

__all__ = [
    "BiasSplit",
    "NormMode",
    "QuadraticForm",
    "Standardize",
    "TaylorLayer",
    "TaylorNet",
    "fit_taylornet",
]

logger = logging.getLogger(__name__)

QuadraticForm = Literal["lowrank", "full"]
NormMode = Literal["layer", "position", "none"]
BiasSplit = Literal["irrelevant", "magnitude"]

# Expanding a low-rank order-k term into monomials builds a dense d**k tensor per output.
_MAX_EXPANSION = 50_000_000


def _as_tuple(size: int | Sequence[int]) -> tuple[int, ...]:
    return (int(size),) if isinstance(size, int) else tuple(int(s) for s in size)


def _magnitude_share(lin_rel: Tensor, lin_irrel: Tensor) -> Tensor:
    """``|rel| / (|rel| + |irrel|)``; ties (both 0) go to irrel, or to rel in a sample whose
    ``lin_irrel`` is 0 everywhere while ``lin_rel`` is not (``shared.interpret``'s rule)."""
    a_rel = lin_rel.abs()
    total = a_rel + lin_irrel.abs()
    tie = total == 0
    share = a_rel / torch.where(tie, torch.ones_like(total), total)
    n = len(lin_rel)
    to_rel = (lin_irrel == 0).reshape(n, -1).all(1) & (lin_rel != 0).reshape(n, -1).any(1)
    to_rel = to_rel.view(n, *[1] * (lin_rel.ndim - 1))
    return torch.where(tie & to_rel, torch.ones_like(share), share)


def _contract(p: Tensor, w: Tensor) -> Tensor:
    """``(N, P, d) x (P', A, d) -> (N, P, A)``; ``P' = 1`` is a weight shared by positions."""
    if w.shape[0] == 1:
        return p @ w[0].transpose(0, 1)
    return torch.einsum("npd,pad->npa", p, w)


class TaylorLayer(nn.Module):
    """One coarse-graining step: every block of inputs -> a truncated Taylor polynomial.

    The input map ``(N, C, *S)`` (``S = (L,)`` or ``(H, W)``) is cut into non-overlapping
    blocks; the ``d = C * prod(block)`` values ``p`` of a block are mapped to ``out_channels``
    outputs ``y = b + W1 p + q2(p) + q3(p) + ...`` with no activation function. The
    quadratic term is either a full symmetric form (one coefficient per monomial
    ``p_a p_b``, ``a <= b``) or low rank, ``sum_r w_r (u_r.p)(v_r.p)``; orders 3 and up are
    always low rank (``sum_r w_r prod_m (u_{m,r}.p)``).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    spatial : int or sequence of int
        Spatial size of the input map, ``L`` or ``(H, W)``; each divisible by ``block``.
    block : int, sequence of int or None, default 2
        Block size per spatial axis; None takes the whole map as one block (a readout).
    order : int, default 2
        Highest order of the expansion (1 = affine).
    quadratic : {"lowrank", "full"}, default "lowrank"
        Form of the second-order term.
    rank : int or None
        Rank of every low-rank term; default ``d``, enough for any quadratic form.
    shared : bool, default True
        One set of coefficients for all blocks (a convolution with stride = kernel = block)
        or one per block position (every term then named by position).
    level : int, default 1
        Level index used in term names and tables.
    name : str or None
        Layer name in tables; default ``f"level{level}"``.
    input_symbol : str, default "x"
        Symbol of the input map in term names, e.g. ``x0[3]`` or ``h1.2[+0,+1]``.
    cd_bias : {"irrelevant", "magnitude"}, default "irrelevant"
        Where :meth:`contextual_decomposition` puts the bias: all to the irrelevant part, or
        split in proportion to the magnitudes of the relevant and irrelevant terms (the
        convention of ``shared.interpret`` for every other layer).

    Examples
    --------
    >>> import torch
    >>> layer = TaylorLayer(1, 3, spatial=8)
    >>> layer(torch.randn(5, 1, 8)).shape
    torch.Size([5, 3, 4])
    """

    _ia: Tensor
    _ib: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial: int | Sequence[int],
        block: int | Sequence[int] | None = 2,
        *,
        order: int = 2,
        quadratic: QuadraticForm = "lowrank",
        rank: int | None = None,
        shared: bool = True,
        level: int = 1,
        name: str | None = None,
        input_symbol: str = "x",
        cd_bias: BiasSplit = "irrelevant",
    ) -> None:
        super().__init__()
        self.spatial = _as_tuple(spatial)
        if len(self.spatial) not in (1, 2):
            raise ValueError(f"spatial must have 1 or 2 axes, got {self.spatial}")
        self.block = self.spatial if block is None else _as_tuple(block)
        if len(self.block) == 1 and len(self.spatial) == 2:
            self.block = self.block * 2
        if len(self.block) != len(self.spatial) or any(
            s % b for s, b in zip(self.spatial, self.block, strict=True)
        ):
            raise ValueError(f"spatial size {self.spatial} is not divisible by block {self.block}")
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if quadratic not in ("lowrank", "full"):
            raise ValueError(f"quadratic must be 'lowrank' or 'full', got {quadratic!r}")
        if cd_bias not in ("irrelevant", "magnitude"):
            raise ValueError(f"cd_bias must be 'irrelevant' or 'magnitude', got {cd_bias!r}")
        self.cd_bias = cd_bias
        self.in_channels, self.out_channels = in_channels, out_channels
        self.order, self.quadratic, self.shared = order, quadratic, shared
        self.level, self.name = level, name or f"level{level}"
        self.input_symbol = input_symbol
        self.grid = tuple(s // b for s, b in zip(self.spatial, self.block, strict=True))
        self.n_positions = math.prod(self.grid)
        self.d = in_channels * math.prod(self.block)
        self.rank = rank or self.d
        n_p = 1 if shared else self.n_positions
        d, o = self.d, out_channels

        self.bias = nn.Parameter(torch.zeros(n_p, o))
        self.linear = nn.Parameter(torch.randn(n_p, o, d) / math.sqrt(d))
        full = order >= 2 and quadratic == "full"
        # Index pairs a <= b of the monomials p_a p_b, only where a full form needs them.
        ia, ib = torch.triu_indices(d, d) if full else torch.zeros(2, 0, dtype=torch.long)
        self.register_buffer("_ia", ia, persistent=False)
        self.register_buffer("_ib", ib, persistent=False)
        self.quad: nn.Parameter | None = None
        if full:
            self.quad = nn.Parameter(0.5 * torch.randn(n_p, o, ia.numel()) / math.sqrt(ia.numel()))
        # Low-rank orders: factors (P', k, R, d) and mixing weights (P', O, R), one per order.
        self.lowrank_orders = [k for k in range(2, order + 1) if k > 2 or quadratic == "lowrank"]
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(n_p, k, self.rank, d) / math.sqrt(d))
            for k in self.lowrank_orders
        )
        self.mixing = nn.ParameterList(
            nn.Parameter(0.5 ** (k - 1) * torch.randn(n_p, o, self.rank) / math.sqrt(self.rank))
            for k in self.lowrank_orders
        )

    def extra_repr(self) -> str:
        return (
            f"{self.name}: {self.in_channels}->{self.out_channels}, spatial={self.spatial}, "
            f"block={self.block}, order={self.order}, quadratic={self.quadratic}, "
            f"rank={self.rank}, shared={self.shared}"
        )

    # -- blocks -----------------------------------------------------------------------------
    def blocks(self, x: Tensor) -> Tensor:
        """``(N, C, *S) -> (N, P, d)``; a block vector is channel-major, then offsets (C order).

        Examples
        --------
        >>> import torch
        >>> TaylorLayer(1, 1, spatial=4).blocks(torch.arange(4.0).reshape(1, 1, 4)).tolist()
        [[[0.0, 1.0], [2.0, 3.0]]]
        """
        if tuple(x.shape[1:]) != (self.in_channels, *self.spatial):
            raise ValueError(
                f"{self.name} expects (N, {self.in_channels}, {', '.join(map(str, self.spatial))})"
                f" inputs, got {tuple(x.shape)}"
            )
        n, c = x.shape[:2]
        if len(self.spatial) == 1:
            (g,), (k,) = self.grid, self.block
            return x.reshape(n, c, g, k).permute(0, 2, 1, 3).reshape(n, g, c * k)
        (gh, gw), (kh, kw) = self.grid, self.block
        x = x.reshape(n, c, gh, kh, gw, kw).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, gh * gw, self.d)

    def _unblock(self, y: Tensor) -> Tensor:
        return y.transpose(1, 2).reshape(y.shape[0], self.out_channels, *self.grid)

    # -- the polynomial ---------------------------------------------------------------------
    def _lowrank_term(self, p: Tensor, i: int) -> Tensor:
        factors = self.factors[i]
        prod = _contract(p, factors[:, 0])
        for m in range(1, factors.shape[1]):
            prod = prod * _contract(p, factors[:, m])
        return _contract(prod, self.mixing[i])

    def polynomial(self, p: Tensor, *, bias: bool = True) -> Tensor:
        """The Taylor polynomial of block vectors ``p`` ``(N, P, d) -> (N, P, out)``."""
        y = _contract(p, self.linear)
        if bias:
            y = y + self.bias
        if self.quad is not None:
            y = y + _contract(p[..., self._ia] * p[..., self._ib], self.quad)
        for i in range(len(self.lowrank_orders)):
            y = y + self._lowrank_term(p, i)
        return y

    def forward(self, x: Tensor) -> Tensor:
        return self._unblock(self.polynomial(self.blocks(x)))

    def contextual_decomposition(self, rel: Tensor, irrel: Tensor) -> tuple[Tensor, Tensor]:
        """Split the output into the part of ``rel`` alone and the rest (CD rule).

        With ``f = b + g`` (``g`` every non-constant term), ``rel' = g(rel)`` (every term
        evaluated on the relevant part alone) and ``irrel' = f(rel + irrel) - rel'``: linear
        terms split by linearity; in a product ``(a_rel + a_irr)(b_rel + b_irr)`` only
        ``a_rel b_rel`` is relevant, the cross terms (interactions) and ``a_irr b_irr`` are
        irrelevant; the bias is irrelevant. With ``cd_bias="magnitude"`` the bias is instead
        split in proportion to ``|g(rel)|`` and ``|g(rel + irrel) - g(rel)|``. Either way
        ``rel' + irrel' = f(rel + irrel)`` to rounding, an empty ``rel`` gives ``rel' = 0``
        exactly, and (magnitude) an empty ``irrel`` gives ``irrel' = 0`` exactly.

        Examples
        --------
        >>> import torch
        >>> layer = TaylorLayer(1, 2, spatial=4).double()
        >>> x = torch.randn(3, 1, 4, dtype=torch.float64)
        >>> r, i = layer.contextual_decomposition(0.3 * x, 0.7 * x)
        >>> bool(torch.allclose(r + i, layer(x), atol=1e-12))
        True
        """
        rel_terms = self._unblock(self.polynomial(self.blocks(rel), bias=False))
        if self.cd_bias == "irrelevant":
            return rel_terms, self(rel + irrel) - rel_terms
        p = self.blocks(rel + irrel)
        # g(rel + irrel) - g(rel) is exactly 0 when irrel is, so the tie rules are exact.
        rest = self._unblock(self.polynomial(p, bias=False)) - rel_terms
        bias = self._unblock(self.bias.expand(len(p), self.n_positions, -1))
        given = _magnitude_share(rel_terms, rest) * bias
        return rel_terms + given, rest + (bias - given)

    # -- coefficients and names -------------------------------------------------------------
    def monomials(self, order: int) -> list[tuple[int, ...]]:
        """Block-vector indices of every monomial of ``order``, ``a <= b <= ...``."""
        return list(combinations_with_replacement(range(self.d), order))

    def coefficients(self, order: int) -> Tensor:
        """Coefficient of each monomial of ``order`` (in :meth:`monomials` order).

        Returns ``(P', out, n_monomials)``, ``P' = 1`` when shared; low-rank terms are
        expanded: a monomial's coefficient is the symmetrised tensor summed over the distinct
        orderings of its indices.

        Examples
        --------
        >>> import torch
        >>> layer = TaylorLayer(1, 1, spatial=2, rank=1)
        >>> with torch.no_grad():  # (p0 + p1)(p0 - p1) = p0^2 - p1^2
        ...     _ = layer.factors[0].copy_(torch.tensor([[[[1.0, 1.0]], [[1.0, -1.0]]]]))
        ...     _ = layer.mixing[0].fill_(1.0)
        >>> layer.monomials(2), layer.coefficients(2).flatten().tolist()
        ([(0, 0), (0, 1), (1, 1)], [1.0, 0.0, -1.0])
        """
        if order == 0:
            return self.bias.detach()[..., None]
        if order == 1:
            return self.linear.detach()
        if order > self.order:
            raise ValueError(f"{self.name} has no order-{order} terms (order={self.order})")
        if order == 2 and self.quad is not None:
            return self.quad.detach()
        i = self.lowrank_orders.index(order)
        n_p, n_out = self.mixing[i].shape[:2]
        if n_p * n_out * self.d**order > _MAX_EXPANSION:
            raise ValueError(f"expanding order {order} of {self.name} needs > 5e7 entries")
        letters = "abcdefghijklm"[:order]
        spec = "por," + ",".join(f"pr{c}" for c in letters) + f"->po{letters}"
        factors = self.factors[i].detach()
        dense = torch.einsum(spec, self.mixing[i].detach(), *factors.unbind(1))
        axes = list(range(2, 2 + order))
        sym = sum(dense.permute(0, 1, *(a for a in perm)) for perm in permutations(axes))
        monos = self.monomials(order)
        flat = torch.as_tensor(
            np.ravel_multi_index(np.array(monos).T, (self.d,) * order), device=dense.device
        )
        mult = torch.tensor(
            [math.prod(math.factorial(m.count(a)) for a in set(m)) for m in monos],
            dtype=dense.dtype,
            device=dense.device,
        )
        assert isinstance(sym, Tensor)
        return sym.reshape(n_p, n_out, -1)[..., flat] / mult

    def input_names(self, position: int | None = None) -> tuple[list[str], list[int]]:
        """Names and indices of the block-vector inputs.

        ``position=None`` (shared coefficients): relative names ``x0[+1]`` and block-vector
        indices. A block position: absolute names ``x0[5]`` and flat indices into the
        ``(C, *S)`` input map (C order).

        Examples
        --------
        >>> TaylorLayer(2, 1, spatial=4).input_names(1)
        (['x0[2]', 'x0[3]', 'x1[2]', 'x1[3]'], [2, 3, 6, 7])
        """
        per_c = math.prod(self.block)
        names, index = [], []
        origin: tuple[int, ...] = (0,) * len(self.grid)
        if position is not None:
            origin = tuple(int(g) for g in np.unravel_index(position, self.grid))
        for a in range(self.d):
            c, off = divmod(a, per_c)
            offset = np.unravel_index(off, self.block)
            if position is None:
                names.append(f"{self.input_symbol}{c}[{','.join(f'+{o}' for o in offset)}]")
                index.append(a)
                continue
            pos = tuple(int(g * b + o) for g, b, o in zip(origin, self.block, offset, strict=True))
            names.append(f"{self.input_symbol}{c}[{','.join(map(str, pos))}]")
            index.append(int(np.ravel_multi_index((c, *pos), (self.in_channels, *self.spatial))))
        return names, index

    def position_label(self, position: int | None) -> str:
        """``"shared"``, ``"all"`` (one block: the readout) or block coordinates ``"i,j"``."""
        if position is None:
            return "shared"
        if self.n_positions == 1 and self.block == self.spatial:
            return "all"
        return ",".join(str(int(g)) for g in np.unravel_index(position, self.grid))


class Standardize(nn.Module):
    """Parameter-free standardisation between levels: ``(x - mean) / sqrt(var + eps)``.

    ``mode="layer"`` standardises each sample over all its channels and positions,
    ``"position"`` over the channels at each position, ``"none"`` is the identity. No
    learnable affine map and no nonlinearity follow.

    Examples
    --------
    >>> import torch
    >>> y = Standardize("layer")(torch.randn(4, 3, 8) * 5 + 2)
    >>> [abs(round(float(v), 4)) for v in (y[0].mean(), y[0].var(unbiased=False))]
    [0.0, 1.0]
    """

    def __init__(self, mode: NormMode = "layer", eps: float = 1e-5) -> None:
        super().__init__()
        if mode not in ("layer", "position", "none"):
            raise ValueError(f"norm must be 'layer', 'position' or 'none', got {mode!r}")
        self.mode, self.eps = mode, eps

    def extra_repr(self) -> str:
        return f"mode={self.mode}, eps={self.eps}"

    def _dims(self, x: Tensor) -> tuple[int, ...]:
        return tuple(range(1, x.ndim)) if self.mode == "layer" else (1,)

    def _center(self, x: Tensor) -> Tensor:
        return x - x.mean(self._dims(x), keepdim=True)

    def inverse_scale(self, x: Tensor) -> Tensor:
        """``1 / sqrt(var(x) + eps)`` over the standardised axes (keepdim)."""
        return torch.rsqrt(x.var(self._dims(x), unbiased=False, keepdim=True) + self.eps)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "none":
            return x
        return self._center(x) * self.inverse_scale(x)

    def contextual_decomposition(self, rel: Tensor, irrel: Tensor) -> tuple[Tensor, Tensor]:
        """Centering is linear (split by linearity); the scale of ``rel + irrel`` is frozen.

        Examples
        --------
        >>> import torch
        >>> norm = Standardize().double()
        >>> a, b = torch.randn(2, 2, 3, 4, dtype=torch.float64)
        >>> r, i = norm.contextual_decomposition(a, b)
        >>> bool(torch.allclose(r + i, norm(a + b), atol=1e-12))
        True
        """
        if self.mode == "none":
            return rel, irrel
        scale = self.inverse_scale(rel + irrel)
        return self._center(rel) * scale, self._center(irrel) * scale


class TaylorNet(nn.Module):
    """Hierarchical coarse-grained Taylor network (PROVISIONAL design, no activations).

    ``K`` coarse-graining levels halve every spatial axis (pairs in 1D, 2x2 blocks in 2D),
    each a :class:`TaylorLayer` followed by a :class:`Standardize`; a readout
    :class:`TaylorLayer` maps the whole top-level map to ``n_outputs`` (regression values
    or class logits).

    Parameters
    ----------
    in_channels : int
        Input channels ``C`` of ``(N, C, L)`` or ``(N, C, H, W)`` inputs.
    input_size : int or sequence of int
        ``L`` or ``(H, W)``.
    n_outputs : int
        Outputs of the readout.
    channels : int or sequence of int, default 8
        Output channels per level. An int repeats it down to a single position
        (``K = ceil(log2(max size))``); a sequence gives ``K = len(channels)`` (0 = readout only).
    order, quadratic, rank, shared
        Of every coarse-graining layer (see :class:`TaylorLayer`).
    norm : {"layer", "position", "none"}, default "layer"
        Standardisation after each level; with "none" the net is an exact polynomial.
    readout_order : int, default 2
        Order of the readout (shared coefficients, same ``quadratic`` and ``rank``).
    cd_bias : {"irrelevant", "magnitude"}, default "irrelevant"
        Bias convention of :meth:`contextual_decomposition` in every layer.
    pad : bool, default False
        Sizes not divisible by ``2**K`` are refused (ValueError) unless ``pad=True``, which
        zero-pads every spatial axis at its end to the next multiple of ``2**K``.
    eps : float, default 1e-5
        Of the standardisation.

    Examples
    --------
    >>> import torch
    >>> net = TaylorNet(1, (8, 8), n_outputs=10, channels=4)
    >>> [layer.spatial for layer in net.levels], net(torch.randn(2, 1, 8, 8)).shape
    ([(8, 8), (4, 4), (2, 2)], torch.Size([2, 10]))
    >>> TaylorNet(1, 12, n_outputs=1, channels=2, pad=True).padded_size
    (16,)
    """

    def __init__(
        self,
        in_channels: int,
        input_size: int | Sequence[int],
        n_outputs: int,
        channels: int | Sequence[int] = 8,
        *,
        order: int = 2,
        quadratic: QuadraticForm = "lowrank",
        rank: int | None = None,
        shared: bool = True,
        norm: NormMode = "layer",
        readout_order: int = 2,
        cd_bias: BiasSplit = "irrelevant",
        pad: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.input_size = _as_tuple(input_size)
        if len(self.input_size) not in (1, 2) or min(self.input_size) < 1:
            raise ValueError(f"input_size must be L or (H, W), got {input_size}")
        if isinstance(channels, int):
            widths = [channels] * math.ceil(math.log2(max(self.input_size)))
        else:
            widths = [int(c) for c in channels]
        if norm == "position" and min([in_channels, *widths]) < 2:
            raise ValueError("norm='position' standardises over channels: every level needs >= 2")
        n_levels, m = len(widths), 2 ** len(widths)
        self.padded_size = tuple(math.ceil(s / m) * m for s in self.input_size)
        if self.padded_size != self.input_size and not pad:
            raise ValueError(
                f"input size {self.input_size} is not divisible by 2**{n_levels} = {m} "
                f"({n_levels} coarse-graining levels): pass pad=True to zero-pad it to "
                f"{self.padded_size}, or use fewer levels"
            )
        self.in_channels, self.n_outputs, self.norm_mode = in_channels, n_outputs, norm
        self.n_levels = n_levels
        self.levels = nn.ModuleList()
        self.norms = nn.ModuleList()
        size, c_in = self.padded_size, in_channels
        for k, width in enumerate(widths, start=1):
            self.levels.append(
                TaylorLayer(
                    c_in,
                    width,
                    size,
                    2,
                    order=order,
                    quadratic=quadratic,
                    rank=rank,
                    shared=shared,
                    level=k,
                    input_symbol="x" if k == 1 else f"h{k - 1}.",
                    cd_bias=cd_bias,
                )
            )
            self.norms.append(Standardize(norm, eps))
            size, c_in = tuple(s // 2 for s in size), width
        self.readout = TaylorLayer(
            c_in,
            n_outputs,
            size,
            None,
            order=readout_order,
            quadratic=quadratic,
            rank=rank,
            shared=True,
            level=n_levels + 1,
            name="readout",
            input_symbol="x" if n_levels == 0 else f"h{n_levels}.",
            cd_bias=cd_bias,
        )

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def pad_input(self, x: Tensor) -> Tensor:
        """Check the shape and zero-pad the spatial axes at their end to ``padded_size``."""
        if tuple(x.shape[1:]) != (self.in_channels, *self.input_size):
            raise ValueError(
                f"TaylorNet expects (N, {self.in_channels}, "
                f"{', '.join(map(str, self.input_size))}) inputs, got {tuple(x.shape)}"
            )
        extra = [p - s for s, p in zip(self.input_size, self.padded_size, strict=True)]
        if not any(extra):
            return x
        return F.pad(x, [v for e in reversed(extra) for v in (0, e)])

    def embeddings(self, x: Tensor) -> list[Tensor]:
        """Every level's map: ``[padded input, level 1, ..., level K, readout output]``.

        Levels ``1..K`` are standardised maps ``(N, C_k, *S_k)``; the last entry is
        ``(N, n_outputs)``.
        """
        h = self.pad_input(x)
        out = [h]
        for layer, norm in self.stages():
            h = norm(layer(h))
            out.append(h)
        out.append(self.readout(h).flatten(1))
        return out

    def embed(self, x: Tensor, level: int) -> Tensor:
        """The map at ``level`` (0 = padded input, ``K + 1`` = output), computing no further.

        Examples
        --------
        >>> import torch
        >>> net = TaylorNet(2, 16, n_outputs=1, channels=[4, 6])
        >>> net.embed(torch.randn(3, 2, 16), 2).shape
        torch.Size([3, 6, 4])
        """
        if not 0 <= level <= self.n_levels + 1:
            raise ValueError(f"level must be in 0..{self.n_levels + 1}, got {level}")
        h = self.pad_input(x)
        for layer, norm in self.stages()[:level]:
            h = norm(layer(h))
        return self.readout(h).flatten(1) if level == self.n_levels + 1 else h

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x, self.n_levels + 1)

    def contextual_decomposition(self, rel: Tensor, irrel: Tensor) -> tuple[Tensor, Tensor]:
        """CD through the whole net: each layer's rule in turn; ``rel + irrel == net(x)``.

        See :meth:`TaylorLayer.contextual_decomposition` (products, bias) and
        :meth:`Standardize.contextual_decomposition` (centring split by linearity, scale of
        the full input frozen). Differentiable, for CD-based penalties.

        Examples
        --------
        >>> import torch
        >>> net = TaylorNet(1, 8, n_outputs=2, channels=3).double()
        >>> x = torch.randn(4, 1, 8, dtype=torch.float64)
        >>> mask = torch.zeros_like(x)
        >>> mask[..., :4] = 1
        >>> with torch.no_grad():
        ...     r, i = net.contextual_decomposition(mask * x, (1 - mask) * x)
        ...     float((r + i - net(x)).abs().max()) < 1e-10
        True
        """
        rel, irrel = self.pad_input(rel), self.pad_input(irrel)
        for layer, norm in self.stages():
            rel, irrel = layer.contextual_decomposition(rel, irrel)
            rel, irrel = norm.contextual_decomposition(rel, irrel)
        rel, irrel = self.readout.contextual_decomposition(rel, irrel)
        return rel.flatten(1), irrel.flatten(1)

    def stages(self) -> list[tuple[TaylorLayer, Standardize]]:
        """The coarse-graining levels ``1..K``: (Taylor layer, standardisation) pairs."""
        return [
            (cast(TaylorLayer, layer), cast(Standardize, norm))
            for layer, norm in zip(self.levels, self.norms, strict=True)
        ]

    def taylor_layers(self) -> list[TaylorLayer]:
        """The coarse-graining layers then the readout (levels ``1..K+1``)."""
        return [*(layer for layer, _ in self.stages()), cast(TaylorLayer, self.readout)]

    def terms_table(self, levels: Sequence[int] | None = None, **kwargs: Any) -> pd.DataFrame:
        """Every term of the chosen levels (default all) as a DataFrame.

        See :func:`shared.taylornet.terms.terms_table` for the columns and options.

        Examples
        --------
        >>> net = TaylorNet(1, 4, n_outputs=1, channels=1, order=1, readout_order=1)
        >>> net.terms_table()[["level", "position", "order", "inputs"]].tail(2).values.tolist()
        [[3, 'all', 0, '1'], [3, 'all', 1, 'h2.0[0]']]
        """
        from shared.taylornet.terms import terms_table

        return terms_table(self, levels=levels, **kwargs)


def fit_taylornet(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    task: Literal["classification", "regression"] = "classification",
    epochs: int = 50,
    batch_size: int = 64,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> list[float]:
    """Train with Adam and a cosine learning-rate decay; returns the mean loss per epoch.

    Cross-entropy on integer labels (``task="classification"``) or mean squared error on
    ``(N, n_outputs)`` targets. Shuffling uses its own generator seeded with ``seed``.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(64, 1, 4)
    >>> y = (x[:, 0, 0] * x[:, 0, 3] > 0).long()
    >>> net = TaylorNet(1, 4, n_outputs=2, channels=4)
    >>> losses = fit_taylornet(net, x, y, epochs=10, lr=0.05)
    >>> losses[-1] < losses[0]
    True
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    history: list[float] = []
    net.train()
    for epoch in range(epochs):
        order, total = torch.randperm(len(x), generator=gen), 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            out = net(x[idx])
            if task == "classification":
                loss = F.cross_entropy(out, y[idx])
            else:
                loss = F.mse_loss(out, y[idx].reshape(out.shape))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x))
        logger.debug("epoch %d: loss %.4g", epoch, history[-1])
    net.eval()
    return history
