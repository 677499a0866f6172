"""Evaluation: select on training cells, score once on held-out cells, time end to end.

For each outcome (``regression``: ``Y_sig_mean_normalized``, scored by R^2; ``binary``:
``y_consec_thresh``, scored by AUC, F1 and accuracy), in named steps:

1. :func:`select_on_validation`: every distilled wavelet of the grid, and plain db5,
   gives the paper's 30 features (top 6 per scale); a linear student (OLS / logistic) is
   scored by cross-validation grouped by cell on the *training cells only*; the best
   wavelet with gamma > 0 is ``awd``, the best with gamma = 0 is ``awd_gamma0`` (the
   ablation); ``awd_xgboost`` (top-k values and positions of the ``awd`` wavelet) and
   ``hand_features_xgboost`` and ``hand_shape_xgboost`` (the hand features below) get
   their depth and size from
   the same grouped CV, ``awd_taylornet`` and ``db5_taylornet``
   (TaylorNets, provisional design, on the top-k values; :mod:`molecular_partner.taylor`)
   their channels and weight decay;
2. :func:`refit_and_score`: every method is refitted on all training cells as a
   :class:`~molecular_partner.student.TraceStudent` (saved under ``RUN/students/``) and
   predicts the test cells; baselines: ``db5`` (same features, plain db5), ``teacher``
   (the LSTM), ``hand_features`` (lifetime, peak amplitude, rise time; OLS or logistic
   regression), ``hand_features_xgboost`` (the same features, xgboost),
   ``hand_shape_xgboost`` (the same plus four shape ratios of each track, xgboost) and
   ``train_mean``;
3. :func:`time_methods`: end-to-end prediction time per trace under one protocol
   (:func:`shared.evaluation.seconds_per_item`), beside the teacher's forward pass;
4. :func:`write_interpretation`: per-scale importance and example traces; CD per level,
   ACD examples and the reality checks (:mod:`molecular_partner.explanations`);
5. :func:`write_evaluation`: ``metrics.csv`` (:data:`shared.evaluation.METRICS_COLUMNS`),
   ``comparisons.csv`` (paired bootstrap over the same test traces), ``selection.csv``,
   ``predictions.csv``, ``methods.json`` and the selected wavelets under ``wavelets/``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from molecular_partner.config import (
    OUTCOMES,
    EvaluateSettings,
    RunConfig,
    TeacherSettings,
    recorded,
)
from molecular_partner.explanations import explain, write_explanations
from molecular_partner.pipeline import TRACE, RunData, read_run_data, teacher_path
from molecular_partner.student import (
    HAND_FEATURES,
    ConstantPredictor,
    HandFeatures,
    LinearHead,
    TopCoefficients,
    TraceStudent,
    band_names,
    grouped_cv_score,
    make_linear,
    make_xgboost,
    xgboost_grid,
)
from molecular_partner.taylor import select_taylornet, taylornet_student, write_taylornet
from molecular_partner.teacher import LSTMTeacher, load_teacher
from shared import DWT1d, load_transform, save_transform
from shared.attributions import compression_rate, trim_attributions
from shared.evaluation import (
    COMPARISON_COLUMNS,
    METRICS,
    METRICS_COLUMNS,
    bootstrap_draws,
    bootstrap_sd,
    n_parameters,
    paired_difference,
    read_metrics,
    seconds_per_item,
    select_best,
    write_table,
)
from shared.runs import RunDir, atomic_write, fingerprint, write_json
from shared.students import save_student
from shared.sweep import read_grid

__all__ = [
    "METRICS_COLUMNS",
    "METRICS_OF",
    "OUTCOMES",
    "TRACE",
    "read_metrics",
    "refit_and_score",
    "results_table",
    "run_evaluate",
    "select_on_validation",
    "time_methods",
    "write_evaluation",
]

logger = logging.getLogger(__name__)

METRICS_OF = {"regression": ("r2",), "binary": ("auc", "f1", "accuracy")}
#: The xgboost students: their choice is a size and a depth, not a wavelet of the grid.
XGBOOST_METHODS = ("awd_xgboost", "hand_features_xgboost", "hand_shape_xgboost")
#: The hand-feature xgboost rows: the three hand features, and the same with four shape
#: ratios of each track (how it begins and ends against its peak).
HAND_XGBOOST = {"hand_features_xgboost": False, "hand_shape_xgboost": True}


@dataclass
class Context:
    """What every step reads: settings, data, teachers, wavelets and their features."""

    s: EvaluateSettings
    data: RunData
    teachers: dict[str, LSTMTeacher]
    transforms: dict[str, DWT1d]
    info: dict[str, dict[str, Any]]
    kinds: list[str]
    feats: dict[str, TopCoefficients] = field(init=False)
    f_tr: dict[str, np.ndarray] = field(init=False)
    f_te: dict[str, np.ndarray] = field(init=False)
    x_tr: np.ndarray = field(init=False)
    x_te: np.ndarray = field(init=False)
    groups: np.ndarray = field(init=False)
    hand: HandFeatures | None = field(init=False)
    hand_shape: HandFeatures | None = field(init=False)
    compression: dict[str, float] = field(default_factory=dict)
    teacher_settings: TeacherSettings | None = None  # to retrain it (reality checks)

    def __post_init__(self) -> None:
        self.x_tr, self.x_te = self.data.traces("train"), self.data.traces("test")
        self.groups = self.data.train["cell"].astype(str).to_numpy()
        self.feats = {
            name: TopCoefficients(t, k=self.s.top_k, length=self.x_tr.shape[1])
            for name, t in self.transforms.items()
        }
        self.f_tr = {name: f(self.x_tr) for name, f in self.feats.items()}
        self.f_te = {name: f(self.x_te) for name, f in self.feats.items()}
        self.hand = self.hand_shape = None
        if all(c in self.data.table.columns for c in ("X", "lifetime_s")):
            self.hand = HandFeatures().fit(self.data.train)
            self.hand_shape = HandFeatures(shape=True).fit(self.data.train)

    def y(self, kind: str, split: str) -> np.ndarray:
        part = self.data.train if split == "train" else self.data.test
        y = part[OUTCOMES[kind]].to_numpy(dtype=np.float64)
        return y.astype(int) if kind == "binary" else y

    @property
    def n_test(self) -> int:
        return len(self.x_te)


@dataclass
class Scored:
    """A method scored on the test cells of one outcome."""

    method: str
    pred: np.ndarray
    student: TraceStudent | None
    n_parameters: int
    seconds: float = float("nan")
    record: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs


def _outcomes(table: pd.DataFrame, source: str, wanted) -> list[str]:
    kinds = []
    for kind in wanted:
        if OUTCOMES[kind] not in table.columns:
            warnings.warn(
                f"{source}: outcome column {OUTCOMES[kind]!r} is missing; the {kind} "
                "outcome is not evaluated",
                stacklevel=3,
            )
            continue
        kinds.append(kind)
    if not kinds:
        raise ValueError(
            f"{source}: none of the outcome columns {[OUTCOMES[k] for k in wanted]} is present"
        )
    return kinds


def context(run: RunDir, cfg: RunConfig, data: RunData | None = None) -> Context:
    """Load what the evaluation of ``run`` reads: data set, teachers, distilled grid."""
    data = data or read_run_data(run.data_path, cfg)
    source = str(run.data_path)
    kinds = _outcomes(data.table, source, cfg.teacher.outcomes)
    teachers = {
        k: load_teacher(teacher_path(run, k), length=cfg.teacher.length, arch=cfg.teacher.arch)
        for k in kinds
    }
    grid = read_grid(run.root / "distill")["points"]
    if not grid:
        raise ValueError(f"{run.root}: the distillation grid is empty")
    transforms: dict[str, DWT1d] = {}
    info: dict[str, dict[str, Any]] = {}
    for p in grid:
        transforms[p["point"]] = load_transform(p["wavelet"])
        info[p["point"]] = {"lambda": p["l1_coeffs"], "gamma": p["l1_attr"]}
    first = next(iter(transforms.values()))
    transforms["db5"] = DWT1d("db5", levels=first.levels, mode=first.mode)
    info["db5"] = {"lambda": None, "gamma": None}
    ctx = Context(cfg.evaluate, data, teachers, transforms, info, kinds)
    ctx.teacher_settings = cfg.teacher
    if ctx.hand is None:
        warnings.warn(
            f"{source}: no raw 'X'/'lifetime_s' columns; the hand-feature baseline is skipped",
            stacklevel=2,
        )
    return ctx


# --------------------------------------------------------------------------- step 1: select


def _check_classes(ctx: Context, kind: str) -> None:
    if kind != "binary":
        return
    if len(np.unique(ctx.y(kind, "train"))) < 2:
        raise ValueError(
            f"{ctx.data.table.attrs.get('source', 'data set')}: the training "
            "cells have one class only"
        )
    y_te = ctx.y(kind, "test")
    if len(np.unique(y_te)) < 2:
        warnings.warn(
            f"the test cells have a single class ({int(y_te[0])}); AUC is undefined and "
            "reported as NaN",
            stacklevel=3,
        )


def select_on_validation(ctx: Context, kind: str) -> tuple[dict[str, dict], list[dict]]:
    """Step 1: grouped CV on the training cells chooses the wavelet of ``awd``,
    ``awd_gamma0`` and ``db5``, then xgboost's depth and size for ``awd_xgboost`` and
    ``hand_features_xgboost``, and the TaylorNets' settings.

    Returns the choice of every method and the rows of ``selection.csv``.
    """
    s = ctx.s
    y_tr = ctx.y(kind, "train")
    rows = []
    for name in ctx.feats:
        score = grouped_cv_score(
            lambda kind=kind: make_linear(kind), ctx.f_tr[name], y_tr, ctx.groups, kind, s.cv_folds
        )
        rows.append({"outcome": kind, "wavelet": name, **ctx.info[name], "cv_score": score})
    grid_rows = [r for r in rows if r["wavelet"] != "db5"]
    picks = {
        "awd": [r for r in grid_rows if r["gamma"] > 0],
        "awd_gamma0": [r for r in grid_rows if r["gamma"] == 0],
        "db5": [r for r in rows if r["wavelet"] == "db5"],
    }
    choices: dict[str, dict] = {}
    for method, candidates in picks.items():
        best, _ = select_best(candidates, "cv_score", greater_is_better=True)
        if best is None:
            warnings.warn(
                f"no wavelet for {method!r} ({kind}): the grid has no such point", stacklevel=2
            )
            continue
        choices[method] = {"wavelet": best["wavelet"], "cv_score": float(best["cv_score"])}
    if "awd" in choices:
        choices["awd_xgboost"] = _select_xgboost(ctx, kind, choices["awd"]["wavelet"], rows)
    if ctx.hand is not None:
        for method in HAND_XGBOOST:
            choices[method] = _select_hand_xgboost(ctx, kind, method, rows)
    choices.update(select_taylornet(ctx, kind, choices, rows))
    return choices, rows


def _xgboost_choice(ctx: Context, kind: str, f_tr: np.ndarray, label: str, info: dict, rows):
    """Grouped-CV choice of xgboost's size and depth on ``f_tr``; rows to ``selection.csv``."""
    s = ctx.s
    best, scores = xgboost_grid(
        f_tr,
        ctx.y(kind, "train"),
        ctx.groups,
        kind,
        estimators=s.xgb_estimators,
        depths=s.xgb_depths,
        learning_rate=s.xgb_learning_rate,
        seed=s.seed,
        folds=s.cv_folds,
    )
    for r in scores:
        rows.append(
            {
                "outcome": kind,
                "wavelet": f"{label}+xgboost(n={r['n_estimators']},depth={r['max_depth']})",
                **info,
                "cv_score": r["cv_score"],
            }
        )
    return best


def _select_xgboost(ctx: Context, kind: str, name: str, rows: list[dict]) -> dict:
    s = ctx.s
    fx = TopCoefficients(ctx.transforms[name], k=s.top_k, positions=True, length=ctx.x_tr.shape[1])
    best = _xgboost_choice(ctx, kind, fx(ctx.x_tr), name, ctx.info[name], rows)
    return {
        "wavelet": name,
        "cv_score": float(best["cv_score"]),
        "n_estimators": best["n_estimators"],
        "max_depth": best["max_depth"],
        "features": fx,
    }


def _hand_of(ctx: Context, method: str) -> HandFeatures:
    features = ctx.hand_shape if HAND_XGBOOST[method] else ctx.hand
    assert features is not None
    return features


def _select_hand_xgboost(ctx: Context, kind: str, method: str, rows: list[dict]) -> dict:
    # The hand features (with the shape ratios for hand_shape_xgboost) into xgboost: no
    # wavelet, size and depth by the same grouped CV as awd_xgboost.
    info = {"lambda": None, "gamma": None}
    features = _hand_of(ctx, method)
    label = "hand_features" if method == "hand_features_xgboost" else "hand_shape_features"
    best = _xgboost_choice(ctx, kind, features(ctx.data.train), label, info, rows)
    return {
        "cv_score": float(best["cv_score"]),
        "n_estimators": best["n_estimators"],
        "max_depth": best["max_depth"],
    }


# --------------------------------------------------------------------------- step 2: refit


def _linear_student(ctx: Context, kind: str, method: str, choice: dict) -> Scored:
    name = choice["wavelet"]
    model = make_linear(kind).fit(ctx.f_tr[name], ctx.y(kind, "train"))
    # The student predicts with the fitted numbers themselves (fast, and what is saved).
    head = LinearHead.from_sklearn(model)
    taps = 0 if method == "db5" else len(ctx.transforms[name].wavelet)
    student = TraceStudent(ctx.feats[name], head, method, kind, taps + head.n_parameters)
    teacher = ctx.teachers.get("regression")
    if name not in ctx.compression and teacher is not None:
        x = torch.from_numpy(ctx.x_te)[:, None]
        ctx.compression[name] = compression_rate(teacher, ctx.transforms[name], x)
    fe = ctx.feats[name]
    record = {
        "wavelet": name,
        **ctx.info[name],
        "cv_score": choice["cv_score"],
        "n_parameters": student.n_parameters(),
        "filter_taps": taps,
        "predictor": type(model).__name__,
        "features": f"top {ctx.s.top_k} values per scale ({len(fe.feature_names)})",
        "compression_rate": ctx.compression.get(name),
        "coefficients": dict(zip(fe.feature_names, head.weight.tolist(), strict=True)),
    }
    pred = student.predict_features(ctx.f_te[name])
    return Scored(method, pred, student, student.n_parameters(), record=record)


def _xgboost_student(ctx: Context, kind: str, choice: dict) -> Scored:
    s = ctx.s
    name, fx = choice["wavelet"], choice["features"]
    xgb = make_xgboost(
        kind, choice["n_estimators"], choice["max_depth"], s.xgb_learning_rate, s.seed
    ).fit(fx(ctx.x_tr), ctx.y(kind, "train"))
    taps = len(ctx.transforms[name].wavelet)
    n_nodes = len(xgb.get_booster().trees_to_dataframe())
    student = TraceStudent(fx, xgb, "awd_xgboost", kind, taps + n_nodes)
    record = {
        "wavelet": name,
        **ctx.info[name],
        "cv_score": choice["cv_score"],
        "n_estimators": choice["n_estimators"],
        "max_depth": choice["max_depth"],
        "n_parameters": student.n_parameters(),
        "filter_taps": taps,
        "predictor": type(xgb).__name__,
        "features": f"top {s.top_k} values and positions per scale",
        "compression_rate": ctx.compression.get(name),
    }
    pred = student.predict_features(fx(ctx.x_te))
    return Scored("awd_xgboost", pred, student, student.n_parameters(), record=record)


def _teacher_scored(ctx: Context, kind: str) -> Scored | None:
    model = ctx.teachers.get(kind)
    if model is None:
        warnings.warn(
            f"no {'BCE' if kind == 'binary' else 'MSE'} teacher for the {kind} outcome; "
            "its teacher row is left out",
            stacklevel=3,
        )
        return None
    x = torch.from_numpy(ctx.x_te)[:, None, :]
    with torch.no_grad():
        out = model.eval()(x)[:, 0]
        pred = torch.sigmoid(out) if model.loss == "bce" else out
    record = {
        "n_parameters": n_parameters(model),
        "predictor": model.label(),
    }
    return Scored(
        "teacher", pred.numpy().astype(np.float64), None, n_parameters(model), record=record
    )


def _hand_student(ctx: Context, kind: str) -> Scored:
    model = make_linear(kind).fit(ctx.hand(ctx.data.train), ctx.y(kind, "train"))
    head = LinearHead.from_sklearn(model)
    student = TraceStudent(ctx.hand, head, "hand_features", kind, len(HAND_FEATURES) + 1)
    record = {
        "n_parameters": student.n_parameters(),
        "predictor": type(model).__name__,
        "features": ", ".join(HAND_FEATURES),
    }
    pred = student.predict(ctx.data.test)
    return Scored("hand_features", pred, student, student.n_parameters(), record=record)


def _hand_xgboost_student(ctx: Context, kind: str, method: str, choice: dict) -> Scored:
    s = ctx.s
    features = _hand_of(ctx, method)
    xgb = make_xgboost(
        kind, choice["n_estimators"], choice["max_depth"], s.xgb_learning_rate, s.seed
    ).fit(features(ctx.data.train), ctx.y(kind, "train"))
    n_params = len(xgb.get_booster().trees_to_dataframe())  # tree nodes, as awd_xgboost
    student = TraceStudent(features, xgb, method, kind, n_params)
    record = {
        "cv_score": choice["cv_score"],
        "n_estimators": choice["n_estimators"],
        "max_depth": choice["max_depth"],
        "n_parameters": student.n_parameters(),
        "predictor": type(xgb).__name__,
        "features": ", ".join(features.feature_names),
    }
    pred = student.predict(ctx.data.test)
    return Scored(method, pred, student, n_params, record=record)


def refit_and_score(ctx: Context, kind: str, choices: dict[str, dict]) -> dict[str, Scored]:
    """Step 2: every chosen method refitted on all training cells; test predictions.

    Every method but the teacher becomes a :class:`TraceStudent` whose predictions are
    the ones scored.
    """
    scored: dict[str, Scored] = {}
    for method in ("awd", "awd_gamma0", "db5"):
        if method in choices:
            scored[method] = _linear_student(ctx, kind, method, choices[method])
    if "awd_xgboost" in choices:
        scored["awd_xgboost"] = _xgboost_student(ctx, kind, choices["awd_xgboost"])
    for method in ("awd_taylornet", "db5_taylornet"):
        if method in choices:
            scored[method] = taylornet_student(ctx, kind, method, choices[method])
    teacher = _teacher_scored(ctx, kind)
    if teacher is not None:
        scored["teacher"] = teacher
    if ctx.hand is not None:
        scored["hand_features"] = _hand_student(ctx, kind)
        for method in HAND_XGBOOST:
            if method in choices:
                scored[method] = _hand_xgboost_student(ctx, kind, method, choices[method])
    y_tr = ctx.y(kind, "train")
    mean = ConstantPredictor().fit(None, y_tr)
    student = TraceStudent(None, mean, "train_mean", kind, 1)
    pred = np.full(ctx.n_test, mean.mean_)
    scored["train_mean"] = Scored(
        "train_mean", pred, student, 1, record={"n_parameters": 1, "value": mean.mean_}
    )
    return scored


# --------------------------------------------------------------------------- step 3: time


def time_methods(ctx: Context, kind: str, scored: dict[str, Scored]) -> None:
    """Step 3: end-to-end seconds per trace of every method, under one protocol."""
    n, repeats = ctx.n_test, ctx.s.timing_repeats
    x_te_t = torch.from_numpy(ctx.x_te)[:, None, :]
    for method, item in scored.items():
        if item.student is None:
            teacher = ctx.teachers[kind]

            def run(m=teacher) -> None:
                with torch.no_grad():
                    out = m(x_te_t)[:, 0]
                    torch.sigmoid(out) if m.loss == "bce" else out
        elif isinstance(item.student.features, HandFeatures):

            def run(student=item.student) -> None:
                student.predict(ctx.data.test)
        elif method == "train_mean":

            def run(value=item.pred[0]) -> None:
                np.full(n, value)
        else:
            fe = item.student.features

            def run(student=item.student, fe=fe) -> None:
                student.predict_features(fe(ctx.x_te))

        reps = 3 if method == "train_mean" else repeats
        item.seconds = seconds_per_item(run, n, repeats=reps).seconds_per_item


# --------------------------------------------------------------------------- step 4: interpret


def _band_importance(attr: list[torch.Tensor], bands: list[str]) -> dict[str, float]:
    per = {b: float(a.detach().abs().sum(dim=-1).mean()) for b, a in zip(bands, attr, strict=True)}
    total = sum(per.values()) or 1.0
    return {b: v / total for b, v in per.items()}


def _student_importance(coefs: dict[str, float], f_sd: np.ndarray, bands: list[str]) -> dict:
    # |coefficient| x feature SD: each feature's typical contribution to the prediction.
    contrib: dict[str, float] = dict.fromkeys(bands, 0.0)
    for (fname, w), sd in zip(coefs.items(), f_sd, strict=True):
        contrib[fname.split("_")[0]] += abs(w) * sd
    total = sum(contrib.values()) or 1.0
    return {b: v / total for b, v in contrib.items()}


def write_interpretation(out: Path, ctx: Context, awd: DWT1d, methods: dict) -> None:
    """Step 4: per-scale importance (teacher and students) and example traces; CD per
    level, ACD examples and the reality checks (:mod:`molecular_partner.explanations`)."""
    teacher = ctx.teachers["regression"]
    db5 = ctx.transforms["db5"]
    s = ctx.s
    test = ctx.data.test
    bands = band_names(awd.levels)
    x = torch.from_numpy(ctx.x_te)[:, None, :]
    importance: dict[str, Any] = {"bands": bands}
    for label, transform in (("awd", awd), ("db5", db5)):
        attr = trim_attributions(teacher, transform, x, "input_x_gradient", 0)
        importance[f"teacher_{label}"] = _band_importance(attr, bands)
        feats = TopCoefficients(transform, k=s.top_k, length=ctx.x_te.shape[1])
        coefs = methods.get(label, {}).get("regression", {}).get("coefficients")
        if coefs:
            importance[f"student_{label}"] = _student_importance(
                coefs, feats(ctx.x_te).std(axis=0), bands
            )
    write_json(out / "importance.json", importance)

    rng = np.random.default_rng(s.seed)
    examples = []
    if "y_consec_thresh" in test.columns:
        y_bin = test["y_consec_thresh"].to_numpy().astype(int)
    else:
        y_bin = (test["Y_sig_mean_normalized"].to_numpy() > 0).astype(int)
    for cls in (1, 0):
        idx = np.flatnonzero(y_bin == cls)
        if len(idx) == 0:
            continue
        pick = rng.choice(idx, size=min(s.n_examples, len(idx)), replace=False)
        xs = x[pick]
        coeffs = awd(xs)
        attr = trim_attributions(teacher, awd, xs, "input_x_gradient", 0)
        with torch.no_grad():
            t_pred = teacher(xs)[:, 0]
        for j, i in enumerate(pick):
            examples.append(
                {
                    "index": int(i),
                    "cell": str(test["cell"].iloc[i]),
                    "aux_positive": bool(cls),
                    "y": float(test["Y_sig_mean_normalized"].iloc[i])
                    if "Y_sig_mean_normalized" in test.columns
                    else None,
                    "teacher": float(t_pred[j]),
                    "trace": ctx.x_te[i].tolist(),
                    "coefficients": {
                        b: c[j, 0].detach().tolist() for b, c in zip(bands, coeffs, strict=True)
                    },
                    "attributions": {
                        b: a[j, 0].detach().tolist() for b, a in zip(bands, attr, strict=True)
                    },
                }
            )
    write_json(out / "examples.json", {"bands": bands, "examples": examples})
    # CD per level, ACD examples and the reality checks (molecular_partner.explanations).
    write_explanations(out, explain(ctx, awd, ctx.teacher_settings))


# --------------------------------------------------------------------------- step 5: write


def _pairs(methods: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for a, b in (
        ("awd", "teacher"),
        ("awd", "db5"),
        ("awd", "awd_gamma0"),
        ("awd_xgboost", "teacher"),
        ("awd", "hand_features"),
        ("awd", "hand_features_xgboost"),
        ("awd", "hand_shape_xgboost"),
        ("hand_shape_xgboost", "teacher"),
        ("awd_taylornet", "teacher"),
        ("awd_taylornet", "db5_taylornet"),
    ):
        if a in methods and b in methods:
            pairs.append((a, b))
    return pairs


def _rows(ctx: Context, kind: str, scored: dict[str, Scored], draws: np.ndarray):
    y_te = ctx.y(kind, "test")
    target = OUTCOMES[kind]
    metrics, comparisons = [], []
    for item in scored.values():
        for metric in METRICS_OF[kind]:
            fn = METRICS[metric].fn
            metrics.append(
                {
                    "method": item.method,
                    "target": target,
                    "metric": metric,
                    "value": fn(y_te, item.pred),
                    "sd": bootstrap_sd(fn, y_te, item.pred, draws),
                    "n_test": ctx.n_test,
                    "seconds_per_item": item.seconds,
                    "n_parameters": item.n_parameters,
                }
            )
    for a, b in _pairs(list(scored)):
        for metric in METRICS_OF[kind]:
            diff, sd = paired_difference(
                METRICS[metric].fn, y_te, scored[a].pred, scored[b].pred, draws
            )
            comparisons.append(
                {"a": a, "b": b, "target": target, "metric": metric, "diff": diff, "sd": sd}
            )
    return metrics, comparisons


def _default_student(selected: dict[str, dict[str, dict]]) -> str | None:
    """The AWD student with the best grouped-CV score of the regression outcome."""
    reg = selected.get("regression", {})
    cands = [
        {"method": m, "cv_score": c["cv_score"]}
        for m, c in reg.items()
        if m.startswith("awd") and not m.startswith("awd_gamma0")
    ]
    best, _ = select_best(cands, "cv_score", greater_is_better=True)
    return None if best is None else str(best["method"])


def write_evaluation(
    run: RunDir,
    ctx: Context,
    results: dict[str, dict[str, Scored]],
    selection: list[dict],
    selected: dict[str, dict[str, dict]],
) -> pd.DataFrame:
    """Step 5: write ``students/`` and ``evaluate/``; return the metrics."""
    s = ctx.s
    out = run.step_dir("evaluate")
    students = run.step_dir("students")
    draws = bootstrap_draws(ctx.n_test, s.n_bootstrap, s.seed)
    metrics_rows, comparison_rows = [], []
    predictions = pd.DataFrame({"cell": ctx.data.test["cell"].astype(str)})
    methods: dict[str, dict[str, Any]] = {}
    index: dict[str, dict[str, Any]] = {}
    for kind, scored in results.items():
        m_rows, c_rows = _rows(ctx, kind, scored, draws)
        metrics_rows += m_rows
        comparison_rows += c_rows
        predictions[f"y_{kind}"] = ctx.y(kind, "test")
        for method, item in scored.items():
            predictions[f"{'pred' if kind == 'regression' else 'prob'}_{method}"] = item.pred
            methods.setdefault(method, {})[kind] = item.record
            if item.student is not None:
                meta = {
                    "domain": "molecular-partner",
                    "method": method,
                    "outcome": kind,
                    "target": OUTCOMES[kind],
                    "length": int(ctx.x_tr.shape[1]),
                    "data": str(run.data_path),
                    **{k: v for k, v in item.record.items() if k != "coefficients"},
                }
                save_student(students / method / kind, item.student, meta)
                index.setdefault(method, {})[kind] = item.record.get("cv_score")
        logger.info(
            "%s: %s",
            kind,
            ", ".join(
                f"{r['method']} {r['metric']} {r['value']:.3f}"
                for r in m_rows
                if r["metric"] in ("r2", "auc")
            ),
        )
    write_json(students / "index.json", {"default": _default_student(selected), "students": index})
    metrics = write_table(out / "metrics.csv", metrics_rows, METRICS_COLUMNS)
    write_table(out / "comparisons.csv", comparison_rows, COMPARISON_COLUMNS)
    frame = pd.DataFrame(selection)
    atomic_write(out / "selection.csv", lambda p: frame.to_csv(p, index=False, float_format="%.6g"))
    atomic_write(
        out / "predictions.csv", lambda p: predictions.to_csv(p, index=False, float_format="%.6g")
    )
    chosen = {
        kind: {m: c["wavelet"] for m, c in sel.items() if m not in XGBOOST_METHODS}
        for kind, sel in selected.items()
    }
    write_json(
        out / "methods.json",
        {
            "methods": methods,
            "chosen": chosen,
            "split": {
                "train_cells": sorted(ctx.data.train["cell"].astype(str).unique()),
                "test_cells": sorted(ctx.data.test["cell"].astype(str).unique()),
                "n_train": len(ctx.data.train),
                "n_test": ctx.n_test,
            },
            "settings": recorded(s),
            "timing": {"threads": 1, "items_per_call": ctx.n_test, "repeats": s.timing_repeats},
        },
    )
    for method in ("awd", "awd_gamma0"):
        name = chosen.get("regression", {}).get(method)
        if name is not None:
            save_transform(
                ctx.transforms[name],
                out / "wavelets" / method,
                extra={"selected_from": name, **ctx.info[name]},
            )
    if "awd" in chosen.get("regression", {}) and "regression" in ctx.teachers:
        write_interpretation(out, ctx, ctx.transforms[chosen["regression"]["awd"]], methods)
    write_taylornet(out, ctx, results)
    return metrics


def results_table(metrics: pd.DataFrame, methods: dict) -> pd.DataFrame:
    """The paper's biology table: R², AUC, compression rate, parameters, time per trace.

    ``metrics`` is a run's ``metrics.csv``, ``methods`` its ``methods.json``; one row per
    method in the order of ``metrics``.

    Examples
    --------
    >>> m = pd.DataFrame({"method": ["awd", "awd"], "metric": ["r2", "auc"],
    ...                   "value": [0.3, 0.8], "sd": [0.01, 0.02],
    ...                   "seconds_per_item": [1e-6, 1e-6], "n_parameters": [41, 41]})
    >>> info = {"methods": {"awd": {"regression": {"compression_rate": 0.57}}}}
    >>> results_table(m, info).loc[0, ["r2", "auc", "compression_rate"]].astype(float).tolist()
    [0.3, 0.8, 0.57]
    """
    rows = []
    for method in dict.fromkeys(metrics["method"]):
        part = metrics[metrics["method"] == method].set_index("metric")
        reg = methods.get("methods", {}).get(method, {}).get("regression", {})
        row = {"method": method}
        for metric in ("r2", "auc"):
            row[metric] = part["value"].get(metric, np.nan)
            row[f"{metric}_sd"] = part["sd"].get(metric, np.nan)
        rate = reg.get("compression_rate")
        row["compression_rate"] = np.nan if rate is None else rate
        time_of = "r2" if "r2" in part.index else part.index[0]
        row["n_parameters"] = part["n_parameters"].get(time_of)
        row["seconds_per_item"] = part["seconds_per_item"].get(time_of)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the step


def run_evaluate(
    run: RunDir, cfg: RunConfig, data: RunData | None = None, force: bool = False
) -> pd.DataFrame:
    """Select, refit and score, time, interpret and write (all steps), for every outcome.

    An evaluation made with other settings or inputs (a new grid, other teachers) is
    replaced only with ``force``.

    Raises
    ------
    ValueError
        Missing teacher or grid, traces of another length than the teacher's, a binary
        outcome with one class in the training cells.
    """
    run.require("teacher", "awd molecular-partner train-teacher")
    run.require("distill", "awd molecular-partner distill")
    inputs = {"data": run.check_data(), **evaluation_inputs(run, cfg)}
    with run.step(
        "evaluate", {"evaluate": recorded(cfg.evaluate)}, inputs, force=force, config=cfg
    ) as step:
        ctx = context(run, cfg, data)
        results: dict[str, dict[str, Scored]] = {}
        selection: list[dict] = []
        selected: dict[str, dict[str, dict]] = {}
        for kind in ctx.kinds:
            _check_classes(ctx, kind)
            choices, rows = select_on_validation(ctx, kind)
            selection += rows
            selected[kind] = choices
            scored = refit_and_score(ctx, kind, choices)
            time_methods(ctx, kind, scored)
            results[kind] = scored
        metrics = write_evaluation(run, ctx, results, selection, selected)
        step.outputs["metrics"] = fingerprint(run.root / "evaluate" / "metrics.csv")
    return metrics


def evaluation_inputs(run: RunDir, cfg: RunConfig) -> dict[str, str]:
    """What an evaluation is made from, as it is now (for the report's staleness check)."""
    teachers = {
        f"teacher_{k}": fingerprint(teacher_path(run, k).with_suffix(".safetensors"))
        for k in cfg.teacher.outcomes
        if teacher_path(run, k).with_suffix(".safetensors").is_file()
    }
    return {**teachers, "grid": fingerprint(run.root / "distill" / "grid.json")}


def require_fresh_evaluation(run_dir) -> RunDir:
    """The run, if its evaluation is as new as its teachers and grid; else a clear error."""
    from molecular_partner.config import DOMAIN, load_config

    run = RunDir.open(run_dir, DOMAIN)
    cfg = load_config(run.config_path)
    run.require_fresh("evaluate", "awd molecular-partner evaluate", evaluation_inputs(run, cfg))
    return run
