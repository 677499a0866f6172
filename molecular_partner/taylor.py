"""TaylorNet students of the traces, their terms and their class references.

PROVISIONAL design (:mod:`shared.taylornet`; the paper's full text was not available).

``awd_taylornet`` and ``db5_taylornet`` are :class:`~molecular_partner.student.TraceStudent` s
of each outcome: the paper's features (the top ``top_k`` coefficient values of every
scale of the learned wavelet, or of db5) into a
:class:`~shared.taylornet.student.TaylorNetPredictor` laid out as (scales, ranks): one
channel per scale in pywt order (``cA4, cD4, ..., cD1``), the ranked values along the
positions. The regression outcome is fitted by least squares, the binary one through a
logistic link. The learned wavelet is the one the linear ``awd`` student chose; the
TaylorNet's channels and weight decay are chosen by the same cross-validation grouped by
cell on the training cells as every other student, and the chosen setting is refitted on
all training cells.

The evaluation then writes, from the fitted students:

- ``evaluate/taylornet_terms.json`` and ``.csv``: the largest main effects of the scales
  and the strongest interactions between pairs of scales, per outcome
  (:func:`shared.taylornet.student.band_terms`);
- ``evaluate/taylornet_references.json`` and ``.npz``: references of the recruited and
  not recruited tracks (``y_consec_thresh``) at every level of the frozen binary net, the
  accuracy of classifying the test tracks by the nearest reference (level chosen on the
  training cells: there is no validation split) beside the most frequent training class
  and the nearest class-mean input (:func:`shared.taylornet.student.distil_classes`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from molecular_partner.config import OUTCOMES
from molecular_partner.student import TraceStudent, band_names, grouped_cv_score
from shared.evaluation import bootstrap_draws
from shared.taylornet.student import (
    TaylorNetPredictor,
    band_terms,
    distil_classes,
    write_taylornet_files,
)

if TYPE_CHECKING:
    from molecular_partner.evaluate import Context, Scored

__all__ = ["METHODS", "select_taylornet", "taylornet_student", "write_taylornet"]

logger = logging.getLogger(__name__)

#: The TaylorNet students, in the order of the table.
METHODS = ("awd_taylornet", "db5_taylornet")
#: Items the whole net is expanded around for its terms; Adam steps per reference level.
N_TERM_POINTS = 32
REFERENCE_STEPS = 200
_LR, _BATCH = 1e-2, 64


def _model(ctx: Context, kind: str, name: str, channels: int, weight_decay: float):
    s = ctx.s
    return TaylorNetPredictor(
        (ctx.feats[name].levels + 1, ctx.feats[name].k),
        task=kind,
        channels=channels,
        weight_decay=weight_decay,
        epochs=s.taylornet_epochs,
        lr=_LR,
        batch_size=_BATCH,
        seed=s.seed,
    )


def select_taylornet(ctx: Context, kind: str, choices: dict, rows: list[dict]) -> dict[str, dict]:
    """The TaylorNet students of ``kind``: settings chosen by grouped CV on training cells.

    ``awd_taylornet`` reads the wavelet of the ``awd`` choice, ``db5_taylornet`` db5.
    Every setting's score is added to ``rows`` (``selection.csv``); returns the choices.
    """
    s = ctx.s
    if not s.taylornet:
        return {}
    y_tr = ctx.y(kind, "train")
    sources = [("db5_taylornet", "db5")]
    if "awd" in choices:
        sources.insert(0, ("awd_taylornet", choices["awd"]["wavelet"]))
    out: dict[str, dict] = {}
    for method, name in sources:
        best: dict[str, Any] | None = None
        for channels in s.taylornet_channels:
            for wd in s.taylornet_weight_decays:

                def make(name=name, channels=channels, wd=wd) -> TaylorNetPredictor:
                    return _model(ctx, kind, name, channels, wd)

                score = grouped_cv_score(make, ctx.f_tr[name], y_tr, ctx.groups, kind, s.cv_folds)
                rows.append(
                    {
                        "outcome": kind,
                        "wavelet": f"{name}+taylornet(channels={channels},weight_decay={wd:g})",
                        **ctx.info[name],
                        "cv_score": score,
                    }
                )
                if np.isfinite(score) and (best is None or score > best["cv_score"]):
                    best = {
                        "wavelet": name,
                        "cv_score": float(score),
                        "channels": channels,
                        "weight_decay": wd,
                    }
        if best is not None:
            out[method] = best
    return out


def taylornet_student(ctx: Context, kind: str, method: str, choice: dict) -> Scored:
    """Refit a chosen TaylorNet student on all training cells; its test predictions."""
    from molecular_partner.evaluate import Scored

    name = choice["wavelet"]
    model = _model(ctx, kind, name, choice["channels"], choice["weight_decay"])
    model.fit(ctx.f_tr[name], ctx.y(kind, "train"))
    taps = 0 if name == "db5" else len(ctx.transforms[name].wavelet)
    student = TraceStudent(ctx.feats[name], model, method, kind, taps + model.n_parameters())
    fe = ctx.feats[name]
    record = {
        "wavelet": name,
        **ctx.info[name],
        "cv_score": choice["cv_score"],
        "channels": choice["channels"],
        "weight_decay": choice["weight_decay"],
        "n_parameters": student.n_parameters(),
        "filter_taps": taps,
        "predictor": "TaylorNet (provisional design)"
        + (", logistic link" if kind == "binary" else ""),
        "features": f"top {ctx.s.top_k} values per scale ({len(fe.feature_names)})",
        "compression_rate": ctx.compression.get(name),
    }
    pred = student.predict_features(ctx.f_te[name])
    return Scored(method, pred, student, student.n_parameters(), record=record)


def write_taylornet(out: Path, ctx: Context, results: dict[str, dict[str, Scored]]) -> None:
    """Write the TaylorNet students' terms and class references into ``out`` (``evaluate/``).

    Nothing is written when no TaylorNet student was fitted.
    """
    terms: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for kind, scored in results.items():
        for method in METHODS:
            if method not in scored or scored[method].student is None:
                continue
            student = scored[method].student
            model, fe = student.model, student.features
            bands = band_names(fe.levels)
            info = {
                "method": method,
                "outcome": kind,
                "target": OUTCOMES[kind],
                "wavelet": scored[method].record["wavelet"],
                "features": f"top {fe.k} values of each of {len(bands)} scales",
                "bands": bands,
            }
            by_output = band_terms(
                model, ctx.f_tr[info["wavelet"]], bands, [OUTCOMES[kind]],
                n_points=N_TERM_POINTS, feature_names=fe.feature_names,
            )  # fmt: skip
            terms.append({**info, **by_output[OUTCOMES[kind]]})
            if kind == "binary":
                record, arr = _references(ctx, model, info["wavelet"])
                refs.append({**info, **record})
                arrays.update({f"{method}.{k}": v for k, v in arr.items()})
    if terms:
        _write(out, terms, refs, arrays)


def _references(ctx: Context, model: TaylorNetPredictor, name: str) -> tuple[dict, dict]:
    y_tr, y_te = ctx.y("binary", "train"), ctx.y("binary", "test")
    draws = bootstrap_draws(ctx.n_test, ctx.s.n_bootstrap, ctx.s.seed)
    record, arrays = distil_classes(
        model,
        (ctx.f_tr[name], y_tr),
        (ctx.f_tr[name], y_tr),
        (ctx.f_te[name], y_te),
        draws=draws,
        steps=REFERENCE_STEPS,
    )
    record["class_names"] = ["not recruited" if c == 0 else "recruited" for c in record["classes"]]
    record["classes_are"] = f"{OUTCOMES['binary']} of the training tracks"
    record["chosen_on"] = "training cells (no validation split)"
    return record, arrays


def _write(out: Path, terms: list[dict], refs: list[dict], arrays: dict[str, np.ndarray]) -> None:
    write_taylornet_files(
        out,
        terms,
        refs,
        arrays,
        expansion=(
            "the whole net expanded to second order around training tracks and averaged; "
            "coefficients per training SD of each feature, in standardised outcome units "
            "(regression) or logits (binary); main effects: sum of |first-order coefficients| "
            "of a scale's features; interactions: sum of |second-order coefficients| of a pair "
            "of scales' features"
        ),
        layout=(
            "references in standardised input units (training SDs of each feature): "
            "channels = scales, positions = ranks of the top-k values; arrays in "
            "taylornet_references.npz as '<method>.level<k>' (n_classes, scales, k) and "
            "'<method>.class_mean'"
        ),
        keys=("method", "outcome", "target"),
    )
