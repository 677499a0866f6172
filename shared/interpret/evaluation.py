"""What an evaluation writes about a teacher's explanations, for any domain.

- :func:`cd_scale_scores`: CD scores of the coefficient groups of a transform (wavelet
  levels, Fourier annuli, ...) per output, with each group's scale and the rest, as
  JSON-able rows (``RUN/evaluate/cd_scales.json``);
- :func:`acd_examples`: ACD hierarchies of a few inputs (``acd_examples.json``);
- :func:`reality_checks`: the cascading model-randomisation and the label-randomisation
  tests of every named attribution, each flagged when it fails
  (``reality_checks.json``); :func:`band_mass` turns a coefficient attribution into the
  per-band mass that evaluations report.

Scores are computed without a graph; the caller chooses the dtype (float64 for exact
conservation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from shared.coeffs import flatten_coeffs
from shared.interpret.acd import acd_hierarchy
from shared.interpret.checks import (
    AttributionFn,
    Measure,
    label_randomisation_test,
    model_randomisation_test,
)
from shared.interpret.trim_cd import CoefficientGroup, trim_cd
from shared.runs import write_json

__all__ = [
    "EXPLANATION_FILES",
    "acd_examples",
    "band_mass",
    "cd_scale_scores",
    "reality_checks",
    "write_explanations",
]

#: The documents an evaluation writes about its teacher's explanations, by file name.
EXPLANATION_FILES = ("cd_scales.json", "acd_examples.json", "reality_checks.json")


def write_explanations(out: Path, docs: Mapping[str, dict[str, Any] | None]) -> None:
    """Write the documents (:data:`EXPLANATION_FILES`, by name) into ``out``; remove those
    not made, so no stale file stays.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> write_explanations(out, {"cd_scales.json": {"rows": []}})
    >>> sorted(p.name for p in out.iterdir())
    ['cd_scales.json']
    >>> write_explanations(out, {})
    >>> list(out.iterdir())
    []
    """
    for name in EXPLANATION_FILES:
        doc = docs.get(name)
        if doc is None:
            (out / name).unlink(missing_ok=True)
        else:
            write_json(out / name, doc)


# -- CD per scale ------------------------------------------------------------------------------
def _stats(values: Tensor) -> dict[str, float]:
    v = values.detach().double().cpu()
    return {
        "mean": float(v.mean()),
        "sd": float(v.std()) if v.numel() > 1 else 0.0,
        "mean_abs": float(v.abs().mean()),
    }


def cd_scale_scores(
    model: nn.Module,
    x: Tensor,
    transform: Any,
    groups: Sequence[CoefficientGroup],
    scales: Sequence[Mapping[str, Any]],
    targets: Mapping[str, int],
    *,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """CD scores of ``groups`` for every target output, one JSON-able row per group.

    Parameters
    ----------
    model : nn.Module
        In eval mode, in the dtype and on the device of ``x``.
    x : Tensor
        The inputs scored, ``(N, ...)``.
    transform : object
        A linear transform whose coefficients the groups select (:func:`trim_cd`).
    groups : sequence of CoefficientGroup
        One group per scale.
    scales : sequence of mapping
        Per group, its scale (frequencies, multipoles, seconds, ...); merged into its row.
    targets : mapping
        Output name -> output index.
    chunk_size : int, optional
        Rows per CD pass.

    Returns
    -------
    dict
        ``groups``: rows with the scale and, per target, the ``rel`` statistics over the
        inputs (mean, SD, mean |rel|) and the mean of the rest (``irrel``; ``rel + irrel``
        is the output); ``output``: per target, the mean and SD of the output;
        ``conservation_max_abs_error``: ``max |rel + irrel - model(x)|`` over groups,
        inputs and targets; ``n_items``.

    Examples
    --------
    >>> from shared import DWT1d
    >>> from shared.interpret.trim_cd import level_groups
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double().eval()
    >>> x = torch.randn(4, 1, 16, dtype=torch.float64)
    >>> dwt = DWT1d("haar", levels=2)
    >>> groups = level_groups(dwt(x[:1]))
    >>> out = cd_scale_scores(net, x, dwt, groups, [{}] * 3, {"a": 0, "b": 1})
    >>> [g["name"] for g in out["groups"]], out["conservation_max_abs_error"] < 1e-12
    (['cA2', 'cD2', 'cD1'], True)
    """
    if len(scales) != len(groups):
        raise ValueError(f"{len(groups)} groups but {len(scales)} scales")
    with torch.no_grad():
        res = trim_cd(model, x, transform, groups, chunk_size=chunk_size)
        output = model(x)
    output = output.reshape(output.shape[0], -1)
    rel = res.rel.reshape(len(groups), x.shape[0], -1)
    irrel = res.irrel.reshape(len(groups), x.shape[0], -1)
    error = float((rel + irrel - output[None]).abs().max())
    rows = []
    for g, (group, scale) in enumerate(zip(groups, scales, strict=True)):
        row: dict[str, Any] = {"name": group.name, **dict(scale)}
        for name, k in targets.items():
            row[name] = {**_stats(rel[g, :, k]), "rest_mean": float(irrel[g, :, k].mean())}
        rows.append(row)
    return {
        "n_items": int(x.shape[0]),
        "groups": rows,
        "output": {
            name: {"mean": float(output[:, k].mean()), "sd": float(output[:, k].std())}
            for name, k in targets.items()
        },
        "conservation_max_abs_error": error,
    }


# -- ACD ---------------------------------------------------------------------------------------
def acd_examples(
    model: nn.Module,
    x: Tensor,
    transform: Any,
    indices: Sequence[int],
    targets: Mapping[str, int],
    *,
    tile: int | Sequence[int],
    describe: Callable[[int], Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """ACD hierarchies of the inputs ``x[indices]``, one per target output.

    ``describe(i)`` adds what the caller knows of input ``i`` (its labels, its source);
    other keyword arguments go to :func:`~shared.interpret.acd.acd_hierarchy` (by
    default ``absolute=True``: regression outputs are signed).

    Examples
    --------
    >>> from shared import DWT1d
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 1))
    >>> x = torch.randn(3, 1, 16, dtype=torch.float64)
    >>> out = acd_examples(net.double().eval(), x, DWT1d("haar", 2), [2], {"y": 0}, tile=2)
    >>> out[0]["index"], sorted(out[0]["hierarchies"])
    (2, ['y'])
    """
    kwargs.setdefault("absolute", True)
    out = []
    for i in indices:
        item: dict[str, Any] = {"index": int(i), **dict(describe(int(i)) if describe else {})}
        item["hierarchies"] = {
            name: acd_hierarchy(model, x[i : i + 1], transform, tile=tile, target=k, **kwargs)
            for name, k in targets.items()
        }
        out.append(item)
    return out


# -- reality checks ----------------------------------------------------------------------------
def band_mass(attribution: AttributionFn) -> AttributionFn:
    """``(model, x) -> (N, bands)``: the summed |attribution| of every coefficient array.

    Examples
    --------
    >>> fn = band_mass(lambda model, x: [x, 2 * x])
    >>> fn(None, torch.ones(2, 1, 3)).tolist()
    [[3.0, 6.0], [3.0, 6.0]]
    """

    def mass(model: nn.Module, x: Tensor) -> Tensor:
        leaves = flatten_coeffs(attribution(model, x))
        n = leaves[0].shape[0]
        return torch.stack([a.detach().abs().reshape(n, -1).sum(1) for a in leaves], 1)

    return mass


class _Retrained:
    """``labels -> model``: the evaluated model for the true labels; for others, a model
    retrained on them once (shared by every attribution that asks for the same labels)."""

    def __init__(self, model: nn.Module, y: Tensor, retrain: Callable[[Tensor], nn.Module]) -> None:
        self.model, self.y, self.retrain = model, y, retrain
        self.labels: Tensor | None = None
        self.trained: nn.Module | None = None

    def __call__(self, labels: Tensor) -> nn.Module:
        if labels is self.y:
            return self.model
        if self.trained is None or self.labels is None or not torch.equal(labels, self.labels):
            self.trained, self.labels = self.retrain(labels), labels.clone()
        return self.trained


def reality_checks(
    model: nn.Module,
    attributions: Mapping[str, AttributionFn],
    x: Tensor,
    *,
    y_train: Tensor | None = None,
    retrain: Callable[[Tensor], nn.Module] | None = None,
    measure: Measure = "spearman",
    threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Model- and label-randomisation tests of every attribution; failures flagged.

    Parameters
    ----------
    model : nn.Module
        The evaluated model (not modified).
    attributions : mapping
        Name -> ``(model, x) -> attributions``.
    x : Tensor
        The inputs whose attributions are compared.
    y_train : Tensor, optional
        The training labels; the label test compares ``model`` with
        ``retrain(permutation of y_train)`` (one retraining for all attributions).
    retrain : callable, optional
        ``labels -> model`` trained on them; without it (or ``y_train``) the label test
        is skipped.
    measure, threshold, seed
        As in :func:`~shared.interpret.checks.model_randomisation_test` (the seed also
        draws the label permutation).

    Returns
    -------
    dict
        ``attributions``: per name, ``model_randomisation`` and ``label_randomisation``
        results (:mod:`shared.interpret.checks`), ``flagged`` (a test failed) and
        ``failed`` (which); ``flagged``: the names flagged; the settings.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1)).double().eval()
    >>> def grad(model, x):
    ...     x = x.clone().requires_grad_(True)
    ...     return torch.autograd.grad(model(x).sum(), x)[0]
    >>> broken = lambda model, x: x.abs()  # ignores the model
    >>> out = reality_checks(net, {"gradient": grad, "input": broken},
    ...                      torch.randn(8, 6, dtype=torch.float64))
    >>> out["flagged"]
    ['input']
    """
    label_model = _Retrained(model, y_train, retrain) if y_train is not None and retrain else None
    results: dict[str, Any] = {}
    for name, fn in attributions.items():
        entry: dict[str, Any] = {
            "model_randomisation": model_randomisation_test(
                model,
                fn,
                x,
                measure=measure,
                threshold=threshold,
                seed=seed,
            )
        }
        if label_model is not None and y_train is not None:
            entry["label_randomisation"] = label_randomisation_test(
                label_model,
                fn,
                x,
                y_train,
                measure=measure,
                threshold=threshold,
                seed=seed,
            )
        failed = [k for k, v in entry.items() if v.get("passed") is False]
        entry["flagged"], entry["failed"] = bool(failed), failed
        results[name] = entry
    return {
        "measure": measure,
        "threshold": threshold,
        "rule": f"a test passes when the {measure} similarity of |attribution| between the "
        f"model and its randomised version is below {threshold}; an attribution failing a "
        "test is flagged",
        "seed": seed,
        "n_items": int(x.shape[0]),
        "label_randomisation": label_model is not None,
        "attributions": results,
        "flagged": [k for k, v in results.items() if v["flagged"]],
    }
