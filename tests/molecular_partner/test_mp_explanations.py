"""The evaluation's explanation files: CD per level in seconds, ACD examples, reality checks."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from molecular_partner.config import EvaluateSettings, TeacherSettings
from molecular_partner.evaluate import Context
from molecular_partner.explanations import explain, sample_seconds, write_explanations
from molecular_partner.pipeline import TRACE, RunData
from molecular_partner.teacher import LSTMTeacher
from shared import DWT1d

pytestmark = pytest.mark.usefixtures("one_thread")


def _tracks(cells, n, rng):
    frames = rng.integers(16, 120, n)  # shorter and longer than the 40 samples
    return pd.DataFrame(
        {
            "cell": [cells[i % len(cells)] for i in range(n)],
            TRACE: list(rng.standard_normal((n, 40)).astype(np.float32)),
            "X": [rng.random(f) for f in frames],
            "lifetime_s": frames * 2.0,  # 2 s frames
            "Y_sig_mean_normalized": rng.standard_normal(n),
            "y_consec_thresh": rng.integers(0, 2, n),
        }
    )


def _context(**settings):
    rng = np.random.default_rng(0)
    train, test = _tracks(["a", "b"], 40, rng), _tracks(["c"], 12, rng)
    data = RunData(pd.concat([train, test]), train, test, ["b"])
    torch.manual_seed(0)
    teachers = {"regression": LSTMTeacher().eval()}
    transforms = {"p": DWT1d("db5", levels=3), "db5": DWT1d("db5", levels=3)}
    info = {"p": {"lambda": 0.1, "gamma": 0.1}, "db5": {"lambda": None, "gamma": None}}
    s = EvaluateSettings(
        n_acd_examples=1, reality_check_items=6, reality_check_epochs=1, **settings
    )
    ctx = Context(s, data, teachers, transforms, info, ["regression"])
    ctx.teacher_settings = TeacherSettings(epochs=1)
    return ctx


def test_sample_seconds_follow_the_resampling():
    t = pd.DataFrame(
        {"lifetime_s": [20.0, 78.0, 40.0], "X": [np.ones(10), np.ones(79), np.ones(40)]}
    )
    # 10 frames of 2 s, zero-padded: 2 s a sample; 79 frames of 1 s: every 2nd frame kept.
    np.testing.assert_allclose(sample_seconds(t, 40), [2.0, 78.0 / 79 * 2, 1.0])
    assert sample_seconds(t.drop(columns="X"), 40) is None


def test_cd_scales_and_acd_examples_are_written_with_sane_contents(tmp_path):
    ctx = _context()
    write_explanations(tmp_path, explain(ctx, ctx.transforms["p"], ctx.teacher_settings))
    doc = json.loads((tmp_path / "cd_scales.json").read_text())
    x = torch.from_numpy(ctx.x_te)[:, None, :].double()
    with torch.no_grad():
        out = ctx.teachers["regression"].double()(x)[:, 0]
    seconds = sample_seconds(ctx.data.test, 40)
    assert doc["timescale"]["seconds_per_sample_median"] == pytest.approx(np.median(seconds))
    for part in ("awd", "db5"):
        section = doc[part]
        assert [r["name"] for r in section["groups"]] == ["cA3", "cD3", "cD2", "cD1"]
        assert section["conservation_max_abs_error"] < 1e-10
        for row in section["groups"]:
            score = row["Y_sig_mean_normalized"]
            assert score["mean"] + score["rest_mean"] == pytest.approx(float(out.mean()), abs=1e-10)
            if row["name"] == "cD1":  # periods of 2 to 4 samples
                assert row["period_min_samples"] == 2 and row["period_max_samples"] == 4
                median = row["seconds_max_median_track"]
                assert median == pytest.approx(4 * np.median(seconds))
    acd = json.loads((tmp_path / "acd_examples.json").read_text())
    (example,) = acd["examples"]
    assert example["cell"] == "c" and example["seconds_per_sample"] > 0
    h = example["hierarchies"]["Y_sig_mean_normalized"]
    assert h["nodes"][h["root"]]["parent"] is None
    assert not (tmp_path / "reality_checks.json").exists()


def test_reality_checks_flag_and_are_removed_when_off(tmp_path):
    ctx = _context(reality_checks=True)
    write_explanations(tmp_path, explain(ctx, ctx.transforms["p"], ctx.teacher_settings))
    doc = json.loads((tmp_path / "reality_checks.json").read_text())
    assert set(doc["attributions"]) == {
        "trim_input_x_gradient_awd",
        "trim_input_x_gradient_awd_bands",
        "trim_input_x_gradient_db5_bands",
        "cd_awd_levels",
        "cd_db5_levels",
    }
    for name, entry in doc["attributions"].items():
        assert [s["layer"] for s in entry["model_randomisation"]["steps"]] == ["fc", "lstm"]
        assert "label_randomisation" in entry
        assert entry["flagged"] == (name in doc["flagged"]) == bool(entry["failed"])
    with pytest.raises(ValueError, match="teacher settings"):
        explain(ctx, ctx.transforms["p"], None)
    write_explanations(tmp_path, explain(_context(), _context().transforms["p"], None))
    assert not (tmp_path / "reality_checks.json").exists()
