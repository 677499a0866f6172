"""The steps of a cosmology run: start, load the maps, train the teacher, distil the grid.

A run directory follows the one contract of :class:`shared.runs.RunDir`::

    run.json            domain, format, the maps (absolute path + fingerprint)
    config.yaml         the settings, as last run by each step
    env.json            versions, device, seed
    teacher/            model.safetensors + model.json, history.json, step.json
    distill/            grid.json; lam<L>_gam<G>/wavelet.safetensors|json, point.json
    students/           every fitted student and baseline (cosmology.evaluate)
    evaluate/           metrics.csv, comparisons.csv, ... (cosmology.evaluate)
    report/             report.html and PNGs (cosmology.report)

Each step takes ``--set`` overrides for its own sections only (``train-teacher``: data and
teacher; ``distill``: distill; ``evaluate``: student and evaluate), checks them before
anything runs, and writes them into ``config.yaml`` once it has run.
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

from cosmology.config import DOMAIN, DistillSettings, RunConfig, load_config, recorded
from cosmology.data import ConvergenceMapDataset, load_catalog, split_by_realization
from cosmology.noise import ShapeNoise
from cosmology.teacher import load_teacher, save_teacher, train_teacher
from shared import DWT2d, LearnableWavelet, PenaltyWeights, distill, runs
from shared.evaluation import n_parameters
from shared.interpret.named import penalty_record
from shared.runs import (
    RunDir,
    StaleResultError,
    check_device,
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
    "SPLITS",
    "Splits",
    "check_step_overrides",
    "distill_inputs",
    "distill_point",
    "load_splits",
    "open_run",
    "run_distill",
    "run_train_teacher",
    "start_run",
    "teacher_path",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
TARGET_INDEX: dict[str, Any] = {"omega_m": 0, "sigma_8": 1, "both": [0, 1]}
#: The config sections each step may change with ``--set``.
STEP_SECTIONS = {
    "teacher": ("data", "teacher"),
    "distill": ("distill",),
    "evaluate": ("student", "evaluate"),
}


@dataclass
class Splits:
    """Maps ``(n, N, N)`` float32, targets ``(n, 2)`` float64 and catalogs per split."""

    maps: dict[str, torch.Tensor]
    targets: dict[str, np.ndarray]
    catalogs: dict[str, pd.DataFrame]
    side_angle_deg: float
    n_pix: int

    @property
    def pixel_arcmin(self) -> float:
        """Side of a pixel in arcmin."""
        return self.side_angle_deg * 60.0 / self.n_pix


def load_splits(data: str | os.PathLike, cfg: RunConfig, splits: Sequence[str] = SPLITS) -> Splits:
    """Load the maps under ``data``, split 70/10/20 (default) by realization.

    Every split is checked (finite pixels, one side angle), not only the ones returned.

    Examples
    --------
    >>> import tempfile
    >>> from cosmology.cosmologies import design_ten
    >>> from cosmology.simulate import simulate_dataset
    >>> root = simulate_dataset(tempfile.mkdtemp(), design_ten(False).iloc[:2], n_maps=10, n_pix=16)
    >>> s = load_splits(root, RunConfig())
    >>> {k: tuple(v.shape) for k, v in s.maps.items()}
    {'train': (14, 16, 16), 'val': (2, 16, 16), 'test': (4, 16, 16)}
    """
    d = cfg.data
    catalog = load_catalog(data, side_angle_deg=d.side_angle_deg)
    angles = catalog["side_angle_deg"].unique()
    if len(angles) > 1:
        raise ValueError(f"{data}: maps of different side angles in one dataset ({list(angles)})")
    labels = split_by_realization(catalog, d.split_fractions, seed=d.split_seed)
    noise = ShapeNoise(d.sigma_e, d.n_gal) if d.noise else None
    out_maps, out_y, out_cat = {}, {}, {}
    for name in splits:
        sub = catalog[labels == name].reset_index(drop=True)
        if sub.empty:
            raise ValueError(f"{data}: the {name} split is empty (too few maps per cosmology)")
        ds = ConvergenceMapDataset(
            sub,
            targets=d.targets,
            block=d.block,
            noise=noise,
            smoothing=d.smoothing_arcmin or None,
            # Different splits get different noise streams.
            seed=d.noise_seed * 7 + SPLITS.index(name),
        )
        out_maps[name] = ds.stack()
        out_y[name] = sub[list(d.targets)].to_numpy(dtype=np.float64, copy=True)
        out_cat[name] = sub
        if not torch.isfinite(out_maps[name]).all():
            raise ValueError(f"{data}: the {name} split has maps with NaN or inf pixels")
    return Splits(
        out_maps,
        out_y,
        out_cat,
        float(angles[0]),
        int(out_maps[splits[0]].shape[-1]),
    )


# --------------------------------------------------------------------------- run dirs


def check_step_overrides(overrides: Sequence[str], step: str) -> None:
    """Refuse ``--set`` overrides of sections that another step owns (:data:`STEP_SECTIONS`)."""
    runs.check_step_overrides(overrides, step, STEP_SECTIONS)


def save_config(run: RunDir, cfg: RunConfig) -> Path:
    """Write the run's ``config.yaml`` (after a step has run)."""
    return runs.save_config(run, cfg)


def start_run(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    config_path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> tuple[RunDir, RunConfig]:
    """Check the settings, then create (or reopen) a run directory on the maps ``data``.

    See :func:`shared.runs.start_run`; nothing is written if a setting is wrong.
    """
    return runs.start_run(
        run_dir,
        DOMAIN,
        load_config,
        data,
        config_path,
        overrides,
        seed=lambda cfg: cfg.teacher.seed,
    )


def open_run(
    run_dir: str | os.PathLike, overrides: Sequence[str] = (), step: str | None = None
) -> tuple[RunDir, RunConfig]:
    """Reopen a run and its settings, with ``overrides`` for ``step``'s sections (checked)."""
    return runs.open_run(run_dir, DOMAIN, load_config, overrides, step, STEP_SECTIONS)


def teacher_path(run: RunDir | str | os.PathLike) -> Path:
    """Where a run keeps its trained teacher (``teacher/model``)."""
    root = run.root if isinstance(run, RunDir) else Path(run)
    return root / "teacher" / "model"


# --------------------------------------------------------------------------- steps


def run_train_teacher(
    run: RunDir,
    cfg: RunConfig,
    *,
    resume: bool = False,
    splits: Splits | None = None,
    force: bool = False,
) -> dict:
    """Train the run's teacher; write ``teacher/model.*``, ``history.json``, ``step.json``.

    A teacher already trained with the same settings on the same data is kept (said in
    the log). Other settings with results made from the old teacher (distillation,
    evaluation) are refused unless ``force``, which removes those results.
    """
    settings = {"data": asdict(cfg.data), "teacher": recorded(cfg.teacher)}
    inputs = {"data": run.check_data()}
    path = teacher_path(run).with_suffix(".safetensors")
    with run.step("teacher", settings, inputs, force=force, config=cfg) as step:
        history_path = run.root / "teacher" / "history.json"
        if step.status == "same" and path.is_file() and history_path.is_file():
            logger.info("teacher: trained already with these settings; kept (--force to retrain)")
            step.outputs["model"] = fingerprint(path)
            return json.loads(history_path.read_text())["summary"]
        splits = splits or load_splits(run.data_path, cfg)
        out = run.step_dir("teacher")

        def train(resume: bool) -> tuple[Any, list[dict]]:
            return train_teacher(
                splits.maps["train"],
                torch.as_tensor(splits.targets["train"]),
                splits.maps["val"],
                torch.as_tensor(splits.targets["val"]),
                cfg.teacher,
                out,
                resume=resume,
            )

        try:
            model, history = train(resume)
        except StaleResultError:
            # A killed training of other settings left its checkpoint: --force starts over.
            if not force:
                raise
            logger.info("teacher: the checkpoint of other settings is set aside (--force)")
            model, history = train(False)
        extra = {
            "settings": asdict(cfg.teacher),
            "side_angle_deg": splits.side_angle_deg,
            "targets": list(cfg.data.targets),
        }
        if cfg.teacher.cdep_weight > 0:
            t = cfg.teacher
            extra["cdep"] = penalty_record(t.cdep_weight, t.cdep_groups, t.cdep_wavelet, history)
        path = save_teacher(model, teacher_path(run), splits.n_pix, extra)
        summary = {
            "arch": cfg.teacher.arch,
            "parameters": n_parameters(model),
            "epochs_run": len(history),
            "best_val_loss": min(h["val_loss"] for h in history),
            "n_train": int(splits.maps["train"].shape[0]),
            "n_val": int(splits.maps["val"].shape[0]),
        }
        write_json(out / "history.json", {"summary": summary, "history": history})
        step.outputs["model"] = fingerprint(path)
    return summary


def distill_inputs(splits: Splits, s: DistillSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation maps of distillation, ``(n, 1, N, N)`` float32.

    At most ``s.n_maps`` training and ``s.n_val_maps`` validation maps (0: all), drawn
    with ``s.train.seed``; the test split is never used.

    Examples
    --------
    >>> sp = Splits({"train": torch.zeros(5, 8, 8), "val": torch.zeros(3, 8, 8)}, {}, {}, 1.0, 8)
    >>> [tuple(x.shape) for x in distill_inputs(sp, DistillSettings(n_maps=2, n_val_maps=0))]
    [(2, 1, 8, 8), (3, 1, 8, 8)]
    """
    rng = np.random.default_rng(s.train.seed)
    x_train = splits.maps["train"]
    if s.n_maps and s.n_maps < x_train.shape[0]:
        x_train = x_train[torch.as_tensor(rng.choice(x_train.shape[0], s.n_maps, replace=False))]
    x_val = splits.maps["val"]
    if s.n_val_maps and s.n_val_maps < x_val.shape[0]:
        x_val = x_val[torch.as_tensor(rng.choice(x_val.shape[0], s.n_val_maps, replace=False))]
    return x_train[:, None].float(), x_val[:, None].float()


def distill_point(
    x_train: torch.Tensor,
    x_val: torch.Tensor | None,
    teacher: torch.nn.Module | None,
    settings: DistillSettings,
    weights: PenaltyWeights,
    warm_start: Path | None,
    out: Path,
    *,
    progress: bool | None = None,
) -> tuple[DWT2d, list[dict]]:
    """Distil one grid point into ``out/wavelet.safetensors|json`` (resumable).

    The one place where a cosmology point is distilled: the run's grid
    (:func:`run_distill`) and the ``awd sweep cosmology`` task both call it.

    Parameters
    ----------
    x_train, x_val : Tensor
        Training and validation maps ``(n, 1, N, N)`` (``x_val`` may be ``None``).
    teacher : nn.Module
        Frozen teacher (not used at gamma = 0).
    settings : DistillSettings
        Wavelet and optimisation settings (its grid is not used here).
    weights : PenaltyWeights
        The point's lambda (``l1_coeffs``) and gamma (``l1_attr``).
    warm_start : path, optional
        The previous point's saved wavelet; otherwise the point starts from
        ``settings.wavelet``.
    out : path
        The point's folder; ``checkpoint/`` inside it lets an interrupted point resume.
    progress : bool, optional
        Progress bar (default: only on a terminal).

    Returns
    -------
    transform : DWT2d
    history : list of dict

    Examples
    --------
    >>> import tempfile
    >>> from shared import DistillConfig
    >>> s = DistillSettings(levels=2, train=DistillConfig(epochs=1, batch_size=4))
    >>> out = Path(tempfile.mkdtemp())
    >>> w = PenaltyWeights(l1_coeffs=0.01, l1_attr=0.0)
    >>> t, h = distill_point(torch.randn(8, 1, 32, 32), None, None, s, w, None, out)
    >>> len(h), (out / "wavelet.json").exists()
    (1, True)
    """
    s = settings
    out = Path(out)
    if warm_start is not None:
        transform = load_transform(warm_start)
        if (transform.levels, transform.mode) != (s.levels, s.mode):
            raise ValueError(
                f"{warm_start}: warm start has levels={transform.levels}, "
                f"mode={transform.mode!r}; the settings ask for levels={s.levels}, "
                f"mode={s.mode!r}"
            )
        # Keep naming the wavelet the chain started from (plots and reports show it).
        transform.wavelet.init_name = s.wavelet
    else:
        transform = DWT2d(LearnableWavelet(s.wavelet), levels=s.levels, mode=s.mode)
    if weights.l1_attr > 0 and teacher is None:
        raise ValueError("gamma > 0 needs a teacher")
    initial_h0 = transform.wavelet.h0.detach().clone()
    transform, history = distill(
        x_train,
        transform=transform,
        teacher=teacher if weights.l1_attr > 0 else None,
        weights=weights,
        target=TARGET_INDEX[s.target],
        config=s.train,
        val_data=x_val,
        checkpoint_dir=out / "checkpoint",
        resume=True,
        device=s.device,
        progress=progress,
    )
    transform = transform.cpu()
    save_transform(
        transform,
        out / WAVELET,
        weights=weights,
        history=history,
        seed=s.train.seed,
        extra={
            "lambda": weights.l1_coeffs,
            "gamma": weights.l1_attr,
            "target": s.target,
            # A folder name relative to the grid, so a grid can be moved or shared.
            "warm_start_from": Path(warm_start).parent.name if warm_start is not None else None,
            "initial_h0": initial_h0.tolist(),
            "settings": asdict(s),
        },
    )
    # The saved wavelet supersedes the checkpoint; keep the run directory small.
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return transform, history


class DistillTask:
    """The grid task of a run's ``distill`` step (see :mod:`shared.sweep`).

    Its ``val_score`` is the point's final distillation loss on the validation maps
    (lower is better): the grid only distils; students are selected by ``evaluate``.
    Build it in process with the run's data and teacher, or in a worker from
    :meth:`spec` (the run directory and the overrides).
    """

    greater_is_better = False

    def __init__(
        self,
        run: RunDir,
        cfg: RunConfig,
        splits: Splits | None = None,
        progress: bool | None = None,
    ) -> None:
        self.run = run
        self.cfg = cfg
        splits = splits or load_splits(run.data_path, cfg, ("train", "val"))
        check_device("distill.device", cfg.distill.device)
        self.x_train, self.x_val = distill_inputs(splits, cfg.distill)
        self.teacher = load_teacher(teacher_path(run), n_pix=splits.n_pix, arch=cfg.teacher.arch)
        self.progress = progress
        self.provenance = distill_provenance(
            run, cfg.distill, teacher_path(run).with_suffix(".safetensors")
        )

    def run_point(
        self, weights: PenaltyWeights, warm_start: Path | None, out: Path
    ) -> dict[str, float]:
        """Distil one point; its score is the final validation loss."""
        logger.info("distill %s (warm start: %s)", out.name, warm_start)
        _, history = distill_point(
            self.x_train,
            self.x_val,
            self.teacher,
            self.cfg.distill,
            weights,
            warm_start,
            out,
            progress=self.progress,
        )
        return {"val_score": final_validation_loss(history), "epochs_run": float(len(history))}


def distill_task(base: dict[str, Any]) -> DistillTask:
    """Rebuild a run's distill task in a worker process (``base``: run, overrides)."""
    run, cfg = open_run(base["run"], base.get("overrides", ()), "distill")
    return DistillTask(run, cfg, progress=False)


def run_distill(
    run: RunDir,
    cfg: RunConfig,
    *,
    splits: Splits | None = None,
    engine: Engine | None = None,
    overrides: Sequence[str] = (),
    progress: bool | None = None,
    force: bool = False,
) -> list[dict]:
    """Distil the lambda x gamma grid from the run's teacher (``run_distill_step``).

    Each point starts, with ``warm_start``, from the previous point of its lambda (smaller
    gamma), as the reference's continuation path. Finished points made with the same
    settings are kept; points made with others are refused unless ``force``. With
    ``engine.workers > 1`` chains run in parallel processes, each rebuilding the task from
    the run directory and ``overrides``.
    """
    return run_distill_step(
        run,
        cfg.distill,
        lambda: DistillTask(run, cfg, splits, progress),
        "cosmology.pipeline:distill_task",
        teacher_path(run).with_suffix(".safetensors"),
        engine=engine,
        overrides=overrides,
        meta={"target": cfg.distill.target},
        force=force,
        config=cfg,
    )
