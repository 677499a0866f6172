"""``awd sweep molecular-partner``: the lambda x gamma sweep of the clathrin -> auxilin task.

The task of :mod:`shared.sweep` for this domain. ``base`` (the sweep config's ``base``
section) names a data set built by ``awd molecular-partner build-dataset`` and, optionally,
a trained teacher; everything else reuses the pipeline's code:

- the teacher is loaded from ``base["teacher"]`` or trained once, in ``prepare``, on the
  training cells (early stopping on held-out training cells), and saved as
  ``<sweep>/teacher/teacher.safetensors|json``;
- each point is distilled by :func:`molecular_partner.pipeline.distill_point`,
  warm-started from the previous point of its chain;
- its ``val_score`` is the paper's student (top 6 coefficients per scale + OLS; logistic
  regression for the binary outcome) scored by cross-validation grouped by cell on the
  *training cells only* (R^2, or AUC for the binary outcome);
- ``test_score`` fits that student on all training cells and scores it on the test
  cells; the sweep engine calls it once, for the selected point.

``base`` keys: ``data`` (required), ``teacher`` (optional path), ``outcome``
(``regression`` or ``binary``), ``config`` (optional pipeline YAML, as for the
``molecular-partner`` commands) and ``settings`` (``{section: {field: value}}``
overrides of it). The grid of the ``distill`` section is not used: the sweep's is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molecular_partner.config import OUTCOMES, RunConfig, load_config
from molecular_partner.data import validation_cells
from molecular_partner.pipeline import TRACE, distill_point, reconstruction_error
from molecular_partner.student import TopCoefficients, grouped_cv_score, make_linear
from molecular_partner.teacher import LSTMTeacher, load_teacher, save_teacher, train_teacher
from shared import PenaltyWeights, load_transform
from shared.config import settings_to_overrides
from shared.runs import write_json

__all__ = ["MolecularPartnerSweepTask", "make_task", "validation_cells"]

logger = logging.getLogger(__name__)

_KNOWN_KEYS = {"data", "teacher", "outcome", "config", "settings"}


class MolecularPartnerSweepTask:
    """One point of the sweep: distil, then score the paper's student on training cells.

    Parameters
    ----------
    base : dict
        See the module docstring.

    Examples
    --------
    >>> task = MolecularPartnerSweepTask({"data": "runs/data"})
    >>> task.greater_is_better, task.outcome
    (True, 'regression')
    """

    greater_is_better = True

    def __init__(self, base: dict[str, Any]) -> None:
        base = dict(base)
        unknown = sorted(set(base) - _KNOWN_KEYS)
        if unknown:
            raise ValueError(f"unknown base key(s) {unknown}; known: {sorted(_KNOWN_KEYS)}")
        if not base.get("data"):
            raise ValueError("base.data must name a data set built by build-dataset")
        self.data_path = Path(base["data"])
        self.teacher_path = Path(base["teacher"]) if base.get("teacher") else None
        self.outcome = str(base.get("outcome", "regression"))
        if self.outcome not in OUTCOMES:
            raise ValueError(f"base.outcome must be one of {list(OUTCOMES)}, got {self.outcome!r}")
        overrides = settings_to_overrides(base.get("settings"))
        self.config: RunConfig = load_config(base.get("config"), overrides)
        self._cache: dict[str, Any] | None = None

    # -- data --------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        """Training and test traces, outcomes and cells (read once per process)."""
        if self._cache is not None:
            return self._cache
        from molecular_partner.data import read_dataset

        table = read_dataset(self.data_path)
        column = OUTCOMES[self.outcome]
        for col in ("split", "cell", column):
            if col not in table.columns:
                raise ValueError(f"{self.data_path}: missing column {col!r}")
        train = table[table["split"] == "train"].reset_index(drop=True)
        test = table[table["split"] == "test"].reset_index(drop=True)
        if train.empty or test.empty:
            raise ValueError(f"{self.data_path}: needs training and test cells")
        t = self.config.teacher
        val = validation_cells(table, t.val_cells, t.seed)
        dtype = np.int64 if self.outcome == "binary" else np.float64
        self._cache = {
            "x": np.stack(train[TRACE].to_list()).astype(np.float32),
            "y": train[column].to_numpy(dtype=dtype),
            "groups": train["cell"].astype(str).to_numpy(),
            "is_val": train["cell"].astype(str).isin(val).to_numpy(),
            "val_cells": val,
            "x_test": np.stack(test[TRACE].to_list()).astype(np.float32),
            "y_test": test[column].to_numpy(dtype=dtype),
        }
        return self._cache

    # -- teacher -----------------------------------------------------------------------
    def _teacher_file(self, root: Path) -> Path:
        if self.teacher_path is None:
            return Path(root) / "teacher" / "model"
        if (self.teacher_path / "run.json").is_file():
            return self.teacher_path / "teacher" / "model"
        return self.teacher_path

    def prepare(self, root: Path) -> None:
        """Check the data; load the given teacher or train one (once per sweep folder)."""
        d = self.data()
        if self.teacher_path is not None:
            load_teacher(self._teacher_file(Path(root)), length=d["x"].shape[1])
            return
        path = self._teacher_file(Path(root))
        if path.with_suffix(".safetensors").exists():
            return
        cfg = self.config.teacher
        fit, val = ~d["is_val"], d["is_val"]
        logger.info("teacher: %d traces, validation cells %s", fit.sum(), d["val_cells"])
        model, history = train_teacher(
            d["x"][fit],
            d["y"][fit].astype(np.float32),
            cfg,
            loss="bce" if self.outcome == "binary" else "mse",
            x_val=d["x"][val] if val.any() else None,
            y_val=d["y"][val].astype(np.float32) if val.any() else None,
            checkpoint_dir=path.parent,
        )
        save_teacher(model, path, history=history, settings=cfg)
        write_json(path.parent / "history.json", history)

    def _teacher(self, root: Path) -> LSTMTeacher:
        return load_teacher(self._teacher_file(root), length=self.data()["x"].shape[1]).eval()

    # -- points ------------------------------------------------------------------------
    def run_point(
        self, weights: PenaltyWeights, warm_start: Path | None, out: Path
    ) -> dict[str, float]:
        """Distil one point (warm-started) and score its student by grouped CV."""
        d = self.data()
        fit, val = ~d["is_val"], d["is_val"]
        x = torch.from_numpy(d["x"].copy())[:, None, :]
        teacher = self._teacher(Path(out).parent)
        transform, history, _ = distill_point(
            x[fit],
            teacher,
            self.config.distill,
            weights,
            warm_start,
            Path(out),
            x_val=x[val] if val.any() else None,
            progress=False,
        )
        features = TopCoefficients(transform, k=self.config.evaluate.top_k, length=d["x"].shape[1])
        score = grouped_cv_score(
            lambda: make_linear(self.outcome),
            features(d["x"]),
            d["y"],
            d["groups"],
            self.outcome,
            self.config.evaluate.cv_folds,
        )
        logger.info("%s: grouped-CV %s %.4f", Path(out).name, self._metric, score)
        return {
            "val_score": score,
            "epochs_run": float(len(history)),
            "reconstruction_error": reconstruction_error(transform, x),
        }

    @property
    def _metric(self) -> str:
        return "r2" if self.outcome == "regression" else "auc"

    def test_score(self, out: Path) -> dict[str, float]:
        """The point's student fitted on all training cells, scored on the test cells."""
        from sklearn.metrics import r2_score, roc_auc_score

        d = self.data()
        transform = load_transform(Path(out) / "wavelet")
        features = TopCoefficients(transform, k=self.config.evaluate.top_k, length=d["x"].shape[1])
        model = make_linear(self.outcome).fit(features(d["x"]), d["y"])
        f_test = features(d["x_test"])
        if self.outcome == "regression":
            return {"r2": float(r2_score(d["y_test"], model.predict(f_test)))}
        if len(np.unique(d["y_test"])) < 2:
            logger.warning("the test cells have a single class; AUC is undefined")
            return {"auc": float("nan")}
        return {"auc": float(roc_auc_score(d["y_test"], model.predict_proba(f_test)[:, 1]))}


def make_task(base: dict[str, Any]) -> MolecularPartnerSweepTask:
    """Factory of ``awd sweep molecular-partner`` (``molecular_partner.sweep:make_task``).

    Examples
    --------
    >>> task = make_task({"data": "runs/data", "settings": {"distill": {"train": {"epochs": 3}}}})
    >>> task.config.distill.train.epochs
    3
    """
    return MolecularPartnerSweepTask(base)
