"""Reality checks of attributions: model- and label-randomisation tests (Adebayo et al. 2018).

An attribution that explains the *model* must change when the model's learned parameters
are destroyed. :func:`model_randomisation_test` re-initialises the layers one by one from
the output down (cascading), recomputes the attributions after each step and compares
them with the original ones; :func:`label_randomisation_test` compares the attributions
of a model trained on the true labels with those of one trained on permuted labels.
Similarities are per-input and averaged over the inputs:

- ``spearman``: Spearman rank correlation of ``|attribution|`` (Adebayo's main measure);
- ``cosine``: cosine similarity of ``|attribution|``;
- ``ssim``: structural similarity of ``|attribution|`` scaled to [0, 1], for attributions
  that are single maps ``(N, [C,] H, W)`` (``None`` otherwise).

A test *passes* when the final similarity in the chosen measure is below ``threshold``
(default 0.5): an attribution that survives the destruction of what the model learned is
not explaining the model. Results are JSON-able dicts.

Attribution functions take ``(model, x)`` and return a tensor ``(N, ...)`` or a list of them
(coefficients); :func:`trim_attribution` and :func:`cd_attribution` adapt
:func:`shared.attributions.trim_attributions` and TRIM + CD scores.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import rankdata  # type: ignore[import-untyped]
from torch import Tensor, nn

from shared.attributions import trim_attributions
from shared.coeffs import flatten_coeffs
from shared.interpret.trim_cd import CoefficientGroup, select_target, trim_cd

__all__ = [
    "cd_attribution",
    "label_randomisation_test",
    "model_randomisation_test",
    "similarity",
    "trim_attribution",
]

Measure = Literal["spearman", "cosine", "ssim"]
AttributionFn = Callable[[nn.Module, Tensor], Any]


# -- adapters -------------------------------------------------------------------------------
def trim_attribution(
    transform: Any, method: str = "saliency", target: int = 0, **kwargs: Any
) -> AttributionFn:
    """``(model, x) -> coefficients``: attributions by ``shared.attributions.trim_attributions``.

    Examples
    --------
    >>> from shared import DWT1d
    >>> fn = trim_attribution(DWT1d("haar", levels=1))
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(8, 1)).eval()
    >>> [tuple(a.shape) for a in fn(net, torch.randn(2, 1, 8))]
    [(2, 1, 4), (2, 1, 4)]
    """

    def attribute(model: nn.Module, x: Tensor) -> Any:
        return trim_attributions(model, transform, x, method=method, target=target, **kwargs)  # type: ignore[arg-type]

    return attribute


def cd_attribution(
    transform: Any, groups: Sequence[CoefficientGroup], target: int | None = 0, **kwargs: Any
) -> AttributionFn:
    """``(model, x) -> (N, G)`` TRIM + CD scores of coefficient groups (``(N, G * outputs)``
    for ``target=None``).

    Examples
    --------
    >>> from shared import DWT1d
    >>> from shared.interpret.trim_cd import level_groups
    >>> dwt = DWT1d("haar", levels=2)
    >>> groups = level_groups(dwt(torch.zeros(1, 1, 8)))
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(8, 1)).eval()
    >>> tuple(cd_attribution(dwt, groups)(net, torch.randn(2, 1, 8)).shape)
    (2, 3)
    """

    def attribute(model: nn.Module, x: Tensor) -> Tensor:
        with torch.no_grad():
            result = trim_cd(model, x, transform, groups, **kwargs)
        scores = select_target(result.rel, target).reshape(len(groups), x.shape[0], -1)
        return scores.permute(1, 0, 2).reshape(x.shape[0], -1)

    return attribute


# -- similarity -------------------------------------------------------------------------------
def _flat(attr: Any) -> np.ndarray:
    leaves = [attr] if isinstance(attr, Tensor) else flatten_coeffs(attr)
    n = leaves[0].shape[0]
    return torch.cat([t.detach().reshape(n, -1) for t in leaves], 1).double().cpu().numpy()


def _maps(attr: Any) -> np.ndarray | None:
    """``|attr|`` as 2D maps ``(N, H, W)`` when it is one single-channel image per input."""
    if not isinstance(attr, Tensor):
        return None
    a = attr.detach().double().cpu().numpy()
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    return np.abs(a) if a.ndim == 3 and min(a.shape[1:]) >= 7 else None


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    scale_a, scale_b = a.max(), b.max()
    a = a / scale_a if scale_a > 0 else a
    b = b / scale_b if scale_b > 0 else b
    return float(structural_similarity(a, b, data_range=1.0))


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def similarity(a: Any, b: Any) -> dict[str, float | None]:
    """Mean over inputs of the Spearman, cosine and SSIM similarity of ``|a|`` and ``|b|``.

    Parameters
    ----------
    a, b : Tensor or list of Tensor
        Attributions of the same inputs, ``(N, ...)`` or coefficient lists.

    Returns
    -------
    dict
        ``{"spearman", "cosine", "ssim"}``; ``ssim`` is ``None`` unless both are maps.

    Examples
    --------
    >>> x = torch.rand(2, 1, 8, 8)
    >>> s = similarity(x, 2 * x)
    >>> round(s["spearman"], 6), round(s["cosine"], 6), round(s["ssim"], 6)
    (1.0, 1.0, 1.0)
    """
    fa, fb = np.abs(_flat(a)), np.abs(_flat(b))
    if fa.shape != fb.shape:
        raise ValueError(f"attributions differ in shape: {fa.shape} and {fb.shape}")
    out: dict[str, float | None] = {
        "spearman": _mean([_spearman(x, y) for x, y in zip(fa, fb, strict=True)]),
        "cosine": _mean([_cosine(x, y) for x, y in zip(fa, fb, strict=True)]),
        "ssim": None,
    }
    ma, mb = _maps(a), _maps(b)
    if ma is not None and mb is not None:
        out["ssim"] = _mean([_ssim(x, y) for x, y in zip(ma, mb, strict=True)])
    return out


# -- randomisation ------------------------------------------------------------------------------
def _layers_top_down(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the modules owning parameters, in reverse order of their first call."""
    names = {id(m): n for n, m in model.named_modules()}
    order: list[str] = []
    handles = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        name = names[id(module)]
        if name not in order:
            order.append(name)

    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return order[::-1]


def _randomise(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            p.normal_(0.0, float(p.std()) if p.numel() > 1 else 1.0)


def _verdict(sim: dict[str, float | None], measure: str, threshold: float) -> bool | None:
    value = sim.get(measure)
    return None if value is None else bool(value < threshold)


def model_randomisation_test(
    model: nn.Module,
    attribution: AttributionFn,
    x: Tensor,
    *,
    measure: Measure = "spearman",
    threshold: float = 0.5,
    seed: int = 0,
    layers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Cascading model-parameter randomisation test (Adebayo et al. 2018).

    Parameters
    ----------
    model : nn.Module
        The trained model (not modified: a copy is randomised).
    attribution : callable
        ``(model, x) -> attributions``.
    x : Tensor
        Inputs to explain.
    measure : {"spearman", "cosine", "ssim"}
        Similarity deciding the verdict.
    threshold : float, default 0.5
        The test passes when the similarity after the last step is below it.
    seed : int, default 0
        Seed of the re-initialisation.
    layers : sequence of str, optional
        Module names to randomise, in order; default every module owning parameters, from
        the output down (order of execution, reversed).

    Returns
    -------
    dict
        ``test``, ``measure``, ``threshold``, ``passed``, ``similarity`` (after the last
        step), ``steps`` (layer name and similarities after each cumulative step).

    Examples
    --------
    >>> from shared import DWT1d
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    >>> fn = trim_attribution(DWT1d("haar", levels=2))
    >>> res = model_randomisation_test(net, fn, torch.randn(4, 1, 16))
    >>> [s["layer"] for s in res["steps"]], res["measure"]
    (['3', '1'], 'spearman')
    """
    base = attribution(model, x)
    randomised = copy.deepcopy(model)
    order = list(layers) if layers is not None else _layers_top_down(randomised, x)
    steps: list[dict[str, Any]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in order:
            _randomise(randomised.get_submodule(name))
            sim = similarity(base, attribution(randomised, x))
            steps.append({"layer": name, **sim})
    final: dict[str, float | None] = (
        {k: steps[-1][k] for k in ("spearman", "cosine", "ssim")} if steps else {}
    )
    return {
        "test": "model_randomisation",
        "measure": measure,
        "threshold": threshold,
        "passed": _verdict(final, measure, threshold),
        "similarity": final,
        "steps": steps,
    }


def label_randomisation_test(
    train: Callable[[Tensor], nn.Module],
    attribution: AttributionFn,
    x: Tensor,
    y: Tensor,
    *,
    measure: Measure = "spearman",
    threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Data (label) randomisation test (Adebayo et al. 2018).

    Parameters
    ----------
    train : callable
        ``labels -> trained model``; called with ``y`` and with a permutation of ``y``.
    attribution : callable
        ``(model, x) -> attributions``.
    x : Tensor
        Inputs to explain.
    y : Tensor
        True labels of the training set that ``train`` uses.
    measure, threshold, seed
        As in :func:`model_randomisation_test` (the seed draws the permutation).

    Returns
    -------
    dict
        ``test``, ``measure``, ``threshold``, ``passed``, ``similarity``.

    Examples
    --------
    >>> def train(labels):
    ...     net = nn.Linear(3, 1)
    ...     with torch.no_grad():
    ...         net.weight.copy_(labels[:3].float().view(1, 3))
    ...     return net.eval()
    >>> def grad(model, x):
    ...     x = x.clone().requires_grad_(True)
    ...     return torch.autograd.grad(model(x).sum(), x)[0]
    >>> res = label_randomisation_test(train, grad, torch.randn(4, 3), torch.tensor([3, 2, 1, 0]))
    >>> sorted(res)
    ['measure', 'passed', 'similarity', 'test', 'threshold']
    """
    gen = torch.Generator().manual_seed(seed)
    permuted = y[torch.randperm(y.shape[0], generator=gen).to(y.device)]
    sim = similarity(attribution(train(y), x), attribution(train(permuted), x))
    return {
        "test": "label_randomisation",
        "measure": measure,
        "threshold": threshold,
        "passed": _verdict(sim, measure, threshold),
        "similarity": sim,
    }
