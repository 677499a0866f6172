"""The evaluation's explanation files: CD per scale, ACD examples, reality checks."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cosmology.config import load_config
from cosmology.evaluate import Context, explain_teacher
from cosmology.explanations import spread, write_explanations
from cosmology.pipeline import Splits
from cosmology.teacher import SmallCNN

SETTINGS = [
    "teacher.width=4",
    "teacher.batch_size=8",
    "distill.levels=2",
    "evaluate.n_attr_maps=6",
    "evaluate.n_fourier_bands=3",
    "evaluate.n_acd_examples=1",
    "evaluate.acd_tiles=2",
    "evaluate.reality_check_items=4",
    "evaluate.reality_check_epochs=1",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _context(*overrides):
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    sizes = {"train": 16, "val": 4, "test": 8}
    maps = {s: torch.randn(n, 16, 16, generator=gen) for s, n in sizes.items()}
    targets = {s: rng.uniform(0.2, 0.9, (n, 2)) for s, n in sizes.items()}
    catalogs = {
        s: pd.DataFrame({"cosmology": [f"c{i % 2}" for i in range(n)]}) for s, n in sizes.items()
    }
    teacher = SmallCNN(width=4)
    teacher.scale.set_scales(maps["train"], torch.as_tensor(targets["train"]))
    cfg = load_config(None, [*SETTINGS, *overrides])
    splits = Splits(maps, targets, catalogs, 3.5, 16)
    return Context(cfg, splits, teacher.eval(), [], {})


def test_cd_scales_and_acd_examples_are_written_with_sane_contents(tmp_path):
    ctx = _context()
    write_explanations(tmp_path, explain_teacher(ctx, {}))
    assert ctx.teacher.features[0].weight.dtype == torch.float32  # the teacher is untouched
    doc = json.loads((tmp_path / "cd_scales.json").read_text())
    assert doc["pixel_arcmin"] == pytest.approx(3.5 * 60 / 16)
    x = ctx.maps("test")[torch.as_tensor(spread(8, 6)), None].double()
    with torch.no_grad():
        out = ctx.teacher.double()(x)
    for part, names in (("wavelet", ["cA2", "level2", "level1"]), ("fourier", None)):
        section = doc[part]
        assert section["conservation_max_abs_error"] < 1e-10 and section["n_items"] == 6
        rows = section["groups"]
        assert names is None or [r["name"] for r in rows] == names
        for row in rows:
            assert row["ell_max"] > row["ell_min"] >= 0
            assert row["arcmin_min"] > 0
            for k, p in enumerate(("omega_m", "sigma_8")):
                # Each group's CD score and the rest make the output, on average too.
                total = row[p]["mean"] + row[p]["rest_mean"]
                assert total == pytest.approx(float(out[:, k].mean()), abs=1e-10)
    assert len(doc["fourier"]["groups"]) == 3 and doc["wavelet"]["point"] == "db5"
    acd = json.loads((tmp_path / "acd_examples.json").read_text())
    (example,) = acd["examples"]
    assert set(example["hierarchies"]) == {"omega_m", "sigma_8"}
    assert example["cosmology"] in ("c0", "c1") and acd["tile"] >= 1
    for h in example["hierarchies"].values():
        assert h["nodes"][h["root"]]["parent"] is None
    assert not (tmp_path / "reality_checks.json").exists()


def test_reality_checks_are_written_flagged_and_removed_when_off(tmp_path):
    ctx = _context("evaluate.reality_checks=true", "evaluate.n_acd_examples=0")
    write_explanations(tmp_path, explain_teacher(ctx, {}))
    doc = json.loads((tmp_path / "reality_checks.json").read_text())
    names = set(doc["attributions"])
    kinds = (
        "trim_saliency_wavelet",
        "trim_input_x_gradient_wavelet_bands",
        "trim_input_x_gradient_fourier",
        "cd_wavelet_levels",
        "cd_fourier_bands",
    )
    for kind in kinds:
        assert {f"{kind}/omega_m", f"{kind}/sigma_8"} <= names
    for name, entry in doc["attributions"].items():
        for test in ("model_randomisation", "label_randomisation"):
            assert entry[test]["similarity"]["spearman"] is not None
            assert entry[test]["passed"] == (entry[test]["similarity"]["spearman"] < 0.5)
        assert entry["flagged"] == (name in doc["flagged"]) == bool(entry["failed"])
    assert doc["label_teacher"]["epochs"] == 1 and doc["n_items"] == 4
    assert not (tmp_path / "acd_examples.json").exists()
    # Off again: the stale file goes.
    quiet = _context("evaluate.n_acd_examples=0")
    write_explanations(tmp_path, explain_teacher(quiet, {}))
    assert not (tmp_path / "reality_checks.json").exists()
