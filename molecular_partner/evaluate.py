"""Evaluation: select on training cells, score once on held-out cells, time end to end.

For each outcome (``regression``: ``Y_sig_mean_normalized``, scored by R^2; ``binary``:
``y_consec_thresh``, scored by AUC, F1 and accuracy):

1. every distilled wavelet of the grid, and plain db5, gives the paper's 30 features
   (top 6 per scale); a linear student (OLS / logistic) is scored by cross-validation
   grouped by cell on the *training cells only*; the best wavelet with gamma > 0 is
   ``awd``, the best with gamma = 0 is ``awd_gamma0`` (the ablation);
2. ``awd_xgboost``: top-k values and positions of the ``awd`` wavelet into xgboost, its
   depth and size chosen by the same grouped CV;
3. baselines: ``db5`` (same features, plain db5), ``teacher`` (the LSTM),
   ``hand_features`` (lifetime, peak amplitude, rise time) and ``train_mean``;
4. all are refitted on all training cells and scored once on the test cells, with a
   bootstrap SD over test traces;
5. end-to-end prediction time per trace: transform + features + predictor from the
   normalised traces, against the teacher's forward pass on the same traces.

Outputs (run directory): ``metrics.csv`` (``method, metric, value, sd, n_test,
predict_seconds_per_trace``), ``selection.csv``, ``predictions.csv``, ``methods.json``,
``importance.json``, ``examples.json`` and the selected wavelets under ``wavelets/``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from threadpoolctl import threadpool_limits

from molecular_partner.config import EvaluateSettings
from molecular_partner.data import load_awd_table
from molecular_partner.student import (
    HAND_FEATURES,
    LinearHead,
    TopCoefficients,
    band_names,
    grouped_cv_score,
    hand_features,
    make_linear,
    make_xgboost,
)
from molecular_partner.teacher import LSTMTeacher, n_parameters
from shared import DWT1d, load_transform, save_transform
from shared.attributions import compression_rate, trim_attributions
from shared.runs import atomic_write, write_json

__all__ = ["METRICS_COLUMNS", "OUTCOMES", "evaluate", "read_metrics"]

logger = logging.getLogger(__name__)

METRICS_COLUMNS = ["method", "metric", "value", "sd", "n_test", "predict_seconds_per_trace"]
OUTCOMES = {"regression": "Y_sig_mean_normalized", "binary": "y_consec_thresh"}
TRACE = "X_same_length_normalized"


# --------------------------------------------------------------------------- metrics
def _r2(y: np.ndarray, p: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return float("nan") if ss == 0 else 1.0 - float(np.sum((y - p) ** 2)) / ss


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float("nan") if len(np.unique(y)) < 2 else float(roc_auc_score(y, p))


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    return float(f1_score(y, p >= 0.5, zero_division=0.0))


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(accuracy_score(y, p >= 0.5))


METRIC_FUNCS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "r2": _r2,
    "auc": _auc,
    "f1": _f1,
    "accuracy": _accuracy,
}
METRICS_OF = {"regression": ("r2",), "binary": ("auc", "f1", "accuracy")}


def _bootstrap_sd(metric: str, y: np.ndarray, p: np.ndarray, draws: np.ndarray) -> float:
    if len(draws) < 2:
        return float("nan")
    fn = METRIC_FUNCS[metric]
    values = np.array([fn(y[i], p[i]) for i in draws])
    values = values[np.isfinite(values)]
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def _time_per_trace(fn: Callable[[], object], n: int, repeats: int) -> float:
    # One thread for torch and for numpy's BLAS alike, so no method gains from threads
    # the other does not use, and a busy machine disturbs both the same way.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            fn()  # warm-up: first-call allocations and lazy initialisation are not prediction
            times = []
            for _ in range(max(1, repeats)):
                tic = time.perf_counter()
                fn()
                times.append(time.perf_counter() - tic)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(times)) / max(n, 1)


# --------------------------------------------------------------------------- inputs
def _check_table(table: pd.DataFrame, teacher: LSTMTeacher, source: str) -> pd.DataFrame:
    table = load_awd_table(table, length=len(table[TRACE].iloc[0]) if len(table) else 40)
    length = len(table[TRACE].iloc[0])
    if length != teacher.length:
        raise ValueError(
            f"{source}: traces have length {length} but the teacher expects {teacher.length}"
        )
    for col in ("split", "cell"):
        if col not in table.columns:
            raise ValueError(f"{source}: missing column {col!r} (splits and CV are by cell)")
    splits = set(table["split"].unique())
    if not {"train", "test"} <= splits:
        raise ValueError(f"{source}: needs 'train' and 'test' rows, found {sorted(splits)}")
    return table


def _outcomes(table: pd.DataFrame, source: str, wanted: tuple[str, ...]) -> list[str]:
    kinds = []
    for kind in wanted:
        if kind not in OUTCOMES:
            raise ValueError(f"unknown outcome {kind!r}; known: {sorted(OUTCOMES)}")
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


# --------------------------------------------------------------------------- evaluate
def evaluate(
    table: pd.DataFrame,
    teacher: LSTMTeacher,
    grid: list[dict[str, Any]],
    settings: EvaluateSettings | None = None,
    *,
    out_dir: str | Path,
    teacher_binary: LSTMTeacher | None = None,
    outcomes: tuple[str, ...] = ("regression", "binary"),
    source: str = "data set",
) -> pd.DataFrame:
    """Select, fit and score every method; write the evaluation run directory.

    Parameters
    ----------
    table : DataFrame
        AWD layout with ``cell`` and ``split`` columns (``train``/``test``); ``X`` and
        ``lifetime_s`` enable the hand-feature baseline.
    teacher : LSTMTeacher
        The distilled teacher (regression outcome, MSE).
    grid : list of dict
        Distilled wavelets (:func:`molecular_partner.distillation.read_grid`).
    settings : EvaluateSettings, optional
    out_dir : path
        Run directory.
    teacher_binary : LSTMTeacher, optional
        A BCE teacher for the binary outcome's ``teacher`` row (else that row is left
        out, with a warning, unless ``teacher`` itself is a BCE teacher).
    outcomes : tuple of str
        Which outcomes to evaluate.
    source : str
        Name of the data in messages.

    Returns
    -------
    DataFrame
        The rows of ``metrics.csv``.

    Examples
    --------
    See ``tests/molecular_partner/test_mp_pipeline.py`` (runs on a tiny simulated set).
    """
    s = settings or EvaluateSettings()
    out = Path(out_dir)
    table = _check_table(table, teacher, source)
    kinds = _outcomes(table, source, outcomes)
    if not grid:
        raise ValueError("the distillation grid is empty")
    train = table[table["split"] == "train"].reset_index(drop=True)
    test = table[table["split"] == "test"].reset_index(drop=True)
    x_tr = np.stack(train[TRACE].to_list()).astype(np.float32)
    x_te = np.stack(test[TRACE].to_list()).astype(np.float32)
    groups = train["cell"].astype(str).to_numpy()
    n_te = len(x_te)
    rng = np.random.default_rng(s.seed)
    draws = rng.integers(0, n_te, size=(s.n_bootstrap, n_te)) if s.n_bootstrap else np.zeros(0)

    transforms: dict[str, DWT1d] = {}
    info: dict[str, dict[str, Any]] = {}
    for e in grid:
        transforms[e["name"]] = load_transform(e["path"])
        info[e["name"]] = {"lambda": e["lambda"], "gamma": e["gamma"]}
    first = next(iter(transforms.values()))
    transforms["db5"] = DWT1d("db5", levels=first.levels, mode=first.mode)
    info["db5"] = {"lambda": None, "gamma": None}
    feats = {
        name: TopCoefficients(t, k=s.top_k, length=x_tr.shape[1]) for name, t in transforms.items()
    }
    f_tr = {name: f(x_tr) for name, f in feats.items()}
    f_te = {name: f(x_te) for name, f in feats.items()}
    hand_ok = all(c in table.columns for c in ("X", "lifetime_s"))
    if not hand_ok:
        warnings.warn(
            f"{source}: no raw 'X'/'lifetime_s' columns; the hand-feature baseline is skipped",
            stacklevel=2,
        )
    else:
        h_tr = hand_features(train)
        medians = h_tr.median()
        h_tr = h_tr.fillna(medians).to_numpy()

    rows: list[dict[str, Any]] = []
    selection: list[dict[str, Any]] = []
    predictions = pd.DataFrame({"cell": test["cell"].astype(str)})
    methods: dict[str, dict[str, Any]] = {}
    chosen: dict[str, dict[str, str]] = {}
    x_te_t = torch.from_numpy(x_te)
    # The paper's compactness of each wavelet on the test traces, under the MSE teacher.
    compression: dict[str, float] = {}

    for kind in kinds:
        y_tr = train[OUTCOMES[kind]].to_numpy(dtype=np.float64)
        y_te = test[OUTCOMES[kind]].to_numpy(dtype=np.float64)
        if kind == "binary":
            y_tr, y_te = y_tr.astype(int), y_te.astype(int)
            if len(np.unique(y_tr)) < 2:
                raise ValueError(f"{source}: the training cells have one class only")
            if len(np.unique(y_te)) < 2:
                warnings.warn(
                    f"{source}: the test cells have a single class ({int(y_te[0])}); AUC is "
                    "undefined and reported as NaN",
                    stacklevel=2,
                )
        predictions[f"y_{kind}"] = y_te
        preds: dict[str, np.ndarray] = {}
        timing: dict[str, float] = {}

        # 1. selection of the wavelet by grouped CV on training cells
        for name in feats:
            score = grouped_cv_score(
                lambda kind=kind: make_linear(kind), f_tr[name], y_tr, groups, kind, s.cv_folds
            )
            selection.append({"outcome": kind, "wavelet": name, **info[name], "cv_score": score})
        sel = pd.DataFrame([r for r in selection if r["outcome"] == kind])
        grid_rows = sel[sel["wavelet"] != "db5"]
        picks = {
            "awd": grid_rows[grid_rows["gamma"] > 0],
            "awd_gamma0": grid_rows[grid_rows["gamma"] == 0],
            "db5": sel[sel["wavelet"] == "db5"],
        }
        chosen[kind] = {}
        for method, cand in picks.items():
            cand = cand[np.isfinite(cand["cv_score"])]
            if cand.empty:
                warnings.warn(
                    f"no wavelet for {method!r} ({kind}): the grid has no such point", stacklevel=2
                )
                continue
            name = str(cand.loc[cand["cv_score"].idxmax(), "wavelet"])
            chosen[kind][method] = name
            model = make_linear(kind).fit(f_tr[name], y_tr)
            head = LinearHead.from_sklearn(model)
            preds[method] = (
                model.predict(f_te[name])
                if kind == "regression"
                else model.predict_proba(f_te[name])[:, 1]
            )
            fe = feats[name]
            timing[method] = _time_per_trace(
                lambda fe=fe, head=head: head.predict(fe(x_te)),
                n_te,
                s.timing_repeats,
            )
            taps = 0 if method == "db5" else len(transforms[name].wavelet)
            if name not in compression and teacher.loss == "mse":
                compression[name] = compression_rate(teacher, transforms[name], x_te_t[:, None])
            methods.setdefault(method, {})[kind] = {
                "wavelet": name,
                **info[name],
                "cv_score": float(cand["cv_score"].max()),
                "n_parameters": taps + head.n_parameters,
                "filter_taps": taps,
                "predictor": type(model).__name__,
                "features": f"top {s.top_k} values per scale ({len(fe.feature_names)})",
                "compression_rate": compression.get(name),
                "predict_only_seconds_per_trace": _time_per_trace(
                    lambda name=name, model=model: model.predict(f_te[name]),
                    n_te,
                    s.timing_repeats,
                ),
                "coefficients": dict(zip(fe.feature_names, head.weight.tolist(), strict=True)),
            }
            if method == "awd" and kind == "regression":
                _save_selected(transforms[name], out / "wavelets" / "awd", info[name], name)
            if method == "awd_gamma0" and kind == "regression":
                _save_selected(transforms[name], out / "wavelets" / "awd_gamma0", info[name], name)

        # 2. xgboost on values and positions of the selected AWD wavelet
        if "awd" in chosen[kind]:
            name = chosen[kind]["awd"]
            fx = TopCoefficients(transforms[name], k=s.top_k, positions=True, length=x_tr.shape[1])
            fx_tr = fx(x_tr)
            best = (-np.inf, None)
            for n_est in s.xgb_estimators:
                for depth in s.xgb_depths:

                    def mk(n_est=n_est, depth=depth, kind=kind):
                        return make_xgboost(kind, n_est, depth, s.xgb_learning_rate, s.seed)

                    score = grouped_cv_score(mk, fx_tr, y_tr, groups, kind, s.cv_folds)
                    selection.append(
                        {
                            "outcome": kind,
                            "wavelet": f"{name}+xgboost(n={n_est},depth={depth})",
                            **info[name],
                            "cv_score": score,
                        }
                    )
                    if np.isfinite(score) and score > best[0]:
                        best = (score, (n_est, depth))
            n_est, depth = best[1] if best[1] is not None else (s.xgb_estimators[0], 2)
            xgb = make_xgboost(kind, n_est, depth, s.xgb_learning_rate, s.seed).fit(fx_tr, y_tr)

            def xgb_predict(xgb=xgb, fx=fx, kind=kind):
                f = fx(x_te)
                return xgb.predict(f) if kind == "regression" else xgb.predict_proba(f)[:, 1]

            preds["awd_xgboost"] = np.asarray(xgb_predict(), dtype=np.float64)
            timing["awd_xgboost"] = _time_per_trace(xgb_predict, n_te, s.timing_repeats)
            n_nodes = len(xgb.get_booster().trees_to_dataframe())
            methods.setdefault("awd_xgboost", {})[kind] = {
                "wavelet": name,
                **info[name],
                "cv_score": float(best[0]),
                "n_estimators": n_est,
                "max_depth": depth,
                "n_parameters": len(transforms[name].wavelet) + n_nodes,
                "filter_taps": len(transforms[name].wavelet),
                "predictor": type(xgb).__name__,
                "features": f"top {s.top_k} values and positions per scale",
                "compression_rate": compression.get(name),
            }

        # 3. teacher
        t_model = teacher if (kind == "regression") == (teacher.loss == "mse") else None
        if kind == "binary" and teacher_binary is not None:
            t_model = teacher_binary
        if t_model is None:
            warnings.warn(
                f"no {'BCE' if kind == 'binary' else 'MSE'} teacher for the {kind} outcome; "
                "its teacher row is left out",
                stacklevel=2,
            )
        else:
            if t_model.length != x_te.shape[1]:
                raise ValueError(
                    f"the {kind} teacher expects traces of length {t_model.length}, "
                    f"got {x_te.shape[1]}"
                )
            t_model.eval()

            def teacher_predict(m=t_model):
                with torch.no_grad():
                    out = m(x_te_t[:, None, :])[:, 0]
                    return torch.sigmoid(out) if m.loss == "bce" else out

            preds["teacher"] = teacher_predict().numpy().astype(np.float64)
            timing["teacher"] = _time_per_trace(teacher_predict, n_te, s.timing_repeats)
            methods.setdefault("teacher", {})[kind] = {
                "n_parameters": n_parameters(t_model),
                "predictor": f"LSTM(1->{t_model.hidden}) + Linear ({t_model.loss})",
            }

        # 4. hand features and the training mean
        if hand_ok:
            model = make_linear("binary" if kind == "binary" else "regression")
            model.fit(h_tr, y_tr)

            def hand_predict(model=model, kind=kind):
                h = hand_features(test).fillna(medians).to_numpy()
                return model.predict(h) if kind == "regression" else model.predict_proba(h)[:, 1]

            preds["hand_features"] = np.asarray(hand_predict(), dtype=np.float64)
            timing["hand_features"] = _time_per_trace(hand_predict, n_te, s.timing_repeats)
            methods.setdefault("hand_features", {})[kind] = {
                "n_parameters": len(HAND_FEATURES) + 1,
                "predictor": type(model).__name__,
                "features": ", ".join(HAND_FEATURES),
            }
        mean = float(y_tr.mean())
        preds["train_mean"] = np.full(n_te, mean)
        timing["train_mean"] = _time_per_trace(lambda m=mean: np.full(n_te, m), n_te, 3)
        methods.setdefault("train_mean", {})[kind] = {"n_parameters": 1, "value": mean}

        # 5. scores
        for method, p in preds.items():
            predictions[f"{'pred' if kind == 'regression' else 'prob'}_{method}"] = p
            for metric in METRICS_OF[kind]:
                rows.append(
                    {
                        "method": method,
                        "metric": metric,
                        "value": METRIC_FUNCS[metric](y_te, p),
                        "sd": _bootstrap_sd(metric, y_te, p, draws),
                        "n_test": n_te,
                        "predict_seconds_per_trace": timing[method],
                    }
                )
        logger.info(
            "%s: %s",
            kind,
            ", ".join(f"{r['method']} {r['metric']} {r['value']:.3f}" for r in rows[-len(preds) :]),
        )

    metrics = pd.DataFrame(rows, columns=METRICS_COLUMNS)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(metrics, out / "metrics.csv")
    _write_csv(pd.DataFrame(selection), out / "selection.csv")
    _write_csv(predictions, out / "predictions.csv")
    write_json(
        out / "methods.json",
        {
            "methods": methods,
            "chosen": chosen,
            "split": {
                "train_cells": sorted(train["cell"].astype(str).unique()),
                "test_cells": sorted(test["cell"].astype(str).unique()),
                "n_train": len(train),
                "n_test": n_te,
            },
            "settings": asdict(s),
            "torch_threads": torch.get_num_threads(),
        },
    )
    if "regression" in chosen and "awd" in chosen["regression"] and teacher.loss == "mse":
        name = chosen["regression"]["awd"]
        _write_interpretation(
            out, teacher, transforms[name], transforms["db5"], test, x_te, methods, s
        )
    return metrics


def _save_selected(transform: DWT1d, path: Path, info: dict, name: str) -> None:
    save_transform(transform, path, extra={"selected_from": name, **info})


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda p: df.to_csv(p, index=False, float_format="%.6g"))


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


def _write_interpretation(
    out: Path,
    teacher: LSTMTeacher,
    awd: DWT1d,
    db5: DWT1d,
    test: pd.DataFrame,
    x_te: np.ndarray,
    methods: dict,
    s: EvaluateSettings,
) -> None:
    """Per-scale importance and example traces with their coefficient attributions."""
    bands = band_names(awd.levels)
    x = torch.from_numpy(x_te)[:, None, :]
    importance: dict[str, Any] = {"bands": bands}
    for label, transform in (("awd", awd), ("db5", db5)):
        attr = trim_attributions(teacher, transform, x, "input_x_gradient", 0)
        importance[f"teacher_{label}"] = _band_importance(attr, bands)
        feats = TopCoefficients(transform, k=s.top_k, length=x_te.shape[1])
        coefs = methods.get(label, {}).get("regression", {}).get("coefficients")
        if coefs:
            importance[f"student_{label}"] = _student_importance(
                coefs, feats(x_te).std(axis=0), bands
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
                    "trace": x_te[i].tolist(),
                    "coefficients": {
                        b: c[j, 0].detach().tolist() for b, c in zip(bands, coeffs, strict=True)
                    },
                    "attributions": {
                        b: a[j, 0].detach().tolist() for b, a in zip(bands, attr, strict=True)
                    },
                }
            )
    write_json(out / "examples.json", {"bands": bands, "examples": examples})


def results_table(metrics: pd.DataFrame, methods: dict) -> pd.DataFrame:
    """The paper's biology table: R², AUC, compression rate, parameters, time per trace.

    ``metrics`` is a run's ``metrics.csv``, ``methods`` its ``methods.json``; one row per
    method in the order of ``metrics``.

    Examples
    --------
    >>> m = pd.DataFrame({"method": ["awd", "awd"], "metric": ["r2", "auc"],
    ...                   "value": [0.3, 0.8], "sd": [0.01, 0.02],
    ...                   "predict_seconds_per_trace": [1e-6, 1e-6]})
    >>> info = {"methods": {"awd": {"regression": {"compression_rate": 0.57,
    ...                                            "n_parameters": 41}}}}
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
        row["n_parameters"] = reg.get("n_parameters", np.nan)
        time_of = "r2" if "r2" in part.index else part.index[0]
        row["predict_seconds_per_trace"] = part["predict_seconds_per_trace"].get(time_of)
        rows.append(row)
    return pd.DataFrame(rows)


def read_metrics(path: str | Path) -> pd.DataFrame:
    """Read ``metrics.csv`` (a file or its run directory) and check its columns.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> _ = p.write_text(",".join(METRICS_COLUMNS) + "\\nawd,r2,0.3,0.01,100,1e-6\\n")
    >>> read_metrics(p)["value"].tolist()
    [0.3]
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: metrics file is missing")
    df = pd.read_csv(path)
    if list(df.columns) != METRICS_COLUMNS:
        raise ValueError(f"{path}: columns {list(df.columns)}, expected {METRICS_COLUMNS}")
    return df
