"""1D AWD through the LSTM teacher: a lambda x gamma grid with warm starts along gamma.

Each grid point trains the lowpass filter of a :class:`~shared.DWT1d` (db5, J=4, ``zero``
by default) on the AWD objective with TRIM saliency through the frozen teacher
(:func:`shared.distill`). The grid runs through the chains of :mod:`shared.sweep`: for
every lambda the gammas run in increasing order, the first from the initial wavelet and
each next one warm-started from the previous point's saved wavelet, as the reference's
continuation path does. Every point is saved (``<point>/wavelet.*`` and ``point.json``) as
soon as it is done, and a checkpoint per point lets an interrupted grid resume.

:func:`distill_point` is the one place where a point is distilled; the grid here and the
``awd sweep molecular-partner`` task (:mod:`molecular_partner.sweep`) both call it.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molecular_partner.config import DistillSettings
from shared import DistillConfig, DWT1d, PenaltyWeights, distill, load_transform, save_transform
from shared.runs import write_json
from shared.sweep import Grid, point_name, run_grid

__all__ = ["distill_grid", "distill_point", "grid_name", "read_grid"]

logger = logging.getLogger(__name__)


def grid_name(lam: float, gamma: float) -> str:
    """Name (and folder) of a grid point, the sweep engine's :func:`shared.sweep.point_name`.

    Examples
    --------
    >>> grid_name(0.001, 0.0)
    'lam0.001_gam0'
    """
    return point_name(PenaltyWeights(l1_coeffs=float(lam), l1_attr=float(gamma)))


def reconstruction_error(transform: DWT1d, x: torch.Tensor) -> float:
    """Relative L2 error of ``inverse(forward(x))``.

    Examples
    --------
    >>> reconstruction_error(DWT1d("db5", 4, "zero"), torch.randn(4, 1, 40)) < 1e-5
    True
    """
    with torch.no_grad():
        rec = transform.inverse(transform(x))
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
    """Distil one grid point and save it as ``out/wavelet.safetensors|json``.

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
        The previous point's saved wavelet (``<point>/wavelet``); used only when
        ``settings.warm_start`` is true, else the point starts from ``settings.wavelet``.
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
    >>> from molecular_partner.teacher import LSTMTeacher
    >>> x = torch.randn(20, 1, 40)
    >>> w = PenaltyWeights(l1_coeffs=1e-3, l1_attr=0.1)
    >>> s = DistillSettings(epochs=1)
    >>> t, h, meta = distill_point(x, LSTMTeacher().eval(), s, w, None, Path(tempfile.mkdtemp()))
    >>> len(h), meta["warm_start_from"]
    (1, None)
    """
    s = settings
    out = Path(out)
    if warm_start is not None and s.warm_start:
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
    config = DistillConfig(
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        attr_method=s.attr_method,
        patience=s.patience,
        seed=s.seed,
    )
    transform, history = distill(
        x_train,
        transform=start,
        teacher=teacher,
        weights=weights,
        target=target,
        config=config,
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
        transform, out / "wavelet", weights=weights, history=history, seed=s.seed, extra=extra
    )
    # The saved wavelet supersedes the checkpoint; keep the run directory small.
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return transform, history, extra


class _GridTask:
    """The distillation grid as a grid task (chains of :mod:`shared.sweep`).

    Its ``val_score`` is the point's final distillation loss (on the validation traces
    when given): the grid only distils; students are selected later, by
    :func:`molecular_partner.evaluate.evaluate`.
    """

    greater_is_better = False

    def __init__(self, live: dict[str, Any]) -> None:
        self.live = live

    def run_point(
        self, weights: PenaltyWeights, warm_start: Path | None, out: Path
    ) -> dict[str, float]:
        live = self.live
        transform, history, _ = distill_point(
            live["x"],
            live["teacher"],
            live["settings"],
            weights,
            warm_start,
            out,
            x_val=live["x_val"],
            target=live["target"],
            progress=live["progress"],
        )
        last = history[-1] if history else {}
        loss = last.get("val_total", last.get("train_total"))
        error = reconstruction_error(transform, live["x"])
        logger.info("%s: %d epochs, reconstruction error %.2e", out.name, len(history), error)
        return {
            "val_score": float("nan") if loss is None else float(loss),
            "epochs_run": float(len(history)),
            "reconstruction_error": error,
        }


def distill_grid(
    x_train: np.ndarray,
    teacher: torch.nn.Module,
    settings: DistillSettings | None = None,
    *,
    out_dir: str | Path,
    x_val: np.ndarray | None = None,
    target: int = 0,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Distil one wavelet per (lambda, gamma); one folder per point under ``out_dir``.

    Parameters
    ----------
    x_train : ndarray
        Training traces ``(N, L)``.
    teacher : nn.Module
        Frozen teacher taking ``(N, 1, L)``.
    settings : DistillSettings, optional
        Wavelet, grid and optimisation settings.
    out_dir : path
        Run directory; ``<point>/wavelet.safetensors|json``, ``<point>/point.json`` and
        ``grid.json`` are written. Finished points are loaded instead of retrained
        (resume).
    x_val : ndarray, optional
        Validation traces (held-out training cells) for early stopping.
    target : int
        Teacher output attributed.
    progress : bool, optional
        Progress bars; default only on a terminal.

    Returns
    -------
    list of dict
        One entry per point: ``name``, ``lambda``, ``gamma``, ``path``,
        ``warm_start_from``, ``epochs_run``, ``seconds``, ``reconstruction_error``,
        ``final_val_total``.

    Examples
    --------
    >>> import tempfile
    >>> from molecular_partner.teacher import LSTMTeacher
    >>> x = np.random.default_rng(0).standard_normal((20, 40)).astype(np.float32)
    >>> s = DistillSettings(lambdas=(0.001,), gammas=(0.0, 0.1), epochs=1)
    >>> [e["name"] for e in distill_grid(x, LSTMTeacher(), s, out_dir=tempfile.mkdtemp())]
    ['lam0.001_gam0', 'lam0.001_gam0.1']
    """
    s = settings or DistillSettings()
    out = Path(out_dir)
    x = np.asarray(x_train, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"training traces must be a non-empty (N, L) array, got {x.shape}")
    xt = torch.from_numpy(x)[:, None, :]
    xv = None
    if x_val is not None and len(x_val) > 0:
        xv = torch.from_numpy(np.asarray(x_val, dtype=np.float32))[:, None, :]
    teacher.eval()  # the teacher is frozen; LSTM has no dropout, so this only quiets warnings
    with torch.no_grad():
        teacher(xt[:1])  # a trace length the teacher refuses fails here, not mid-grid
    out.mkdir(parents=True, exist_ok=True)
    task = _GridTask(
        {
            "x": xt,
            "x_val": xv,
            "teacher": teacher,
            "settings": s,
            "target": target,
            "progress": progress,
        }
    )
    records = run_grid(task, Grid(s.lambdas, s.gammas, s.warm_start), out)
    entries = []
    for r in records:
        meta = json.loads((out / r["point"] / "wavelet.json").read_text())
        epochs = int(r["epochs_run"])
        entries.append(
            {
                "name": r["point"],
                "lambda": r["l1_coeffs"],
                "gamma": r["l1_attr"],
                "path": str(Path(r["point"]) / "wavelet.safetensors"),
                # From the wavelet's own metadata: None when warm starts are off.
                "warm_start_from": meta["extra"]["warm_start_from"],
                "epochs_run": epochs,
                "seconds": r["seconds"],
                "reconstruction_error": r["reconstruction_error"],
                "final_val_total": (meta.get("history") or [{}])[-1].get("val_total"),
            }
        )
    write_json(out / "grid.json", {"settings": asdict(s), "entries": entries})
    return entries


def read_grid(run_dir: str | Path) -> list[dict[str, Any]]:
    """Entries of a distillation run (``grid.json``), paths made absolute.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = write_json(d / "grid.json", {"entries": []})
    >>> read_grid(d)
    []
    """
    run = Path(run_dir)
    grid = run / "grid.json"
    if not grid.exists():
        raise FileNotFoundError(f"{grid}: not a distillation run (grid.json is missing)")
    try:
        entries = json.loads(grid.read_text())["entries"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{grid}: unreadable grid description ({err})") from None
    for e in entries:
        e["path"] = str(run / e["path"])
    return entries
