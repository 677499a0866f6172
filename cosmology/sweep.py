"""``awd sweep cosmology``: the lambda x gamma sweep of the convergence-map task.

The task of :mod:`shared.sweep` for this domain; everything reuses the pipeline's code:

- ``base["run"]`` names a cosmology run directory with a trained teacher (its
  ``run.json`` and ``config.yaml`` give the data and settings); without it,
  ``base["data"]`` (a map root) and an optional ``base["config"]`` YAML give them, and
  ``prepare`` trains the teacher once into ``<sweep>/teacher/model.safetensors|json``;
- each point is distilled by :func:`cosmology.pipeline.distill_point`, warm-started from
  the previous point of its chain, and saved as ``<point>/wavelet.safetensors|json``;
- its ``val_score`` is the multiscale ridge student (peak histograms of every level and
  band of the point's coefficients, fitted on the training maps, ridge penalty chosen on
  validation): the mean over the targets of validation RMSE / training SD, as
  :mod:`cosmology.evaluate` selects. Lower is better. The test split is never read here;
- ``test_score`` refits that student (the chosen penalty) on the training maps and
  scores it on the test maps; the sweep engine calls it once, for the selected point.

``base`` keys: ``run`` or ``data``, ``config`` (optional YAML), ``settings``
(``{section: {field: value}}`` overrides). The grid of the ``distill`` section is not
used: the sweep's is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosmology.config import DOMAIN, RunConfig, load_config
from cosmology.pipeline import (
    Splits,
    distill_inputs,
    distill_point,
    load_splits,
    teacher_path,
)
from cosmology.student import MultiscalePeakFeatures, make_regressor
from cosmology.teacher import load_teacher, save_teacher, train_teacher
from shared import PenaltyWeights
from shared.config import settings_to_overrides
from shared.evaluation import mean_scaled_rmse, n_parameters
from shared.runs import RunDir, load_transform, write_json

__all__ = ["CosmologySweepTask", "make_task"]

logger = logging.getLogger(__name__)

_KNOWN_KEYS = {"run", "data", "config", "settings"}


class CosmologySweepTask:
    """One point of the sweep: distil, then score the multiscale ridge student on validation.

    Parameters
    ----------
    base : dict
        See the module docstring.

    Examples
    --------
    >>> task = CosmologySweepTask({"data": "maps", "settings": {"distill": {"n_maps": 3}}})
    >>> task.greater_is_better, task.config.distill.n_maps
    (False, 3)
    """

    greater_is_better = False

    def __init__(self, base: dict[str, Any]) -> None:
        base = dict(base)
        unknown = sorted(set(base) - _KNOWN_KEYS)
        if unknown:
            raise ValueError(f"unknown base key(s) {unknown}; known: {sorted(_KNOWN_KEYS)}")
        overrides = settings_to_overrides(base.get("settings"))
        self.run: RunDir | None = None
        if base.get("run"):
            if base.get("config") or base.get("data"):
                raise ValueError("give base.run, or base.data (and base.config), not both")
            self.run = RunDir.open(base["run"], DOMAIN)
            if not self.run.config_path.is_file():
                raise ValueError(f"{self.run.root}: config.yaml is missing; train its teacher")
            self.data = self.run.data_path
            cfg = load_config(self.run.config_path, overrides)
        else:
            if not base.get("data"):
                raise ValueError("base needs 'run' (a run directory) or 'data' (a map root)")
            self.data = Path(base["data"]).resolve()
            cfg = load_config(base.get("config"), overrides)
        self.config: RunConfig = cfg
        self._splits: Splits | None = None
        self._test: Splits | None = None

    # -- data and teacher --------------------------------------------------------------
    def splits(self) -> Splits:
        """Training and validation maps (read once per process; never the test split)."""
        if self._splits is None:
            self._splits = load_splits(self.data, self.config, ("train", "val"))
        return self._splits

    def _teacher_file(self, root: Path) -> Path:
        return teacher_path(self.run if self.run is not None else Path(root))

    def prepare(self, root: Path) -> None:
        """Check the data; check the run's teacher or train one (once per sweep folder)."""
        splits = self.splits()
        path = self._teacher_file(Path(root))
        if path.with_suffix(".safetensors").exists():
            load_teacher(path, n_pix=splits.n_pix, arch=self.config.teacher.arch)
            return
        if self.run is not None:
            raise ValueError(f"{self.run.root}: no trained teacher ({path} is missing)")
        logger.info("teacher: training on %d maps", splits.maps["train"].shape[0])
        model, history = train_teacher(
            splits.maps["train"],
            torch.as_tensor(splits.targets["train"]),
            splits.maps["val"],
            torch.as_tensor(splits.targets["val"]),
            self.config.teacher,
            path.parent,
        )
        save_teacher(model, path, splits.n_pix, {"settings": asdict(self.config.teacher)})
        write_json(
            path.parent / "history.json",
            {"parameters": n_parameters(model), "history": history},
        )

    # -- points ------------------------------------------------------------------------
    def _student(self, transform, alpha: float, splits: Splits):
        s = self.config.student
        feats = MultiscalePeakFeatures(transform, s.multiscale_bins, s.multiscale_coverage)
        feats.fit(splits.maps["train"])
        Xtr = feats.transform(splits.maps["train"])
        model = make_regressor("ridge", alpha=alpha).fit(Xtr, splits.targets["train"])
        return feats, model

    def _scale(self) -> np.ndarray:
        scale = self.splits().targets["train"].std(0)
        return np.where(scale > 0, scale, 1.0)

    def run_point(
        self, weights: PenaltyWeights, warm_start: Path | None, out: Path
    ) -> dict[str, float]:
        """Distil one point (warm-started) and score its student on the validation maps."""
        out = Path(out)
        splits = self.splits()
        x_train, x_val = distill_inputs(splits, self.config.distill)
        teacher = load_teacher(
            self._teacher_file(out.parent), n_pix=splits.n_pix, arch=self.config.teacher.arch
        )
        transform, history = distill_point(
            x_train, x_val, teacher, self.config.distill, weights, warm_start, out, progress=False
        )
        s = self.config.student
        feats = MultiscalePeakFeatures(transform, s.multiscale_bins, s.multiscale_coverage)
        feats.fit(splits.maps["train"])
        Xtr, Xva = feats.transform(splits.maps["train"]), feats.transform(splits.maps["val"])
        ytr, yva = splits.targets["train"], splits.targets["val"]
        scale = self._scale()
        best: tuple[float, float, np.ndarray] | None = None
        for alpha in s.ridge_alphas:
            pred = make_regressor("ridge", alpha=alpha).fit(Xtr, ytr).predict(Xva)
            if not np.all(np.isfinite(pred)):
                continue
            score = mean_scaled_rmse(pred, yva, scale)
            if best is None or score < best[0]:
                best = (score, float(alpha), pred)
        if best is None:
            raise ValueError(f"{out.name}: every ridge penalty gave non-finite predictions")
        score, alpha, pred = best
        write_json(out / "student.json", {"student": "awd_multiscale_ridge", "alpha": alpha})
        rmse = np.sqrt(((pred - yva) ** 2).mean(0))
        logger.info("%s: validation score %.4f (ridge alpha %g)", out.name, score, alpha)
        result = {"val_score": score, "ridge_alpha": alpha, "epochs_run": float(len(history))}
        for name, value in zip(self.config.data.targets, rmse, strict=True):
            result[f"val_rmse_{name}"] = float(value)
        return result

    def test_score(self, out: Path) -> dict[str, float]:
        """The point's student refitted on the training maps, scored on the test maps."""
        out = Path(out)
        choice = json.loads((out / "student.json").read_text())
        if self._test is None:
            self._test = load_splits(self.data, self.config, ("test",))
        transform = load_transform(out / "wavelet")
        feats, model = self._student(transform, float(choice["alpha"]), self.splits())
        pred = model.predict(feats.transform(self._test.maps["test"]))
        y = self._test.targets["test"]
        result = {"score": mean_scaled_rmse(pred, y, self._scale())}
        rmse = np.sqrt(((pred - y) ** 2).mean(0))
        for name, value in zip(self.config.data.targets, rmse, strict=True):
            result[f"rmse_{name}"] = float(value)
        return result


def make_task(base: dict[str, Any]) -> CosmologySweepTask:
    """Factory of ``awd sweep cosmology`` (``cosmology.sweep:make_task``).

    Examples
    --------
    >>> make_task({"data": "maps"}).data.name
    'maps'
    """
    return CosmologySweepTask(base)
