"""THE lambda x gamma grid runner: every grid of the package runs here.

Both domains' ``distill`` steps and ``awd sweep`` call :func:`run_grid`. The grid is cut
into *chains*, one per lambda (``l1_coeffs``), each running along increasing gamma
(``l1_attr``). With warm starts, every point of a chain starts from the previous point's
saved wavelet (recorded as ``warm_start_from`` in its metadata); the first point starts
from the task's initial wavelet. Chains are independent, so they run in parallel: in
process (``workers=1``), on a local process pool, or as Ray Tune trials on a Ray cluster.

A *task* supplies the domain (:class:`GridTask`): ``run_point(weights, warm_start, out)``
distils one point, saves ``out/wavelet.safetensors|json`` and returns its scores
(``val_score`` among them). In process the task is an object; a process pool or Ray
rebuilds it in every worker from a :class:`TaskSpec` (``"module:function"`` and a plain
dict), so nothing is pickled.

Layout of a grid folder::

    grid.json                 the one schema (see :func:`write_grid`)
    events.jsonl              start / finish of every point, with pid and time
    <point>/wavelet.*         the learned wavelet (safetensors + JSON)
    <point>/point.json        written last: the point is finished

A point is named by its weights, written exactly (:func:`point_name`): two different
values never share a folder. Resumable: finished points are skipped and each chain
continues from its last finished point.

``awd sweep`` (:func:`run_sweep`) adds a task's ``prepare``, selection on the validation
score and the test score of the selected point, reported once.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from shared.config import setting
from shared.evaluation import select_best
from shared.losses import PenaltyWeights
from shared.runs import atomic_write, write_csv, write_json

__all__ = [
    "GRID_FORMAT",
    "Grid",
    "GridTask",
    "SweepConfig",
    "SweepTask",
    "TaskSpec",
    "check_ray_address",
    "final_validation_loss",
    "point_name",
    "read_grid",
    "run_distill_step",
    "run_grid",
    "run_sweep",
]

logger = logging.getLogger(__name__)

GRID_FORMAT = "awd-grid"
GRID_FORMAT_VERSION = 1
#: The saved wavelet of every grid point: ``<point>/wavelet.safetensors`` + ``.json``.
WAVELET = "wavelet"


@runtime_checkable
class GridTask(Protocol):
    """What a grid needs from a domain: distil one point."""

    greater_is_better: bool

    def run_point(
        self, weights: PenaltyWeights, warm_start: Path | None, out: Path
    ) -> dict[str, float]: ...


class SweepTask(GridTask, Protocol):
    """What ``awd sweep`` needs besides the grid: preparation and a test score."""

    def prepare(self, root: Path) -> None: ...

    def test_score(self, out: Path) -> dict[str, float]: ...


@dataclass(frozen=True)
class TaskSpec:
    """How a worker process rebuilds a task: ``factory(base)``, ``factory`` as
    ``"module:function"``. Used only across a process or Ray boundary."""

    factory: str
    base: dict = field(default_factory=dict)

    def build(self) -> Any:
        """Import the factory and build the task."""
        module_name, _, func = self.factory.partition(":")
        try:
            make = getattr(importlib.import_module(module_name), func)
        except (ImportError, AttributeError, ValueError) as err:
            raise ValueError(f"cannot load the task {self.factory!r}: {err}") from None
        return make(dict(self.base))


def _exact(value: float) -> str:
    # repr is the shortest text that reads back as the same float: exact, and short.
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def point_name(weights: PenaltyWeights) -> str:
    """Folder name of a grid point, λ and γ written exactly: ``lam0.0001_gam0.01``.

    Examples
    --------
    >>> point_name(PenaltyWeights(l1_coeffs=1e-4, l1_attr=0.5))
    'lam0.0001_gam0.5'
    >>> point_name(PenaltyWeights(l1_coeffs=0.1, l1_attr=0.00368403))
    'lam0.1_gam0.00368403'
    >>> point_name(PenaltyWeights(l1_attr=0.1 + 1e-12)) != point_name(PenaltyWeights(l1_attr=0.1))
    True
    """
    return f"lam{_exact(weights.l1_coeffs)}_gam{_exact(weights.l1_attr)}"


@dataclass(frozen=True)
class Grid:
    """A lambda x gamma grid.

    Parameters
    ----------
    l1_coeffs, l1_attr : tuple of float
        The lambda and gamma values (distinct, finite, >= 0).
    warm_start : bool
        Start each point of a chain from the previous point's wavelet.

    Examples
    --------
    >>> [[point_name(w) for w in c] for c in Grid((0.1,), (0.5, 0.0)).chains()]
    [['lam0.1_gam0', 'lam0.1_gam0.5']]
    """

    l1_coeffs: tuple[float, ...]
    l1_attr: tuple[float, ...]
    warm_start: bool = True

    def __post_init__(self) -> None:
        if not self.l1_coeffs or not self.l1_attr:
            raise ValueError("the grid is empty: l1_coeffs and l1_attr need at least one value")
        for name in ("l1_coeffs", "l1_attr"):
            values = [float(v) for v in getattr(self, name)]
            if any(not v >= 0 or v == float("inf") for v in values):
                raise ValueError(f"{name} values must be finite and >= 0, got {values}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has repeated values: {values}")

    def chains(self) -> list[list[PenaltyWeights]]:
        """One chain per lambda (ascending), gamma increasing along it."""
        return [
            [PenaltyWeights(l1_coeffs=float(lam), l1_attr=float(g)) for g in sorted(self.l1_attr)]
            for lam in sorted(self.l1_coeffs)
        ]

    def points(self) -> list[PenaltyWeights]:
        """Every point, chain by chain."""
        return [w for chain in self.chains() for w in chain]


# -- running ------------------------------------------------------------------------------------
def _log_event(root: Path, **event: Any) -> None:
    # One short line per write; appends of a few bytes do not interleave in practice.
    with open(root / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"time": time.time(), "pid": os.getpid(), **event}) + "\n")


def run_chain(
    task: GridTask, root: Path, chain: Sequence[PenaltyWeights], warm_start: bool = True
) -> list[dict]:
    """Run one chain in order, in this process; finished points are skipped.

    Returns one record per point (weights, warm start, seconds, scores).
    """
    records = []
    previous: Path | None = None
    for weights in chain:
        out = root / point_name(weights)
        done = out / "point.json"
        start = previous if warm_start else None
        if done.exists():
            records.append(json.loads(done.read_text()))
            previous = out / WAVELET
            continue
        out.mkdir(parents=True, exist_ok=True)
        _log_event(root, event="start", point=out.name)
        tic = time.perf_counter()
        scores = task.run_point(weights, start, out)
        if "val_score" not in scores:
            raise ValueError(f"the task's run_point returned no 'val_score' for {out.name}")
        record = {
            "point": out.name,
            "l1_coeffs": weights.l1_coeffs,
            "l1_attr": weights.l1_attr,
            "warm_start_from": start.parent.name if start is not None else None,
            "seconds": time.perf_counter() - tic,
            **{k: float(v) for k, v in scores.items()},
        }
        write_json(done, record)
        _log_event(root, event="finish", point=out.name)
        records.append(record)
        previous = out / WAVELET
    return records


def _run_chain_in_worker(
    spec: TaskSpec, root: str, chain: list[dict], warm_start: bool, threads: int | None
) -> list[dict]:
    if threads is not None:
        # Parallel chains share the cores: one thread pool per chain, not per core.
        import torch

        torch.set_num_threads(max(1, threads))
    weights = [PenaltyWeights(**w) for w in chain]
    return run_chain(spec.build(), Path(root), weights, warm_start)


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """Fail within seconds, with a clear message, when ``HOST:PORT`` does not answer."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address must be HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address} within {timeout:.0f} s ({err})"
        ) from None


@dataclass(frozen=True)
class Engine:
    """Where chains run: ``local`` (``workers`` processes; 1 = in process) or ``ray``."""

    engine: Literal["local", "ray"] = "local"
    workers: int = 1
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2


def _run_ray(engine: Engine, spec: TaskSpec, root: Path, chains: list[list[dict]], warm: bool):
    import ray
    from ray import tune
    from ray.tune import FailureConfig, RunConfig

    if engine.address:
        check_ray_address(engine.address)
        ray.init(address=engine.address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(
            num_cpus=max(1, int(engine.workers)),
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
        )
    threads = max(1, int(engine.cpus_per_trial))

    def trainable(params: dict) -> dict:
        chain = chains[params["chain"]]
        return {"points": len(_run_chain_in_worker(spec, str(root), chain, warm, threads))}

    resources = {"cpu": engine.cpus_per_trial, "gpu": engine.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"chain": tune.grid_search(list(range(len(chains))))},
        run_config=RunConfig(
            name="ray",
            storage_path=str(root),
            failure_config=FailureConfig(max_failures=engine.max_failures),
        ),
    )
    results = tuner.fit()
    errors = [results[i].error for i in range(len(results)) if results[i].error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} chain(s) failed on Ray; first error: {errors[0]}")


def run_grid(
    task: GridTask | None,
    grid: Grid,
    root: str | os.PathLike,
    *,
    spec: TaskSpec | None = None,
    engine: Engine | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Run (or resume) every point of ``grid`` under ``root``; write ``grid.json``.

    Parameters
    ----------
    task : GridTask, optional
        The domain's task, used in this process (``workers=1``).
    grid : Grid
        Lambda and gamma values, warm starts.
    root : path
        The grid folder (made absolute before anything starts).
    spec : TaskSpec, optional
        How worker processes rebuild the task; needed for ``workers > 1`` and for Ray.
    engine : Engine, optional
        Local (default, in process) or Ray.
    meta : mapping, optional
        More keys for ``grid.json`` (what ``val_score`` means, the target, ...).

    Returns
    -------
    list of dict
        One record per point, chain by chain (also the ``points`` of ``grid.json``).

    Examples
    --------
    >>> import tempfile
    >>> class Task:
    ...     greater_is_better = False
    ...     def run_point(self, weights, warm_start, out):
    ...         return {"val_score": weights.l1_coeffs + weights.l1_attr}
    >>> records = run_grid(Task(), Grid((0.1,), (0.0, 1.0)), tempfile.mkdtemp())
    >>> [(r["point"], r["warm_start_from"]) for r in records]
    [('lam0.1_gam0', None), ('lam0.1_gam1', 'lam0.1_gam0')]
    """
    engine = engine or Engine()
    if engine.workers < 1:
        raise ValueError(f"workers must be >= 1, got {engine.workers}")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    chains = grid.chains()
    if engine.engine == "local" and engine.workers == 1:
        if task is None:
            if spec is None:
                raise ValueError("run_grid needs a task or a task spec")
            task = spec.build()
        for chain in chains:
            run_chain(task, root, chain, grid.warm_start)
    else:
        if spec is None:
            raise ValueError("parallel workers and Ray rebuild the task: pass spec=TaskSpec(...)")
        plain = [[w.to_dict() for w in chain] for chain in chains]
        if engine.engine == "ray":
            _run_ray(engine, spec, root, plain, grid.warm_start)
        else:
            threads = max(1, (os.cpu_count() or 1) // engine.workers)
            with ProcessPoolExecutor(engine.workers, mp_context=get_context("spawn")) as pool:
                futures = [
                    pool.submit(_run_chain_in_worker, spec, str(root), c, grid.warm_start, threads)
                    for c in plain
                ]
                for future in futures:
                    future.result()
    records = []
    for weights in grid.points():
        done = root / point_name(weights) / "point.json"
        if not done.exists():
            raise RuntimeError(f"{done.parent}: the point did not finish")
        records.append(json.loads(done.read_text()))
    greater = bool(getattr(task, "greater_is_better", (meta or {}).get("greater_is_better", False)))
    write_grid(root, grid, records, greater, meta)
    return records


def write_grid(
    root: Path,
    grid: Grid,
    records: list[dict],
    greater_is_better: bool,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``root/grid.json``, rewriting it only when its content changes.

    The schema: ``format``, ``format_version``, ``l1_coeffs``, ``l1_attr``,
    ``warm_start``, ``greater_is_better``, any ``meta`` keys, and ``points``: one record
    per point (``point``, ``l1_coeffs``, ``l1_attr``, ``warm_start_from``, ``seconds``,
    ``val_score`` and the task's other scores). ``seconds`` is kept out of the comparison,
    so a resumed grid with the same points does not rewrite the file.
    """
    doc = {
        "format": GRID_FORMAT,
        "format_version": GRID_FORMAT_VERSION,
        "l1_coeffs": sorted(float(v) for v in grid.l1_coeffs),
        "l1_attr": sorted(float(v) for v in grid.l1_attr),
        "warm_start": grid.warm_start,
        "greater_is_better": greater_is_better,
        **dict(meta or {}),
        "points": records,
    }
    path = root / "grid.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
        if old is not None and _without_seconds(old) == _without_seconds(
            json.loads(json.dumps(doc, default=str))
        ):
            return path
    return write_json(path, doc)


def _without_seconds(doc: dict) -> dict:
    out = dict(doc)
    out["points"] = [{k: v for k, v in p.items() if k != "seconds"} for p in doc.get("points", [])]
    return out


def read_grid(root: str | os.PathLike) -> dict[str, Any]:
    """The ``grid.json`` of a grid folder, checked; each point gets its ``wavelet`` path.

    Raises
    ------
    FileNotFoundError
        No grid has been distilled there.
    ValueError
        The file is not a grid of this format.
    """
    path = Path(root) / "grid.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no distilled grid; run the distill step first")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if doc.get("format") != GRID_FORMAT:
        raise ValueError(f"{path}: not a grid description (format={doc.get('format')!r})")
    if doc.get("format_version") != GRID_FORMAT_VERSION:
        raise ValueError(f"{path}: grid format version {doc.get('format_version')} not supported")
    for point in doc["points"]:
        point["wavelet"] = str(Path(root) / point["point"] / WAVELET)
    return doc


# -- the distill step of a run ---------------------------------------------------------------------
def final_validation_loss(history: Sequence[Mapping[str, float]]) -> float:
    """The score of a distilled point: its last validation loss (training loss without
    validation data; NaN when nothing ran). Lower is better.

    Examples
    --------
    >>> final_validation_loss([{"train_total": 2.0, "val_total": 1.5}])
    1.5
    """
    last = history[-1] if history else {}
    loss = last.get("val_total", last.get("train_total"))
    return float("nan") if loss is None else float(loss)


def run_distill_step(
    run: Any,
    settings: Any,
    make_task: Callable[[], GridTask],
    task_factory: str,
    teacher: Path,
    *,
    engine: Engine | None = None,
    overrides: Sequence[str] = (),
    meta: Mapping[str, Any] | None = None,
) -> list[dict]:
    """The ``distill`` step of a domain's run directory, through :func:`run_grid`.

    Parameters
    ----------
    run : shared.runs.RunDir
        The run; the grid goes to ``RUN/distill``, the step's record to its ``step.json``.
    settings : dataclass
        The domain's distill settings (``lambdas``, ``gammas``, ``warm_start``, ...).
    make_task : callable
        Builds the in-process task (with the run's data and teacher).
    task_factory : str
        ``"module:function"`` rebuilding the task in a worker from
        ``{"run": ..., "overrides": [...]}`` (parallel workers and Ray).
    teacher : path
        The teacher's weights file (its fingerprint is recorded).
    engine : Engine, optional
        Local (default, in process) or Ray.
    overrides : sequence of str
        The ``--set`` overrides the worker processes apply too.
    meta : mapping, optional
        More keys for ``grid.json``.
    """
    from dataclasses import asdict

    from shared.runs import fingerprint

    if not Path(teacher).is_file():
        raise ValueError(f"{run.root}: no trained teacher; run the train-teacher step first")
    engine = engine or Engine()
    in_process = engine.engine == "local" and engine.workers == 1
    spec = TaskSpec(task_factory, {"run": str(run.root), "overrides": list(overrides)})
    out = run.step_dir("distill")
    records = run_grid(
        make_task() if in_process else None,
        Grid(tuple(settings.lambdas), tuple(settings.gammas), settings.warm_start),
        out,
        spec=spec,
        engine=engine,
        meta={"score": "final validation loss of distillation", **dict(meta or {})},
    )
    run.write_step(
        "distill",
        {"distill": asdict(settings)},
        {"data": run.data_fingerprint, "teacher": fingerprint(teacher)},
        outputs={"grid": fingerprint(out / "grid.json")},
    )
    return records


# -- awd sweep ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepConfig:
    """A lambda x gamma sweep of ``awd sweep``: the grid, the task settings and the engine.

    Parameters
    ----------
    domain : str
        Which task the grid belongs to (checked against the command's domain).
    l1_coeffs, l1_attr : tuple of float
        The lambda and gamma values (the paper's grids are shipped as config files).
    warm_start : bool
        Warm starts along each chain.
    base : dict
        Domain settings passed to the task (data, teacher, distillation settings).
    engine : {"local", "ray"}
        Where chains run.
    workers : int
        Parallel chains of the local engine (1: in process).
    address : str, optional
        ``HOST:PORT`` of a running Ray cluster; default a local Ray instance.
    cpus_per_trial, gpus_per_trial : float
        Ray resources of one chain.
    max_failures : int
        Retries of a chain whose Ray worker was lost.
    """

    domain: str = "simulation"
    l1_coeffs: tuple[float, ...] = setting((1e-4,), ge=0, nonempty=True)
    l1_attr: tuple[float, ...] = setting((0.0, 0.1, 1.0), ge=0, nonempty=True)
    warm_start: bool = True
    base: dict = field(default_factory=dict)
    engine: Literal["local", "ray"] = "local"
    workers: int = setting(1, ge=1)
    address: str | None = None
    cpus_per_trial: float = setting(1.0, gt=0)
    gpus_per_trial: float = setting(0.0, ge=0)
    max_failures: int = setting(2, ge=0)

    def __post_init__(self) -> None:
        self.grid()  # checks the values
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def grid(self) -> Grid:
        """The grid of the sweep."""
        return Grid(tuple(self.l1_coeffs), tuple(self.l1_attr), self.warm_start)

    def engine_settings(self) -> Engine:
        """Where the chains run."""
        return Engine(
            self.engine,
            self.workers,
            self.address,
            self.cpus_per_trial,
            self.gpus_per_trial,
            self.max_failures,
        )


def run_sweep(
    config: SweepConfig,
    spec: TaskSpec | str,
    root: str | Path,
    *,
    expected_domain: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) a sweep; select on validation; score the selected point on test.

    Writes ``grid.json`` (via :func:`run_grid`), ``summary.csv``, ``heatmap.png`` and
    ``selected.json`` (with ``greater_is_better``) into ``root``.

    Parameters
    ----------
    config : SweepConfig
        Grid, task settings (``base``) and engine.
    spec : TaskSpec or str
        The domain's task factory (``"module:function"``); built here with ``config.base``.
    root : path
        The sweep folder.
    expected_domain : str, optional
        The domain the command was run for; a config of another domain is refused.

    Returns
    -------
    dict
        ``selected`` (the chosen point's record, with its test scores), ``points`` and
        ``skipped`` (points with a non-finite validation score).
    """
    if expected_domain is not None and config.domain != expected_domain:
        raise ValueError(
            f"the sweep config is for domain {config.domain!r}, not {expected_domain!r}"
        )
    if isinstance(spec, str):
        spec = TaskSpec(spec, dict(config.base))
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    task = spec.build()
    task.prepare(root)
    meta = {"domain": config.domain, "score": "validation score of the task's student"}
    records = run_grid(
        task, config.grid(), root, spec=spec, engine=config.engine_settings(), meta=meta
    )
    best, skipped = select_best(records, "val_score", task.greater_is_better)
    for r in skipped:
        logger.warning("point %s has a non-finite validation score; not selectable", r["point"])
    if best is None:
        raise ValueError(f"{root}: no point has a finite validation score")
    selected = dict(best)
    selected.update({f"test_{k}": v for k, v in task.test_score(root / best["point"]).items()})
    selected["greater_is_better"] = bool(task.greater_is_better)
    write_csv(root / "summary.csv", records)
    write_json(root / "selected.json", selected)
    _heatmap(root / "heatmap.png", records, config.grid(), task.greater_is_better, best)
    logger.info("selected %s (validation score %.4g)", best["point"], best["val_score"])
    return {"selected": selected, "points": records, "skipped": [r["point"] for r in skipped]}


def _heatmap(path: Path, records: Sequence[dict], grid: Grid, higher: bool, best) -> None:
    from shared.plots import plot_grid_heatmap, plt

    n_lam, n_gam = len(grid.l1_coeffs), len(grid.l1_attr)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * n_gam, 1.0 + 0.6 * n_lam))
    plot_grid_heatmap(
        ax,
        [r["l1_coeffs"] for r in records],
        [r["l1_attr"] for r in records],
        [r["val_score"] for r in records],
        higher_is_better=higher,
        best=(best["l1_coeffs"], best["l1_attr"]),
    )
    ax.set_title("validation score; ★ selected")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
