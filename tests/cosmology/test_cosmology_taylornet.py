"""TaylorNet in cosmology: the teacher option (train, save, load, distil) and the student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cosmology.config import DistillSettings, TeacherConfig, load_config
from cosmology.pipeline import distill_point
from cosmology.student import STUDENT_CLASSES, MapStudent, WaveletL1Features, band_names
from cosmology.teacher import build_teacher, load_teacher, predict, save_teacher, train_teacher
from shared import DistillConfig, DWT2d, PenaltyWeights
from shared.gradient_cache import plan_attributions
from shared.students import load_student, save_student
from shared.taylornet.student import TaylorNetPredictor

pytestmark = pytest.mark.usefixtures("one_thread")


def _maps(n: int = 24, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.rand(n, 2, generator=gen) * 0.2 + torch.tensor([0.2, 0.7])
    maps = torch.randn(n, size, size, generator=gen) * y[:, 1:2, None] + y[:, :1, None]
    return maps, y


def test_the_taylornet_teacher_trains_saves_loads_and_is_distilled(tmp_path):
    maps, y = _maps()
    cfg = load_config(None, ["teacher.arch=taylornet", "teacher.width=2"]).teacher
    assert cfg == TeacherConfig(arch="taylornet", width=2)
    short = TeacherConfig(arch="taylornet", width=2, epochs=2, batch_size=8, augment=False)
    model, history = train_teacher(maps, y, maps[:8], y[:8], short, tmp_path, progress=False)
    assert model.arch == "taylornet" and len(history) == 2
    assert model.net.n_levels == 4  # 16 -> 8 -> 4 -> 2 -> 1
    path = save_teacher(model, tmp_path / "model", n_pix=16)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["arch"] == "taylornet" and meta["width"] == 2 and meta["n_pix"] == 16
    assert meta["arch_settings"] == {
        "order": 2, "quadratic": "lowrank", "rank": None, "shared": True, "norm": "layer",
        "readout_order": 2,
    }  # fmt: skip
    loaded = load_teacher(path, n_pix=16, arch="taylornet")
    assert np.array_equal(predict(loaded, maps), predict(model, maps))
    with pytest.raises(ValueError, match="holds a 'taylornet' teacher, expected 'small'"):
        load_teacher(path, arch="small")
    with pytest.raises(ValueError, match="needs the map size"):
        build_teacher("taylornet")
    # products of the input: not piecewise linear, so the attributions take the exact path
    plan = plan_attributions("auto", loaded, "zero", 2, "saliency", sample_shape=(16, 16))
    assert plan.path == "exact" and "not known to be piecewise linear" in plan.reason
    settings = DistillSettings(levels=2, train=DistillConfig(epochs=1, batch_size=8, lr=0.01))
    weights = PenaltyWeights(l1_coeffs=0.005, l1_attr=0.05)
    x = maps[:, None].float()
    transform, hist = distill_point(x, None, loaded, settings, weights, None, tmp_path / "pt")
    assert hist[0]["attribution_path"] == "exact"
    assert np.isfinite(hist[0]["train_total"]) and hist[0]["train_l1_attr"] > 0
    start = DWT2d("db5", levels=2).wavelet.h0.detach()
    assert not torch.equal(transform.wavelet.h0.detach(), start)  # the filter moved


def test_a_taylornet_map_student_round_trips_bit_identically(tmp_path):
    maps, y = _maps(40, 32)
    feats = WaveletL1Features(DWT2d("db2", levels=2), n_bins=4).fit(maps)
    X = feats.transform(maps)
    model = TaylorNetPredictor((len(band_names(2)), 4), 2, epochs=5).fit(X, y.numpy())
    student = MapStudent(feats, model, "awd_taylornet", 32, 3.5, ("omega_m", "sigma_8"))
    pred = student.predict(maps)
    assert pred.shape == (40, 2) and np.isfinite(pred).all()
    save_student(tmp_path / "s", student, {"method": "awd_taylornet"})
    loaded, meta = load_student(tmp_path / "s", STUDENT_CLASSES)
    assert meta["method"] == "awd_taylornet" and isinstance(loaded.model, TaylorNetPredictor)
    assert np.array_equal(loaded.predict(maps), pred)
    assert loaded.n_parameters() == student.n_parameters() == model.n_parameters()
