"""``awd cosmology evaluate``: students and baselines, selected on validation, scored on test.

Every method is a feature set and a predictor. Feature settings (the distilled wavelet,
the histogram range) and predictor settings (the ridge penalty) are chosen on the
validation split only, by the mean over parameters of RMSE / (training SD); the chosen
setting is refitted on the training split and scored once on the test split: RMSE per
parameter with a bootstrap SD, and the end-to-end prediction time per map (features from
the raw map plus the predictor), beside the teacher's forward pass.

Method names (``metrics.csv``): the paper's chi-square template classifier with
per-cosmology covariance carries the bare name (``awd``, ``awd_gamma0``, ``db5``,
``raw_peaks``, ``laplace``, ``roberts``, ``power_spectrum``, ``power_peaks``,
``pixel_quantiles``, ``minkowski``); ``<name>_pooled`` is the same with one pooled
covariance and ``<name>_ridge`` a ridge regression on the same features;
``awd_multiscale_ridge`` and ``awd_multiscale_xgboost`` are the continuous students on
multi-scale peak histograms of the learned coefficients; ``teacher`` and ``trivial``
(the training mean) close the table.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cosmology.config import RunConfig, check_run_dir
from cosmology.pipeline import load_splits, read_grid, teacher_path, transform_path
from cosmology.student import (
    ConcatFeatures,
    MinkowskiFeatures,
    MultiscalePeakFeatures,
    PeakFilterFeatures,
    PixelQuantileFeatures,
    PowerSpectrumFeatures,
    TemplateChi2,
    WaveletL1Features,
    band_names,
    check_predictions,
    laplace_kernel,
    make_regressor,
    raw_kernel,
    roberts_cross,
    wavelet_kernels,
)
from cosmology.teacher import build_teacher, count_parameters, load_teacher, predict
from shared import DWT2d
from shared.attributions import FourierBands2d, trim_attributions
from shared.losses import flatten_coeffs
from shared.runs import atomic_write, load_transform, write_json

__all__ = ["METRIC_COLUMNS", "bootstrap_rmse", "metrics_markdown", "run_evaluate"]

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ["method", "parameter", "rmse", "rmse_sd", "n_test", "predict_seconds_per_map"]
PARAMETERS = ("omega_m", "sigma_8")


def bootstrap_rmse(
    y: np.ndarray, pred: np.ndarray, n_boot: int = 1000, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """RMSE per column and the SD of its bootstrap distribution over the maps.

    Examples
    --------
    >>> y = np.zeros((100, 2)); p = np.ones((100, 2))
    >>> rmse, sd = bootstrap_rmse(y, p, 200)
    >>> rmse.tolist(), sd.tolist()
    ([1.0, 1.0], [0.0, 0.0])
    """
    err2 = (np.asarray(pred, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2
    rmse = np.sqrt(err2.mean(0))
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, err2.shape[1]))
    for start in range(0, n_boot, 100):
        idx = rng.integers(0, len(err2), size=(min(100, n_boot - start), len(err2)))
        boots[start : start + idx.shape[0]] = np.sqrt(err2[idx].mean(1))
    return rmse, boots.std(0, ddof=1) if n_boot > 1 else np.zeros_like(rmse)


@dataclass
class _Candidate:
    family: str
    setting: dict[str, Any]
    build: Callable[[], Any]
    key: str | None = None  # candidates with one key share their peak values
    max_train: int | None = None  # subsample train and val (slow features)


@dataclass
class _Choice:
    method: str
    family: str
    setting: dict[str, Any]
    predictor: str
    val_score: float
    features: Any = None
    model: Any = None
    Xtr: Any = None  # training features and targets, kept for the final refit
    ytr: Any = None


def _score(pred: np.ndarray, y: np.ndarray, scale: np.ndarray) -> float:
    return float(np.mean(np.sqrt(((pred - y) ** 2).mean(0)) / scale))


def _predictors(cfg: RunConfig) -> list[tuple[str, str, Callable[[], Any]]]:
    s = cfg.student
    out: list[tuple[str, str, Callable[[], Any]]] = [
        ("", "chi2_per_class", lambda: TemplateChi2("per_class")),
        ("_pooled", "chi2_pooled", lambda: TemplateChi2("pooled")),
    ]
    for a in s.ridge_alphas:
        out.append(("_ridge", f"ridge(alpha={a:g})", lambda a=a: make_regressor("ridge", alpha=a)))
    return out


def _fit_predict(model_factory, Xtr, ytr, Xva) -> tuple[Any, np.ndarray] | None:
    try:
        model = model_factory().fit(Xtr, ytr)
    except (ValueError, np.linalg.LinAlgError) as err:
        logger.warning("a predictor failed: %s", err)
        return None
    pred = model.predict(Xva)
    if not np.all(np.isfinite(pred)):
        return None
    return model, pred


def _candidates(cfg: RunConfig, grid: list[dict], transforms: dict, side: float) -> list:
    s = cfg.student
    out: list[_Candidate] = []
    awd_points = [p for p in grid if p["gamma"] > 0]
    zero_points = [p for p in grid if p["gamma"] == 0]
    for c in s.coverages:
        for fam, points in (("awd", awd_points), ("awd_gamma0", zero_points)):
            for p in points:
                k = wavelet_kernels(transforms[p["name"]])
                out.append(
                    _Candidate(
                        fam,
                        {"wavelet": p["name"], "coverage": c},
                        lambda k=k, c=c: PeakFilterFeatures(k, n_bins=s.n_bins, coverage=c),
                        key=f"{fam}/{p['name']}",
                    )
                )
        db5 = wavelet_kernels(DWT2d(cfg.distill.wavelet, levels=1))
        fixed = {"db5": db5, "raw_peaks": raw_kernel(), "laplace": laplace_kernel()}
        for fam, k in fixed.items():
            out.append(
                _Candidate(
                    fam,
                    {"coverage": c},
                    lambda k=k, c=c: PeakFilterFeatures(k, n_bins=s.n_bins, coverage=c),
                    key=fam,
                )
            )
        out.append(
            _Candidate(
                "roberts",
                {"coverage": c},
                lambda c=c: PeakFilterFeatures(
                    filter_fn=roberts_cross, n_bins=s.n_bins, coverage=c
                ),
            )
        )
        out.append(
            _Candidate(
                "power_peaks",
                {"coverage": c},
                lambda c=c: ConcatFeatures(
                    [
                        PowerSpectrumFeatures(side, s.n_ell_bins),
                        PeakFilterFeatures(raw_kernel(), n_bins=s.n_bins, coverage=c),
                    ]
                ),
            )
        )
    # The wavelet l1-norm of every grid point and of db5, through the same predictors.
    l1_sets = (("awd_l1", awd_points), ("awd_gamma0_l1", zero_points))
    for fam, points in l1_sets:
        for p in points:
            out.append(
                _Candidate(
                    fam,
                    {"wavelet": p["name"]},
                    lambda t=transforms[p["name"]]: WaveletL1Features(t, s.l1_bins, s.l1_coverage),
                )
            )
    db5_2d = DWT2d(cfg.distill.wavelet, levels=cfg.distill.levels, mode=cfg.distill.mode)
    out.append(
        _Candidate("db5_l1", {}, lambda: WaveletL1Features(db5_2d, s.l1_bins, s.l1_coverage))
    )
    out.append(_Candidate("power_spectrum", {}, lambda: PowerSpectrumFeatures(side, s.n_ell_bins)))
    out.append(_Candidate("pixel_quantiles", {}, lambda: PixelQuantileFeatures(s.quantiles)))
    if s.minkowski:
        out.append(
            _Candidate(
                "minkowski",
                {},
                lambda: MinkowskiFeatures(side, s.minkowski_bins, 0.98),
                max_train=s.minkowski_max_maps,
            )
        )
    return out


def _time_per_map(fn: Callable[[], Any], n_maps: int, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best / n_maps


def metrics_markdown(metrics: pd.DataFrame, header: str = "") -> str:
    """The metrics table as Markdown (one row per method, both parameters side by side).

    Examples
    --------
    >>> m = pd.DataFrame({"method": ["a", "a"], "parameter": ["omega_m", "sigma_8"],
    ...                   "rmse": [0.01, 0.02], "rmse_sd": [0.001, 0.002], "n_test": [10, 10],
    ...                   "predict_seconds_per_map": [1e-5, 1e-5]})
    >>> print(metrics_markdown(m).splitlines()[2])
    | a | 0.01000 (0.00100) | 0.02000 (0.00200) | 1e-05 |
    """
    lines = [header] if header else []
    lines += [
        "| method | RMSE Omega_m (SD) | RMSE sigma_8 (SD) | seconds per map |",
        "| --- | --- | --- | --- |",
    ]
    for method, group in metrics.groupby("method", sort=False):
        cells = []
        for p in PARAMETERS:
            row = group[group.parameter == p]
            cells.append(f"{row.rmse.iloc[0]:.5f} ({row.rmse_sd.iloc[0]:.5f})" if len(row) else "-")
        t = group.predict_seconds_per_map.iloc[0]
        lines.append(f"| {method} | {cells[0]} | {cells[1]} | {t:.3g} |")
    return "\n".join(lines) + "\n"


def _interpretation(
    teacher, transform, maps: torch.Tensor, cfg: RunConfig, pixel_arcmin: float
) -> tuple[dict, dict[str, np.ndarray]]:
    """Attribution mass per wavelet band and per Fourier band; top-coefficient maps."""
    e = cfg.evaluate
    x = maps[: e.n_attr_maps, None].double()
    teacher = teacher.double()
    transform = transform.double()
    info: dict[str, Any] = {"bands": band_names(transform.levels)}
    arrays: dict[str, np.ndarray] = {}
    for method in ("saliency", "input_x_gradient"):
        attrs = trim_attributions(teacher, transform, x, method, [0, 1])
        info[f"wavelet_{method}"] = {
            p: [float(a.detach().abs().sum() / x.shape[0]) for a in flatten_coeffs(att)]
            for p, att in zip(PARAMETERS, attrs, strict=True)
        }
    # Log-spaced annuli from 1.5x the fundamental to the corner: equal-width bands would put
    # all the large scales (where the power spectrum lives) into the first one.
    n_pix = x.shape[-1]
    edges = np.concatenate(
        [[0.0], np.geomspace(1.5 / n_pix, np.sqrt(2) / 2 + 1e-9, e.n_fourier_bands)]
    )
    fourier = FourierBands2d(e.n_fourier_bands, edges)
    attrs = trim_attributions(teacher, fourier, x, "input_x_gradient", [0, 1])
    pixel_rad = np.deg2rad(pixel_arcmin / 60.0)
    info["fourier_ell_edges"] = (2 * np.pi * edges / pixel_rad).tolist()
    info["fourier_input_x_gradient"] = {
        p: [float(a.detach().abs().sum() / x.shape[0]) for a in att]
        for p, att in zip(PARAMETERS, attrs, strict=True)
    }
    # One map rebuilt from its most-attributed coefficients, per parameter.
    one = x[:1]
    coeffs = transform(one)
    attrs = trim_attributions(teacher, transform, one, "input_x_gradient", [0, 1])
    arrays["example_map"] = one[0, 0].numpy()
    for p, att in zip(PARAMETERS, attrs, strict=True):
        leaves = flatten_coeffs(att)
        flat = torch.cat([a.abs().reshape(-1) for a in leaves])
        k = max(1, int(e.top_fraction * flat.numel()))
        threshold = torch.topk(flat, k).values[-1]
        kept = [
            c * (a.abs() >= threshold) for c, a in zip(flatten_coeffs(coeffs), leaves, strict=True)
        ]
        structured = [kept[0]] + [
            tuple(kept[1 + 3 * i : 4 + 3 * i]) for i in range(transform.levels)
        ]
        with torch.no_grad():
            arrays[f"top_{p}"] = transform.inverse(structured, size=one.shape[-2:])[0, 0].numpy()
    info["top_fraction"] = e.top_fraction
    return info, arrays


def run_evaluate(run_dir: str | os.PathLike, cfg: RunConfig, splits=None) -> pd.DataFrame:
    """Fit, select (validation) and score (test) every method; write ``evaluate/``.

    Writes ``metrics.csv`` (:data:`METRIC_COLUMNS`), ``metrics.md``, ``selection.json``
    (chosen settings, validation scores, parameter counts, speed ratio),
    ``predictions.npz`` (test targets and each method's predictions) and the
    interpretation results used by the report.

    Raises
    ------
    ValueError
        Not a cosmology run, missing teacher or wavelets, a teacher that does not fit the
        maps, or NaN predictions of a selected method.
    """
    run_dir = check_run_dir(run_dir)
    out = run_dir / "evaluate"
    splits = splits or load_splits(cfg)
    teacher = load_teacher(teacher_path(run_dir), n_pix=splits.n_pix)
    grid = read_grid(run_dir)
    transforms = {
        p["name"]: load_transform(transform_path(run_dir, p["lambda"], p["gamma"])) for p in grid
    }
    # Features in the maps' own float32: what a user's prediction would run on.
    xtr, xva, xte = (splits.maps[k] for k in ("train", "val", "test"))
    ytr, yva, yte = (splits.targets[k] for k in ("train", "val", "test"))
    scale = ytr.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    n_test = len(yte)
    predictors = _predictors(cfg)

    # --- selection on validation -------------------------------------------------------
    best: dict[str, _Choice] = {}
    val_table: list[dict[str, Any]] = []
    values_cache: dict[str, tuple] = {}
    sub_rng = np.random.default_rng(cfg.student.seed)
    for cand in _candidates(cfg, grid, transforms, splits.side_angle_deg):
        tic = time.perf_counter()
        feats = cand.build()
        ctr, cva = xtr, xva
        if cand.max_train and cand.max_train < len(xtr):
            itr = np.sort(sub_rng.choice(len(xtr), cand.max_train, replace=False))
            iva = np.sort(
                sub_rng.choice(len(xva), min(len(xva), cand.max_train // 2), replace=False)
            )
            ctr, cva = xtr[torch.as_tensor(itr)], xva[torch.as_tensor(iva)]
            cand.setting = {**cand.setting, "train_maps": int(cand.max_train)}
            ytr_c, yva_c = ytr[itr], yva[iva]
        else:
            ytr_c, yva_c = ytr, yva
        if cand.key is not None:
            # Peak values do not depend on the histogram range: compute them once per key.
            if cand.key not in values_cache:
                values_cache[cand.key] = (feats.values(xtr), feats.values(xva))
            (vtr, wtr), (vva, wva) = values_cache[cand.key]
            feats.fit(values=vtr)
            Xtr, Xva = feats.histogram(vtr, wtr, len(xtr)), feats.histogram(vva, wva, len(xva))
        else:
            feats.fit(ctr)
            Xtr, Xva = feats.transform(ctr), feats.transform(cva)
        for suffix, pname, factory in predictors:
            res = _fit_predict(factory, Xtr, ytr_c, Xva)
            if res is None:
                continue
            score = _score(res[1], yva_c, scale)
            method = cand.family + suffix
            val_table.append(
                {"method": method, "predictor": pname, **cand.setting, "val_score": score}
            )
            if method not in best or score < best[method].val_score:
                best[method] = _Choice(
                    method, cand.family, cand.setting, pname, score, feats, factory, Xtr, ytr_c
                )
        logger.info(
            "validation: %s %s (%.1f s)", cand.family, cand.setting, time.perf_counter() - tic
        )
    values_cache.clear()

    # Multi-scale peaks of the learned coefficients: the wavelet and ridge penalty on
    # validation, then xgboost on the chosen wavelet.
    s = cfg.student
    ms_best: _Choice | None = None
    # Multi-scale features are costlier: only the gamma > 0 wavelets of the lambda that
    # validation chose for the paper's student.
    awd_lam = None
    if "awd" in best:
        awd_lam = next(p["lambda"] for p in grid if p["name"] == best["awd"].setting["wavelet"])
    for p in [p for p in grid if p["gamma"] > 0 and (awd_lam is None or p["lambda"] == awd_lam)]:
        feats = MultiscalePeakFeatures(
            transforms[p["name"]], s.multiscale_bins, s.multiscale_coverage
        )
        feats.fit(xtr)
        Xtr, Xva = feats.transform(xtr), feats.transform(xva)
        for a in s.ridge_alphas:
            factory = lambda a=a: make_regressor("ridge", alpha=a)  # noqa: E731
            res = _fit_predict(factory, Xtr, ytr, Xva)
            if res is None:
                continue
            score = _score(res[1], yva, scale)
            val_table.append(
                {
                    "method": "awd_multiscale_ridge",
                    "predictor": f"ridge(alpha={a:g})",
                    "wavelet": p["name"],
                    "val_score": score,
                }
            )
            if ms_best is None or score < ms_best.val_score:
                ms_best = _Choice(
                    "awd_multiscale_ridge",
                    "awd_multiscale",
                    {"wavelet": p["name"]},
                    f"ridge(alpha={a:g})",
                    score,
                    feats,
                    factory,
                    Xtr,
                    ytr,
                )
    if ms_best is not None:
        best["awd_multiscale_ridge"] = ms_best
        xgb = lambda: make_regressor(  # noqa: E731
            "xgboost",
            n_estimators=s.xgb_estimators,
            max_depth=s.xgb_depth,
            learning_rate=s.xgb_lr,
            seed=s.seed,
        )
        feats = ms_best.features
        res = _fit_predict(xgb, ms_best.Xtr, ytr, feats.transform(xva))
        if res is not None:
            best["awd_multiscale_xgboost"] = _Choice(
                "awd_multiscale_xgboost",
                "awd_multiscale",
                ms_best.setting,
                "xgboost",
                _score(res[1], yva, scale),
                feats,
                xgb,
                ms_best.Xtr,
                ytr,
            )

    # --- test ----------------------------------------------------------------------------
    rows: list[dict[str, Any]] = []
    preds: dict[str, np.ndarray] = {"y_test": yte}
    params: dict[str, int] = {}
    n_time = min(cfg.evaluate.timing_maps, n_test)
    x_time = xte[:n_time]

    def add(method: str, pred: np.ndarray, seconds: float) -> None:
        pred = check_predictions(pred, f"method {method!r}")
        rmse, sd = bootstrap_rmse(yte, pred, cfg.evaluate.n_bootstrap, cfg.evaluate.bootstrap_seed)
        preds[method] = pred
        for j, p in enumerate(PARAMETERS):
            rows.append(
                {
                    "method": method,
                    "parameter": p,
                    "rmse": float(rmse[j]),
                    "rmse_sd": float(sd[j]),
                    "n_test": n_test,
                    "predict_seconds_per_map": seconds,
                }
            )

    teacher_pred = predict(teacher, splits.maps["test"])
    x_t = splits.maps["test"][:n_time, None].float()
    with torch.no_grad():
        t_teacher = _time_per_map(lambda: teacher(x_t), n_time)
    add("teacher", teacher_pred, t_teacher)
    params["teacher"] = count_parameters(teacher)
    add("trivial", np.repeat(ytr.mean(0, keepdims=True), n_test, 0), 0.0)
    params["trivial"] = 2

    order = [
        "awd",
        "awd_pooled",
        "awd_ridge",
        "awd_multiscale_ridge",
        "awd_multiscale_xgboost",
        "awd_gamma0",
        "awd_gamma0_pooled",
        "awd_gamma0_ridge",
    ]
    order += [m for m in best if m not in order]
    selection: dict[str, Any] = {}
    for method in order:
        if method not in best:
            continue
        choice = best[method]
        # The training features of validation time: the same maps, not computed twice.
        model = choice.model().fit(choice.Xtr, choice.ytr)
        pred = model.predict(choice.features.transform(xte))

        def run_once(model=model, feats=choice.features) -> None:
            model.predict(feats.transform(x_time))

        seconds = _time_per_map(run_once, n_time, repeats=1 if choice.family == "minkowski" else 3)
        add(method, pred, seconds)
        n_param = int(model.n_parameters()) if hasattr(model, "n_parameters") else 0
        if choice.family.startswith("awd"):
            n_param += len(transforms[choice.setting["wavelet"]].wavelet)
        params[method] = n_param
        selection[method] = {
            "family": choice.family,
            "predictor": choice.predictor,
            "val_score": choice.val_score,
            **choice.setting,
        }

    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    # A ResNet-18 forward on the same maps (untrained: only its cost matters) puts the
    # speed-up in the scale of the paper's teacher.
    resnet = build_teacher("resnet18").eval()
    x_r = x_t[: min(32, n_time)]
    with torch.no_grad():
        t_resnet = _time_per_map(lambda: resnet(x_r), x_r.shape[0], repeats=2)
    t_awd = metrics.loc[metrics.method == "awd", "predict_seconds_per_map"]
    speed = float(t_teacher / t_awd.iloc[0]) if len(t_awd) and t_awd.iloc[0] > 0 else None

    # --- interpretation of the selected AWD wavelet ----------------------------------------
    chosen = selection.get("awd", {}).get("wavelet") or (grid[-1]["name"] if grid else None)
    interp: dict[str, Any] = {"wavelet": chosen}
    arrays: dict[str, np.ndarray] = {}
    if chosen is not None:
        info, arrays = _interpretation(
            teacher, transforms[chosen], splits.maps["test"], cfg, splits.pixel_arcmin
        )
        interp.update(info)
        kernels = wavelet_kernels(transforms[chosen])
        arrays["kernels_awd"] = kernels
        arrays["kernels_db5"] = wavelet_kernels(DWT2d(cfg.distill.wavelet, levels=1))
        cov = selection.get("awd", {}).get("coverage", s.coverages[0])
        feats = PeakFilterFeatures(kernels, n_bins=s.n_bins, coverage=cov).fit(xtr)
        Xte = feats.transform(xte).reshape(n_test, 4, s.n_bins)
        cosmos = splits.catalogs["test"]["cosmology"].to_numpy()
        ids = np.unique(cosmos)
        arrays["hist_mean"] = np.stack([Xte[cosmos == c].mean(0) for c in ids])
        arrays["hist_edges"] = np.stack(feats.edges_)
        arrays["hist_params"] = np.stack([yte[cosmos == c][0] for c in ids])
        interp["constraint_residuals"] = {
            name: [float(v) for v in np.atleast_1d(r.detach().double().numpy())]
            for name, r in transforms[chosen].wavelet.constraint_residuals().items()
        }
    interp["h0"] = {name: t.wavelet.h0.detach().double().tolist() for name, t in transforms.items()}

    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "n_train": len(ytr),
        "n_val": len(yva),
        "n_test": n_test,
        "n_pix": splits.n_pix,
        "side_angle_deg": splits.side_angle_deg,
        "split": "by realization within each cosmology, fractions "
        f"{list(cfg.data.split_fractions)} (train/val/test); selection on val only",
        "n_train_cosmologies": len(np.unique(ytr, axis=0)),
        "speed_ratio_teacher_over_awd": speed,
        "resnet18_forward_seconds_per_map": t_resnet,
        "speed_ratio_resnet18_over_awd": float(t_resnet / t_awd.iloc[0]) if speed else None,
        "timing_maps": n_time,
        "torch_threads": torch.get_num_threads(),
        "parameters": params,
        "selection": selection,
    }
    header = (
        f"Test RMSE (bootstrap SD, {cfg.evaluate.n_bootstrap} resamples) on {n_test} test maps; "
        f"train/val/test = {len(ytr)}/{len(yva)}/{n_test} maps split by realization; every "
        "setting chosen on validation only.\n"
    )
    atomic_write(out / "metrics.csv", lambda p: metrics.to_csv(p, index=False, float_format="%.6g"))
    atomic_write(out / "metrics.md", lambda p: p.write_text(metrics_markdown(metrics, header)))
    write_json(out / "selection.json", summary)
    write_json(out / "validation.json", val_table)
    write_json(out / "interpretation.json", interp)
    atomic_write(out / "predictions.npz", lambda p: _savez(p, preds))
    atomic_write(out / "interpretation.npz", lambda p: _savez(p, arrays))
    logger.info("evaluation written to %s", out)
    return metrics


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``metrics.csv`` and check its columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics; run 'awd cosmology evaluate' first")
    m = pd.read_csv(path)
    if list(m.columns) != METRIC_COLUMNS:
        raise ValueError(f"{path}: columns {list(m.columns)}, expected {METRIC_COLUMNS}")
    return m
