"""How a run is evaluated, once for both domains: metrics, bootstrap, timing, schema.

- **Metrics** (:data:`METRICS`): ``rmse``, ``r2``, ``auc``, ``f1``, ``accuracy``, each a
  function ``metric(y, p) -> float`` of one target, with its direction.
- **Uncertainty**: :func:`bootstrap_draws` resamples the test items once per evaluation;
  :func:`bootstrap_sd` is the SD of a metric over those draws and :func:`paired_difference`
  the SD of the *difference* of two methods over the same draws (the same items in both),
  which is what decides whether one method beats another.
- **Selection**: :func:`select_best` picks the best candidate on a validation score,
  skipping non-finite scores and saying which.
- **Timing** (:func:`seconds_per_item`): one protocol for every method: one thread for
  torch and for BLAS, one warm-up call, the median of ``repeats`` timed calls, divided by
  the items per call. The threads and items per call are returned with the time.
- **Schema**: ``metrics.csv`` has one row per (method, target, metric) with the columns
  :data:`METRICS_COLUMNS`; ``comparisons.csv`` one row per paired comparison with
  :data:`COMPARISON_COLUMNS`.

Examples
--------
>>> y = np.array([0.0, 1.0, 2.0, 3.0]); p = y + 0.5
>>> rmse(y, p)
0.5
>>> draws = bootstrap_draws(4, 200, seed=0)
>>> bootstrap_sd(rmse, y, p, draws)
0.0
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "COMPARISON_COLUMNS",
    "METRICS",
    "METRICS_COLUMNS",
    "Timing",
    "accuracy",
    "auc",
    "bootstrap_draws",
    "bootstrap_sd",
    "f1",
    "mean_scaled_rmse",
    "n_parameters",
    "paired_difference",
    "r2",
    "read_metrics",
    "rmse",
    "seconds_per_item",
    "select_best",
    "verdict",
    "write_table",
]

logger = logging.getLogger(__name__)

#: Columns of ``metrics.csv`` (both domains).
METRICS_COLUMNS = [
    "method",
    "target",
    "metric",
    "value",
    "sd",
    "n_test",
    "seconds_per_item",
    "mean_scaled_rmse",
    "n_parameters",
]
#: Columns of ``comparisons.csv``: ``diff`` is metric(a) - metric(b) on the same test items.
COMPARISON_COLUMNS = ["a", "b", "target", "metric", "diff", "sd"]


# -- metrics ------------------------------------------------------------------------------------
def rmse(y: np.ndarray, p: np.ndarray) -> float:
    """Root mean squared error.

    Examples
    --------
    >>> rmse(np.zeros(4), np.ones(4))
    1.0
    """
    err = np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean(err**2)))


def mean_scaled_rmse(pred: np.ndarray, y: np.ndarray, scale: np.ndarray) -> float:
    """Mean over the target columns of RMSE / ``scale`` (e.g. the training SD).

    The selection score of multi-target regressions: lower is better.

    Examples
    --------
    >>> mean_scaled_rmse(np.ones((4, 2)), np.zeros((4, 2)), np.array([1.0, 2.0]))
    0.75
    """
    return float(np.mean(np.sqrt(((pred - y) ** 2).mean(0)) / scale))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    """Coefficient of determination (NaN when ``y`` is constant).

    Examples
    --------
    >>> r2(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0]))
    1.0
    """
    y = np.asarray(y, dtype=np.float64)
    ss = float(np.sum((y - y.mean()) ** 2))
    return float("nan") if ss == 0 else 1.0 - float(np.sum((y - p) ** 2)) / ss


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (NaN when ``y`` has one class).

    Examples
    --------
    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    1.0
    """
    from sklearn.metrics import roc_auc_score

    return float("nan") if len(np.unique(y)) < 2 else float(roc_auc_score(y, p))


def f1(y: np.ndarray, p: np.ndarray) -> float:
    """F1 score of the probabilities thresholded at 0.5."""
    from sklearn.metrics import f1_score

    return float(f1_score(y, p >= 0.5, zero_division=0.0))


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Accuracy of the probabilities thresholded at 0.5."""
    return float(np.mean((np.asarray(p) >= 0.5) == (np.asarray(y) == 1)))


@dataclass(frozen=True)
class Metric:
    """A metric function and its direction."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool
    label: str


#: The metrics of the package, by name.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("rmse", rmse, False, "RMSE"),
        Metric("r2", r2, True, "R²"),
        Metric("auc", auc, True, "AUC"),
        Metric("f1", f1, True, "F1"),
        Metric("accuracy", accuracy, True, "accuracy"),
    )
}


# -- bootstrap ----------------------------------------------------------------------------------
def bootstrap_draws(n: int, n_boot: int, seed: int, chunk: int = 100) -> np.ndarray:
    """``(n_boot, n)`` indices of test items, resampled with replacement.

    Drawn in chunks of ``chunk`` rows from one generator; with an even ``chunk`` this is the
    same matrix as drawing it at once.

    Examples
    --------
    >>> bootstrap_draws(5, 3, seed=0).shape
    (3, 5)
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, n), dtype=np.int64)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        out[start : start + rows] = rng.integers(0, n, size=(rows, n))
    return out


def _sd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def bootstrap_sd(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y: np.ndarray,
    p: np.ndarray,
    draws: np.ndarray,
) -> float:
    """SD of ``metric`` over the bootstrap ``draws`` (non-finite draws are left out).

    Examples
    --------
    >>> y = np.arange(50.0); p = y + np.random.default_rng(0).normal(size=50)
    >>> 0 < bootstrap_sd(rmse, y, p, bootstrap_draws(50, 100, seed=1)) < 1
    True
    """
    if len(draws) < 2:
        return float("nan")
    y, p = np.asarray(y), np.asarray(p)
    return _sd(np.array([metric(y[i], p[i]) for i in draws]))


def paired_difference(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    draws: np.ndarray,
) -> tuple[float, float]:
    """``metric(a) - metric(b)`` on the test items and its SD over the same resamples.

    Both methods are scored on the same resampled items in every draw, so what the two
    share (hard items, easy items) cancels: this SD is what a difference must exceed.

    Examples
    --------
    >>> y = np.arange(40.0); a = y + 0.1; b = y + 1.0
    >>> diff, sd = paired_difference(rmse, y, a, b, bootstrap_draws(40, 50, seed=0))
    >>> round(diff, 3), sd < 1e-12
    (-0.9, True)
    """
    y, p_a, p_b = np.asarray(y), np.asarray(p_a), np.asarray(p_b)
    diff = metric(y, p_a) - metric(y, p_b)
    if len(draws) < 2:
        return diff, float("nan")
    values = np.array([metric(y[i], p_a[i]) - metric(y[i], p_b[i]) for i in draws])
    return diff, _sd(values)


def verdict(diff: float, sd: float, greater_is_better: bool, k: float = 2.0) -> str:
    """``"better"``, ``"worse"`` or ``"tie"``: a difference counts beyond ``k`` paired SD.

    Examples
    --------
    >>> verdict(0.0006, 0.0029, True), verdict(0.02, 0.005, True), verdict(0.02, 0.005, False)
    ('tie', 'better', 'worse')
    """
    if not (math.isfinite(diff) and math.isfinite(sd)) or abs(diff) <= k * sd:
        return "tie"
    return "better" if (diff > 0) == greater_is_better else "worse"


# -- selection ----------------------------------------------------------------------------------
def select_best(
    candidates: Sequence[Mapping[str, Any]], key: str, greater_is_better: bool
) -> tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]:
    """The candidate with the best finite ``key`` and the candidates skipped as non-finite.

    Ties keep the first candidate. ``None`` when no candidate has a finite score.

    Examples
    --------
    >>> best, skipped = select_best([{"s": 0.2}, {"s": float("nan")}, {"s": 0.5}], "s", True)
    >>> best, len(skipped)
    ({'s': 0.5}, 1)
    """
    best: Mapping[str, Any] | None = None
    skipped = []
    for cand in candidates:
        score = cand.get(key)
        if score is None or not math.isfinite(float(score)):
            skipped.append(cand)
            continue
        if best is None:
            best = cand
            continue
        better = score > best[key] if greater_is_better else score < best[key]
        if better:
            best = cand
    return best, skipped


# -- timing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """A prediction time under the one protocol, with the conditions it was taken in."""

    seconds_per_item: float
    items_per_call: int
    repeats: int
    threads: int


def seconds_per_item(
    fn: Callable[[], object], items_per_call: int, repeats: int = 5, threads: int = 1
) -> Timing:
    """Time ``fn`` (which predicts ``items_per_call`` items) under the package's protocol.

    ``threads`` threads for torch and for the BLAS / OpenMP pools (one by default, so no
    method gains from threads another does not use), one warm-up call (first-call
    allocations and lazy initialisation are not prediction), then the median of
    ``repeats`` timed calls, divided by ``items_per_call``.

    Examples
    --------
    >>> t = seconds_per_item(lambda: sum(range(1000)), items_per_call=10, repeats=3)
    >>> t.seconds_per_item > 0, t.threads, t.items_per_call
    (True, 1, 10)
    """
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            fn()
            times = []
            for _ in range(max(1, repeats)):
                tic = time.perf_counter()
                fn()
                times.append(time.perf_counter() - tic)
    finally:
        torch.set_num_threads(before)
    return Timing(
        float(np.median(times)) / max(items_per_call, 1), items_per_call, repeats, threads
    )


def n_parameters(model: Any) -> int:
    """Number of parameters of a torch module (or anything with ``n_parameters()``).

    Examples
    --------
    >>> import torch
    >>> n_parameters(torch.nn.Linear(20, 1))
    21
    """
    if hasattr(model, "n_parameters"):
        count = model.n_parameters
        return int(count() if callable(count) else count)
    return int(sum(p.numel() for p in model.parameters()))


# -- tables -------------------------------------------------------------------------------------
def write_table(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: list[str]):
    """Write rows with exactly ``columns`` as CSV, atomically (``%.6g`` floats).

    Returns the table as a DataFrame.
    """
    from shared.runs import atomic_write

    frame = pd.DataFrame(list(rows), columns=columns)
    atomic_write(path, lambda p: frame.to_csv(p, index=False, float_format="%.6g"))
    return frame


def read_metrics(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read ``metrics.csv`` (a file or the folder holding it) and check its columns.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> _ = write_table(p, [{"method": "awd", "target": "y", "metric": "r2", "value": 0.3}],
    ...                 METRICS_COLUMNS)
    >>> read_metrics(p)["value"].tolist()
    [0.3]
    """
    columns = columns or METRICS_COLUMNS
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics; run the evaluate step first")
    frame = pd.read_csv(path)
    if list(frame.columns) != columns:
        raise ValueError(f"{path}: columns {list(frame.columns)}, expected {columns}")
    return frame


def timing_dict(timing: Timing) -> dict[str, Any]:
    """The timing as plain JSON values (for the evaluation's records)."""
    return asdict(timing)
