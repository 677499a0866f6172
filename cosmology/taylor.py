"""TaylorNet students of the maps, their terms and their class references.

PROVISIONAL design (:mod:`shared.taylornet`; the paper's full text was not available).

``awd_taylornet`` and ``db5_taylornet`` are :class:`~cosmology.student.MapStudent` s:
the wavelet l1-norm features (:class:`~cosmology.student.WaveletL1Features`: per band, the
sum of ``|coefficient|`` in bins of its value) of the learned wavelet, or of db5, into a
:class:`~shared.taylornet.student.TaylorNetPredictor` laid out as (bands, bins): one
channel per band in pywt order (``cA_J, cH_J, cV_J, cD_J, ..., cD_1``), the bins along
the positions. The learned wavelet is the one the ``awd_l1_ridge`` student chose on
validation (the same features with a ridge penalty); the TaylorNet's channels and weight
decay are chosen on validation too, by the same score as every other student, and the
chosen setting is refitted on the training split.

The evaluation then writes, from the fitted students:

- ``evaluate/taylornet_terms.json`` and ``.csv``: the largest main effects of the bands
  and the strongest interactions between pairs of bands, per parameter
  (:func:`shared.taylornet.student.band_terms`);
- ``evaluate/taylornet_references.json`` and ``.npz``: class references of the training
  cosmologies at every level of the frozen net, the accuracy of classifying the test maps
  by the nearest reference (level chosen on validation) beside the most frequent training
  cosmology and the nearest class-mean input
  (:func:`shared.taylornet.student.distil_classes`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cosmology.student import WaveletL1Features, band_names
from shared import DWT2d
from shared.evaluation import bootstrap_draws, mean_scaled_rmse
from shared.taylornet.student import (
    TaylorNetPredictor,
    band_terms,
    distil_classes,
    write_taylornet_files,
)

if TYPE_CHECKING:
    from cosmology.evaluate import Choice, Context, Scored

__all__ = ["METHODS", "select_taylornet", "write_taylornet"]

logger = logging.getLogger(__name__)

#: The TaylorNet students, in the order of the table.
METHODS = ("awd_taylornet", "db5_taylornet")
#: Items the whole net is expanded around for its terms; Adam steps per reference level.
N_TERM_POINTS = 32
REFERENCE_STEPS = 200
_LR, _BATCH = 1e-2, 64


def _factory(ctx: Context, n_bands: int, channels: int, weight_decay: float):
    s = ctx.cfg.student

    def make() -> TaylorNetPredictor:
        return TaylorNetPredictor(
            (n_bands, s.l1_bins),
            len(ctx.cfg.data.targets),
            channels=channels,
            weight_decay=weight_decay,
            epochs=s.taylornet_epochs,
            lr=_LR,
            batch_size=_BATCH,
            seed=s.seed,
        )

    return make


def _sources(ctx: Context, best: dict[str, Choice]) -> list[tuple[str, dict, Any, np.ndarray]]:
    """(method, setting, fitted l1 features, training features) of each TaylorNet student
    candidate: every gamma > 0 grid point for ``awd_taylornet`` (or, with
    ``taylornet_wavelet=l1_ridge``, the wavelet of the l1-norm ridge student), and db5."""
    s = ctx.cfg.student
    xtr = ctx.maps("train")
    out = []
    if s.taylornet_wavelet == "validation":
        for p in (p for p in ctx.grid if p["l1_attr"] > 0):
            feats = WaveletL1Features(ctx.transforms[p["point"]], s.l1_bins, s.l1_coverage)
            feats.fit(xtr)
            out.append(("awd_taylornet", {"wavelet": p["point"]}, feats, feats.transform(xtr)))
    else:
        chosen = best.get("awd_l1_ridge") or best.get("awd_l1")
        if chosen is not None:
            out.append(("awd_taylornet", dict(chosen.setting), chosen.features, chosen.Xtr))
    if not out:
        logger.warning("no learned wavelet for awd_taylornet: it is left out")
    d = ctx.cfg.distill
    db5_2d = DWT2d(d.wavelet, levels=d.levels, mode=d.mode)
    db5 = WaveletL1Features(db5_2d, s.l1_bins, s.l1_coverage).fit(xtr)
    out.append(("db5_taylornet", {}, db5, db5.transform(xtr)))
    return out


def select_taylornet(ctx: Context, best: dict[str, Choice], val_table: list[dict]) -> None:
    """The TaylorNet students: channels and weight decay chosen on validation.

    Adds ``awd_taylornet`` (the learned wavelet chosen with them on validation among the
    gamma > 0 grid points, or the wavelet of ``awd_l1_ridge``; ``student.taylornet_wavelet``)
    and ``db5_taylornet`` to ``best`` and every setting's validation score to
    ``val_table``. The test split is not read.
    """
    from cosmology.evaluate import Choice

    s = ctx.cfg.student
    if not s.taylornet:
        return
    ytr, yva = ctx.targets("train"), ctx.targets("val")
    winners: dict[str, Choice] = {}
    for method, setting, feats, Xtr in _sources(ctx, best):
        tic = time.perf_counter()
        Xva = feats.transform(ctx.maps("val"))
        n_bands = len(band_names(feats.transform_.levels))
        winner = winners.get(method)
        for channels in s.taylornet_channels:
            for wd in s.taylornet_weight_decays:
                factory = _factory(ctx, n_bands, channels, wd)
                try:
                    pred = factory().fit(Xtr, ytr).predict(Xva)
                except ValueError as err:
                    logger.warning(
                        "%s (channels %d, weight decay %g): %s", method, channels, wd, err
                    )
                    continue
                if not np.all(np.isfinite(pred)):
                    continue
                score = mean_scaled_rmse(pred, yva, ctx.scale)
                name = f"taylornet(channels={channels},weight_decay={wd:g})"
                val_table.append(
                    {"method": method, "predictor": name, **setting, "val_score": score}
                )
                if winner is None or score < winner.val_score:
                    full = {**setting, "channels": channels, "weight_decay": wd}
                    winner = Choice(method, method, full, name, score, feats, factory, Xtr, ytr)
        if winner is not None:
            winners[method] = winner
        logger.debug("validation: %s %s (%.1f s)", method, setting, time.perf_counter() - tic)
    best.update(winners)


def _labels(ctx: Context, split: str) -> np.ndarray:
    return ctx.splits.catalogs[split]["cosmology"].astype(str).to_numpy()


def _class_values(ctx: Context, classes: list[str]) -> list[list[float]]:
    cosmos, y = _labels(ctx, "train"), ctx.targets("train")
    return [y[cosmos == c][0].tolist() for c in classes]


def write_taylornet(out: Path, ctx: Context, scored: dict[str, Scored]) -> None:
    """Write the TaylorNet students' terms and class references into ``out`` (``evaluate/``).

    Nothing is written when no TaylorNet student was fitted.
    """
    methods = [m for m in METHODS if m in scored and scored[m].student is not None]
    if not methods:
        return
    e = ctx.cfg.evaluate
    terms: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    draws = bootstrap_draws(len(ctx.targets("test")), e.n_bootstrap, e.bootstrap_seed)
    for method in methods:
        student = scored[method].student
        model, feats = student.model, student.features
        bands = band_names(feats.transform_.levels)
        X = {split: feats.transform(ctx.maps(split)) for split in ("train", "val", "test")}
        info = {
            "method": method,
            "wavelet": student.wavelet or ctx.cfg.distill.wavelet,
            "features": f"wavelet l1-norm, {len(bands)} bands x {model.layout[1]} bins",
            "bands": bands,
        }
        by_target = band_terms(
            model, X["train"], bands, list(ctx.cfg.data.targets), n_points=N_TERM_POINTS,
            feature_names=feats.names(),
        )  # fmt: skip
        for target, record in by_target.items():
            terms.append({**info, "target": target, **record})
        record, arr = distil_classes(
            model,
            (X["train"], _labels(ctx, "train")),
            (X["val"], _labels(ctx, "val")),
            (X["test"], _labels(ctx, "test")),
            draws=draws,
            steps=REFERENCE_STEPS,
        )
        record["class_values"] = _class_values(ctx, record["classes"])
        record["class_value_names"] = list(ctx.cfg.data.targets)
        record["chosen_on"] = "validation split"
        refs.append({**info, "classes_are": "training cosmologies", **record})
        arrays.update({f"{method}.{k}": v for k, v in arr.items()})
    _write(out, terms, refs, arrays)


def _write(out: Path, terms: list[dict], refs: list[dict], arrays: dict[str, np.ndarray]) -> None:
    write_taylornet_files(
        out,
        terms,
        refs,
        arrays,
        expansion=(
            "the whole net expanded to second order around training maps and averaged; "
            "coefficients per training SD of each feature, in standardised parameter units; "
            "main effects: sum of |first-order coefficients| of a band's features; "
            "interactions: sum of |second-order coefficients| of a pair of bands' features"
        ),
        layout=(
            "references in standardised input units (training SDs of each feature): "
            "channels = bands, positions = bins; arrays in "
            "taylornet_references.npz as '<method>.level<k>' (n_classes, bands, positions) "
            "and '<method>.class_mean'"
        ),
        keys=("method", "target"),
    )
