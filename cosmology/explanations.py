"""Which scales the cosmology teacher uses, by contextual decomposition, and reality checks.

Part of step 4 of ``awd cosmology evaluate`` (:func:`cosmology.evaluate.interpret`); its
documents are written beside ``interpretation.json``:

- ``cd_scales.json``: TRIM + CD scores (:func:`shared.interpret.trim_cd`) of every level of
  the interpreted wavelet (the selected AWD wavelet, as in ``interpretation.json``) and of
  every Fourier annulus (the same log-spaced annuli), for Omega_m and sigma_8, on
  ``evaluate.n_attr_maps`` test maps, in float64. Each group's row carries its scale in
  cycles per pixel, multipoles ``ell = 2 pi f / pixel`` and wavelengths in arcmin
  (:func:`shared.interpret.wavelet_scales` / :func:`~shared.interpret.fourier_scales`);
  the scores are in the teacher's output units (standardised parameters), and for every
  group ``rel + rest = output`` (the conservation error is stored). The maps are spread
  evenly over the test split, which is ordered by cosmology.
- ``acd_examples.json``: agglomerative CD hierarchies (:func:`shared.interpret.acd_hierarchy`)
  of ``evaluate.n_acd_examples`` test maps over tiles of the interpreted wavelet's
  coefficients (at most ``evaluate.acd_tiles`` per side of the finest band), for both
  parameters, ranked by ``|score|``.
- ``reality_checks.json`` (only with ``evaluate.reality_checks``): the cascading
  model-randomisation and the label-randomisation tests (Adebayo et al. 2018) of every
  attribution the evaluation reports, TRIM saliency and input x gradient per coefficient
  and per band, in the wavelet and the Fourier domains, and CD per wavelet level and per
  Fourier annulus; the label test retrains the teacher on permuted training targets for
  ``evaluate.reality_check_epochs`` epochs. A failed test flags the attribution.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cosmology.teacher import train_teacher
from shared.attributions import FourierBands2d
from shared.interpret import (
    cd_attribution,
    fourier_groups,
    fourier_scales,
    level_groups,
    trim_attribution,
    wavelet_scales,
)
from shared.interpret.evaluation import (
    EXPLANATION_FILES,
    acd_examples,
    band_mass,
    cd_scale_scores,
    reality_checks,
    write_explanations,
)

if TYPE_CHECKING:
    from cosmology.evaluate import Context

__all__ = ["EXPLANATION_FILES", "explain", "fourier_edges", "spread", "write_explanations"]

logger = logging.getLogger(__name__)

PARAMETERS = {"omega_m": 0, "sigma_8": 1}
UNITS = "teacher outputs: standardised parameters, (value - training mean) / training SD"


def fourier_edges(n_pix: int, n_bands: int) -> np.ndarray:
    """Log-spaced annuli from 1.5x the fundamental to the corner (cycles per pixel).

    Equal-width bands would put all the large scales, where the power spectrum lives,
    into the first one.

    Examples
    --------
    >>> e = fourier_edges(64, 4)
    >>> len(e), float(e[0]), round(float(e[-1]), 3)
    (5, 0.0, 0.707)
    """
    return np.concatenate([[0.0], np.geomspace(1.5 / n_pix, np.sqrt(2) / 2 + 1e-9, n_bands)])


def spread(n: int, k: int) -> np.ndarray:
    """``min(k, n)`` indices evenly spread over ``range(n)`` (the test split is ordered by
    cosmology: the first maps would all come from one or two).

    Examples
    --------
    >>> spread(10, 4).tolist(), spread(3, 8).tolist()
    ([0, 3, 6, 9], [0, 1, 2])
    """
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def _teacher(ctx: Context) -> nn.Module:
    return copy.deepcopy(ctx.teacher).double().eval()


def cd_scales(ctx: Context, transform: Any, wavelet: str) -> dict[str, Any]:
    """The ``cd_scales.json`` document (see the module docstring)."""
    e = ctx.cfg.evaluate
    test = ctx.maps("test")
    x = test[torch.as_tensor(spread(test.shape[0], e.n_attr_maps)), None].double()
    teacher, transform = _teacher(ctx), copy.deepcopy(transform).double()
    pixel = ctx.splits.pixel_arcmin
    with torch.no_grad():
        levels = level_groups(transform(x[:1]))
    scales = wavelet_scales(transform.levels, pixel)
    if [g.name for g in levels] != [s["name"] for s in scales]:
        raise ValueError("wavelet groups and scales are not in the same order")
    edges = fourier_edges(ctx.splits.n_pix, e.n_fourier_bands)
    bands = FourierBands2d(e.n_fourier_bands, edges)
    return {
        "method": "TRIM + CD (shared.interpret.trim_cd) in float64; a group's relevant input "
        "is the inverse transform of its coefficients, the rest is the irrelevant part",
        "units": UNITS,
        "targets": list(PARAMETERS),
        "n_pix": ctx.splits.n_pix,
        "pixel_arcmin": pixel,
        "maps": f"{x.shape[0]} test maps evenly spread over the test split",
        "wavelet": {
            "point": wavelet,
            "levels": transform.levels,
            **cd_scale_scores(teacher, x, transform, levels, scales, PARAMETERS),
        },
        "fourier": {
            "edges_cycles_per_pixel": edges.tolist(),
            **cd_scale_scores(
                teacher, x, bands, fourier_groups(bands), fourier_scales(edges, pixel), PARAMETERS
            ),
        },
    }


def acd_document(ctx: Context, transform: Any, wavelet: str) -> dict[str, Any]:
    """The ``acd_examples.json`` document (see the module docstring)."""
    e = ctx.cfg.evaluate
    x = ctx.maps("test")[:, None].double()
    teacher, transform = _teacher(ctx), copy.deepcopy(transform).double()
    rng = np.random.default_rng(e.bootstrap_seed)
    picks = np.sort(rng.choice(x.shape[0], min(e.n_acd_examples, x.shape[0]), replace=False))
    with torch.no_grad():
        finest = transform(x[:1])[-1][0].shape[-1]
    tile = max(1, math.ceil(finest / e.acd_tiles))
    catalog = ctx.splits.catalogs["test"]
    y = ctx.targets("test")

    def describe(i: int) -> dict[str, Any]:
        with torch.no_grad():
            out = teacher(x[i : i + 1])[0]
        return {
            "cosmology": str(catalog["cosmology"].iloc[i]) if "cosmology" in catalog else None,
            "omega_m": float(y[i, 0]),
            "sigma_8": float(y[i, 1]),
            "teacher_output": {p: float(out[k]) for p, k in PARAMETERS.items()},
        }

    return {
        "method": "agglomerative CD (shared.interpret.acd_hierarchy) over tiles of wavelet "
        "coefficients, ranked by |CD score|",
        "units": UNITS,
        "wavelet": wavelet,
        "tile": tile,
        "scales": wavelet_scales(transform.levels, ctx.splits.pixel_arcmin),
        "examples": acd_examples(
            teacher, x, transform, picks.tolist(), PARAMETERS, tile=tile, describe=describe
        ),
    }


def _attributions(transform: Any, bands: FourierBands2d, levels: list) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p, k in PARAMETERS.items():
        for method in ("saliency", "input_x_gradient"):
            fn = trim_attribution(transform, method, k)
            out[f"trim_{method}_wavelet/{p}"] = fn
            out[f"trim_{method}_wavelet_bands/{p}"] = band_mass(fn)
        fourier = trim_attribution(bands, "input_x_gradient", k)
        out[f"trim_input_x_gradient_fourier/{p}"] = fourier
        out[f"trim_input_x_gradient_fourier_bands/{p}"] = band_mass(fourier)
        out[f"cd_wavelet_levels/{p}"] = cd_attribution(transform, levels, k)
        out[f"cd_fourier_bands/{p}"] = cd_attribution(bands, fourier_groups(bands), k)
    return out


def reality_document(ctx: Context, transform: Any, wavelet: str) -> dict[str, Any]:
    """The ``reality_checks.json`` document (see the module docstring)."""
    e = ctx.cfg.evaluate
    test = ctx.maps("test")
    x = test[torch.as_tensor(spread(test.shape[0], e.reality_check_items)), None].double()
    teacher, transform = _teacher(ctx), copy.deepcopy(transform).double()
    with torch.no_grad():
        levels = level_groups(transform(x[:1]))
    bands = FourierBands2d(e.n_fourier_bands, fourier_edges(ctx.splits.n_pix, e.n_fourier_bands))
    maps = ctx.maps("train")
    n_check = min(256, maps.shape[0])
    settings = replace(
        ctx.cfg.teacher, epochs=e.reality_check_epochs, patience=e.reality_check_epochs
    )

    def retrain(labels: torch.Tensor) -> nn.Module:
        # Early stopping watches a subset of the training maps with their permuted targets:
        # the model kept is the one that fits the shuffled labels best, as in the test.
        logger.info("reality checks: teacher on permuted targets, %d epochs", settings.epochs)
        with tempfile.TemporaryDirectory() as tmp:
            model, _ = train_teacher(
                maps, labels, maps[:n_check], labels[:n_check], settings, tmp, progress=False
            )
        return model.double().eval()

    doc = reality_checks(
        teacher,
        _attributions(transform, bands, levels),
        x,
        y_train=torch.as_tensor(ctx.targets("train")),
        retrain=retrain,
        seed=ctx.cfg.teacher.seed,
    )
    return {
        "wavelet": wavelet,
        "units": UNITS,
        "items": f"{x.shape[0]} test maps evenly spread over the test split",
        "label_teacher": {
            "epochs": settings.epochs,
            "targets": "training targets permuted across maps (seed = teacher.seed)",
            "kept": f"best epoch on {n_check} training maps with their permuted targets",
        },
        **doc,
    }


def explain(ctx: Context, transform: Any, wavelet: str) -> dict[str, dict[str, Any] | None]:
    """The explanation documents of an evaluation, by file name (``None``: not made).

    ``transform`` is the interpreted wavelet (``wavelet`` its grid point).
    """
    e = ctx.cfg.evaluate
    return {
        "cd_scales.json": cd_scales(ctx, transform, wavelet),
        "acd_examples.json": acd_document(ctx, transform, wavelet) if e.n_acd_examples else None,
        "reality_checks.json": reality_document(ctx, transform, wavelet)
        if e.reality_checks
        else None,
    }
