"""Which timescales the regression teacher uses, by contextual decomposition; reality checks.

Part of step 4 of ``awd molecular-partner evaluate``
(:func:`molecular_partner.evaluate.write_interpretation`); its documents are written
beside ``importance.json``:

- ``cd_scales.json``: TRIM + CD scores (:func:`shared.interpret.trim_cd`) of every wavelet
  level of the selected AWD wavelet and of db5, for the regression teacher's output, on
  the test traces, in float64. For every level ``rel + rest = output`` (the conservation
  error is stored). Scales: level ``j`` details cover periods of ``2^j`` to ``2^(j+1)``
  samples (the approximation ``cA_J`` longer ones). Each trace is its track resampled to
  ``L`` samples (:func:`molecular_partner.data.downsample`): a track of ``n`` frames
  (``lifetime_s = n dt``) keeps every ``(n - 1) / (L - 1)``-th frame when ``n >= L`` and
  is zero-padded otherwise, so one sample lasts ``dt max(1, (n - 1) / (L - 1))`` seconds,
  with ``dt = lifetime_s / n``. The periods are given in seconds for the median test
  track and for the quartiles of the test tracks' sample durations.
- ``acd_examples.json``: agglomerative CD hierarchies (:func:`shared.interpret.acd_hierarchy`)
  of ``evaluate.n_acd_examples`` test traces over units of ``evaluate.acd_tile``
  coefficients of the AWD wavelet, ranked by ``|score|``.
- ``reality_checks.json`` (only with ``evaluate.reality_checks``): the cascading
  model-randomisation and the label-randomisation tests (Adebayo et al. 2018) of every
  attribution the evaluation reports (TRIM input x gradient per coefficient of the AWD
  wavelet, as in ``examples.json``; its mass per band for the AWD wavelet and db5, as in
  ``importance.json``; CD per level of both) on ``evaluate.reality_check_items`` test
  traces; the label test retrains the teacher on permuted outcomes for
  ``evaluate.reality_check_epochs`` epochs. A failed test flags the attribution.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from molecular_partner.config import OUTCOMES, TeacherSettings
from molecular_partner.teacher import train_teacher
from shared.interpret import cd_attribution, level_groups, trim_attribution, wavelet_scales
from shared.interpret.evaluation import (
    EXPLANATION_FILES,
    acd_examples,
    band_mass,
    cd_scale_scores,
    reality_checks,
    write_explanations,
)

if TYPE_CHECKING:
    from molecular_partner.evaluate import Context

__all__ = ["EXPLANATION_FILES", "explain", "sample_seconds", "write_explanations"]

logger = logging.getLogger(__name__)

TARGET = {OUTCOMES["regression"]: 0}


def sample_seconds(tracks: pd.DataFrame, length: int) -> np.ndarray | None:
    """Seconds per sample of every track's resampled trace (``None`` without the raw data).

    Examples
    --------
    >>> t = pd.DataFrame({"lifetime_s": [20.0, 79.0], "X": [np.ones(20), np.ones(79)]})
    >>> sample_seconds(t, 40).tolist()
    [1.0, 2.0]
    """
    if not {"X", "lifetime_s"} <= set(tracks.columns):
        return None
    n = np.array([np.count_nonzero(~np.isnan(np.asarray(x, float))) for x in tracks["X"]])
    dt = tracks["lifetime_s"].to_numpy(dtype=np.float64) / np.maximum(n, 1)
    return dt * np.maximum(1.0, (n - 1) / (length - 1))


def _level_scales(levels: int, seconds: np.ndarray | None) -> list[dict[str, Any]]:
    """Per level (``level_groups`` order): cycles per sample, periods in samples and, with
    the tracks' sample durations, in seconds (median track; quartiles)."""
    quart = None if seconds is None else np.percentile(seconds, [25, 50, 75])
    rows = []
    for row in wavelet_scales(levels):
        row = dict(row)
        if row["kind"] == "detail":
            row["name"] = f"cD{row['level']}"
        for end in ("min", "max"):
            period = row.pop(f"period_{end}_px")
            row[f"period_{end}_samples"] = period
            if quart is not None:
                q1, med, q3 = (None if period is None else float(period * q) for q in quart)
                row[f"seconds_{end}_median_track"] = med
                row[f"seconds_{end}_quartiles"] = None if period is None else [q1, q3]
        rows.append(row)
    return rows


def _timescale(ctx: Context) -> tuple[np.ndarray | None, dict[str, Any]]:
    length = ctx.x_te.shape[1]
    seconds = sample_seconds(ctx.data.test, length)
    if seconds is None:
        return None, {"sample": "no lifetimes in the data set; scales in samples only"}
    q1, med, q3 = np.percentile(seconds, [25, 50, 75])
    return seconds, {
        "sample": f"one sample lasts dt * max(1, (n - 1) / ({length} - 1)) s for a track of n "
        "frames (dt = lifetime_s / n): every (n-1)/(L-1)-th frame is kept when n >= L, "
        "shorter tracks are zero-padded",
        "seconds_per_sample_median": float(med),
        "seconds_per_sample_quartiles": [float(q1), float(q3)],
        "n_tracks": len(seconds),
    }


def _double(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).double().eval()


def cd_scales(ctx: Context, awd: Any) -> dict[str, Any]:
    """The ``cd_scales.json`` document (see the module docstring)."""
    teacher = _double(ctx.teachers["regression"])
    x = torch.from_numpy(ctx.x_te)[:, None, :].double()
    seconds, timescale = _timescale(ctx)
    doc: dict[str, Any] = {
        "method": "TRIM + CD (shared.interpret.trim_cd) in float64; a level's relevant input "
        "is the inverse transform of its coefficients, the rest is the irrelevant part",
        "target": OUTCOMES["regression"],
        "units": "the regression teacher's output (the target's units)",
        "traces": f"the {x.shape[0]} test traces",
        "timescale": timescale,
    }
    for label, transform in (("awd", awd), ("db5", ctx.transforms["db5"])):
        transform = _double(transform)
        with torch.no_grad():
            groups = level_groups(transform(x[:1]))
        scales = _level_scales(transform.levels, seconds)
        if [g.name for g in groups] != [r["name"] for r in scales]:
            raise ValueError("wavelet levels and scales are not in the same order")
        doc[label] = {
            "levels": transform.levels,
            **cd_scale_scores(teacher, x, transform, groups, scales, TARGET),
        }
    return doc


def acd_document(ctx: Context, awd: Any) -> dict[str, Any]:
    """The ``acd_examples.json`` document (see the module docstring)."""
    s = ctx.s
    teacher, transform = _double(ctx.teachers["regression"]), _double(awd)
    x = torch.from_numpy(ctx.x_te)[:, None, :].double()
    rng = np.random.default_rng(s.seed)
    picks = np.sort(rng.choice(x.shape[0], min(s.n_acd_examples, x.shape[0]), replace=False))
    test = ctx.data.test
    seconds, _ = _timescale(ctx)

    def describe(i: int) -> dict[str, Any]:
        with torch.no_grad():
            out = float(teacher(x[i : i + 1])[0, 0])
        return {
            "cell": str(test["cell"].iloc[i]),
            "y": float(test[OUTCOMES["regression"]].iloc[i]),
            "teacher_output": out,
            "seconds_per_sample": None if seconds is None else float(seconds[i]),
        }

    return {
        "method": "agglomerative CD (shared.interpret.acd_hierarchy) over units of "
        "wavelet coefficients, ranked by |CD score|",
        "target": OUTCOMES["regression"],
        "tile": s.acd_tile,
        "scales": _level_scales(transform.levels, None),
        "examples": acd_examples(
            teacher, x, transform, picks.tolist(), TARGET, tile=s.acd_tile, describe=describe
        ),
    }


def reality_document(ctx: Context, awd: Any, settings: TeacherSettings) -> dict[str, Any]:
    """The ``reality_checks.json`` document (see the module docstring)."""
    s = ctx.s
    teacher = _double(ctx.teachers["regression"])
    n = len(ctx.x_te)
    pick = np.unique(np.linspace(0, n - 1, min(s.reality_check_items, n)).round().astype(int))
    x = torch.from_numpy(ctx.x_te[pick])[:, None, :].double()
    attributions: dict[str, Any] = {}
    for label, transform in (("awd", awd), ("db5", ctx.transforms["db5"])):
        transform = _double(transform)
        with torch.no_grad():
            groups = level_groups(transform(x[:1]))
        fn = trim_attribution(transform, "input_x_gradient", 0)
        if label == "awd":
            attributions["trim_input_x_gradient_awd"] = fn
        attributions[f"trim_input_x_gradient_{label}_bands"] = band_mass(fn)
        attributions[f"cd_{label}_levels"] = cd_attribution(transform, groups, 0)
    fit = ~ctx.data.is_val
    x_fit = ctx.x_tr[fit]
    y_fit = ctx.data.train[OUTCOMES["regression"]].to_numpy(np.float32)[fit]
    budget = replace(settings, epochs=s.reality_check_epochs, patience=s.reality_check_epochs)

    def retrain(labels: torch.Tensor) -> nn.Module:
        # Early stopping watches the permuted training outcomes themselves: the model kept
        # is the one that fits the shuffled labels best, as in the test.
        logger.info("reality checks: teacher on permuted outcomes, %d epochs", budget.epochs)
        y = labels.numpy().astype(np.float32)
        model, _ = train_teacher(x_fit, y, budget, x_val=x_fit, y_val=y, progress=False)
        return model.double().eval()

    doc = reality_checks(
        teacher,
        attributions,
        x,
        y_train=torch.from_numpy(y_fit),
        retrain=retrain,
        seed=settings.seed,
    )
    return {
        "target": OUTCOMES["regression"],
        "items": f"{x.shape[0]} test traces evenly spread over the test split",
        "label_teacher": {
            "epochs": budget.epochs,
            "targets": "training outcomes permuted across traces (seed = teacher.seed)",
            "kept": "best epoch on the training traces with their permuted outcomes",
        },
        **doc,
    }


def explain(
    ctx: Context, awd: Any, settings: TeacherSettings | None
) -> dict[str, dict[str, Any] | None]:
    """The explanation documents of an evaluation, by file name (``None``: not made).

    ``settings`` (the run's teacher settings) are needed by the reality checks only.
    """
    s = ctx.s
    checks = None
    if s.reality_checks:
        if settings is None:
            raise ValueError("the reality checks need the teacher settings to retrain it")
        checks = reality_document(ctx, awd, settings)
    return {
        "cd_scales.json": cd_scales(ctx, awd),
        "acd_examples.json": acd_document(ctx, awd) if s.n_acd_examples else None,
        "reality_checks.json": checks,
    }
