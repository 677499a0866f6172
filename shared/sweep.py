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
import math
import os
import shutil
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
from shared.runs import (
    FolderLock,
    StaleResultError,
    atomic_write,
    clean_temp_files,
    differences,
    fingerprint,
    write_csv,
    write_json,
)

__all__ = [
    "GRID_FORMAT",
    "Grid",
    "GridTask",
    "SweepConfig",
    "SweepTask",
    "TaskSpec",
    "check_ray_address",
    "distill_provenance",
    "final_validation_loss",
    "grid_progress_bar",
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


def _point_provenance(task: GridTask, start: Path | None) -> dict[str, Any]:
    """What a point is made from: the task's settings and inputs, and its warm start."""
    saved = start.with_suffix(".safetensors") if start is not None else None
    return {
        "task": getattr(task, "provenance", None),
        "warm_start": fingerprint(saved) if saved is not None and saved.exists() else None,
    }


def _finite_record(scores: Mapping[str, Any]) -> dict[str, Any]:
    # A non-finite score is kept as null with its reason, never as a string.
    record: dict[str, Any] = {}
    for key, value in scores.items():
        number = float(value)
        if math.isfinite(number):
            record[key] = number
        else:
            record[key] = None
            record[f"{key}_note"] = f"not finite ({number})"
    return record


def _reuse_or_clear(done: Path, expected: dict[str, Any], replace_stale: bool) -> dict | None:
    """The finished record of a point if it was made as asked; else clear it or refuse."""
    try:
        record = json.loads(done.read_text())
    except (OSError, json.JSONDecodeError):
        record = None
    if record is not None and record.get("provenance") == expected:
        return record
    if not replace_stale:
        changed = differences(dict((record or {}).get("provenance") or {}), expected)
        raise StaleResultError(
            f"{done.parent}: this point was made with other settings or inputs "
            f"({'; '.join(changed) or 'unreadable record'}); rerun with --force to redo it, or "
            "use another folder"
        )
    shutil.rmtree(done.parent)
    return None


def run_chain(
    task: GridTask,
    root: Path,
    chain: Sequence[PenaltyWeights],
    warm_start: bool = True,
    replace_stale: bool = False,
) -> list[dict]:
    """Run one chain in order, in this process; finished points are reused.

    A finished point (``point.json``) is reused only if it was made from the same task
    settings and inputs (``task.provenance``) and the same warm start; otherwise it is
    redone when ``replace_stale``, and refused (:class:`shared.runs.StaleResultError`) if
    not. Each point is written under its folder's lock, so two processes never write one
    point; temporary files of killed writes are removed first.

    Returns one record per point (weights, warm start, seconds, scores).
    """
    records = []
    previous: Path | None = None
    for weights in chain:
        out = root / point_name(weights)
        done = out / "point.json"
        start = previous if warm_start else None
        expected = _point_provenance(task, start)
        with FolderLock(out, "grid point"):
            clean_temp_files(out, recursive=True)
            record = _reuse_or_clear(done, expected, replace_stale) if done.exists() else None
            if record is None:
                out.mkdir(parents=True, exist_ok=True)
                _log_event(root, event="start", point=out.name)
                tic = time.perf_counter()
                try:
                    scores = task.run_point(weights, start, out)
                except StaleResultError:
                    # An unfinished point of other settings (a checkpoint of a killed run):
                    # redone from scratch when asked to, else the error names the change.
                    if not replace_stale:
                        raise
                    shutil.rmtree(out)
                    out.mkdir(parents=True)
                    scores = task.run_point(weights, start, out)
                if "val_score" not in scores:
                    raise ValueError(f"the task's run_point returned no 'val_score' for {out.name}")
                record = {
                    "point": out.name,
                    "l1_coeffs": weights.l1_coeffs,
                    "l1_attr": weights.l1_attr,
                    "warm_start_from": start.parent.name if start is not None else None,
                    "seconds": time.perf_counter() - tic,
                    **_finite_record(scores),
                    "provenance": expected,
                }
                write_json(done, record)
                _log_event(root, event="finish", point=out.name)
        records.append(record)
        previous = out / WAVELET
    return records


def _die_with_parent(parent: int) -> None:
    """Pool-worker initialiser: a worker never outlives the process that started it.

    Linux delivers SIGKILL to the worker when its parent dies (``PR_SET_PDEATHSIG``); a
    watchdog thread covers the other systems and the race before the call.
    """
    import ctypes
    import signal
    import threading

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="awd-parent-watch").start()


def _run_chain_in_worker(
    spec: TaskSpec,
    root: str,
    chain: list[dict],
    warm_start: bool,
    threads: int | None,
    replace_stale: bool = False,
) -> list[dict]:
    if threads is not None:
        # Parallel chains share the cores: one thread pool per chain, not per core.
        import torch

        torch.set_num_threads(max(1, threads))
    weights = [PenaltyWeights(**w) for w in chain]
    return run_chain(spec.build(), Path(root), weights, warm_start, replace_stale)


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


def _run_ray(
    engine: Engine,
    spec: TaskSpec,
    root: Path,
    chains: list[list[dict]],
    warm: bool,
    stale: bool = False,
) -> None:
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
    # Tune runs a trial in a working folder of its own: relative paths in the task's
    # settings must mean what they meant to the driver, and nothing is written there.
    driver_cwd = os.getcwd()

    def trainable(params: dict) -> dict:
        os.chdir(driver_cwd)
        chain = chains[params["chain"]]
        return {"points": len(_run_chain_in_worker(spec, str(root), chain, warm, threads, stale))}

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


#: ``progress(done, total, point)``: points finished out of the grid, the last one's name.
Progress = Callable[[int, int, "str | None"], None]


def _points_done(root: Path, names: Sequence[str]) -> int:
    return sum((root / name / "point.json").exists() for name in names)


class _Reporting:
    """A grid task that tells ``progress`` after each point it ran (in-process engine)."""

    def __init__(self, task: Any, progress: Progress, root: Path, names: Sequence[str]):
        self._task, self._progress, self._root, self._names = task, progress, root, names

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def run_point(self, weights: PenaltyWeights, warm_start: Path | None, out: Path) -> dict:
        scores = self._task.run_point(weights, warm_start, out)
        # This point's point.json is written after it returns: count it already.
        done = _points_done(self._root, [n for n in self._names if n != out.name]) + 1
        self._progress(done, len(self._names), out.name)
        return scores


def _wait(futures: list, progress: Progress | None, root: Path, names: Sequence[str]) -> None:
    """Wait for the chains' futures (raising the first error), reporting finished points."""
    from concurrent.futures import FIRST_EXCEPTION, wait

    pending = set(futures)
    reported = -1
    while pending:
        _, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
        if progress is not None:
            done = _points_done(root, names)
            if done != reported:
                progress(done, len(names), None)
                reported = done
        if any(f.done() and f.exception() is not None for f in futures):
            break
    for future in futures:
        future.result()


def grid_progress_bar(desc: str = "grid") -> Progress:
    """A :data:`Progress` callback drawing one tqdm bar: ``point k/N``, ETA, last point.

    Shown only on a terminal (tqdm's ``disable=None``); points finished before the call
    do not enter the ETA.

    Examples
    --------
    >>> bar = grid_progress_bar("distill")
    >>> bar(0, 2, None); bar(1, 2, "lam0.1_gam0"); bar(2, 2, None)
    """
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int, point: str | None) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(
                total=total, initial=done, desc=desc, unit="point", disable=None, dynamic_ncols=True
            )
        if bar.disable:
            return
        if point:
            bar.set_postfix_str(point, refresh=False)
        if done > bar.n:
            bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def run_grid(
    task: GridTask | None,
    grid: Grid,
    root: str | os.PathLike,
    *,
    spec: TaskSpec | None = None,
    engine: Engine | None = None,
    meta: Mapping[str, Any] | None = None,
    replace_stale: bool = False,
    progress: Progress | None = None,
) -> list[dict]:
    """Run (or resume) every point of ``grid`` under ``root``; write ``grid.json``.

    Finished points made from the same settings and inputs are reused; points made from
    others are redone with ``replace_stale`` and refused without it (see
    :func:`run_chain`). Parallel workers die with the driver.

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
    replace_stale : bool
        Redo points made from other settings or inputs instead of refusing them.
    progress : callable, optional
        ``progress(done, total, point)``, called at the start, after each finished point
        (in process and with local workers) and at the end; e.g. :func:`grid_progress_bar`.

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
    names = [point_name(w) for w in grid.points()]
    if progress is not None:
        progress(_points_done(root, names), len(names), None)
    if engine.engine == "local" and engine.workers == 1:
        if task is None:
            if spec is None:
                raise ValueError("run_grid needs a task or a task spec")
            task = spec.build()
        runner = task if progress is None else _Reporting(task, progress, root, names)
        for chain in chains:
            run_chain(runner, root, chain, grid.warm_start, replace_stale)
    else:
        if spec is None:
            raise ValueError("parallel workers and Ray rebuild the task: pass spec=TaskSpec(...)")
        plain = [[w.to_dict() for w in chain] for chain in chains]
        if engine.engine == "ray":
            _run_ray(engine, spec, root, plain, grid.warm_start, replace_stale)
        else:
            threads = max(1, (os.cpu_count() or 1) // engine.workers)
            with ProcessPoolExecutor(
                engine.workers,
                mp_context=get_context("spawn"),
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                futures = [
                    pool.submit(
                        _run_chain_in_worker,
                        spec,
                        str(root),
                        c,
                        grid.warm_start,
                        threads,
                        replace_stale,
                    )
                    for c in plain
                ]
                _wait(futures, progress, root, names)
    records = []
    for weights in grid.points():
        done = root / point_name(weights) / "point.json"
        if not done.exists():
            raise RuntimeError(f"{done.parent}: the point did not finish")
        records.append(json.loads(done.read_text()))
    if progress is not None:
        progress(len(names), len(names), None)
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


def distill_provenance(run: Any, settings: Any, teacher: Path) -> dict[str, Any]:
    """What every point of a run's distill grid is made from (compared before reuse).

    The distill settings but the grid's values (a grid with new values only adds
    points), the teacher's and the data's fingerprints.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from shared.distill import DistillConfig
    >>> run = SimpleNamespace(data_fingerprint="abc")
    >>> sorted(distill_provenance(run, DistillConfig(), Path("missing")))
    ['data', 'distill', 'teacher']
    """
    from dataclasses import asdict

    grid_values = ("lambdas", "gammas")
    return {
        "distill": {k: v for k, v in asdict(settings).items() if k not in grid_values},
        "teacher": fingerprint(teacher) if Path(teacher).exists() else None,
        "data": run.data_fingerprint,
    }


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
    force: bool = False,
    config: Any = None,
) -> list[dict]:
    """The ``distill`` step of a domain's run directory, through :func:`run_grid`.

    The step's provenance is checked (:meth:`shared.runs.RunDir.step`): the settings of
    its points (everything but the grid's values) and its inputs (data, teacher). Changed
    settings with an evaluation made from the old points are refused unless ``force``,
    which redoes the points and removes the later results; a grid with new values only
    adds points.

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
    force : bool
        Redo points made from other settings or inputs (and remove later results).
    config : dataclass, optional
        The run's config, written to ``config.yaml`` once the step has run.
    """
    from dataclasses import asdict

    if not Path(teacher).is_file():
        raise ValueError(f"{run.root}: no trained teacher; run the train-teacher step first")
    engine = engine or Engine()
    in_process = engine.engine == "local" and engine.workers == 1
    spec = TaskSpec(task_factory, {"run": str(run.root), "overrides": list(overrides)})
    inputs = {"data": run.check_data(), "teacher": fingerprint(teacher)}
    settings_dict = asdict(settings)
    point_settings = distill_provenance(run, settings, teacher)["distill"]
    with run.step(
        "distill",
        {"distill": settings_dict},
        inputs,
        force=force,
        config=config,
        compare={"distill": point_settings},
    ) as step:
        out = run.step_dir("distill")
        records = run_grid(
            make_task() if in_process else None,
            Grid(tuple(settings.lambdas), tuple(settings.gammas), settings.warm_start),
            out,
            spec=spec,
            engine=engine,
            meta={"score": "final validation loss of distillation", **dict(meta or {})},
            replace_stale=force,
            progress=grid_progress_bar("distill grid"),
        )
        step.outputs["grid"] = fingerprint(out / "grid.json")
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
    force: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a sweep; select on validation; score the selected point on test.

    Writes ``sweep.json`` (the domain and task settings the folder is made from),
    ``grid.json`` (via :func:`run_grid`), ``summary.csv``, ``heatmap.png`` and
    ``selected.json`` (with ``greater_is_better``) into ``root``. A folder made from
    other task settings is refused, naming the differences, unless ``force`` (which
    removes its results first).

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
    force : bool
        Redo a folder made from other settings instead of refusing it.

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
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: --out is a file, not a folder")
    root.mkdir(parents=True, exist_ok=True)
    task = spec.build()
    with FolderLock(root, "sweep"):
        clean_temp_files(root)
        _check_sweep_folder(root, config, spec, force)
        task.prepare(root)
        meta = {"domain": config.domain, "score": "validation score of the task's student"}
        records = run_grid(
            task,
            config.grid(),
            root,
            spec=spec,
            engine=config.engine_settings(),
            meta=meta,
            replace_stale=force,
            progress=grid_progress_bar("sweep"),
        )
        return _select_and_score(root, config, task, records)


def _check_sweep_folder(root: Path, config: SweepConfig, spec: TaskSpec, force: bool) -> None:
    """Refuse (or, with ``force``, clear) a sweep folder made from other task settings."""
    made = {"domain": config.domain, "task": spec.factory, "base": dict(config.base)}
    path = root / "sweep.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        recorded = {k: old.get(k) for k in made}
        changed = differences(recorded, made)
        if changed and not force:
            raise StaleResultError(
                f"{root}: this sweep folder was made with other settings "
                f"({'; '.join(changed[:6])}); use another --out, or --force to redo it"
            )
        if changed:
            for child in root.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
    write_json(path, {**made, "l1_coeffs": config.l1_coeffs, "l1_attr": config.l1_attr})


def _select_and_score(root: Path, config: SweepConfig, task: Any, records: list[dict]) -> dict:
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
        [float("nan") if r["val_score"] is None else r["val_score"] for r in records],
        higher_is_better=higher,
        best=(best["l1_coeffs"], best["l1_attr"]),
    )
    ax.set_title("validation score; ★ selected")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
