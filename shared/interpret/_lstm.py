"""Contextual decomposition of ``nn.LSTM`` (Murdoch et al. 2018, as extended by acd).

At every step the gate pre-activations are split into a relevant part (input and hidden
state carried as relevant), an irrelevant part and the bias. The input, forget and
candidate gates take the three-part Shapley split (the bias entering first), so
``sigma(a + b + c) = rel + irrel + sigma(c)``. The cell update keeps as relevant only the
products of relevant and bias terms, as acd does; the bias-by-bias product
``sigma(c_i) tanh(c_g)`` is an offset split by :func:`~shared.interpret._rules.split_offset`
(acd gives it wholly to the relevant part inside the phrase). The output gate is computed
from the whole input and not decomposed, and ``tanh`` of the cell takes the two-part
Shapley split, so ``h_rel + h_irrel = o * tanh(c)`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from shared.interpret._rules import Parts, UnsupportedOperationError, exact_zero, split_offset

__all__ = ["lstm_rule"]


def _three(a: Tensor, b: Tensor, c: Tensor, act: Callable[[Tensor], Tensor]):
    """Shapley split of ``act(a + b + c)`` over a and b, c first: (a part, b part, act(c))."""
    ac, bc, abc, c0 = act(a + c), act(b + c), act(a + b + c), act(c)
    return (
        exact_zero(a, 0.5 * ((ac - c0) + (abc - bc))),
        exact_zero(b, 0.5 * ((bc - c0) + (abc - ac))),
        c0,
    )


def _initial(hx: Any, layers: int, n: int, hidden: int, like: Tensor) -> tuple[Parts, Parts]:
    zeros = like.new_zeros(layers, n, hidden)
    if hx is None:
        return Parts(zeros, zeros), Parts(zeros, zeros)
    # A constant initial state belongs to no input group: it is irrelevant.
    h0, c0 = (s if isinstance(s, Parts) else Parts(torch.zeros_like(s), s) for s in hx)
    return h0, c0


def _layer(
    x: Parts, module: nn.LSTM, layer: int, h0: Parts, c0: Parts
) -> tuple[Parts, Parts, Parts]:
    """One layer over the sequence: (outputs (N, L, H), last h, last c) as parts."""
    w_ih = getattr(module, f"weight_ih_l{layer}")
    w_hh = getattr(module, f"weight_hh_l{layer}")
    if module.bias:
        bias = getattr(module, f"bias_ih_l{layer}") + getattr(module, f"bias_hh_l{layer}")
    else:
        bias = w_ih.new_zeros(w_ih.shape[0])
    b_i, b_f, b_g, b_o = bias.chunk(4)
    proj_rel, proj_irrel = x.rel @ w_ih.T, x.irrel @ w_ih.T
    h_rel, h_irrel, c_rel, c_irrel = h0.rel, h0.irrel, c0.rel, c0.irrel
    out_rel, out_irrel = [], []
    for t in range(x.rel.shape[1]):
        pre_rel = proj_rel[:, t] + h_rel @ w_hh.T
        pre_irrel = proj_irrel[:, t] + h_irrel @ w_hh.T
        a_i, a_f, a_g, a_o = pre_rel.chunk(4, dim=-1)
        z_i, z_f, z_g, z_o = pre_irrel.chunk(4, dim=-1)
        i_rel, i_irrel, i_bias = _three(a_i, z_i, b_i, torch.sigmoid)
        f_rel, f_irrel, f_bias = _three(a_f, z_f, b_f, torch.sigmoid)
        g_rel, g_irrel, g_bias = _three(a_g, z_g, b_g, torch.tanh)
        gate_o = torch.sigmoid(a_o + z_o + b_o)
        lin_rel = i_rel * (g_rel + g_bias) + i_bias * g_rel + (f_rel + f_bias) * c_rel
        lin_irrel = (
            i_irrel * (g_rel + g_irrel + g_bias)
            + (i_rel + i_bias) * g_irrel
            + (f_rel + f_irrel + f_bias) * c_irrel
            + f_irrel * c_rel
        )
        cell = split_offset(lin_rel, lin_irrel, i_bias * g_bias)
        c_rel, c_irrel = cell.rel, cell.irrel
        t_rel, t_irrel, t_sum = torch.tanh(c_rel), torch.tanh(c_irrel), torch.tanh(c_rel + c_irrel)
        h_rel = gate_o * exact_zero(c_rel, 0.5 * (t_rel + (t_sum - t_irrel)))
        h_irrel = gate_o * exact_zero(c_irrel, 0.5 * (t_irrel + (t_sum - t_rel)))
        out_rel.append(h_rel)
        out_irrel.append(h_irrel)
    outputs = Parts(torch.stack(out_rel, 1), torch.stack(out_irrel, 1))
    return outputs, Parts(h_rel, h_irrel), Parts(c_rel, c_irrel)


def lstm_rule(module: nn.Module, args: tuple, kwargs: dict) -> Any:
    """CD of ``nn.LSTM`` (unidirectional, no projection, batched input): module-shaped output.

    Returns ``(output, (h_n, c_n))`` as :class:`Parts`.
    """
    if not isinstance(module, nn.LSTM):
        raise UnsupportedOperationError(f"{type(module).__name__} is not an nn.LSTM")
    if module.bidirectional or module.proj_size:
        raise UnsupportedOperationError("bidirectional LSTMs and LSTMs with proj_size")
    if module.training and module.dropout and module.num_layers > 1:
        raise UnsupportedOperationError("an LSTM with dropout in training mode; call eval()")
    x = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    if not isinstance(x, Parts):
        raise UnsupportedOperationError("an LSTM input that is not a padded tensor")
    if x.rel.ndim != 3:
        raise UnsupportedOperationError("an unbatched LSTM input (2D); add a batch dimension")
    seq = x if module.batch_first else Parts(x.rel.transpose(0, 1), x.irrel.transpose(0, 1))
    n, hidden = seq.rel.shape[0], module.hidden_size
    h0, c0 = _initial(hx, module.num_layers, n, hidden, seq.rel)
    hs, cs = [], []
    for layer in range(module.num_layers):
        h_l = Parts(h0.rel[layer], h0.irrel[layer])
        c_l = Parts(c0.rel[layer], c0.irrel[layer])
        seq, h_last, c_last = _layer(seq, module, layer, h_l, c_l)
        hs.append(h_last)
        cs.append(c_last)
    if not module.batch_first:
        seq = Parts(seq.rel.transpose(0, 1), seq.irrel.transpose(0, 1))

    def stacked(items: list[Parts]) -> Parts:
        return Parts(torch.stack([p.rel for p in items]), torch.stack([p.irrel for p in items]))

    return seq, (stacked(hs), stacked(cs))
