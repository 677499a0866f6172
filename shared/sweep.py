"""Sweeps over the AWD penalties (lambda x gamma) with warm-start continuation.

The grid is cut into *chains*, one per lambda (``l1_coeffs``), each running along
increasing gamma (``l1_attr``). Every point of a chain starts from the previous point's
saved wavelet (recorded as ``warm_start_from`` in its metadata); the first point starts
from the task's initial wavelet. Chains are independent, so they run in parallel: in
process (``workers=1``), on a local process pool, or as Ray Tune trials on a Ray cluster.

A *task* supplies the domain: ``prepare(root)`` once in the driver (train or load a
teacher, cache data), ``run_point(weights, warm_start, out)`` which distils, saves
``out/wavelet.*`` and returns validation scores (``val_score`` among them), and
``test_score(out)``, called once at the end for the selected point. Tasks are built in
every worker from ``"module:function"`` and a plain config dict, so nothing is pickled.

Resumable: a point is finished when its ``point.json`` exists; a rerun skips finished
points and continues each chain from its last finished point. Selection uses the
validation score only; the test score of the selected point is reported once.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from shared.losses import PenaltyWeights
from shared.runs import atomic_write, write_csv, write_json

__all__ = [
    "SweepConfig",
    "SweepTask",
    "check_ray_address",
    "point_name",
    "run_chain",
    "run_sweep",
]

logger = logging.getLogger(__name__)


class SweepTask(Protocol):
    """What a domain provides to a sweep."""

    greater_is_better: bool

    def prepare(self, root: Path) -> None: ...

    def run_point(
        self, weights: PenaltyWeights, warm_start: Path | None, out: Path
    ) -> dict[str, float]: ...

    def test_score(self, out: Path) -> dict[str, float]: ...


@dataclass(frozen=True)
class SweepConfig:
    """A lambda x gamma grid and how to run it.

    Parameters
    ----------
    domain : str
        Which task the grid belongs to (checked against the command's domain).
    l1_coeffs, l1_attr : tuple of float
        The lambda and gamma values (the paper's grids are shipped as config files).
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
    l1_coeffs: tuple[float, ...] = (1e-4,)
    l1_attr: tuple[float, ...] = (0.0, 0.1, 1.0)
    base: dict = field(default_factory=dict)
    engine: str = "local"
    workers: int = 1
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2

    def __post_init__(self) -> None:
        if not self.l1_coeffs or not self.l1_attr:
            raise ValueError("the grid is empty: l1_coeffs and l1_attr need at least one value")
        for name in ("l1_coeffs", "l1_attr"):
            values = getattr(self, name)
            if any(not math.isfinite(float(v)) or float(v) < 0 for v in values):
                raise ValueError(f"{name} values must be finite and >= 0, got {list(values)}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has repeated values: {list(values)}")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def chains(self) -> list[list[PenaltyWeights]]:
        """One chain per lambda, gamma increasing."""
        return [
            [PenaltyWeights(l1_coeffs=float(lam), l1_attr=float(g)) for g in sorted(self.l1_attr)]
            for lam in sorted(self.l1_coeffs)
        ]


def point_name(weights: PenaltyWeights) -> str:
    """Folder name of a grid point, e.g. ``lam0.0001_gam0.01``.

    Examples
    --------
    >>> point_name(PenaltyWeights(l1_coeffs=1e-4, l1_attr=0.5))
    'lam0.0001_gam0.5'
    """
    return f"lam{weights.l1_coeffs:.6g}_gam{weights.l1_attr:.6g}"


def _load_task(factory: str, base: Mapping[str, Any]) -> SweepTask:
    module_name, _, func = factory.partition(":")
    try:
        return getattr(importlib.import_module(module_name), func)(dict(base))
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load the sweep task {factory!r}: {err}") from None


def _log_event(root: Path, **event: Any) -> None:
    # One short line per write; appends of a few bytes do not interleave in practice.
    with open(root / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"time": time.time(), "pid": os.getpid(), **event}) + "\n")


def run_chain(
    factory: str, base: dict, root: str, chain: list[dict], threads: int | None = None
) -> list[dict]:
    """Run one chain of points in order, each warm-started from the previous one.

    Finished points (with ``point.json``) are skipped, so a rerun continues after the last
    finished point. Selection is not done here; :func:`run_sweep` does it.

    Parameters
    ----------
    factory : str
        ``"module:function"`` building the task from ``base``.
    base : dict
        Task settings.
    root : str
        The sweep folder.
    chain : list of dict
        ``PenaltyWeights`` fields of each point, in order.
    threads : int, optional
        torch threads of this process (parallel chains share the cores).

    Returns
    -------
    list of dict
        One record per point (weights, warm start, seconds, scores).
    """
    if threads is not None:
        # Parallel chains share the cores: one thread pool per chain, not per core.
        import torch

        torch.set_num_threads(max(1, threads))
    root_path = Path(root)
    task = _load_task(factory, base)
    records = []
    warm_start: Path | None = None
    for weights_dict in chain:
        weights = PenaltyWeights(**weights_dict)
        out = root_path / point_name(weights)
        done = out / "point.json"
        if done.exists():
            record = json.loads(done.read_text())
            records.append(record)
            warm_start = out / "wavelet"
            continue
        out.mkdir(parents=True, exist_ok=True)
        _log_event(root_path, event="start", point=out.name)
        tic = time.perf_counter()
        scores = task.run_point(weights, warm_start, out)
        if "val_score" not in scores:
            raise ValueError(f"the task's run_point returned no 'val_score' for {out.name}")
        record = {
            "point": out.name,
            "l1_coeffs": weights.l1_coeffs,
            "l1_attr": weights.l1_attr,
            "warm_start_from": warm_start.parent.name if warm_start is not None else None,
            "seconds": time.perf_counter() - tic,
            **{k: float(v) for k, v in scores.items()},
        }
        write_json(done, record)
        _log_event(root_path, event="finish", point=out.name)
        records.append(record)
        warm_start = out / "wavelet"
    return records


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


def _run_ray(config: SweepConfig, factory: str, root: Path, chains: list[list[dict]]) -> None:
    import ray
    from ray import tune
    from ray.tune import FailureConfig, RunConfig

    if config.address:
        check_ray_address(config.address)
        ray.init(address=config.address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(
            num_cpus=max(1, int(config.workers)),
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
        )

    threads = max(1, int(config.cpus_per_trial))

    def trainable(params: dict) -> dict:
        records = run_chain(factory, config.base, str(root), chains[params["chain"]], threads)
        return {"points": len(records)}

    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"chain": tune.grid_search(list(range(len(chains))))},
        run_config=RunConfig(
            name="ray",
            storage_path=str(root.resolve()),
            failure_config=FailureConfig(max_failures=config.max_failures),
        ),
    )
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} chain(s) failed on Ray; first error: {errors[0]}")


def run_sweep(
    config: SweepConfig,
    factory: str | Callable,
    root: str | Path,
    *,
    expected_domain: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) a sweep; write its summary, heatmap and selected point.

    Parameters
    ----------
    config : SweepConfig
        Grid and engine.
    factory : str
        ``"module:function"`` building the task from ``config.base``.
    root : path
        The sweep folder: one subfolder per point, ``summary.csv``, ``heatmap.png``,
        ``selected.json``.
    expected_domain : str, optional
        The domain the command was run for; a config of another domain is refused.

    Returns
    -------
    dict
        ``selected`` (the chosen point's record, with its test scores) and ``points``.
    """
    if expected_domain is not None and config.domain != expected_domain:
        raise ValueError(
            f"the sweep config is for domain {config.domain!r}, not {expected_domain!r}"
        )
    if not isinstance(factory, str):
        factory = f"{factory.__module__}:{factory.__qualname__}"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    task = _load_task(factory, config.base)
    task.prepare(root)
    chains = [[w.to_dict() for w in chain] for chain in config.chains()]
    write_json(
        root / "sweep.json",
        {"domain": config.domain, "l1_coeffs": config.l1_coeffs, "l1_attr": config.l1_attr},
    )
    if config.engine == "ray":
        _run_ray(config, factory, root, chains)
    elif config.workers == 1:
        for chain in chains:
            run_chain(factory, config.base, str(root), chain)
    else:
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        with ProcessPoolExecutor(config.workers, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(run_chain, factory, config.base, str(root), chain, threads)
                for chain in chains
            ]
            for future in futures:
                future.result()
    records = []
    for chain in chains:
        for weights_dict in chain:
            done = root / point_name(PenaltyWeights(**weights_dict)) / "point.json"
            if not done.exists():
                raise RuntimeError(f"{done.parent}: the point did not finish")
            records.append(json.loads(done.read_text()))
    sign = 1.0 if task.greater_is_better else -1.0
    best = max(records, key=lambda r: sign * r["val_score"])
    selected = dict(best)
    selected.update({f"test_{k}": v for k, v in task.test_score(root / best["point"]).items()})
    write_csv(root / "summary.csv", records)
    write_json(root / "selected.json", selected)
    _heatmap(root / "heatmap.png", records, config, task.greater_is_better, best)
    logger.info("selected %s (validation score %.4g)", best["point"], best["val_score"])
    return {"selected": selected, "points": records}


def _heatmap(path: Path, records: Sequence[dict], config: SweepConfig, higher: bool, best) -> None:
    from shared.plots import plot_grid_heatmap, plt

    n_lam, n_gam = len(config.l1_coeffs), len(config.l1_attr)
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
