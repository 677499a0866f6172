"""TaylorNet: a hierarchical coarse-grained Taylor network and its multi-level data distillation.

**PROVISIONAL DESIGN.** This follows the idea of Yang, Xie & Yang, *Exploring explicit
coarse-grained structure in artificial neural networks* (arXiv 2211.01779, Chin. Phys. Lett.
40, 020501, 2023): write the input -> output map directly as a Taylor series over a
renormalisation-group-style coarse-graining, with no activation functions, and distil a data
set level by level into class references. The paper's full text was not available when this
was written: the Taylor order, block size, weight sharing, factorisation, normalisation, depth
and the distillation objective below are OUR design (``reference/seed_systems.md`` §4.4),
not the paper's, and no number produced here should be quoted as a reproduction of it.

The design:

- :class:`TaylorLayer` cuts a ``(N, C, L)`` or ``(N, C, H, W)`` map into non-overlapping
  blocks (pairs / 2x2) and maps each block vector ``p`` to ``out_channels`` features by
  ``b + W1 p + q2(p) + q3(p) + ...``: quadratic term full (one coefficient per monomial) or
  low rank ``sum_r w_r (u_r.p)(v_r.p)``, orders >= 3 low rank; coefficients shared across
  positions (a convolution with stride = kernel = block) or one set per position.
- :class:`Standardize` between levels: a parameter-free per-sample standardisation.
- :class:`TaylorNet` stacks levels down to one position (zero-padding only on request) and
  ends with a readout :class:`TaylorLayer` over the whole top-level map.
- Every term is named (:func:`terms_table`, :func:`local_taylor_table`) and aggregated by
  input group (:func:`group_main_effects`, :func:`group_interactions`).
- ``contextual_decomposition(rel, irrel)`` on every module: the relevant part of a layer's
  output is its polynomial evaluated on ``rel`` alone without the bias; products' cross
  terms (interactions) and the bias are irrelevant (or, ``cd_bias="magnitude"``, the bias
  is split by magnitude as ``shared.interpret`` does for other layers); the
  standardisation is split by linearity with the scale of the full input frozen.
  ``rel + irrel`` equals the forward output to rounding; ``shared.interpret``'s engine
  calls these methods.
- :class:`TaylorReferences`: per-class reference inputs at every level, learned with the
  network frozen; classification by the nearest reference embedding.
- :mod:`shared.taylornet.student` (imported on its own): the domains' students, a
  TaylorNet on feature vectors laid out as (bands, positions), saved through
  :mod:`shared.students`; their band main effects and interactions, and their class
  references scored beside trivial classifiers.

Examples
--------
>>> import torch
>>> from shared.taylornet import TaylorNet
>>> net = TaylorNet(in_channels=1, input_size=(8, 8), n_outputs=10, channels=4)
>>> net(torch.randn(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from shared.taylornet.net import (
    BiasSplit,
    NormMode,
    QuadraticForm,
    Standardize,
    TaylorLayer,
    TaylorNet,
    fit_taylornet,
)
from shared.taylornet.references import TaylorReferences, plot_references
from shared.taylornet.terms import (
    group_interactions,
    group_main_effects,
    largest_terms,
    layer_terms_table,
    local_taylor_table,
    read_terms_table,
    terms_table,
)

__all__ = [
    "BiasSplit",
    "NormMode",
    "QuadraticForm",
    "Standardize",
    "TaylorLayer",
    "TaylorNet",
    "TaylorReferences",
    "fit_taylornet",
    "group_interactions",
    "group_main_effects",
    "largest_terms",
    "layer_terms_table",
    "local_taylor_table",
    "plot_references",
    "read_terms_table",
    "terms_table",
]
