"""``awd cosmology report``: one self-contained HTML file and PNGs from a run's saved results.

The page opens with the answer (:func:`headline`): the CNN teacher, the AWD student chosen
on validation, db5 with the same student and the best baseline, each RMSE with its
bootstrap SD, the paired differences of ``comparisons.csv`` (a difference counts only
beyond two paired SD), and which angular scales the teacher and the student use, in
arcminutes and multipoles ℓ. Warnings follow (a student worse than the training mean, a
validation split too small to select on, a learned filter that barely moved from db5),
then the results as a dot-and-error-bar figure and a grouped table, the figures, and the
full table in a collapsible appendix.

Every figure is a pure function of files the earlier steps wrote (``evaluate/*.json``,
``evaluate/*.npz``, ``evaluate/metrics.csv``, ``distill/grid.json``); nothing is
recomputed from maps or models, so a report can be rebuilt anywhere from a run directory.

Scales: a map of ``n_pix`` pixels over ``side_angle_deg`` degrees has pixels of
``60 * side_angle_deg / n_pix`` arcmin; wavelet level ``j`` covers scales of about ``2**j``
pixels, i.e. the frequencies between ``1 / 2**(j+1)`` and ``1 / 2**j`` cycles per pixel,
which are the multipoles ``ℓ = 2π f / pixel`` (pixel in radians), the convention of the
Fourier bands of ``interpretation.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from cosmology.config import DOMAIN
from cosmology.evaluate import PARAMETERS, metrics_markdown, read_metrics
from shared import LearnableWavelet
from shared.evaluation import COMPARISON_COLUMNS
from shared.plots import filter_change, plot_estimates, plot_filter_delta, plot_grid_heatmap
from shared.plots import plot_wavelet as draw_wavelet
from shared.report import (
    GROUPS,
    MIN_SELECTION_ITEMS,
    Headline,
    Section,
    comparison_phrase,
    format_estimate,
    method_group,
    paired_words,
)
from shared.report import write_report as write_page
from shared.runs import RunDir, atomic_write, write_csv

__all__ = [
    "FIGURES",
    "GROUPS",
    "grid_scores",
    "headline",
    "headline_rows",
    "method_group",
    "method_name",
    "peak_histogram_table",
    "results_rows",
    "write_report",
]

logger = logging.getLogger(__name__)

KERNELS = ("LL", "LH", "HL", "HH")
LABELS = {"omega_m": r"$\Omega_m$", "sigma_8": r"$\sigma_8$"}
SYMBOLS = {"omega_m": "Ωₘ", "sigma_8": "σ₈"}
#: A learned filter closer than this (relative L2 distance of h0) to db5 "barely moved".
BARELY_MOVED = 1e-2

#: Feature sets, by the prefix of a method's name (longest first when parsing).
FEATURES = {
    "awd_multiscale": "AWD multi-scale peaks",
    "awd_gamma0_l1": "learned-wavelet ℓ1-norm, γ = 0",
    "awd_gamma0": "learned-wavelet peaks, γ = 0",
    "awd_l1": "learned-wavelet ℓ1-norm",
    "awd": "learned-wavelet peaks",
    "db5_l1": "db5 ℓ1-norm",
    "db5": "db5 peaks",
    "raw_peaks": "raw-map peaks",
    "laplace": "Laplace-filter peaks",
    "roberts": "Roberts-cross peaks",
    "power_peaks": "power spectrum + raw peaks",
    "power_spectrum": "power spectrum",
    "pixel_quantiles": "pixel quantiles",
    "minkowski": "Minkowski functionals",
    "awd_scattering": "learned-wavelet scattering",
    "db5_scattering": "db5 scattering",
    "awd_l1_multiscale": "learned-wavelet ℓ1-norm + multi-scale peaks",
    "db5_l1_multiscale": "db5 ℓ1-norm + multi-scale peaks",
    "scattering": "scattering transform (kymatio)",
    "starlet_l1": "starlet ℓ1-norm",
    "starlet_peaks": "starlet peaks",
    "power_peaks_minkowski": "power spectrum + raw peaks + Minkowski functionals",
}
#: Predictors, by the suffix of a method's name.
PREDICTORS = {
    "": "χ² templates",
    "_pooled": "pooled χ²",
    "_ridge": "ridge",
    "_xgboost": "xgboost",
}
#: Methods whose name does not follow features + predictor.
SPECIAL_NAMES = {
    "teacher": "CNN teacher",
    "trivial": "training mean",
    "awd_taylornet": "learned-wavelet ℓ1-norm · TaylorNet",
    "db5_taylornet": "db5 ℓ1-norm · TaylorNet",
}
#: The groups of the results table, in order.
LEGEND = {
    "learned-wavelet peaks": "peak counts of the four 3×3 kernels the paper cuts from the "
    "learned wavelet's finest filters (LL, LH, HL, HH), histogrammed per map",
    "ℓ1-norm": "per wavelet band, the sum of |coefficient| in bins of its value (every level)",
    "multi-scale peaks": "peak and trough counts of every band of the learned transform",
    "γ = 0": "the wavelet distilled without the attribution penalty (the ablation)",
    "χ² templates": "the paper's predictor: the training cosmology whose mean feature vector "
    "is nearest in χ² (one covariance per cosmology)",
    "pooled χ²": "the same with one covariance pooled over cosmologies",
    "ridge, xgboost": "continuous regressions on the same features",
    "raw-map, Laplace, Roberts peaks": "the same peak counts on the map itself or through "
    "fixed edge filters",
    "TaylorNet": "a coarse-grained Taylor-series network on the ℓ1-norm laid out as bands × "
    "bins (provisional)",
    "scattering transform (kymatio)": "map averages of kymatio's Morlet scattering "
    "coefficients |x ⋆ ψ| and ||x ⋆ ψ₁| ⋆ ψ₂| (log), the angles kept, averaged by relative "
    "angle or all averaged, as validation chose (Cheng et al. 2020)",
    "starlet ℓ1-norm, starlet peaks": "the isotropic undecimated B3-spline (starlet) "
    "transform; per scale, the sum of |coefficient| in bins of its value, or the peak "
    "counts (Ajani et al. 2020, 2021)",
    "power spectrum + raw peaks + Minkowski functionals": "the three classical statistics "
    "in one feature vector (as combined by Zorrilla Matilla et al. 2020)",
    "learned-wavelet scattering, db5 scattering": "the scattering transform through the "
    "2D wavelet transform W of the learned wavelet (or db5) instead of Morlet wavelets: "
    "map averages of |W x| and of |W |W x|| at every coarser scale (log)",
    "ℓ1-norm + multi-scale peaks": "the wavelet ℓ1-norm and the multi-scale peak counts of "
    "the same transform in one feature vector",
    "training mean": "predicts the mean training parameters for every map",
}


# --------------------------------------------------------------------------- names


def _split(method: str) -> tuple[str, str] | None:
    for prefix in sorted(FEATURES, key=len, reverse=True):
        if method.startswith(prefix) and method[len(prefix) :] in PREDICTORS:
            return prefix, method[len(prefix) :]
    return None


def method_name(method: str) -> str:
    """A method's name in words: its features and its predictor.

    Examples
    --------
    >>> method_name("awd"), method_name("db5_l1_pooled"), method_name("trivial")
    ('learned-wavelet peaks · χ² templates', 'db5 ℓ1-norm · pooled χ²', 'training mean')
    """
    if method in SPECIAL_NAMES:
        return SPECIAL_NAMES[method]
    parts = _split(method)
    if parts is None:
        return method
    return f"{FEATURES[parts[0]]} · {PREDICTORS[parts[1]]}"


def _same_student_db5(method: str) -> str | None:
    """The db5 method with the same features and predictor as an AWD method."""
    if not method.startswith("awd") or method.startswith("awd_multiscale"):
        return None
    rest = method[len("awd") :]
    if rest.startswith("_gamma0"):
        rest = rest[len("_gamma0") :]
    return f"db5{rest}"


# --------------------------------------------------------------------------- inputs


def _load(run_dir: Path) -> dict[str, Any]:
    ev = run_dir / "evaluate"
    for name in ("selection.json", "interpretation.json", "validation.json"):
        if not (ev / name).is_file():
            raise FileNotFoundError(f"{ev / name}: missing; run 'awd cosmology evaluate' first")
    with np.load(ev / "interpretation.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    with np.load(ev / "predictions.npz", allow_pickle=False) as z:
        preds = {k: z[k] for k in z.files}
    comparisons = (
        pd.read_csv(ev / "comparisons.csv")
        if (ev / "comparisons.csv").is_file()
        else pd.DataFrame(columns=COMPARISON_COLUMNS)
    )
    return {
        "metrics": read_metrics(ev / "metrics.csv"),
        "comparisons": comparisons,
        "selection": json.loads((ev / "selection.json").read_text()),
        "interp": json.loads((ev / "interpretation.json").read_text()),
        "validation": json.loads((ev / "validation.json").read_text()),
        "arrays": arrays,
        "preds": preds,
    }


def _value(metrics: pd.DataFrame, method: str, target: str, col: str = "value") -> float:
    row = metrics[(metrics.method == method) & (metrics.target == target)]
    return float(row[col].iloc[0]) if len(row) else float("nan")


def _paired(comparisons: pd.DataFrame, a: str, b: str, target: str) -> tuple[float, float]:
    row = comparisons[(comparisons.a == a) & (comparisons.b == b) & (comparisons.target == target)]
    if row.empty:
        return float("nan"), float("nan")
    return float(row["diff"].iloc[0]), float(row["sd"].iloc[0])


def _best_baseline(metrics: pd.DataFrame) -> str | None:
    """The baseline with the lowest test RMSE relative to the training mean's, averaged
    over the parameters: the strongest competitor, reported (never selected on)."""
    scores = {}
    for method in dict.fromkeys(metrics.method):
        if method_group(method) != GROUPS[3]:
            continue
        ratios = [
            _value(metrics, method, p) / _value(metrics, "trivial", p)
            for p in PARAMETERS
            if _value(metrics, "trivial", p) > 0
        ]
        if ratios and all(math.isfinite(r) for r in ratios):
            scores[method] = float(np.mean(ratios))
    return min(scores, key=scores.__getitem__) if scores else None


def _roles(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, method) of the headline rows: teacher, AWD students, db5, best baseline, mean."""
    methods = set(data["metrics"].method)
    chosen = data["selection"].get("default_student") or "awd"
    roles = [("teacher", "teacher"), ("AWD student, chosen on validation", chosen)]
    if chosen != "awd" and "awd" in methods:
        roles.append(("AWD, the paper's student", "awd"))
    for method in dict.fromkeys([chosen, "awd"]):
        db5 = _same_student_db5(method)
        if db5 in methods:
            roles.append(("db5, same student" if method == chosen else "db5, paper's student", db5))
    best = _best_baseline(data["metrics"])
    if best is not None:
        roles.append(("best baseline (on test)", best))
    roles.append(("trivial", "trivial"))
    return [(r, m) for r, m in roles if m in methods]


# --------------------------------------------------------------------------- scales


def pixel_arcmin(selection: dict) -> float:
    """Pixel size in arcminutes from the evaluation's map geometry."""
    return 60.0 * float(selection["side_angle_deg"]) / float(selection["n_pix"])


def level_scales(level: int, pixel: float) -> tuple[float, float, float]:
    """``(arcmin, ℓ_low, ℓ_high)`` of wavelet level ``level`` for ``pixel`` arcmin pixels.

    Examples
    --------
    >>> [round(v) for v in level_scales(1, 1.640625)]
    [3, 3291, 6583]
    """
    pixel_rad = math.radians(pixel / 60.0)
    f_hi, f_lo = 1.0 / 2**level, 1.0 / 2 ** (level + 1)
    return 2**level * pixel, 2 * math.pi * f_lo / pixel_rad, 2 * math.pi * f_hi / pixel_rad


def _level_shares(interp: dict, parameter: str) -> dict[str, float]:
    """Share of the teacher's input x gradient attribution per level (``A`` + ``1..J``)."""
    bands = interp["bands"]
    values = np.asarray(interp["wavelet_input_x_gradient"][parameter], dtype=np.float64)
    total = values.sum() or 1.0
    shares: dict[str, float] = {}
    for band, v in zip(bands, values, strict=True):
        key = "A" if band.startswith("cA") else band[2:]
        shares[key] = shares.get(key, 0.0) + float(v) / total
    return shares


def _fourier_run(edges: np.ndarray, mass: np.ndarray, share: float = 2 / 3) -> tuple:
    """The shortest run of adjacent Fourier bands holding ``share`` of the mass."""
    mass = mass / (mass.sum() or 1.0)
    best = (0, len(mass) - 1)
    for i in range(len(mass)):
        for j in range(i, len(mass)):
            if mass[i : j + 1].sum() >= share and j - i < best[1] - best[0]:
                best = (i, j)
                break
    i, j = best
    return edges[i], edges[j + 1], float(mass[i : j + 1].sum())


def _ell(v: float) -> str:
    return f"{v:,.0f}"


def _levels_phrase(shares: dict[str, float], pixel: float, n_levels: int) -> str:
    """E.g. ``63 % on level 1 (~3.3′, ℓ 3,292–6,585) and 20 % on level 2 (...)``."""
    parts = []
    for key, share in sorted(shares.items(), key=lambda kv: -kv[1])[:3]:
        if key == "A":
            arcmin, lo, _ = level_scales(n_levels, pixel)
            parts.append(
                f"{100 * share:.0f} % on the coarse approximation (≳{arcmin:.0f}′, ℓ < {_ell(lo)})"
            )
        else:
            arcmin, lo, hi = level_scales(int(key), pixel)
            parts.append(
                f"{100 * share:.0f} % on level {key} (~{arcmin:.1f}′, ℓ {_ell(lo)}–{_ell(hi)})"
            )
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _student_scales(method: str, pixel: float, n_levels: int) -> str:
    name = method_name(method)
    parts = _split(method)
    family = parts[0] if parts else method
    finest, lo, hi = level_scales(1, pixel)
    coarsest = level_scales(n_levels, pixel)[0]
    if family in ("awd", "awd_gamma0", "db5"):
        return (
            f"The student ({name}) reads only the finest scale: 3×3 kernels cut from the "
            f"level-1 filters (~{finest:.1f}′, ℓ {_ell(lo)}–{_ell(hi)})."
        )
    # The TaylorNet students read the wavelet l1-norm of every band.
    every = ("_l1", "_scattering", "_l1_multiscale", "_taylornet")
    if family.endswith(every) or family == "awd_multiscale":
        return (
            f"The student ({name}) reads every level, from ~{finest:.1f}′ (level 1, "
            f"ℓ up to {_ell(hi)}) to ~{coarsest:.0f}′ (level {n_levels}) and the approximation."
        )
    return f"The student ({name}) reads no wavelet scale."


def scales_paragraph(data: dict[str, Any]) -> str:
    """Which scales the teacher and the chosen student use, in arcmin and multipoles."""
    return " ".join(scales_sentences(data))


def scales_sentences(data: dict[str, Any]) -> list[str]:
    """The sentences of :func:`scales_paragraph`: pixel size, one per target, the student."""
    interp, sel = data["interp"], data["selection"]
    if "wavelet_input_x_gradient" not in interp:
        return []
    pixel = pixel_arcmin(sel)
    n_levels = max(int(b[2:]) for b in interp["bands"] if not b.startswith("cA"))
    edges = np.asarray(interp["fourier_ell_edges"])
    sentences = [
        f"Pixels of {pixel:.2f}′ ({sel['n_pix']} pixels over "
        f"{float(sel['side_angle_deg']):g}°); wavelet level j covers ~2ʲ pixels."
    ]
    for p in PARAMETERS:
        shares = _level_shares(interp, p)
        mass = np.asarray(interp["fourier_input_x_gradient"][p], dtype=np.float64)
        lo, hi, share = _fourier_run(edges, mass)
        where = _levels_phrase(shares, pixel, n_levels)
        sentences.append(
            f"For {SYMBOLS[p]}, the teacher's attribution lies {where}; in Fourier annuli, "
            f"{100 * share:.0f} % of it lies at ℓ {_ell(lo)}–{_ell(hi)}."
        )
    chosen = sel.get("default_student") or "awd"
    sentences.append(_student_scales(chosen, pixel, n_levels))
    return sentences


# --------------------------------------------------------------------------- the answer


def _answer(data: dict[str, Any]) -> str:
    """The opening paragraph: teacher, AWD student, db5, best baseline, paired differences."""
    m, comp, sel = data["metrics"], data["comparisons"], data["selection"]
    methods = {method for _, method in _roles(data)}
    chosen = sel.get("default_student") or "awd"

    def both(method: str) -> str:
        return " and ".join(
            f"{SYMBOLS[p]} {format_estimate(_value(m, method, p), _value(m, method, p, 'sd'))}"
            for p in PARAMETERS
        )

    def compared(a: str, b: str) -> str:
        return ", ".join(
            f"{SYMBOLS[p]} {paired_words(*_paired(comp, a, b, p), False)}" for p in PARAMETERS
        )

    text = [
        f"On {sel['n_test']:,} test maps, the AWD student chosen on validation "
        f"({method_name(chosen)}) reaches RMSE {both(chosen)}; the CNN teacher "
        f"{both('teacher')}. Against the teacher: {compared(chosen, 'teacher')}."
    ]
    db5 = _same_student_db5(chosen)
    if db5 in methods:
        text.append(
            f"With db5 in place of the learned wavelet the same student reaches {both(db5)}; "
            f"AWD against it: {compared(chosen, db5)}."
        )
    best = _best_baseline(m)
    if best is not None:
        text.append(f"The best baseline, {method_name(best)}, reaches {both(best)}")
        # Runs evaluated before the student was compared with the baselines lack the row.
        against = _paired(comp, chosen, best, PARAMETERS[0])
        text[-1] += (
            f"; AWD against it: {compared(chosen, best)}." if math.isfinite(against[1]) else "."
        )
    text.append(f"The training mean: {both('trivial')}.")
    t_student = _value(m, chosen, PARAMETERS[0], "seconds_per_item")
    t_teacher = _value(m, "teacher", PARAMETERS[0], "seconds_per_item")
    n_student = _value(m, chosen, PARAMETERS[0], "n_parameters")
    n_teacher = _value(m, "teacher", PARAMETERS[0], "n_parameters")
    if all(math.isfinite(v) for v in (t_student, t_teacher, n_student, n_teacher)):
        text.append(
            f"The student takes {1e6 * t_student:.0f} µs per map against the teacher's "
            f"{1e6 * t_teacher:.0f} µs (end to end, one thread) and stores "
            f"{int(n_student):,} parameters against the teacher's {int(n_teacher):,}."
        )
    text.append(
        "(RMSE ± bootstrap SD over the test maps; a paired difference over the same maps "
        "counts only beyond 2 paired SD.)"
    )
    return " ".join(text)


def _verdict(data: dict[str, Any]) -> str:
    m, comp = data["metrics"], data["comparisons"]
    chosen = data["selection"].get("default_student") or "awd"
    p = PARAMETERS[0]
    line = (
        f"cosmology: the AWD student ({method_name(chosen)}) has test RMSE {SYMBOLS[p]} "
        f"{format_estimate(_value(m, chosen, p), _value(m, chosen, p, 'sd'))}, "
        f"{comparison_phrase(*_paired(comp, chosen, 'teacher', p), False, 'the teacher')}"
    )
    db5 = _same_student_db5(chosen)
    if db5 in set(m.method):
        line += f"; {comparison_phrase(*_paired(comp, chosen, db5, p), False, 'db5')}"
    return line + "."


def _warnings(data: dict[str, Any]) -> list[str]:
    m, sel, interp = data["metrics"], data["selection"], data["interp"]
    out = []
    chosen = sel.get("default_student") or "awd"
    who = {
        chosen: f"The AWD student chosen on validation ({method_name(chosen)})",
        "awd": f"The paper's student ({method_name('awd')})",
        "teacher": "The CNN teacher",
    }
    for method in dict.fromkeys([chosen, "awd", "teacher"]):
        for p in PARAMETERS:
            v, t = _value(m, method, p), _value(m, "trivial", p)
            if math.isfinite(v) and math.isfinite(t) and v > t:
                out.append(
                    f"{who[method]} is worse than the training mean on {SYMBOLS[p]}: "
                    f"RMSE {format_estimate(v, _value(m, method, p, 'sd'))} against "
                    f"{format_estimate(t, _value(m, 'trivial', p, 'sd'))}."
                )
    n_val = int(sel.get("n_val", 0))
    if n_val < MIN_SELECTION_ITEMS:
        per = sel.get("n_train_cosmologies") or 1
        out.append(
            f"Every setting (wavelet, histogram range, ridge penalty) was chosen on {n_val} "
            f"validation maps (~{n_val / per:.0f} per cosmology): too few to select on; "
            "differences between candidates are within noise. Use more maps per cosmology "
            "or a larger validation fraction (data.split_fractions)."
        )
    wavelet = interp.get("wavelet")
    h0 = interp.get("h0", {}).get(wavelet)
    if h0 is not None:
        change = filter_change(h0, "db5")
        if math.isfinite(change) and change < BARELY_MOVED:
            out.append(
                f"The selected learned filter moved from db5 by only {change:.1e} (relative "
                "L2 distance of h0): its students read practically db5's coefficients, so "
                "AWD and db5 cannot differ here. More distillation steps or a larger "
                "learning rate move it further."
            )
    return out


def results_rows(data: dict[str, Any], methods: list[str] | None = None) -> pd.DataFrame:
    """One row per method with its group, name, RMSE and SD per parameter, time, size.

    Methods in :data:`GROUPS` order, each group in the evaluation's order; ``highlight``
    marks the headline rows.
    """
    m = data["metrics"]
    headline_methods = {method for _, method in _roles(data)}
    order = list(dict.fromkeys(m.method)) if methods is None else methods
    order = sorted(order, key=lambda x: GROUPS.index(method_group(x)))
    rows = []
    for method in order:
        row: dict[str, Any] = {
            "group": method_group(method),
            "label": method_name(method),
            "method": method,
            "highlight": method in headline_methods,
        }
        for p in PARAMETERS:
            row[p] = _value(m, method, p)
            row[f"{p}_sd"] = _value(m, method, p, "sd")
        row["seconds_per_map"] = _value(m, method, PARAMETERS[0], "seconds_per_item")
        row["n_parameters"] = _value(m, method, PARAMETERS[0], "n_parameters")
        rows.append(row)
    return pd.DataFrame(rows)


#: Short tags of the headline roles, appended to method names in the headline table.
ROLE_TAGS = {
    "AWD student, chosen on validation": "chosen on validation",
    "AWD, the paper's student": "the paper's student",
    "db5, same student": "same student as chosen",
    "db5, paper's student": "the paper's student",
    "best baseline (on test)": "best baseline on test",
}


def headline_rows(
    metrics: pd.DataFrame, selection: dict, comparisons: pd.DataFrame | None = None
) -> pd.DataFrame:
    """:func:`results_rows` of the headline methods (teacher, AWD students, db5, best
    baseline, training mean) from a run's ``metrics.csv`` and ``selection.json``."""
    data = {
        "metrics": metrics,
        "selection": selection,
        "comparisons": comparisons
        if comparisons is not None
        else pd.DataFrame(columns=COMPARISON_COLUMNS),
    }
    return results_rows(data, [m for _, m in _roles(data)])


def _table(rows: pd.DataFrame, role: dict[str, str] | None = None) -> pd.DataFrame:
    tags = {m: ROLE_TAGS.get(r, "") for m, r in (role or {}).items()}
    names = [
        f"{label} ({tags[m]})" if tags.get(m) else label
        for label, m in zip(rows["label"], rows["method"], strict=True)
    ]
    out = pd.DataFrame(
        {
            "group": rows["group"],
            "highlight": rows["highlight"],
            "method": names,
            **{
                f"RMSE {SYMBOLS[p]}": [
                    format_estimate(v, s) for v, s in zip(rows[p], rows[f"{p}_sd"], strict=True)
                ]
                for p in PARAMETERS
            },
            "µs per map": [
                "–" if not math.isfinite(t) or t == 0 else f"{1e6 * t:.0f}"
                for t in rows["seconds_per_map"]
            ],
            "parameters": [
                f"{int(n):,}" if math.isfinite(n) else "–" for n in rows["n_parameters"]
            ],
        }
    )
    if role is None:
        out["name (predict --method)"] = rows["method"].tolist()
    return out


def headline(run_dir: str | os.PathLike) -> Headline:
    """What an evaluated cosmology run found: verdict, answer, scales, warnings, table.

    Reads only ``RUN/evaluate/``; the report opens with it and ``awd cosmology evaluate``
    prints it.

    Examples
    --------
    >>> # print(headline("runs/cosmology/ten").answer)
    """
    data = _load(Path(run_dir))
    return _headline(data)


def _headline(data: dict[str, Any]) -> Headline:
    roles = _roles(data)
    rows = results_rows(data, [m for _, m in roles])
    table = []
    role_of = {m: r for r, m in roles}
    for r in rows.itertuples():
        entry = {"role": role_of[r.method], "method": r.label}
        for p in PARAMETERS:
            entry[f"RMSE {SYMBOLS[p]}"] = format_estimate(getattr(r, p), getattr(r, f"{p}_sd"))
        table.append(entry)
    return Headline(
        domain="cosmology",
        verdict=_verdict(data),
        answer=_answer(data),
        scales=scales_paragraph(data),
        warnings=_warnings(data),
        table=table,
    )


# --------------------------------------------------------------------------- figures


def _results_fig(rows: pd.DataFrame):
    trivial = rows[rows["group"] == GROUPS[4]]
    others = rows[rows["group"] != GROUPS[4]]
    # The training mean would squeeze every other row into a corner: a note instead.
    off_scale = len(trivial) > 0 and any(
        trivial[p].iloc[0] > 2 * np.nanmax(others[p].to_numpy()) for p in PARAMETERS
    )
    shown = others if off_scale else rows
    fig, axes = plt.subplots(1, 2, figsize=(10, 1.2 + 0.3 * len(shown)), sharey=True)
    for i, (ax, p) in enumerate(zip(axes, PARAMETERS, strict=True)):
        plot_estimates(
            ax,
            shown["label"].tolist(),
            shown[p].tolist(),
            shown[f"{p}_sd"].tolist(),
            groups=shown["group"].tolist(),
            highlight=shown["highlight"].tolist(),
            xlabel=f"test RMSE of {LABELS[p]} (±1 bootstrap SD)",
            show_labels=i == 0,
        )
    if off_scale:
        note = ", ".join(f"{SYMBOLS[p]} {trivial[p].iloc[0]:.3g}" for p in PARAMETERS)
        fig.supxlabel(f"training mean (off the scale): {note}", fontsize=8, color="0.3")
    return fig


def _wavelet_fig(interp: dict, selection: dict, init: str = "db5"):
    chosen = interp.get("wavelet")
    wavelets = {f"AWD ({_point_words(chosen)})": interp["h0"][chosen]}
    zero = selection.get("selection", {}).get("awd_gamma0", {}).get("wavelet")
    if zero in interp["h0"] and zero != chosen:
        wavelets[f"AWD, γ = 0 ({_point_words(zero)})"] = interp["h0"][zero]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    for i, (label, h0) in enumerate(wavelets.items()):
        w = LearnableWavelet(torch.tensor(h0, dtype=torch.float64))
        draw_wavelet(w, init if i == 0 else None, axes=axes[:2], label=label, color=f"C{i}",
                     level=8, xlabel="support (pixels of the finest scale)")  # fmt: skip
    plot_filter_delta(
        wavelets, init, ax=axes[2], colors={k: f"C{i}" for i, k in enumerate(wavelets)}
    )
    return fig


def _point_words(point: str | None) -> str:
    """``lam0.005_gam0.01`` as ``λ = 0.005, γ = 0.01``."""
    if not point or "_gam" not in point:
        return str(point)
    lam, gam = point[len("lam") :].split("_gam")
    return f"λ = {lam}, γ = {gam}"


def _filters_fig(interp: dict, arrays: dict, init: str = "db5"):
    chosen = interp.get("wavelet")
    learned = LearnableWavelet(torch.tensor(interp["h0"][chosen], dtype=torch.float64))
    fig, axes = plt.subplots(4, 4, figsize=(8, 8.4))
    for row, (w, name) in enumerate(((LearnableWavelet(init), init), (learned, "AWD"))):
        lo, hi = w.dec_lo.detach().numpy(), w.dec_hi.detach().numpy()
        for col, (a, b, tag) in enumerate(
            ((lo, lo, "LL"), (lo, hi, "LH"), (hi, lo, "HL"), (hi, hi, "HH"))
        ):
            ax = axes[row, col]
            ax.imshow(np.outer(a, b), cmap="RdBu_r")
            ax.set_title(f"{name} {tag} filter", fontsize=8)
        key = "kernels_db5" if row == 0 else "kernels_awd"
        for col in range(4):
            ax = axes[row + 2, col]
            ax.imshow(arrays[key][col], cmap="RdBu_r")
            ax.set_title(f"{name} 3×3 {KERNELS[col]} kernel", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _hist_fig(arrays: dict):
    means, edges, params = arrays["hist_mean"], arrays["hist_edges"], arrays["hist_params"]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), sharey=True)
    om = params[:, 0]
    cmap = plt.get_cmap("viridis")
    norm = plt.Normalize(om.min(), om.max() if om.max() > om.min() else om.min() + 1)
    for k, ax in enumerate(axes):
        centres = 0.5 * (edges[k][1:] + edges[k][:-1])
        for c in range(len(means)):
            ax.plot(centres, means[c, k], color=cmap(norm(om[c])), lw=1)
        ax.set_title(f"AWD {KERNELS[k]} kernel")
        ax.set_xlabel("filtered convergence at the peak")
    axes[0].set_ylabel("mean peaks per map")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=LABELS["omega_m"])
    return fig


def _attr_fig(interp: dict, selection: dict):
    pixel = pixel_arcmin(selection)
    n_levels = max(int(b[2:]) for b in interp["bands"] if not b.startswith("cA"))
    keys = ["A"] + [str(j) for j in range(n_levels, 0, -1)]
    ticks = []
    for key in keys:
        if key == "A":
            arcmin, lo, _ = level_scales(n_levels, pixel)
            ticks.append(f"approx.\n≳{arcmin:.0f}′\nℓ<{lo:,.0f}")
        else:
            arcmin, lo, hi = level_scales(int(key), pixel)
            ticks.append(f"level {key}\n~{arcmin:.1f}′\nℓ {lo:,.0f}–{hi:,.0f}")
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    x = np.arange(len(keys))
    for i, p in enumerate(PARAMETERS):
        shares = _level_shares(interp, p)
        ax.bar(x + (i - 0.5) * 0.4, [shares.get(k, 0.0) for k in keys], 0.4, label=LABELS[p])
    ax.set_xticks(x, ticks, fontsize=7.5)
    ax.set_ylabel("share of the teacher's |attribution|")
    ax.set_xlabel("wavelet scale, coarse to fine (arcmin; multipole range)")
    ax.legend(title="target")
    return fig


def _top_fig(interp: dict, arrays: dict, selection: dict):
    side = float(selection["side_angle_deg"])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.7))
    panels = [("example_map", "a test map (convergence κ)")] + [
        (f"top_{p}", f"its top {100 * interp['top_fraction']:g} % coefficients for {SYMBOLS[p]}")
        for p in PARAMETERS
    ]
    for ax, (key, title) in zip(axes, panels, strict=True):
        im = ax.imshow(arrays[key], cmap="magma", extent=(0, side, 0, side))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("degrees")
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[0].set_ylabel("degrees")
    return fig


def _fourier_fig(interp: dict):
    edges = np.asarray(interp["fourier_ell_edges"])
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    labels = [f"{edges[i]:,.0f}–{edges[i + 1]:,.0f}" for i in range(len(edges) - 1)]
    x = np.arange(len(labels))
    for i, p in enumerate(PARAMETERS):
        v = np.asarray(interp["fourier_input_x_gradient"][p])
        ax.bar(x + (i - 0.5) * 0.4, v / v.sum(), 0.4, label=LABELS[p])
    ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=7.5)
    ax.set_xlabel("multipole band ℓ")
    ax.set_ylabel("share of the teacher's |attribution|")
    ax.legend(title="target")
    return fig


def _pred_fig(preds: dict, metrics: pd.DataFrame, methods: list[str]):
    y = preds["y_test"]
    methods = [m for m in methods if m in preds]
    fig, axes = plt.subplots(2, len(methods), figsize=(2.9 * len(methods), 5.8), squeeze=False)
    for col, m in enumerate(methods):
        for row, p in enumerate(PARAMETERS):
            ax = axes[row, col]
            ax.scatter(y[:, row], preds[m][:, row], s=3, alpha=0.3)
            lo, hi = y[:, row].min(), y[:, row].max()
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            r = metrics[(metrics.method == m) & (metrics.target == p)].value
            name = method_name(m).split(" (")[0].replace(" · ", "\n")
            ax.set_title(f"{name}\nRMSE {r.iloc[0]:.4f}" if len(r) else name, fontsize=8)
            ax.set_xlabel(f"true {LABELS[p]}")
            if col == 0:
                ax.set_ylabel(f"predicted {LABELS[p]}")
    return fig


def grid_scores(validation: list, grid_points: list) -> pd.DataFrame:
    """Best validation score of the paper's student per distilled grid point.

    Columns ``lambda, gamma, wavelet, val_score`` (mean RMSE / SD over the parameters,
    lower is better; the best histogram coverage of that wavelet). Points at gamma = 0
    are scored as the ``awd_gamma0`` family, the others as ``awd``.

    Examples
    --------
    >>> v = [{"method": "awd", "wavelet": "a", "val_score": 0.4},
    ...      {"method": "awd", "wavelet": "a", "val_score": 0.3}]
    >>> grid_scores(v, [{"l1_coeffs": 0.1, "l1_attr": 0.01, "point": "a"}]).val_score.tolist()
    [0.3]
    """
    rows = []
    for p in grid_points:
        fam = "awd" if p["l1_attr"] > 0 else "awd_gamma0"
        scores = [
            r["val_score"]
            for r in validation
            if r["method"] == fam and r.get("wavelet") == p["point"]
        ]
        rows.append(
            {
                "lambda": p["l1_coeffs"],
                "gamma": p["l1_attr"],
                "wavelet": p["point"],
                "val_score": min(scores) if scores else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["lambda", "gamma", "wavelet", "val_score"])


def peak_histogram_table(arrays: dict) -> pd.DataFrame:
    """Mean peak counts per map of each AWD kernel and bin, per test cosmology (long form).

    Examples
    --------
    >>> arrays = {"hist_mean": np.ones((2, 4, 3)), "hist_edges": np.tile(np.arange(4.0), (4, 1)),
    ...           "hist_params": np.array([[0.3, 0.8], [0.2, 0.9]])}
    >>> t = peak_histogram_table(arrays)
    >>> len(t), list(t.columns)[:3]
    (24, ['omega_m', 'sigma_8', 'kernel'])
    """
    means, edges, params = arrays["hist_mean"], arrays["hist_edges"], arrays["hist_params"]
    rows = [
        {
            "omega_m": float(params[c, 0]),
            "sigma_8": float(params[c, 1]),
            "kernel": KERNELS[k],
            "bin": b,
            "lo": float(edges[k][b]),
            "hi": float(edges[k][b + 1]),
            "mean_peaks_per_map": float(means[c, k, b]),
        }
        for c in range(means.shape[0])
        for k in range(means.shape[1])
        for b in range(means.shape[2])
    ]
    return pd.DataFrame(rows)


def _grid_fig(scores: pd.DataFrame, selected: str | None = None):
    n_lam, n_gam = scores["lambda"].nunique(), scores["gamma"].nunique()
    fig, ax = plt.subplots(figsize=(2.6 + 0.9 * n_gam, 1.6 + 0.55 * n_lam))
    chosen = scores[scores["wavelet"] == selected]
    plot_grid_heatmap(
        ax,
        scores["lambda"].tolist(),
        scores["gamma"].tolist(),
        scores["val_score"].tolist(),
        higher_is_better=False,
        best=(chosen["lambda"].iloc[0], chosen["gamma"].iloc[0]) if len(chosen) else None,
        label="validation mean RMSE / SD\n(lower is better)",
    )
    if len(chosen):
        ax.set_title("★ the selected AWD wavelet (γ > 0)", fontsize=9)
    return fig


def _constraint_fig(interp: dict):
    res = interp.get("constraint_residuals", {})
    names = list(res)
    vals = [max(abs(v) for v in res[n]) if res[n] else 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(names, np.maximum(vals, 1e-16))
    ax.set_yscale("log")
    ax.set_ylabel("max |residual|")
    ax.set_xlabel("orthogonal-wavelet condition")
    ax.set_title(f"selected wavelet ({_point_words(interp.get('wavelet'))})")
    return fig


#: The figures of a report, by file name, with their captions.
FIGURES = {
    "results": "Test RMSE of the headline methods (filled: the rows of the answer above), "
    "±1 bootstrap SD over the test maps. Groups as in the table below.",
    "attribution_bands": "Which wavelet scales the CNN teacher uses: the share of its TRIM "
    "attribution (input × gradient through the selected wavelet) per level, with each "
    "level's angular scale and multipole range.",
    "fourier_trim": "The same question in Fourier annuli: the share of the teacher's "
    "attribution per multipole band ℓ.",
    "wavelet": "The selected learned wavelet against its db5 start: scaling function φ, "
    "wavelet ψ, and the difference of the lowpass filters, Δh0 (which shows how far it "
    "moved when φ and ψ overlap).",
    "pred_vs_true": "Predicted against true parameters on the test maps. The χ² students "
    "predict one of the training cosmologies, hence their columns of points.",
    "peak_histograms": "Mean peak histograms of the four AWD kernels per test cosmology, "
    "coloured by Ωₘ: what the paper's student reads.",
    "validation_grid": "Validation score of the paper's student over the λ × γ grid (best "
    "histogram range per point); the selection uses the validation maps only.",
}
MORE_FIGURES = {
    "filters_2d": "The 2D filters (outer products of the analysis filters) and the 3×3 "
    "kernels the paper's student cuts from them, db5 and learned.",
    "top_coefficients": "A test map and the maps rebuilt from its most-attributed wavelet "
    "coefficients (input × gradient), per parameter.",
    "constraints": "Residuals of the orthogonal-wavelet conditions of the selected wavelet.",
}


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``report.html`` (figures embedded as base64 PNG), the PNGs and ``headline.json``.

    Parameters
    ----------
    run_dir
        An evaluated cosmology run directory.
    out
        Output folder (default ``RUN/report``).

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    ValueError, FileNotFoundError
        Not a cosmology run directory, or not evaluated yet.
    """
    run = RunDir.open(run_dir, DOMAIN)
    out = Path(out) if out is not None else run.step_dir("report")
    data = _load(run.root)
    grid = json.loads((run.root / "distill" / "grid.json").read_text())["points"]
    interp, arrays, sel = data["interp"], data["arrays"], data["selection"]
    scores = grid_scores(data["validation"], grid)
    # The numbers behind two figures, as tables (``awd figures`` redraws from them).
    write_csv(out / "validation_grid.csv", scores.to_dict("records"))
    write_csv(out / "peak_histograms.csv", peak_histogram_table(arrays).to_dict("records"))
    head = _headline(data)
    roles = _roles(data)
    head_rows = results_rows(data, [m for _, m in roles])
    all_rows = results_rows(data)
    role_of = {m: r for r, m in roles}
    pred_methods = [m for r, m in roles if r != "trivial"][:5]
    makers = {
        "results": lambda: _results_fig(head_rows),
        "wavelet": lambda: _wavelet_fig(interp, sel),
        "filters_2d": lambda: _filters_fig(interp, arrays),
        "peak_histograms": lambda: _hist_fig(arrays),
        "attribution_bands": lambda: _attr_fig(interp, sel),
        "top_coefficients": lambda: _top_fig(interp, arrays, sel),
        "fourier_trim": lambda: _fourier_fig(interp),
        "pred_vs_true": lambda: _pred_fig(data["preds"], data["metrics"], pred_methods),
        "validation_grid": lambda: _grid_fig(scores, interp.get("wavelet")),
        "constraints": lambda: _constraint_fig(interp),
    }
    answer = Section("").paragraph(head.answer, css="answer")
    for w in head.warnings:
        answer.warning(f"Warning: {w}")
    scales = scales_sentences(data)
    if scales:
        answer.paragraph("Which scales matter (teacher's TRIM attribution, input × gradient):")
        answer.bullets(scales)
    results = Section("Results (test maps)")
    results.figure("results", makers["results"], FIGURES["results"])
    results.table(
        _table(head_rows, role_of),
        caption=f"The headline methods. RMSE ± bootstrap SD over {sel['n_test']:,} test maps; "
        "prediction time per map end to end from the map (one thread); parameters the "
        "predictor stores. Every method, with its name for `awd cosmology predict "
        "--method`: the appendix.",
        group="group",
        highlight="highlight",
    )
    n_frac = sel.get("split", "")
    results.paragraph(
        f"Maps: {sel['n_pix']}² pixels, {float(sel['side_angle_deg']):g}° a side "
        f"({pixel_arcmin(sel):.2f}′ per pixel), {sel.get('n_train_cosmologies')} training "
        f"cosmologies. Split: train/validation/test {sel.get('n_train'):,}/"
        f"{sel.get('n_val'):,}/{sel.get('n_test'):,} maps, {n_frac}. The selected AWD "
        f"wavelet: {_point_words(interp.get('wavelet'))}."
    )
    figures = Section("Figures")
    for name, caption in FIGURES.items():
        if name != "results":
            half = name in ("attribution_bands", "fourier_trim")
            figures.figure(name, makers[name], caption, half=half)
    more = Section("")
    for name, caption in MORE_FIGURES.items():
        more.figure(name, makers[name], caption)
    settings = pd.DataFrame(
        [
            {
                "method": method_name(m),
                "chosen on validation": ", ".join(
                    f"{k} {_point_words(v) if k == 'wavelet' else v}"
                    for k, v in c.items()
                    if k not in ("family", "val_score")
                ),
                "validation score": c.get("val_score"),
            }
            for m, c in sel.get("selection", {}).items()
        ]
    )
    appendix = Section("Appendix")
    appendix.details(
        f"All {len(all_rows)} methods, grouped",
        Section("").table(
            _table(all_rows),
            caption="RMSE ± bootstrap SD on the test maps; bold: the headline rows.",
            group="group",
            highlight="highlight",
            legend=LEGEND,
        ),
    )
    appendix.details("More figures", more)
    if len(settings):
        appendix.details(
            "Settings chosen on validation, per method",
            Section("").table(
                settings,
                caption="Validation score: mean over the parameters of RMSE / training SD "
                "(lower is better).",
            ),
        )
    path = write_page(
        out,
        "Adaptive wavelet distillation: weak-lensing maps → (Ωₘ, σ₈)",
        [answer, results, figures, appendix],
        headline=head,
    )
    atomic_write(out / "metrics.md", lambda p: p.write_text(metrics_markdown(data["metrics"])))
    logger.debug("report written to %s", path)
    return path
