"""1D AWD through the LSTM teacher: a lambda x gamma grid with warm starts along gamma.

Each grid point trains the lowpass filter of a :class:`~shared.DWT1d` (db5, J=4, ``zero``
by default) on the AWD objective with TRIM saliency through the frozen teacher
(:func:`shared.distill`). For every lambda the gammas run in increasing order from the
initial wavelet, each warm-started from the previous one, as the reference's continuation
path does. Every point is saved with :func:`shared.save_transform` as soon as it is done,
and a checkpoint per point lets an interrupted grid resume.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molecular_partner.config import DistillSettings
from shared import DistillConfig, DWT1d, PenaltyWeights, distill, load_transform, save_transform
from shared.runs import write_json

__all__ = ["distill_grid", "grid_name", "read_grid"]

logger = logging.getLogger(__name__)


def grid_name(lam: float, gamma: float) -> str:
    """File-safe name of a grid point (no dots: they would read as file suffixes).

    Examples
    --------
    >>> grid_name(0.001, 0.0)
    'lam0p001_gam0'
    """
    return f"lam{lam:g}_gam{gamma:g}".replace(".", "p").replace("-", "m")


def _reconstruction_error(transform: DWT1d, x: torch.Tensor) -> float:
    with torch.no_grad():
        rec = transform.inverse(transform(x))
        return float((rec - x).norm() / x.norm().clamp_min(1e-12))


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
    """Distil one wavelet per (lambda, gamma) and save them under ``out_dir/wavelets``.

    Parameters
    ----------
    x_train : ndarray
        Training traces ``(N, L)``.
    teacher : nn.Module
        Frozen teacher taking ``(N, 1, L)``.
    settings : DistillSettings, optional
        Wavelet, grid and optimisation settings.
    out_dir : path
        Run directory; ``wavelets/<name>.safetensors|json`` and ``grid.json`` are written.
        Points already saved there are loaded instead of retrained (resume).
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
        ``warm_start_from``, ``epochs_run``, ``seconds``, ``reconstruction_error``.

    Examples
    --------
    >>> import tempfile
    >>> from molecular_partner.teacher import LSTMTeacher
    >>> x = np.random.default_rng(0).standard_normal((20, 40)).astype(np.float32)
    >>> s = DistillSettings(lambdas=(0.001,), gammas=(0.0, 0.1), epochs=1)
    >>> [e["name"] for e in distill_grid(x, LSTMTeacher(), s, out_dir=tempfile.mkdtemp())]
    ['lam0p001_gam0', 'lam0p001_gam0p1']
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
    entries: list[dict[str, Any]] = []
    for lam in sorted(s.lambdas):
        previous: str | None = None
        transform = DWT1d(s.wavelet, levels=s.levels, mode=s.mode)
        for gamma in sorted(s.gammas):
            name = grid_name(lam, gamma)
            path = out / "wavelets" / f"{name}.safetensors"
            weights = PenaltyWeights(l1_coeffs=lam, l1_attr=gamma)
            tic = time.perf_counter()
            if path.exists() and path.with_suffix(".json").exists():
                logger.info("%s: already distilled, loaded", name)
                transform = load_transform(path)
                meta = json.loads(path.with_suffix(".json").read_text())
                history = meta.get("history") or []
            else:
                if previous is None or not s.warm_start:
                    start = DWT1d(s.wavelet, levels=s.levels, mode=s.mode)
                else:
                    start = DWT1d(
                        transform.wavelet.h0.detach().clone(), levels=s.levels, mode=s.mode
                    )
                    start.wavelet.init_name = s.wavelet
                config = DistillConfig(
                    epochs=s.epochs,
                    batch_size=s.batch_size,
                    lr=s.lr,
                    attr_method=s.attr_method,
                    patience=s.patience,
                    seed=s.seed,
                )
                transform, history = distill(
                    xt,
                    transform=start,
                    teacher=teacher,
                    weights=weights,
                    target=target,
                    config=config,
                    val_data=xv,
                    checkpoint_dir=out / "checkpoints" / name,
                    resume=True,
                    progress=progress,
                )
                save_transform(
                    transform,
                    path,
                    weights=weights,
                    history=history,
                    seed=s.seed,
                    extra={
                        "warm_start_from": previous if s.warm_start else None,
                        "lambda": lam,
                        "gamma": gamma,
                        "settings": asdict(s),
                    },
                )
            entry = {
                "name": name,
                "lambda": lam,
                "gamma": gamma,
                "path": str(Path("wavelets") / f"{name}.safetensors"),
                "warm_start_from": previous if s.warm_start else None,
                "epochs_run": len(history),
                "seconds": time.perf_counter() - tic,
                "reconstruction_error": _reconstruction_error(transform, xt),
                "final_val_total": history[-1].get("val_total") if history else None,
            }
            logger.info(
                "%s: %d epochs, reconstruction error %.2e",
                name,
                entry["epochs_run"],
                entry["reconstruction_error"],
            )
            entries.append(entry)
            previous = name
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
