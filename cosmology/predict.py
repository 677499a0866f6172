"""``awd cosmology predict``: apply a run's saved student to new convergence maps.

:func:`load_student` returns a :class:`RunStudent`: the student saved by ``evaluate``
(``RUN/students/<method>/``) with the map preparation of the run (block averaging and
smoothing as configured). Inputs are FITS maps (lenstools / MassiveNuS format), folders of
them (searched recursively) and ``.npz`` stacks (``imgs``, optionally ``side_angle_deg``).
A map of another size or side angle than the student's is refused, naming the file.

Shape noise that the run added at load time (``data.noise``) is *not* added here:
observed maps carry their own noise.

Examples
--------
>>> student = load_student("runs/cosmology/ten")  # doctest: +SKIP
>>> table = student.predict_files(["observed/field1.fits"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cosmology.config import DOMAIN, RunConfig, load_config
from cosmology.data import block_average, npz_images
from cosmology.io import read_map
from cosmology.noise import smooth_map
from cosmology.student import STUDENT_CLASSES, MapStudent
from shared.runs import atomic_write
from shared.students import load_student as _load_saved
from shared.students import saved_student

__all__ = ["RunStudent", "load_student", "predict_files", "read_maps"]

logger = logging.getLogger(__name__)

_MAP_SUFFIXES = (".fits", ".fit", ".npz")


@dataclass
class InputMap:
    """One map to predict: where it came from, its pixels and side angle."""

    file: str
    index: int
    kappa: np.ndarray
    side_angle_deg: float


def _expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in _MAP_SUFFIXES)
            if not found:
                raise ValueError(f"{p}: no FITS or npz maps in this folder")
            files += found
        elif p.is_file():
            if p.suffix.lower() not in _MAP_SUFFIXES:
                raise ValueError(f"{p}: not a map file (expected .fits, .fit or .npz)")
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def _npz_side_angle(path: Path, given: float | None) -> float | None:
    with np.load(path) as data:
        if "side_angle_deg" in data:
            return float(data["side_angle_deg"])
    return given


def read_maps(
    paths: Sequence[str | os.PathLike], side_angle_deg: float | None = None
) -> list[InputMap]:
    """Every map under ``paths`` (files or folders), with its side angle.

    ``side_angle_deg`` is used for files that carry none; a file with neither is refused.
    """
    maps: list[InputMap] = []
    for path in _expand(paths):
        if path.suffix.lower() == ".npz":
            angle = _npz_side_angle(path, side_angle_deg)
            if angle is None:
                raise ValueError(f"{path}: no side_angle_deg in the npz; pass --side-angle")
            stack = npz_images(path)
            if stack.ndim != 3:
                raise ValueError(f"{path}: 'imgs' must be (n, N, N), got {stack.shape}")
            for i in range(stack.shape[0]):
                kappa = np.asarray(stack[i], dtype=np.float64)
                if not np.all(np.isfinite(kappa)):
                    raise ValueError(f"{path}: map {i} has NaN or infinite pixels")
                maps.append(InputMap(str(path), i, kappa, angle))
        else:
            kappa, angle, _ = read_map(path, side_angle_deg=side_angle_deg)
            maps.append(InputMap(str(path), 0, kappa.astype(np.float64), float(angle)))
    return maps


class RunStudent:
    """A saved student with its run's map preparation: raw maps in, parameters out.

    Parameters
    ----------
    student : MapStudent
        The fitted student.
    block : int
        Block-averaging factor of the run.
    smoothing_arcmin : float
        Gaussian smoothing of the run (0: none).
    """

    def __init__(self, student: MapStudent, block: int = 1, smoothing_arcmin: float = 0.0):
        self.student = student
        self.block = int(block)
        self.smoothing_arcmin = float(smoothing_arcmin)

    @property
    def method(self) -> str:
        """The student's method name."""
        return self.student.method

    @property
    def targets(self) -> tuple[str, ...]:
        """The columns of a prediction."""
        return self.student.targets

    def prepare(self, item: InputMap) -> np.ndarray:
        """Block-average and smooth one raw map as the run did; check its geometry."""
        s = self.student
        if abs(item.side_angle_deg - s.side_angle_deg) > 1e-6 * s.side_angle_deg:
            raise ValueError(
                f"{item.file}: side angle {item.side_angle_deg:g} deg; the student "
                f"{s.method!r} was fitted on maps of {s.side_angle_deg:g} deg"
            )
        n = item.kappa.shape[-1]
        if item.kappa.shape != (n, n) or n != s.n_pix * self.block:
            raise ValueError(
                f"{item.file}: a map of {item.kappa.shape[0]}x{item.kappa.shape[-1]} pixels; "
                f"the student {s.method!r} takes {s.n_pix * self.block}x"
                f"{s.n_pix * self.block} maps"
            )
        kappa = block_average(item.kappa, self.block)
        if self.smoothing_arcmin:
            kappa = smooth_map(kappa, self.smoothing_arcmin, s.side_angle_deg * 60.0 / s.n_pix)
        return kappa

    def predict(self, maps: np.ndarray | torch.Tensor, side_angle_deg: float | None = None):
        """Predictions ``(B, n_targets)`` for raw maps ``(B, N, N)`` of the student's angle."""
        angle = self.student.side_angle_deg if side_angle_deg is None else side_angle_deg
        arr = np.asarray(maps, dtype=np.float64)
        items = [InputMap("maps", i, arr[i], angle) for i in range(arr.shape[0])]
        return self._predict(items)

    def _predict(self, items: list[InputMap]) -> np.ndarray:
        prepared = torch.stack(
            [torch.as_tensor(self.prepare(i), dtype=torch.float32) for i in items]
        )
        return self.student.predict(prepared)

    def predict_files(
        self, paths: Sequence[str | os.PathLike], side_angle_deg: float | None = None
    ) -> pd.DataFrame:
        """One row per map under ``paths``: ``file``, ``index``, the targets, ``student``."""
        items = read_maps(paths, side_angle_deg)
        for item in items:
            self.prepare(item)  # refuse a wrong map before predicting any
        pred = self._predict(items) if items else np.zeros((0, len(self.targets)))
        table = pd.DataFrame({"file": [i.file for i in items], "index": [i.index for i in items]})
        for j, name in enumerate(self.targets):
            table[name] = pred[:, j]
        table["student"] = self.method
        return table


def load_student(run_dir: str | os.PathLike, method: str | None = None) -> RunStudent:
    """The saved student ``method`` of a run (default: the AWD student selected on validation).

    Examples
    --------
    >>> load_student("not/a/run")
    Traceback (most recent call last):
    ...
    ValueError: ...not/a/run: not a run directory (run.json is missing)
    """
    run, _, name = saved_student(run_dir, DOMAIN, method)
    student, _ = _load_saved(run.root / "students" / name, STUDENT_CLASSES)
    cfg: RunConfig = load_config(run.config_path)
    return RunStudent(student, cfg.data.block, cfg.data.smoothing_arcmin)


def predict_files(
    run_dir: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    method: str | None = None,
    side_angle_deg: float | None = None,
) -> pd.DataFrame:
    """Predict every map under ``inputs`` with a run's student; write the table to ``out``."""
    student = load_student(run_dir, method)
    table = student.predict_files(inputs, side_angle_deg)
    atomic_write(out, lambda p: table.to_csv(p, index=False, float_format="%.8g"))
    logger.info("%d maps predicted with %s", len(table), student.method)
    return table
