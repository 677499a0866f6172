"""``awd cosmology evaluate``: students and baselines, selected on validation, scored on test.

Every method is a feature set and a predictor. Feature settings (the distilled wavelet,
the histogram range) and predictor settings (the ridge penalty) are chosen on the
validation split only, by the mean over parameters of RMSE / (training SD); the chosen
setting is refitted on the training split and scored once on the test split: RMSE per
parameter with a bootstrap SD, and the end-to-end prediction time per map (features from
the raw map plus the predictor, :func:`shared.evaluation.seconds_per_item`), beside the
teacher's forward pass.

The evaluation is a sequence of named steps: :func:`select_on_validation` ->
:func:`refit_and_score` (every chosen method becomes a saved :class:`MapStudent` under
``RUN/students/``; its test predictions come from that student) -> :func:`time_methods` ->
:func:`interpret` (and :func:`explain_teacher`: CD per scale, ACD examples, reality checks,
:mod:`cosmology.explanations`) -> :func:`write_evaluation`.

Method names (``metrics.csv``): the paper's chi-square template classifier with
per-cosmology covariance carries the bare name (``awd``, ``awd_gamma0``, ``db5``,
``raw_peaks``, ``laplace``, ``roberts``, ``power_spectrum``, ``power_peaks``,
``pixel_quantiles``, ``minkowski``); ``<name>_pooled`` is the same with one pooled
covariance and ``<name>_ridge`` a ridge regression on the same features;
``awd_l1*``, ``awd_gamma0_l1*`` and ``db5_l1*`` read the wavelet l1-norm;
``awd_multiscale_ridge`` and ``awd_multiscale_xgboost`` are the continuous students on
multi-scale peak histograms of the learned coefficients; ``awd_taylornet`` and
``db5_taylornet`` are TaylorNets (provisional design) on the wavelet l1-norm
(:mod:`cosmology.taylor`, which also writes their terms and class references);
``teacher`` and ``trivial`` (the training mean) close the table.

The field's strongest statistics and our scattering students are fitted with the pooled
chi-square, ridge and xgboost only (``<name>_pooled``, ``<name>_ridge``,
``<name>_xgboost``; xgboost on the features the ridge student chose): ``scattering``
(kymatio's Morlet scattering transform, the angle reduction chosen on validation),
``starlet_l1`` and ``starlet_peaks`` (Ajani et al.), ``power_peaks_minkowski`` (power
spectrum + raw peaks + Minkowski functionals), ``awd_scattering`` and ``db5_scattering``
(the scattering transform through the learned wavelet, every gamma > 0 grid point a
candidate, and through db5), ``awd_l1_multiscale`` and ``db5_l1_multiscale`` (wavelet
l1-norm + multi-scale peaks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cosmology.config import RunConfig, recorded
from cosmology.explanations import explain, fourier_edges, write_explanations
from cosmology.pipeline import Splits, load_splits, teacher_path
from cosmology.student import (
    ConcatFeatures,
    MapStudent,
    MinkowskiFeatures,
    MultiscalePeakFeatures,
    PeakFilterFeatures,
    PixelQuantileFeatures,
    PowerSpectrumFeatures,
    ScatteringFeatures,
    StarletL1Features,
    StarletPeakFeatures,
    TemplateChi2,
    WaveletL1Features,
    WaveletScatteringFeatures,
    band_names,
    laplace_kernel,
    make_regressor,
    raw_kernel,
    roberts_cross,
    wavelet_kernels,
)
from cosmology.taylor import select_taylornet, write_taylornet
from cosmology.teacher import build_teacher, load_teacher, predict
from shared import DWT2d
from shared.attributions import FourierBands2d, trim_attributions
from shared.coeffs import flatten_coeffs, unflatten_coeffs
from shared.evaluation import (
    COMPARISON_COLUMNS,
    METRICS_COLUMNS,
    bootstrap_draws,
    bootstrap_sd,
    mean_scaled_rmse,
    n_parameters,
    paired_difference,
    read_metrics,
    rmse,
    seconds_per_item,
    select_best,
    write_table,
)
from shared.report import GROUPS, method_group
from shared.runs import RunDir, atomic_write, fingerprint, load_transform, write_json
from shared.students import save_student
from shared.sweep import read_grid

__all__ = [
    "METRICS_COLUMNS",
    "PARAMETERS",
    "explain_teacher",
    "interpret",
    "metrics_markdown",
    "read_metrics",
    "refit_and_score",
    "run_evaluate",
    "select_on_validation",
    "time_methods",
    "write_evaluation",
]

logger = logging.getLogger(__name__)

PARAMETERS = ("omega_m", "sigma_8")
#: The order of the table's first rows; every other method follows in selection order.
ORDER = (
    "awd",
    "awd_pooled",
    "awd_ridge",
    "awd_multiscale_ridge",
    "awd_multiscale_xgboost",
    "awd_gamma0",
    "awd_gamma0_pooled",
    "awd_gamma0_ridge",
)


#: The predictors of the feature sets added with the field's strongest statistics: pooled
#: chi-square and ridge on every candidate, then xgboost on the ridge student's features.
HEADS = ("_pooled", "_ridge")


@dataclass
class _Candidate:
    family: str
    setting: dict[str, Any]
    build: Callable[[], Any]
    key: str | None = None  # candidates with one key share their peak values / coefficients
    max_train: int | None = None  # subsample train and val (slow features)
    heads: tuple[str, ...] | None = None  # predictor suffixes fitted (None: every one)


@dataclass
class Choice:
    """A method chosen on validation: its features, predictor factory and training data."""

    method: str
    family: str
    setting: dict[str, Any]
    predictor: str
    val_score: float
    features: Any = None
    model: Any = None
    Xtr: Any = None  # training features and targets, kept for the final refit
    ytr: Any = None
    Xva: Any = None  # validation features and targets (for xgboost on the same features)
    yva: Any = None


@dataclass
class Context:
    """What every step of an evaluation reads: settings, data, teacher, wavelets."""

    cfg: RunConfig
    splits: Splits
    teacher: torch.nn.Module
    grid: list[dict]
    transforms: dict[str, Any]
    scale: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        scale = self.splits.targets["train"].std(0)
        self.scale = np.where(scale > 0, scale, 1.0)

    def maps(self, split: str) -> torch.Tensor:
        return self.splits.maps[split]

    def targets(self, split: str) -> np.ndarray:
        return self.splits.targets[split]


@dataclass
class Scored:
    """A method scored on test: its student (``None`` for the teacher) and predictions."""

    method: str
    pred: np.ndarray
    student: MapStudent | None
    n_parameters: int
    seconds: float = float("nan")
    choice: Choice | None = None


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


def _peak_candidates(cfg: RunConfig, grid: list[dict], transforms: dict, side: float) -> list:
    s = cfg.student
    out: list[_Candidate] = []
    awd_points = [p for p in grid if p["l1_attr"] > 0]
    zero_points = [p for p in grid if p["l1_attr"] == 0]
    for c in s.coverages:
        for fam, points in (("awd", awd_points), ("awd_gamma0", zero_points)):
            for p in points:
                k = wavelet_kernels(transforms[p["point"]])
                out.append(
                    _Candidate(
                        fam,
                        {"wavelet": p["point"], "coverage": c},
                        lambda k=k, c=c: PeakFilterFeatures(k, n_bins=s.n_bins, coverage=c),
                        key=f"{fam}/{p['point']}",
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
    return out


def _fitting(name: str, wanted: int, largest: int) -> int:
    """``wanted``, or the largest value the maps allow (with a warning)."""
    if wanted <= largest:
        return wanted
    logger.warning("student.%s=%d is too large for these maps: %d is used", name, wanted, largest)
    return largest


def _peer_candidates(cfg: RunConfig, side: float, n_pix: int) -> list[_Candidate]:
    """The field's strongest statistics: kymatio's scattering transform, the starlet
    l1-norm and peaks, power spectrum + peaks + Minkowski functionals in one set."""
    s = cfg.student
    out: list[_Candidate] = []
    if s.scattering:
        J = _fitting("scattering_j", s.scattering_j, int(np.log2(n_pix)))
        for o in s.scattering_orientations:
            setting = {"J": J, "L": s.scattering_l, "orientations": o, "log": s.scattering_log}
            out.append(
                _Candidate(
                    "scattering",
                    setting,
                    lambda o=o: ScatteringFeatures(J, s.scattering_l, s.scattering_log, o),
                    key="scattering",
                    heads=HEADS,
                )
            )
    if s.starlet:
        # 2**(n_scales - 1) < n_pix: the mirrored boundary of the coarsest smoothing.
        n = _fitting("starlet_scales", s.starlet_scales, int(np.ceil(np.log2(n_pix))))
        for fam, make, bins in (
            ("starlet_l1", StarletL1Features, s.starlet_l1_bins),
            ("starlet_peaks", StarletPeakFeatures, s.starlet_peak_bins),
        ):
            out.append(
                _Candidate(
                    fam,
                    {"n_scales": n},
                    lambda make=make, bins=bins: make(n, bins, s.starlet_coverage),
                    heads=HEADS,
                )
            )
    if s.combinations and s.minkowski:
        c = s.coverages[len(s.coverages) // 2]
        out.append(
            _Candidate(
                "power_peaks_minkowski",
                {"coverage": c},
                lambda: ConcatFeatures(
                    [
                        PowerSpectrumFeatures(side, s.n_ell_bins),
                        PeakFilterFeatures(raw_kernel(), n_bins=s.n_bins, coverage=c),
                        MinkowskiFeatures(side, s.minkowski_bins, 0.98),
                    ]
                ),
                max_train=s.minkowski_max_maps,
                heads=HEADS,
            )
        )
    return out


def _wavelet_candidates(cfg: RunConfig, grid: list[dict], transforms: dict) -> list[_Candidate]:
    """Our side: the scattering transform through the learned wavelet (every gamma > 0
    grid point) and db5, and the wavelet l1-norm + multi-scale peaks of both."""
    s = cfg.student
    d = cfg.distill
    db5 = DWT2d(d.wavelet, levels=d.levels, mode=d.mode)
    makers: list[tuple[str, Callable[[Any], Any]]] = []
    if s.wavelet_scattering:
        makers.append(("scattering", lambda t: WaveletScatteringFeatures(t, s.scattering_log)))
    if s.combinations:
        makers.append(
            (
                "l1_multiscale",
                lambda t: ConcatFeatures(
                    [
                        WaveletL1Features(t, s.l1_bins, s.l1_coverage),
                        MultiscalePeakFeatures(t, s.multiscale_bins, s.multiscale_coverage),
                    ]
                ),
            )
        )
    out: list[_Candidate] = []
    for tag, make in makers:
        for p in (p for p in grid if p["l1_attr"] > 0):
            t = transforms[p["point"]]
            out.append(
                _Candidate(
                    f"awd_{tag}", {"wavelet": p["point"]}, lambda t=t, m=make: m(t), heads=HEADS
                )
            )
        out.append(_Candidate(f"db5_{tag}", {}, lambda m=make: m(db5), heads=HEADS))
    return out


def _candidates(
    cfg: RunConfig, grid: list[dict], transforms: dict, side: float, n_pix: int
) -> list[_Candidate]:
    s = cfg.student
    out = _peak_candidates(cfg, grid, transforms, side)
    # The wavelet l1-norm of every grid point and of db5, through the same predictors.
    awd_points = [p for p in grid if p["l1_attr"] > 0]
    zero_points = [p for p in grid if p["l1_attr"] == 0]
    for fam, points in (("awd_l1", awd_points), ("awd_gamma0_l1", zero_points)):
        for p in points:
            out.append(
                _Candidate(
                    fam,
                    {"wavelet": p["point"]},
                    lambda t=transforms[p["point"]]: WaveletL1Features(t, s.l1_bins, s.l1_coverage),
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
    return out + _peer_candidates(cfg, side, n_pix) + _wavelet_candidates(cfg, grid, transforms)


# --------------------------------------------------------------------------- step 1: select


def _candidate_features(cand: _Candidate, ctx: Context, values_cache: dict, sub_rng) -> tuple:
    """Fitted features and the training / validation matrices and targets of a candidate."""
    xtr, xva = ctx.maps("train"), ctx.maps("val")
    ytr, yva = ctx.targets("train"), ctx.targets("val")
    feats = cand.build()
    ctr, cva = xtr, xva
    if cand.max_train and cand.max_train < len(xtr):
        itr = np.sort(sub_rng.choice(len(xtr), cand.max_train, replace=False))
        iva = np.sort(sub_rng.choice(len(xva), min(len(xva), cand.max_train // 2), replace=False))
        ctr, cva = xtr[torch.as_tensor(itr)], xva[torch.as_tensor(iva)]
        cand.setting = {**cand.setting, "train_maps": int(cand.max_train)}
        ytr, yva = ytr[itr], yva[iva]
    if cand.key is not None and isinstance(feats, PeakFilterFeatures):
        # Peak values do not depend on the histogram range: compute them once per key.
        if cand.key not in values_cache:
            values_cache[cand.key] = (feats.values(ctr), feats.values(cva))
        (vtr, wtr), (vva, wva) = values_cache[cand.key]
        feats.fit(values=vtr)
        Xtr, Xva = feats.histogram(vtr, wtr, len(ctr)), feats.histogram(vva, wva, len(cva))
    elif cand.key is not None:
        # Scattering coefficients do not depend on how orientations are combined.
        feats.fit(ctr)
        if cand.key not in values_cache:
            values_cache[cand.key] = (feats.coefficients(ctr), feats.coefficients(cva))
        ctr_c, cva_c = values_cache[cand.key]
        Xtr, Xva = feats.reduce(ctr_c), feats.reduce(cva_c)
    else:
        feats.fit(ctr)
        Xtr, Xva = feats.transform(ctr), feats.transform(cva)
    return feats, Xtr, Xva, ytr, yva


def _select_multiscale(ctx: Context, best: dict[str, Choice], val_table: list) -> None:
    """Multi-scale peaks of the learned coefficients: wavelet and ridge penalty on
    validation, then xgboost on the chosen wavelet."""
    s = ctx.cfg.student
    xtr, xva = ctx.maps("train"), ctx.maps("val")
    ytr, yva = ctx.targets("train"), ctx.targets("val")
    ms_best: Choice | None = None
    # Costlier features: only the gamma > 0 wavelets of the lambda validation chose for the
    # paper's student.
    awd_lam = None
    if "awd" in best:
        chosen = best["awd"].setting["wavelet"]
        awd_lam = next(p["l1_coeffs"] for p in ctx.grid if p["point"] == chosen)
    points = [p for p in ctx.grid if p["l1_attr"] > 0]
    for p in [p for p in points if awd_lam is None or p["l1_coeffs"] == awd_lam]:
        feats = MultiscalePeakFeatures(
            ctx.transforms[p["point"]], s.multiscale_bins, s.multiscale_coverage
        )
        feats.fit(xtr)
        Xtr, Xva = feats.transform(xtr), feats.transform(xva)
        for a in s.ridge_alphas:
            factory = lambda a=a: make_regressor("ridge", alpha=a)  # noqa: E731
            res = _fit_predict(factory, Xtr, ytr, Xva)
            if res is None:
                continue
            score = mean_scaled_rmse(res[1], yva, ctx.scale)
            name = f"ridge(alpha={a:g})"
            val_table.append(
                {
                    "method": "awd_multiscale_ridge",
                    "predictor": name,
                    "wavelet": p["point"],
                    "val_score": score,
                }
            )
            if ms_best is None or score < ms_best.val_score:
                ms_best = Choice(
                    "awd_multiscale_ridge",
                    "awd_multiscale",
                    {"wavelet": p["point"]},
                    name,
                    score,
                    feats,
                    factory,
                    Xtr,
                    ytr,
                )
    if ms_best is None:
        return
    best["awd_multiscale_ridge"] = ms_best
    xgb = lambda: make_regressor(  # noqa: E731
        "xgboost",
        n_estimators=s.xgb_estimators,
        max_depth=s.xgb_depth,
        learning_rate=s.xgb_lr,
        seed=s.seed,
    )
    res = _fit_predict(xgb, ms_best.Xtr, ytr, ms_best.features.transform(xva))
    if res is not None:
        best["awd_multiscale_xgboost"] = Choice(
            "awd_multiscale_xgboost",
            "awd_multiscale",
            ms_best.setting,
            "xgboost",
            mean_scaled_rmse(res[1], yva, ctx.scale),
            ms_best.features,
            xgb,
            ms_best.Xtr,
            ytr,
        )


def _xgboost(cfg: RunConfig) -> Callable[[], Any]:
    s = cfg.student
    return lambda: make_regressor(
        "xgboost",
        n_estimators=s.xgb_estimators,
        max_depth=s.xgb_depth,
        learning_rate=s.xgb_lr,
        seed=s.seed,
    )


def _select_xgboost(
    ctx: Context, best: dict[str, Choice], val_table: list, families: list[str]
) -> None:
    """xgboost on the features (the setting) the ridge student of each of ``families``
    chose on validation: ``<family>_xgboost``."""
    for family in families:
        ridge = best.get(f"{family}_ridge")
        if ridge is None:
            continue
        factory = _xgboost(ctx.cfg)
        res = _fit_predict(factory, ridge.Xtr, ridge.ytr, ridge.Xva)
        if res is None:
            continue
        method = f"{family}_xgboost"
        score = mean_scaled_rmse(res[1], ridge.yva, ctx.scale)
        val_table.append(
            {"method": method, "predictor": "xgboost", **ridge.setting, "val_score": score}
        )
        best[method] = Choice(
            method, family, ridge.setting, "xgboost", score, ridge.features, factory,
            ridge.Xtr, ridge.ytr, ridge.Xva, ridge.yva,
        )  # fmt: skip


def select_on_validation(ctx: Context) -> tuple[dict[str, Choice], list[dict]]:
    """Step 1: every candidate setting scored on the validation split; the best per method.

    Returns the chosen setting of every method and the table of all validation scores.
    The test split is not read.
    """
    best: dict[str, Choice] = {}
    val_table: list[dict[str, Any]] = []
    values_cache: dict[str, tuple] = {}
    sub_rng = np.random.default_rng(ctx.cfg.student.seed)
    predictors = _predictors(ctx.cfg)
    side, n_pix = ctx.splits.side_angle_deg, ctx.splits.n_pix
    candidates = _candidates(ctx.cfg, ctx.grid, ctx.transforms, side, n_pix)
    for cand in candidates:
        tic = time.perf_counter()
        feats, Xtr, Xva, ytr_c, yva_c = _candidate_features(cand, ctx, values_cache, sub_rng)
        for suffix, pname, factory in predictors:
            if cand.heads is not None and suffix not in cand.heads:
                continue
            res = _fit_predict(factory, Xtr, ytr_c, Xva)
            if res is None:
                continue
            score = mean_scaled_rmse(res[1], yva_c, ctx.scale)
            method = cand.family + suffix
            val_table.append(
                {"method": method, "predictor": pname, **cand.setting, "val_score": score}
            )
            if method not in best or score < best[method].val_score:
                best[method] = Choice(
                    method, cand.family, cand.setting, pname, score, feats, factory, Xtr, ytr_c,
                    Xva, yva_c,
                )  # fmt: skip
        logger.debug(
            "validation: %s %s (%.1f s)", cand.family, cand.setting, time.perf_counter() - tic
        )
    values_cache.clear()
    _select_multiscale(ctx, best, val_table)
    families = [c.family for c in candidates if c.heads == HEADS]
    _select_xgboost(ctx, best, val_table, list(dict.fromkeys(families)))
    select_taylornet(ctx, best, val_table)
    order = [m for m in ORDER if m in best] + [m for m in best if m not in ORDER]
    return {m: best[m] for m in _heads_together(order)}, val_table


def _heads_together(order: list[str]) -> list[str]:
    """``<family>_xgboost`` moved right after ``<family>_ridge``.

    Examples
    --------
    >>> _heads_together(["a_pooled", "a_ridge", "b_ridge", "a_xgboost", "b_xgboost"])
    ['a_pooled', 'a_ridge', 'a_xgboost', 'b_ridge', 'b_xgboost']
    """
    moved = {
        m for m in order if m.endswith("_xgboost") and m[: -len("_xgboost")] + "_ridge" in order
    }
    out = []
    for m in order:
        if m in moved:
            continue
        out.append(m)
        if m.endswith("_ridge") and (x := m[: -len("_ridge")] + "_xgboost") in moved:
            out.append(x)
    return out


# --------------------------------------------------------------------------- step 2: refit


def _student_of(ctx: Context, choice: Choice) -> MapStudent:
    # The training features of validation time: the same maps, not computed twice.
    model = choice.model().fit(choice.Xtr, choice.ytr)
    wavelet = choice.setting.get("wavelet")
    taps = len(ctx.transforms[wavelet].wavelet) if choice.family.startswith("awd") else 0
    return MapStudent(
        choice.features,
        model,
        choice.method,
        ctx.splits.n_pix,
        ctx.splits.side_angle_deg,
        ctx.cfg.data.targets,
        wavelet=wavelet,
        n_taps=taps,
    )


def refit_and_score(ctx: Context, choices: dict[str, Choice]) -> dict[str, Scored]:
    """Step 2: refit every chosen method on the training split; predict the test split.

    Every method becomes a :class:`MapStudent`, and its test predictions are the
    student's own, so a saved student predicts exactly what is scored (students that
    share one feature object, e.g. the ridge and xgboost students of a feature set,
    compute the test features once). The teacher and the trivial training mean come first.
    """
    xte = ctx.maps("test")
    scored: dict[str, Scored] = {}
    teacher_pred = predict(ctx.teacher, xte)
    scored["teacher"] = Scored("teacher", teacher_pred, None, n_parameters(ctx.teacher))
    trivial = MapStudent.trivial(
        ctx.targets("train"), ctx.splits.n_pix, ctx.splits.side_angle_deg, ctx.cfg.data.targets
    )
    scored["trivial"] = Scored("trivial", trivial.predict(xte), trivial, trivial.n_parameters())
    cache: dict[Any, Any] = {}
    for method, choice in choices.items():
        student = _student_of(ctx, choice)
        student.check_maps(xte)
        pred = student.predict_features(_test_features(choice.features, xte, cache))
        scored[method] = Scored(method, pred, student, student.n_parameters(), choice=choice)
    return scored


def _test_features(features: Any, xte: torch.Tensor, cache: dict[Any, Any]) -> np.ndarray:
    """``features.transform(xte)``, computed once per feature object (and the scattering
    coefficients once for every angle reduction: ``transform`` is ``reduce`` of them)."""
    if isinstance(features, ScatteringFeatures):
        key: Any = ("scattering", features.J, features.L)
        if key not in cache:
            cache[key] = features.coefficients(xte)
        return features.reduce(cache[key])
    if id(features) not in cache:
        cache[id(features)] = features.transform(xte)
    return cache[id(features)]


# --------------------------------------------------------------------------- step 3: time


def time_methods(ctx: Context, scored: dict[str, Scored]) -> dict[str, Any]:
    """Step 3: end-to-end prediction time per map of every method, under one protocol.

    Returns the conditions of the timing and a ResNet-18 forward pass (untrained: only its
    cost matters) on the same maps, for the scale of the paper's teacher.
    """
    e = ctx.cfg.evaluate
    n_time = min(e.timing_maps, len(ctx.targets("test")))
    x_time = ctx.maps("test")[:n_time]
    x_t = x_time[:, None].float()
    conditions: dict[str, Any] = {}
    for item in scored.values():
        if item.student is None:
            teacher = ctx.teacher

            def run(teacher=teacher) -> None:
                with torch.no_grad():
                    teacher(x_t)
        else:

            def run(student=item.student) -> None:
                student.predict(x_time)

        timing = seconds_per_item(run, n_time, repeats=e.timing_repeats)
        item.seconds = timing.seconds_per_item
        conditions = {
            "items_per_call": n_time,
            "repeats": e.timing_repeats,
            "threads": timing.threads,
        }
    resnet = build_teacher("resnet18").eval()
    x_r = x_t[: min(32, n_time)]

    def run_resnet() -> None:
        with torch.no_grad():
            resnet(x_r)

    resnet_t = seconds_per_item(run_resnet, x_r.shape[0], repeats=min(e.timing_repeats, 3))
    return {**conditions, "resnet18_forward_seconds_per_map": resnet_t.seconds_per_item}


# --------------------------------------------------------------------------- step 4: interpret


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
    edges = fourier_edges(x.shape[-1], e.n_fourier_bands)
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
        with torch.no_grad():
            rebuilt = transform.inverse(unflatten_coeffs(kept, coeffs), size=one.shape[-2:])
        arrays[f"top_{p}"] = rebuilt[0, 0].numpy()
    info["top_fraction"] = e.top_fraction
    return info, arrays


def _interpreted_wavelet(ctx: Context, choices: dict[str, Choice]) -> str | None:
    """The grid point interpreted: the ``awd`` student's wavelet, else the last point."""
    chosen = choices["awd"].setting["wavelet"] if "awd" in choices else None
    if chosen is None and ctx.grid:
        chosen = ctx.grid[-1]["point"]
    return chosen


def explain_teacher(ctx: Context, choices: dict[str, Choice]) -> dict[str, Any]:
    """Step 4, continued: the teacher's scales by CD, ACD examples and the reality checks
    (:mod:`cosmology.explanations`), on the interpreted wavelet (db5 without a grid)."""
    chosen = _interpreted_wavelet(ctx, choices)
    if chosen is None:
        d = ctx.cfg.distill
        return explain(ctx, DWT2d(d.wavelet, levels=d.levels, mode=d.mode), d.wavelet)
    return explain(ctx, ctx.transforms[chosen], chosen)


def interpret(ctx: Context, choices: dict[str, Choice]) -> tuple[dict, dict[str, np.ndarray]]:
    """Step 4: which bands and scales the teacher uses, seen through the selected wavelet.

    TRIM attributions per wavelet band and per Fourier annulus (multipole ranges), maps
    rebuilt from the most-attributed coefficients, the paper's peak histograms of the
    selected kernels per test cosmology, and the wavelet's constraint residuals.
    """
    s = ctx.cfg.student
    chosen = _interpreted_wavelet(ctx, choices)
    interp: dict[str, Any] = {"wavelet": chosen}
    arrays: dict[str, np.ndarray] = {}
    if chosen is not None:
        transform = ctx.transforms[chosen]
        info, arrays = _interpretation(
            ctx.teacher, transform, ctx.maps("test"), ctx.cfg, ctx.splits.pixel_arcmin
        )
        interp.update(info)
        kernels = wavelet_kernels(transform)
        arrays["kernels_awd"] = kernels
        arrays["kernels_db5"] = wavelet_kernels(DWT2d(ctx.cfg.distill.wavelet, levels=1))
        cov = (
            choices["awd"].setting.get("coverage", s.coverages[0])
            if "awd" in choices
            else (s.coverages[0])
        )
        xtr, xte, yte = ctx.maps("train"), ctx.maps("test"), ctx.targets("test")
        feats = PeakFilterFeatures(kernels, n_bins=s.n_bins, coverage=cov).fit(xtr)
        Xte = feats.transform(xte).reshape(len(yte), 4, s.n_bins)
        cosmos = ctx.splits.catalogs["test"]["cosmology"].to_numpy()
        ids = np.unique(cosmos)
        arrays["hist_mean"] = np.stack([Xte[cosmos == c].mean(0) for c in ids])
        arrays["hist_edges"] = np.stack(feats.edges_)
        arrays["hist_params"] = np.stack([yte[cosmos == c][0] for c in ids])
        interp["constraint_residuals"] = {
            name: [float(v) for v in np.atleast_1d(r.detach().double().numpy())]
            for name, r in transform.wavelet.constraint_residuals().items()
        }
    interp["h0"] = {
        name: t.wavelet.h0.detach().double().tolist() for name, t in ctx.transforms.items()
    }
    return interp, arrays


# --------------------------------------------------------------------------- step 5: write


def _pairs(methods: list[str], default: str | None = None) -> list[tuple[str, str]]:
    """The comparisons the goals name: every AWD student against the teacher, against
    db5 with the same student, and against gamma = 0 with the same student; the AWD
    student chosen on validation (``default``) against every baseline.

    Examples
    --------
    >>> _pairs(["teacher", "awd_ridge", "db5_ridge", "scattering_ridge", "trivial"], "awd_ridge")
    [('awd_ridge', 'teacher'), ('awd_ridge', 'db5_ridge'), ('awd_ridge', 'scattering_ridge')]
    """
    pairs = []
    for m in methods:
        if not m.startswith("awd") or m.startswith("awd_gamma0"):
            continue
        pairs.append((m, "teacher"))
        rest = m[len("awd") :]
        for other in (f"db5{rest}", f"awd_gamma0{rest}"):
            if other in methods:
                pairs.append((m, other))
    if default in methods:
        pairs += [(default, m) for m in methods if method_group(m) == GROUPS[3]]
    return pairs


def metric_rows(ctx: Context, scored: dict[str, Scored], draws: np.ndarray) -> list[dict]:
    """Rows of ``metrics.csv``: RMSE and its bootstrap SD per method and parameter."""
    yte = ctx.targets("test")
    rows = []
    for item in scored.values():
        for j, p in enumerate(PARAMETERS):
            rows.append(
                {
                    "method": item.method,
                    "target": p,
                    "metric": "rmse",
                    "value": rmse(yte[:, j], item.pred[:, j]),
                    "sd": bootstrap_sd(rmse, yte[:, j], item.pred[:, j], draws),
                    "n_test": len(yte),
                    "seconds_per_item": item.seconds,
                    "n_parameters": item.n_parameters,
                }
            )
    return rows


def comparison_rows(
    y_test: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    draws: np.ndarray,
    default: str | None = None,
) -> list[dict]:
    """Rows of ``comparisons.csv``: paired RMSE differences over the same test maps.

    A function of the test targets and the predictions alone (``predictions.npz`` holds
    both), so the comparisons can be checked from a run's saved files.
    """
    rows = []
    for a, b in _pairs(list(predictions), default):
        for j, p in enumerate(PARAMETERS):
            diff, sd = paired_difference(
                rmse, y_test[:, j], predictions[a][:, j], predictions[b][:, j], draws
            )
            rows.append({"a": a, "b": b, "target": p, "metric": "rmse", "diff": diff, "sd": sd})
    return rows


def _default_student(scored: dict[str, Scored]) -> str | None:
    """The AWD student with the best validation score: what ``predict`` uses by default."""
    awd = [
        {"method": m, "val_score": s.choice.val_score}
        for m, s in scored.items()
        if s.choice is not None and m.startswith("awd") and not m.startswith("awd_gamma0")
    ]
    best, _ = select_best(awd, "val_score", greater_is_better=False)
    return None if best is None else str(best["method"])


def write_evaluation(
    run: RunDir,
    ctx: Context,
    scored: dict[str, Scored],
    val_table: list[dict],
    timing: dict[str, Any],
    interp: tuple[dict, dict[str, np.ndarray]],
) -> pd.DataFrame:
    """Step 5: write ``students/``, then ``evaluate/`` (metrics, comparisons, selection ...)."""
    cfg = ctx.cfg
    e = cfg.evaluate
    yte, ytr, yva = ctx.targets("test"), ctx.targets("train"), ctx.targets("val")
    students_dir = run.step_dir("students")
    default = _default_student(scored)
    index = {}
    for item in scored.values():
        if item.student is None:
            continue
        choice = item.choice
        meta = {
            "domain": "cosmology",
            "method": item.method,
            "targets": list(cfg.data.targets),
            "n_pix": ctx.splits.n_pix,
            "side_angle_deg": ctx.splits.side_angle_deg,
            "val_score": None if choice is None else choice.val_score,
            "setting": {} if choice is None else choice.setting,
            "predictor": "training mean" if choice is None else choice.predictor,
            "n_parameters": item.n_parameters,
        }
        save_student(students_dir / item.method, item.student, meta)
        index[item.method] = {k: meta[k] for k in ("val_score", "setting", "predictor")}
    write_json(students_dir / "index.json", {"default": default, "students": index})

    draws = bootstrap_draws(len(yte), e.n_bootstrap, e.bootstrap_seed)
    out = run.step_dir("evaluate")
    metrics = write_table(out / "metrics.csv", metric_rows(ctx, scored, draws), METRICS_COLUMNS)
    preds = {m: item.pred for m, item in scored.items()}
    write_table(
        out / "comparisons.csv", comparison_rows(yte, preds, draws, default), COMPARISON_COLUMNS
    )
    t_awd = scored["awd"].seconds if "awd" in scored else None
    t_teacher = scored["teacher"].seconds
    resnet = timing["resnet18_forward_seconds_per_map"]
    summary = {
        "n_train": len(ytr),
        "n_val": len(yva),
        "n_test": len(yte),
        "n_pix": ctx.splits.n_pix,
        "side_angle_deg": ctx.splits.side_angle_deg,
        "split": "by realization within each cosmology, fractions "
        f"{list(cfg.data.split_fractions)} (train/val/test); selection on val only",
        "n_train_cosmologies": len(np.unique(ytr, axis=0)),
        "speed_ratio_teacher_over_awd": t_teacher / t_awd if t_awd else None,
        "resnet18_forward_seconds_per_map": resnet,
        "speed_ratio_resnet18_over_awd": resnet / t_awd if t_awd else None,
        "timing": timing,
        "parameters": {m: s.n_parameters for m, s in scored.items()},
        "default_student": default,
        "selection": {
            m: {
                "family": s.choice.family,
                "predictor": s.choice.predictor,
                "val_score": s.choice.val_score,
                **s.choice.setting,
            }
            for m, s in scored.items()
            if s.choice is not None
        },
    }
    header = (
        f"Test RMSE (bootstrap SD, {e.n_bootstrap} resamples) on {len(yte)} test maps; "
        f"train/val/test = {len(ytr)}/{len(yva)}/{len(yte)} maps split by realization; every "
        "setting chosen on validation only.\n"
    )
    atomic_write(out / "metrics.md", lambda p: p.write_text(metrics_markdown(metrics, header)))
    write_json(out / "selection.json", summary)
    write_json(out / "validation.json", val_table)
    info, arrays = interp
    write_json(out / "interpretation.json", info)
    atomic_write(out / "predictions.npz", lambda p: _savez(p, {"y_test": yte, **preds}))
    atomic_write(out / "interpretation.npz", lambda p: _savez(p, arrays))
    write_taylornet(out, ctx, scored)
    return metrics


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def metrics_markdown(metrics: pd.DataFrame, header: str = "") -> str:
    """The metrics table as Markdown (one row per method, both parameters side by side).

    Examples
    --------
    >>> m = pd.DataFrame({"method": ["a", "a"], "target": ["omega_m", "sigma_8"],
    ...                   "metric": ["rmse", "rmse"], "value": [0.01, 0.02],
    ...                   "sd": [0.001, 0.002], "n_test": [10, 10],
    ...                   "seconds_per_item": [1e-5, 1e-5], "n_parameters": [5, 5]})
    >>> print(metrics_markdown(m).splitlines()[2])
    | a | 0.01000 (0.00100) | 0.02000 (0.00200) | 1e-05 | 5 |
    """
    lines = [header] if header else []
    lines += [
        "| method | RMSE Omega_m (SD) | RMSE sigma_8 (SD) | seconds per map | parameters |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method, group in metrics.groupby("method", sort=False):
        cells = []
        for p in PARAMETERS:
            row = group[group.target == p]
            cells.append(f"{row.value.iloc[0]:.5f} ({row.sd.iloc[0]:.5f})" if len(row) else "-")
        t = group.seconds_per_item.iloc[0]
        n = group.n_parameters.iloc[0]
        lines.append(f"| {method} | {cells[0]} | {cells[1]} | {t:.3g} | {n} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the step


def context(run: RunDir, cfg: RunConfig, splits: Splits | None = None) -> Context:
    """Load what the evaluation of ``run`` reads: maps, teacher, distilled grid."""
    splits = splits or load_splits(run.data_path, cfg)
    teacher = load_teacher(teacher_path(run), n_pix=splits.n_pix, arch=cfg.teacher.arch)
    grid = read_grid(run.root / "distill")["points"]
    transforms = {p["point"]: load_transform(p["wavelet"]) for p in grid}
    return Context(cfg, splits, teacher, grid, transforms)


def run_evaluate(
    run: RunDir, cfg: RunConfig, splits: Splits | None = None, force: bool = False
) -> pd.DataFrame:
    """Select on validation, refit, score on test, time, interpret, write (all steps).

    Writes ``students/<method>/`` (every student and baseline, loadable with
    :func:`cosmology.predict.load_student`) and ``evaluate/``: ``metrics.csv``
    (:data:`shared.evaluation.METRICS_COLUMNS`), ``comparisons.csv``, ``metrics.md``,
    ``selection.json``, ``validation.json``, ``predictions.npz``, ``interpretation.*``.
    An evaluation made with other settings or inputs (a new grid, another teacher) is
    replaced only with ``force``.

    Raises
    ------
    ValueError
        Missing teacher or wavelets, a teacher that does not fit the maps, or non-finite
        predictions of a selected method.
    """
    run.require("teacher", "awd cosmology train-teacher")
    run.require("distill", "awd cosmology distill")
    inputs = {
        "data": run.check_data(),
        "teacher": fingerprint(teacher_path(run).with_suffix(".safetensors")),
        "grid": fingerprint(run.root / "distill" / "grid.json"),
    }
    settings = {"student": asdict(cfg.student), "evaluate": recorded(cfg.evaluate)}
    with run.step("evaluate", settings, inputs, force=force, config=cfg) as step:
        ctx = context(run, cfg, splits)
        choices, val_table = select_on_validation(ctx)
        scored = refit_and_score(ctx, choices)
        timing = time_methods(ctx, scored)
        interp = interpret(ctx, choices)
        explanations = explain_teacher(ctx, choices)
        metrics = write_evaluation(run, ctx, scored, val_table, timing, interp)
        write_explanations(run.root / "evaluate", explanations)
        step.outputs["metrics"] = fingerprint(run.root / "evaluate" / "metrics.csv")
    logger.info("evaluation written to %s", run.root / "evaluate")
    return metrics


def evaluation_inputs(run: RunDir) -> dict[str, str]:
    """What an evaluation is made from, as it is now (for the report's staleness check)."""
    return {
        "teacher": fingerprint(teacher_path(run).with_suffix(".safetensors")),
        "grid": fingerprint(run.root / "distill" / "grid.json"),
    }


def require_fresh_evaluation(run_dir) -> RunDir:
    """The run, if its evaluation is as new as its teacher and grid; else a clear error."""
    from cosmology.config import DOMAIN

    run = RunDir.open(run_dir, DOMAIN)
    run.require_fresh("evaluate", "awd cosmology evaluate", evaluation_inputs(run))
    return run
