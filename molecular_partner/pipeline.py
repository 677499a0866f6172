"""The steps of a molecular-partner run: start, read the data set, train the teachers, distil.

A run directory follows the one contract of :class:`shared.runs.RunDir`::

    run.json            domain, format, the data set (absolute path + fingerprint)
    config.yaml         the settings, as last run by each step
    env.json            versions, device, seed
    teacher/            model.safetensors|json (regression, MSE; the one AWD distils),
                        model_binary.safetensors|json (binary, BCE), history, step.json
    distill/            grid.json; lam<L>_gam<G>/wavelet.safetensors|json, point.json
    students/           every fitted student and baseline (molecular_partner.evaluate)
    evaluate/           metrics.csv, comparisons.csv, ... (molecular_partner.evaluate)
    report/             report.html, results.md and PNGs (molecular_partner.report)

The data set is a folder written by ``awd molecular-partner build-dataset`` (split by
cell). Each step takes ``--set`` overrides for its own section only and writes them into
``config.yaml`` once it has run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from molecular_partner.config import (
    DOMAIN,
    OUTCOMES,
    DistillSettings,
    RunConfig,
    load_config,
    recorded,
)
from molecular_partner.data import read_dataset, validation_cells
from molecular_partner.teacher import (
    LSTMTeacher,
    load_teacher,
    predict,
    save_teacher,
    train_teacher,
)
from shared import DWT1d, PenaltyWeights, distill, runs
from shared.runs import (
    RunDir,
    fingerprint,
    load_transform,
    save_transform,
    write_json,
)
from shared.sweep import (
    WAVELET,
    Engine,
    distill_provenance,
    final_validation_loss,
    run_distill_step,
)

__all__ = [
    "TRACE",
    "RunData",
    "check_step_overrides",
    "distill_point",
    "open_run",
    "read_run_data",
    "reconstruction_error",
    "run_distill",
    "run_train_teacher",
    "start_run",
    "teacher_path",
]

logger = logging.getLogger(__name__)

TRACE = "X_same_length_normalized"
#: The config sections each step may change with ``--set``.
STEP_SECTIONS = {"teacher": ("teacher",), "distill": ("distill",), "evaluate": ("evaluate",)}


@dataclass
class RunData:
    """The data set of a run: the table, and the training traces split for early stopping."""

    table: pd.DataFrame
    train: pd.DataFrame
    test: pd.DataFrame
    val_cells: list[str]

    @property
    def is_val(self) -> np.ndarray:
        """Training rows of the held-out validation cells."""
        return self.train["cell"].astype(str).isin(self.val_cells).to_numpy()

    def traces(self, split: str = "train") -> np.ndarray:
        """``(N, L)`` float32 traces of a split."""
        part = self.train if split == "train" else self.test
        return np.stack(part[TRACE].to_list()).astype(np.float32)


def read_run_data(path: str | os.PathLike, cfg: RunConfig) -> RunData:
    """Read a data set built by ``build-dataset`` and check it for a run.

    Raises ``ValueError`` naming the data set: no ``split``/``cell`` columns, no training
    or test cells, traces of another length than the teacher's.
    """
    table = read_dataset(path)
    for col in ("split", "cell"):
        if col not in table.columns:
            raise ValueError(f"{path}: missing column {col!r} (splits are by cell)")
    train = table[table["split"] == "train"].reset_index(drop=True)
    test = table[table["split"] == "test"].reset_index(drop=True)
    if train.empty or test.empty:
        raise ValueError(f"{path}: needs training and test cells (found {set(table['split'])})")
    length = len(train[TRACE].iloc[0])
    if length != cfg.teacher.length:
        raise ValueError(
            f"{path}: traces have length {length}; set teacher.length={length} or rebuild "
            f"the data set with length {cfg.teacher.length}"
        )
    val = validation_cells(table, cfg.teacher.val_cells, cfg.teacher.seed)
    return RunData(table, train, test, val)


# --------------------------------------------------------------------------- run dirs


def check_step_overrides(overrides: Sequence[str], step: str) -> None:
    """Refuse ``--set`` overrides of sections that another step owns (:data:`STEP_SECTIONS`)."""
    runs.check_step_overrides(overrides, step, STEP_SECTIONS)


def save_config(run: RunDir, cfg: RunConfig) -> Path:
    """Write the run's ``config.yaml`` (after a step has run)."""
    return runs.save_config(run, cfg)


def _check_data(data: Path, cfg: RunConfig) -> None:
    read_run_data(data, cfg)


def start_run(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    config_path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> tuple[RunDir, RunConfig]:
    """Check the settings and the data set, then create (or reopen) a run directory.

    ``data`` is a folder written by ``build-dataset`` (or its ``dataset.parquet``). See
    :func:`shared.runs.start_run`; nothing is written if a setting or the data is wrong.
    """
    if data is not None and Path(data).name == "dataset.parquet":
        data = Path(data).parent
    return runs.start_run(
        run_dir,
        DOMAIN,
        load_config,
        data,
        config_path,
        overrides,
        check_data=_check_data,
        seed=lambda cfg: cfg.teacher.seed,
    )


def open_run(
    run_dir: str | os.PathLike, overrides: Sequence[str] = (), step: str | None = None
) -> tuple[RunDir, RunConfig]:
    """Reopen a run and its settings, with ``overrides`` for ``step``'s section (checked)."""
    return runs.open_run(run_dir, DOMAIN, load_config, overrides, step, STEP_SECTIONS)


def teacher_path(run: RunDir | str | os.PathLike, outcome: str = "regression") -> Path:
    """Where a run keeps the teacher of an outcome (``teacher/model`` for regression)."""
    root = run.root if isinstance(run, RunDir) else Path(run)
    return root / "teacher" / ("model" if outcome == "regression" else f"model_{outcome}")


# --------------------------------------------------------------------------- teachers


def _fit_summary(model: LSTMTeacher, x: np.ndarray, y: np.ndarray, is_val: np.ndarray) -> dict:
    summary: dict[str, Any] = {}
    for name, mask in (("fit", ~is_val), ("val", is_val)):
        if not mask.any():
            continue
        p = predict(model, x[mask])
        if model.loss == "mse":
            ss = float(np.sum((y[mask] - y[mask].mean()) ** 2)) or float("nan")
            summary[f"{name}_r2"] = 1.0 - float(np.sum((y[mask] - p) ** 2)) / ss
        else:
            summary[f"{name}_accuracy"] = float(np.mean((p >= 0.5) == (y[mask] == 1)))
    return summary


def _train_outcome(run: RunDir, cfg: RunConfig, data: RunData, outcome: str) -> tuple:
    out = run.step_dir("teacher")
    column = OUTCOMES[outcome]
    if column not in data.train.columns:
        raise ValueError(f"{run.data_path}: outcome column {column!r} is missing")
    x, is_val = data.traces("train"), data.is_val
    y = data.train[column].to_numpy(dtype=np.float32)
    model, history = train_teacher(
        x[~is_val],
        y[~is_val],
        cfg.teacher,
        loss="mse" if outcome == "regression" else "bce",
        x_val=x[is_val],
        y_val=y[is_val],
        checkpoint_dir=out / f"checkpoint_{outcome}",
    )
    path = save_teacher(model, teacher_path(run, outcome), history=history, settings=cfg.teacher)
    shutil.rmtree(out / f"checkpoint_{outcome}", ignore_errors=True)
    write_json(out / f"history_{outcome}.json", history)
    return path, {"epochs_run": len(history), **_fit_summary(model, x, y, is_val)}


def run_train_teacher(
    run: RunDir, cfg: RunConfig, data: RunData | None = None, force: bool = False
) -> dict:
    """Train one LSTM teacher per outcome of ``teacher.outcomes`` (early stopping on
    held-out training cells); write ``teacher/``.

    Teachers already trained with the same settings on the same data are kept (said in
    the log). Other settings with results made from the old teachers are refused unless
    ``force``, which removes those results.
    """
    inputs = {"data": run.check_data()}
    with run.step(
        "teacher", {"teacher": recorded(cfg.teacher)}, inputs, force=force, config=cfg
    ) as step:
        metrics_path = run.root / "teacher" / "metrics.json"
        paths = [teacher_path(run, o).with_suffix(".safetensors") for o in cfg.teacher.outcomes]
        if step.status == "same" and metrics_path.is_file() and all(p.is_file() for p in paths):
            logger.info("teachers: trained already with these settings; kept (--force to retrain)")
            step.outputs.update(
                {o: fingerprint(p) for o, p in zip(cfg.teacher.outcomes, paths, strict=True)}
            )
            return json.loads(metrics_path.read_text())
        data = data or read_run_data(run.data_path, cfg)
        summary: dict[str, Any] = {"val_cells": data.val_cells}
        for outcome in cfg.teacher.outcomes:
            path, summary[outcome] = _train_outcome(run, cfg, data, outcome)
            step.outputs[outcome] = fingerprint(path)
        write_json(metrics_path, summary)
    return summary


# --------------------------------------------------------------------------- distillation


def reconstruction_error(transform: DWT1d, x: torch.Tensor) -> float:
    """Relative L2 error of ``inverse(forward(x))``.

    Examples
    --------
    >>> reconstruction_error(DWT1d("db5", 4, "zero"), torch.randn(4, 1, 40)) < 1e-5
    True
    """
    with torch.no_grad():
        rec = transform.inverse(transform(x), size=x.shape[2:])
        return float((rec - x).norm() / x.norm().clamp_min(1e-12))


def distill_point(
    x_train: torch.Tensor,
    teacher: torch.nn.Module,
    settings: DistillSettings,
    weights: PenaltyWeights,
    warm_start: Path | None,
    out: Path,
    *,
    x_val: torch.Tensor | None = None,
    target: int = 0,
    progress: bool | None = None,
) -> tuple[DWT1d, list[dict[str, float]], dict[str, Any]]:
    """Distil one grid point and save it as ``out/wavelet.safetensors|json`` (resumable).

    The one place where a molecular-partner point is distilled: the run's grid
    (:func:`run_distill`) and the ``awd sweep molecular-partner`` task both call it.

    Parameters
    ----------
    x_train : Tensor
        Training traces ``(N, 1, L)``.
    teacher : nn.Module
        Frozen teacher taking ``(N, 1, L)``.
    settings : DistillSettings
        Wavelet and optimisation settings (its grid is not used here).
    weights : PenaltyWeights
        The point's lambda (``l1_coeffs``) and gamma (``l1_attr``).
    warm_start : path, optional
        The previous point's saved wavelet (``<point>/wavelet``); otherwise the point
        starts from ``settings.wavelet``.
    out : path
        The point's folder; ``checkpoint/`` inside it lets an interrupted point resume.
    x_val : Tensor, optional
        Validation traces (held-out training cells) for early stopping.
    target : int
        Teacher output attributed.
    progress : bool, optional
        Progress bars; default only on a terminal.

    Returns
    -------
    transform : DWT1d
    history : list of dict
        Per-epoch loss terms.
    extra : dict
        The metadata saved with the wavelet (``warm_start_from``, ``initial_h0``, ...).

    Examples
    --------
    >>> import tempfile
    >>> from shared import DistillConfig
    >>> x = torch.randn(20, 1, 40)
    >>> w = PenaltyWeights(l1_coeffs=1e-3, l1_attr=0.1)
    >>> s = DistillSettings(train=DistillConfig(epochs=1))
    >>> t, h, meta = distill_point(x, LSTMTeacher().eval(), s, w, None, Path(tempfile.mkdtemp()))
    >>> len(h), meta["warm_start_from"]
    (1, None)
    """
    s = settings
    out = Path(out)
    if warm_start is not None:
        start = load_transform(warm_start)
        if (start.levels, start.mode) != (s.levels, s.mode):
            raise ValueError(
                f"{warm_start}: warm start has levels={start.levels}, mode={start.mode!r}; "
                f"the settings ask for levels={s.levels}, mode={s.mode!r}"
            )
        # Keep naming the wavelet the chain started from (plots and reports show it).
        start.wavelet.init_name = s.wavelet
        source = Path(warm_start).parent.name
    else:
        start = DWT1d(s.wavelet, levels=s.levels, mode=s.mode)
        source = None
    initial_h0 = start.wavelet.h0.detach().clone()
    transform, history = distill(
        x_train,
        transform=start,
        teacher=teacher,
        weights=weights,
        target=target,
        config=s.train,
        val_data=x_val,
        checkpoint_dir=out / "checkpoint",
        resume=True,
        progress=progress,
    )
    extra = {
        # A folder name relative to the grid, so a grid can be moved or shared.
        "warm_start_from": source,
        "initial_h0": initial_h0.tolist(),
        "lambda": weights.l1_coeffs,
        "gamma": weights.l1_attr,
        "settings": asdict(s),
    }
    save_transform(
        transform, out / WAVELET, weights=weights, history=history, seed=s.train.seed, extra=extra
    )
    # The saved wavelet supersedes the checkpoint; keep the run directory small.
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return transform, history, extra


class DistillTask:
    """The grid task of a run's ``distill`` step (see :mod:`shared.sweep`).

    Its ``val_score`` is the point's final distillation loss (on the validation cells'
    traces when there are any): the grid only distils; students are selected later, by
    ``evaluate``.
    """

    greater_is_better = False

    def __init__(
        self,
        run: RunDir,
        cfg: RunConfig,
        data: RunData | None = None,
        progress: bool | None = None,
    ) -> None:
        data = data or read_run_data(run.data_path, cfg)
        x = torch.from_numpy(data.traces("train"))[:, None, :]
        is_val = torch.from_numpy(data.is_val.copy())
        self.x = x[~is_val]
        self.x_val = x[is_val] if bool(is_val.any()) else None
        self.teacher = load_teacher(
            teacher_path(run), length=cfg.teacher.length, arch=cfg.teacher.arch
        )
        self.settings = cfg.distill
        self.progress = progress
        self.provenance = distill_provenance(
            run, cfg.distill, teacher_path(run).with_suffix(".safetensors")
        )
        with torch.no_grad():
            self.teacher(self.x[:1])  # a trace length the teacher refuses fails here

    def run_point(
        self, weights: PenaltyWeights, warm_start: Path | None, out: Path
    ) -> dict[str, float]:
        """Distil one point; its score is the final validation loss."""
        transform, history, _ = distill_point(
            self.x,
            self.teacher,
            self.settings,
            weights,
            warm_start,
            out,
            x_val=self.x_val,
            progress=self.progress,
        )
        error = reconstruction_error(transform, self.x)
        logger.info("%s: %d epochs, reconstruction error %.2e", out.name, len(history), error)
        return {
            "val_score": final_validation_loss(history),
            "epochs_run": float(len(history)),
            "reconstruction_error": error,
        }


def distill_task(base: dict[str, Any]) -> DistillTask:
    """Rebuild a run's distill task in a worker process (``base``: run, overrides)."""
    run, cfg = open_run(base["run"], base.get("overrides", ()), "distill")
    return DistillTask(run, cfg, progress=False)


def run_distill(
    run: RunDir,
    cfg: RunConfig,
    *,
    data: RunData | None = None,
    engine: Engine | None = None,
    overrides: Sequence[str] = (),
    progress: bool | None = None,
    force: bool = False,
) -> list[dict]:
    """Distil the lambda x gamma grid through the regression teacher (resumable).

    Finished points made with the same settings are kept; points made with others are
    refused unless ``force`` (see :func:`shared.sweep.run_distill_step`).

    Runs through :func:`shared.sweep.run_grid`; with ``engine.workers > 1`` chains run in
    parallel processes, each rebuilding the task from the run directory and ``overrides``.
    """
    return run_distill_step(
        run,
        cfg.distill,
        lambda: DistillTask(run, cfg, data, progress),
        "molecular_partner.pipeline:distill_task",
        teacher_path(run).with_suffix(".safetensors"),
        engine=engine,
        overrides=overrides,
        meta={"target": "regression"},
        force=force,
        config=cfg,
    )
