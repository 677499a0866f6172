"""TaylorNet in the molecular-partner domain: the teacher option and the trace student."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from molecular_partner.config import DistillSettings, TeacherSettings, load_config
from molecular_partner.pipeline import distill_point
from molecular_partner.student import STUDENT_CLASSES, TopCoefficients, TraceStudent
from molecular_partner.teacher import (
    TaylorTeacher1d,
    load_teacher,
    predict,
    save_teacher,
    train_teacher,
)
from shared import DistillConfig, DWT1d, PenaltyWeights
from shared.gradient_cache import plan_attributions
from shared.students import load_student, save_student
from shared.taylornet.student import TaylorNetPredictor

pytestmark = pytest.mark.usefixtures("one_thread")


def _traces(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 40)).astype(np.float32).cumsum(axis=1) / 4
    return x, x[:, -10:].mean(axis=1)


def test_the_arch_setting():
    assert TeacherSettings().arch == "lstm"
    assert load_config(None, ["teacher.arch=taylornet"]).teacher.arch == "taylornet"
    with pytest.raises(ValueError, match=r"teacher\.arch: must be one of"):
        load_config(None, ["teacher.arch=cnn"])


def test_the_taylornet_teacher_trains_saves_loads_and_is_distilled(tmp_path):
    x, y = _traces()
    s = TeacherSettings(arch="taylornet", width=2, epochs=2, batch_size=16)
    model, history = train_teacher(x, y, s, x_val=x[:16], y_val=y[:16], progress=False)
    assert isinstance(model, TaylorTeacher1d) and len(history) == 2
    assert model.net.n_levels == 3 and model.net.padded_size == (40,)  # 40 -> 20 -> 10 -> 5
    path = save_teacher(model, tmp_path / "model", settings=s)
    arch = json.loads(path.with_suffix(".json").read_text())["architecture"]
    assert arch == {
        "arch": "taylornet", "width": 2, "length": 40, "loss": "mse", "order": 2,
        "quadratic": "lowrank", "rank": None, "shared": True, "norm": "layer",
        "readout_order": 2,
    }  # fmt: skip
    loaded = load_teacher(path, arch="taylornet")
    assert np.array_equal(predict(loaded, x), predict(model, x))
    with pytest.raises(ValueError, match="holds a 'taylornet' teacher, expected 'lstm'"):
        load_teacher(path, arch="lstm")
    binary, _ = train_teacher(x, (y > 0).astype(np.float32), s, loss="bce", progress=False)
    p = predict(binary, x)
    assert binary.loss == "bce" and ((p > 0) & (p < 1)).all()
    # products of the input: not piecewise linear, so the attributions take the exact path
    plan = plan_attributions("auto", loaded, "zero", 4, "saliency", sample_shape=(40,))
    assert plan.path == "exact" and "not known to be piecewise linear" in plan.reason
    settings = DistillSettings(train=DistillConfig(epochs=1, batch_size=16, lr=0.01))
    weights = PenaltyWeights(l1_coeffs=1e-3, l1_attr=0.1)
    xt = torch.from_numpy(x)[:, None]
    transform, hist, _ = distill_point(xt, loaded, settings, weights, None, tmp_path / "pt")
    assert hist[0]["attribution_path"] == "exact" and hist[0]["train_l1_attr"] > 0
    assert not torch.equal(transform.wavelet.h0, DWT1d("db5", 4, "zero").wavelet.h0)


def test_a_taylornet_trace_student_round_trips_bit_identically(tmp_path):
    x, y = _traces(80, 1)
    feats = TopCoefficients(DWT1d("db5", 4, "zero"), k=6)
    labels = (y > np.median(y)).astype(int)
    model = TaylorNetPredictor((5, 6), task="binary", epochs=5).fit(feats(x), labels)
    student = TraceStudent(feats, model, "awd_taylornet", "binary", model.n_parameters())
    table = pd.DataFrame({"X_same_length_normalized": list(x)})
    pred = student.predict(table)
    assert pred.shape == (80,) and ((pred > 0) & (pred < 1)).all()
    save_student(tmp_path / "s", student)
    loaded, _ = load_student(tmp_path / "s", STUDENT_CLASSES)
    assert np.array_equal(loaded.predict(table), pred)
