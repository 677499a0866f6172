"""The run-directory steps behind ``awd cosmology train-teacher`` and ``distill``.

A run directory holds::

    run.json            domain marker
    config.yaml         the resolved configuration
    env.json            versions, device, seed
    teacher/            teacher.pt, teacher_checkpoint.pt, history.json
    distill/            grid.json; lam<L>_gam<G>/ (transform .safetensors + .json,
                        checkpoint, history.json)
    evaluate/           metrics.csv, metrics.md, ... (see cosmology.evaluate)
    report/             report.html and PNGs (see cosmology.report)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cosmology.config import (
    DistillSettings,
    RunConfig,
    check_run_dir,
    load_config,
    mark_run_dir,
    save_config,
)
from cosmology.data import ConvergenceMapDataset, load_catalog, split_by_realization
from cosmology.noise import ShapeNoise
from cosmology.teacher import count_parameters, load_teacher, save_teacher, train_teacher
from shared import DistillConfig, DWT2d, LearnableWavelet, PenaltyWeights, distill
from shared.runs import environment_info, load_transform, save_transform, write_json

__all__ = [
    "Splits",
    "distill_inputs",
    "distill_point",
    "grid_name",
    "load_run_config",
    "load_splits",
    "run_distill",
    "run_train_teacher",
    "start_run",
    "teacher_path",
    "transform_path",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
TARGET_INDEX = {"omega_m": 0, "sigma_8": 1, "both": [0, 1]}


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
        return self.side_angle_deg * 60.0 / self.n_pix


def load_splits(cfg: RunConfig, splits: tuple[str, ...] = SPLITS) -> Splits:
    """Load the maps of the run's dataset, split 70/10/20 (default) by realization.

    Examples
    --------
    >>> import tempfile
    >>> from cosmology.cosmologies import design_ten
    >>> from cosmology.simulate import simulate_dataset
    >>> root = simulate_dataset(tempfile.mkdtemp(), design_ten(False).iloc[:2], n_maps=10, n_pix=16)
    >>> s = load_splits(RunConfig().override([f"data.root={root}"]))
    >>> {k: tuple(v.shape) for k, v in s.maps.items()}
    {'train': (14, 16, 16), 'val': (2, 16, 16), 'test': (4, 16, 16)}
    """
    d = cfg.data
    if not d.root:
        raise ValueError("data.root is not set: pass --data or set data.root in the config")
    catalog = load_catalog(d.root)
    labels = split_by_realization(catalog, d.split_fractions, seed=d.split_seed)
    noise = ShapeNoise(d.sigma_e, d.n_gal) if d.noise else None
    out_maps, out_y, out_cat = {}, {}, {}
    for name in splits:
        sub = catalog[labels == name].reset_index(drop=True)
        if sub.empty:
            raise ValueError(f"{d.root}: the {name} split is empty (too few maps per cosmology)")
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
            raise ValueError(f"{d.root}: the {name} split has maps with NaN or inf pixels")
    return Splits(
        out_maps,
        out_y,
        out_cat,
        float(catalog["side_angle_deg"].iloc[0]),
        int(out_maps[splits[0]].shape[-1]),
    )


# --------------------------------------------------------------------------- run dirs


def start_run(
    run_dir: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    overrides: tuple[str, ...] | list[str] = (),
) -> RunConfig:
    """Create (or reopen) a run directory and write its resolved config and env.json.

    An existing run keeps its config; ``overrides`` are applied on top of it.
    """
    run_dir = Path(run_dir)
    if (run_dir / "config.yaml").exists():
        check_run_dir(run_dir)
        cfg = load_config(run_dir / "config.yaml", overrides)
        if config_path is not None:
            cfg = load_config(config_path, overrides)
    else:
        cfg = load_config(config_path, overrides)
    mark_run_dir(run_dir)
    save_config(cfg, run_dir / "config.yaml")
    write_json(run_dir / "env.json", environment_info(cfg.teacher.seed))
    return cfg


def load_run_config(run_dir: str | os.PathLike, overrides=()) -> RunConfig:
    """The config of an existing run directory (with optional overrides written back)."""
    run_dir = check_run_dir(run_dir)
    path = run_dir / "config.yaml"
    if not path.exists():
        raise ValueError(f"{run_dir}: config.yaml is missing; run train-teacher first")
    cfg = load_config(path, overrides)
    if overrides:
        save_config(cfg, path)
    return cfg


def teacher_path(run_dir: str | os.PathLike) -> Path:
    """Where a run keeps its trained teacher."""
    return Path(run_dir) / "teacher" / "teacher.pt"


def grid_name(lam: float, gamma: float) -> str:
    """Folder name of one grid point, e.g. ``lam0.005_gam0.001``.

    Examples
    --------
    >>> grid_name(0.02, 0.0)
    'lam0.02_gam0'
    """
    return f"lam{lam:g}_gam{gamma:g}"


def transform_path(run_dir: str | os.PathLike, lam: float, gamma: float) -> Path:
    """Saved transform of one grid point."""
    return Path(run_dir) / "distill" / grid_name(lam, gamma) / "transform.safetensors"


# --------------------------------------------------------------------------- steps


def run_train_teacher(
    run_dir: str | os.PathLike, cfg: RunConfig, *, resume: bool = False, splits=None
) -> dict:
    """Train the run's teacher; write ``teacher/teacher.pt`` and ``teacher/history.json``."""
    run_dir = Path(run_dir)
    splits = splits or load_splits(cfg, ("train", "val"))
    out = run_dir / "teacher"
    model, history = train_teacher(
        splits.maps["train"],
        torch.as_tensor(splits.targets["train"]),
        splits.maps["val"],
        torch.as_tensor(splits.targets["val"]),
        cfg.teacher,
        out,
        resume=resume,
    )
    save_teacher(model, teacher_path(run_dir), splits.n_pix, {"config": asdict(cfg.teacher)})
    summary = {
        "arch": cfg.teacher.arch,
        "parameters": count_parameters(model),
        "epochs_run": len(history),
        "best_val_loss": min(h["val_loss"] for h in history) if history else None,
        "n_train": int(splits.maps["train"].shape[0]),
        "n_val": int(splits.maps["val"].shape[0]),
    }
    write_json(out / "history.json", {"summary": summary, "history": history})
    return summary


def _grid_order(lambdas, gammas) -> list[tuple[float, float]]:
    # Per lambda, gamma ascending: each point warm-starts from the previous gamma.
    return [(lam, g) for lam in lambdas for g in sorted(gammas)]


def distill_inputs(splits: Splits, s: DistillSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation maps of distillation, ``(n, 1, N, N)`` float32.

    At most ``s.n_maps`` training and ``s.n_val_maps`` validation maps (0: all), drawn
    with ``s.seed``; the test split is never used.

    Examples
    --------
    >>> sp = Splits({"train": torch.zeros(5, 8, 8), "val": torch.zeros(3, 8, 8)}, {}, {}, 1.0, 8)
    >>> [tuple(x.shape) for x in distill_inputs(sp, DistillSettings(n_maps=2, n_val_maps=0))]
    [(2, 1, 8, 8), (3, 1, 8, 8)]
    """
    rng = np.random.default_rng(s.seed)
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
    teacher: torch.nn.Module,
    settings: DistillSettings,
    weights: PenaltyWeights,
    warm_start: Path | None,
    path: Path,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
) -> tuple[DWT2d, list[dict]]:
    """Distil one grid point and save it as ``path`` (``.safetensors`` + ``.json``).

    The one place where a cosmology point is distilled: :func:`run_distill` and the
    ``awd sweep cosmology`` task (:mod:`cosmology.sweep`) both call it. A ``history.json``
    is written beside the transform.

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
        A saved transform to start from (used only when ``settings.warm_start``);
        otherwise the point starts from ``settings.wavelet``.
    path : path
        Where the transform goes (``.../transform.safetensors`` or ``.../wavelet``).
    checkpoint_dir : path, optional
        Checkpoint folder of an interruptible point (default: the transform's folder).
    resume : bool
        Continue from that checkpoint.

    Returns
    -------
    transform : DWT2d
    history : list of dict

    Examples
    --------
    >>> import tempfile
    >>> from cosmology.teacher import build_teacher
    >>> s = DistillSettings(levels=2, epochs=1, batch_size=4)
    >>> out = Path(tempfile.mkdtemp()) / "wavelet"
    >>> w = PenaltyWeights(l1_coeffs=0.01, l1_attr=0.0)
    >>> t, h = distill_point(torch.randn(8, 1, 32, 32), None, None, s, w, None, out)
    >>> len(h), out.with_suffix(".json").exists()
    (1, True)
    """
    s = settings
    if s.target not in TARGET_INDEX:
        raise ValueError(f"distill.target must be one of {sorted(TARGET_INDEX)}, got {s.target!r}")
    path = Path(path)
    use_warm = warm_start is not None and s.warm_start
    if use_warm:
        transform = load_transform(warm_start)
    else:
        transform = DWT2d(LearnableWavelet(s.wavelet), levels=s.levels, mode=s.mode)
    if weights.l1_attr > 0 and teacher is None:
        raise ValueError("gamma > 0 needs a teacher")
    config = DistillConfig(
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        patience=s.patience,
        seed=s.seed,
    )
    transform, history = distill(
        x_train,
        transform=transform,
        teacher=teacher if weights.l1_attr > 0 else None,
        weights=weights,
        target=TARGET_INDEX[s.target],
        config=config,
        val_data=x_val,
        checkpoint_dir=checkpoint_dir if checkpoint_dir is not None else path.parent,
        resume=resume,
        device=s.device,
    )
    transform = transform.cpu()
    save_transform(
        transform,
        path,
        weights=weights,
        history=history,
        seed=s.seed,
        extra={
            "lambda": weights.l1_coeffs,
            "gamma": weights.l1_attr,
            "target": s.target,
            # A folder name relative to the grid, so a grid can be moved or shared.
            "warm_start_from": Path(warm_start).parent.name if use_warm else None,
        },
    )
    write_json(path.parent / "history.json", history)
    return transform, history


def run_distill(
    run_dir: str | os.PathLike, cfg: RunConfig, *, resume: bool = False, splits=None
) -> list[dict]:
    """Distil the lambda x gamma grid from the run's teacher; one folder per point.

    Each point is trained with :func:`shared.distill` on (a subset of) the training maps;
    with ``warm_start`` it starts from the previous point of the same lambda (smaller
    gamma), as the reference's continuation path. Finished points are skipped.
    """
    run_dir = check_run_dir(run_dir)
    s = cfg.distill
    if s.target not in TARGET_INDEX:
        raise ValueError(f"distill.target must be one of {sorted(TARGET_INDEX)}, got {s.target!r}")
    splits = splits or load_splits(cfg, ("train", "val"))
    teacher = load_teacher(teacher_path(run_dir), n_pix=splits.n_pix)
    x_train, x_val = distill_inputs(splits, s)
    records = []
    previous: dict[float, Path] = {}
    for lam, gamma in _grid_order(s.lambdas, s.gammas):
        path = transform_path(run_dir, lam, gamma)
        folder = path.parent
        start_from = previous.get(lam) if s.warm_start else None
        if path.exists() and (folder / "history.json").exists():
            logger.info("distill %s: done already, skipped", folder.name)
        else:
            logger.info("distill %s (warm start: %s)", folder.name, start_from)
            distill_point(
                x_train,
                x_val,
                teacher,
                s,
                PenaltyWeights(l1_coeffs=lam, l1_attr=gamma),
                start_from,
                path,
                checkpoint_dir=folder,
                resume=resume,
            )
        previous[lam] = path
        records.append({"lambda": lam, "gamma": gamma, "name": folder.name, "path": str(path)})
    grid = {
        "target": s.target,
        "points": [{k: r[k] for k in ("lambda", "gamma", "name")} for r in records],
    }
    grid_path = run_dir / "distill" / "grid.json"
    # Rewritten only when it changes: its time stamp tells later steps the grid is new.
    if not grid_path.exists() or json.loads(grid_path.read_text()) != grid:
        write_json(grid_path, grid)
    return records


def read_grid(run_dir: str | os.PathLike) -> list[dict]:
    """The distilled grid points of a run (``lambda``, ``gamma``, ``name``)."""
    path = Path(run_dir) / "distill" / "grid.json"
    if not path.exists():
        raise ValueError(f"{path}: no distilled wavelets; run 'awd cosmology distill' first")
    return json.loads(path.read_text())["points"]
