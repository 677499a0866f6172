"""The distillation loop: the planted-signal problem, determinism, resume, bad input."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from shared import (
    AWDTransformer,
    DistillConfig,
    DWT1d,
    DWT2d,
    LearnableWavelet,
    PenaltyWeights,
    distill,
)
from shared.attributions import trim_attributions
from shared.distill import _evaluate
from shared.losses import AWDLoss
from shared.runs import load_transform, save_transform


class PlantedTeacher(torch.nn.Module):
    """Depends only on db5 detail coefficients cD3 at positions 2..4 (nonlinearly)."""

    def __init__(self):
        super().__init__()
        self.generator = DWT1d(LearnableWavelet("db5"), levels=3, mode="periodization")
        self.register_buffer("a", torch.tensor([1.0, -0.5, 0.8], dtype=torch.float64))

    def forward(self, x):
        c = self.generator(x)[1][:, 0, 2:5]
        return (c @ self.a.to(x) + 0.5 * c.sum(1) ** 2)[:, None]


def filter_distance(h, g) -> float:
    """Min L2 distance over circular shifts and sign flips."""
    h, g = h.detach().double(), g.detach().double()
    return min(
        float((h - sign * torch.roll(g, k)).norm()) for k in range(len(g)) for sign in (1, -1)
    )


def planted_mass(teacher, dwt, x) -> float:
    attr = trim_attributions(teacher, dwt, x)
    return float(attr[1].abs().sum() / sum(a.abs().sum() for a in attr))


def test_planted_scale_is_recovered():
    torch.manual_seed(0)
    teacher = PlantedTeacher().eval()
    x = torch.randn(512, 1, 64, dtype=torch.float64)
    dwt = DWT1d(LearnableWavelet("db5", noise=0.1, seed=1), levels=3, mode="periodization")
    db5 = LearnableWavelet("db5").h0
    start_distance, start_mass = filter_distance(dwt.h0, db5), planted_mass(teacher, dwt, x[:128])
    dwt, history = distill(
        x,
        transform=dwt,
        teacher=teacher,
        weights=PenaltyWeights(l1_coeffs=1e-3, l1_attr=1.0),
        config=DistillConfig(epochs=30, batch_size=128, lr=5e-3),
        progress=False,
    )
    assert history[-1]["train_total"] < 0.5 * history[0]["train_total"]
    assert start_mass < 0.8 and planted_mass(teacher, dwt, x[:128]) >= 0.8
    end_distance = filter_distance(dwt.h0, db5)
    assert end_distance < 0.5 * start_distance, (start_distance, end_distance)


def _tiny_run(tmp_path=None, epochs=4, resume=False, seed=3):
    torch.manual_seed(123)  # data only; distill seeds itself
    x = torch.randn(96, 1, 24, 24)
    teacher = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(2 * 22 * 22, 2),
    ).eval()
    dwt = DWT2d(LearnableWavelet("db2", noise=0.05, seed=0), levels=2)
    return distill(
        x,
        transform=dwt,
        teacher=teacher,
        weights=PenaltyWeights(l1_coeffs=0.01, l1_attr=0.1),
        target=[0, 1],
        config=DistillConfig(epochs=epochs, batch_size=32, lr=1e-2, seed=seed),
        checkpoint_dir=tmp_path,
        resume=resume,
        progress=False,
    )


def test_same_seed_same_result():
    a, hist_a = _tiny_run()
    b, hist_b = _tiny_run()
    c, _ = _tiny_run(seed=4)
    assert torch.equal(a.h0, b.h0)
    assert [h["train_total"] for h in hist_a] == [h["train_total"] for h in hist_b]
    assert not torch.equal(a.h0, c.h0)


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    full, full_history = _tiny_run(epochs=4)
    _tiny_run(tmp_path, epochs=2)  # "interrupted" after two epochs
    assert (tmp_path / "checkpoint.safetensors").exists()
    resumed, history = _tiny_run(tmp_path, epochs=4, resume=True)
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert torch.allclose(resumed.h0, full.h0, rtol=0, atol=1e-12)
    assert history[-1]["train_total"] == pytest.approx(full_history[-1]["train_total"], rel=1e-9)


def test_resume_refuses_other_settings(tmp_path):
    _tiny_run(tmp_path, epochs=1)
    with pytest.raises(ValueError, match="other settings"):
        _tiny_run(tmp_path, epochs=2, resume=True, seed=9)


def test_a_checkpoint_of_other_settings_is_refused_or_redone_with_force(tmp_path):
    """A killed point's checkpoint, resumed with other settings: refused naming the
    change; with --force (``replace_stale``) the point starts over from scratch."""
    from shared.runs import StaleResultError
    from shared.sweep import run_chain

    class Task:
        greater_is_better = False

        def __init__(self, seed):
            self.seed = seed

        def run_point(self, weights, warm_start, out):
            dwt, history = _tiny_run(out / "checkpoint", epochs=2, resume=True, seed=self.seed)
            save_transform(dwt, out / "wavelet")
            return {"val_score": history[-1]["train_total"]}

    chain = [PenaltyWeights(l1_attr=0.1)]
    run_chain(Task(seed=0), tmp_path / "grid", chain)
    point = tmp_path / "grid" / "lam0_gam0.1"
    (point / "point.json").unlink()  # killed after the checkpoint, before the record
    assert (point / "checkpoint").is_dir()
    with pytest.raises(StaleResultError, match=r"seed: 0 -> 9.*--force"):
        run_chain(Task(seed=9), tmp_path / "grid", chain)
    redone = run_chain(Task(seed=9), tmp_path / "grid", chain, replace_stale=True)
    fresh = run_chain(Task(seed=9), tmp_path / "fresh", chain)
    assert redone[0]["val_score"] == fresh[0]["val_score"]
    assert torch.equal(
        load_transform(point / "wavelet").h0,
        load_transform(tmp_path / "fresh" / "lam0_gam0.1" / "wavelet").h0,
    )


def test_sparse_wavelet_learning_without_teacher():
    t = np.linspace(0, 1, 64)
    rng = np.random.default_rng(0)
    phases = rng.uniform(0, 6, 128)
    x = np.stack(
        [np.sin(2 * np.pi * f * t + p) for f, p in zip(rng.uniform(1, 4, 128), phases, strict=True)]
    )
    dwt, history = distill(
        torch.from_numpy(x[:, None]),
        wavelet=LearnableWavelet("db4", noise=0.1, seed=2),
        levels=3,
        mode="periodization",
        weights=PenaltyWeights(l1_coeffs=0.05),
        config=DistillConfig(epochs=40, batch_size=32, lr=5e-3),
        progress=False,
    )
    assert isinstance(dwt, DWT1d)
    first, last = history[0], history[-1]
    assert last["train_total"] < 0.3 * first["train_total"]
    assert last["train_l1_coeffs"] < first["train_l1_coeffs"]
    residuals = dwt.wavelet.constraint_residuals()
    assert max(float(v.detach().abs().max()) for v in residuals.values() if v.numel()) < 0.02


def test_early_stopping_keeps_the_best_epoch():
    x = torch.randn(64, 1, 32)
    val = torch.randn(32, 1, 32)
    dwt, history = distill(
        x,
        wavelet=LearnableWavelet("db3", noise=0.2, seed=0),
        levels=2,
        weights=PenaltyWeights(l1_coeffs=0.5),
        # A large step makes the validation loss bounce, so patience triggers.
        config=DistillConfig(epochs=40, batch_size=16, lr=0.2, patience=2),
        val_data=val,
        progress=False,
    )
    best = min(history, key=lambda h: h["val_total"])
    assert len(history) < 40 or best["epoch"] < 38
    val_total = _evaluate(dwt, AWDLoss(PenaltyWeights(l1_coeffs=0.5)), val, None, 0, "saliency", 16)
    assert val_total["total"] == pytest.approx(best["val_total"], rel=1e-6)


def test_bad_input():
    x = torch.randn(8, 1, 16)
    with pytest.raises(ValueError, match="empty"):
        distill(x[:0], levels=2, progress=False)
    with pytest.raises(ValueError, match="needs a teacher"):
        distill(x, levels=2, weights=PenaltyWeights(l1_attr=1.0), progress=False)
    with pytest.raises(ValueError, match="cannot tell 1D from 2D"):
        distill(torch.randn(8, 16), levels=2, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        DistillConfig(epochs=0)

    class NaNTeacher(torch.nn.Module):
        def forward(self, inp):
            return inp.flatten(1)[:, :1] * float("nan")

    with pytest.raises(FloatingPointError, match=r"'l1_attr' .* at epoch 0"):
        distill(
            x,
            wavelet="db2",
            levels=2,
            teacher=NaNTeacher().eval(),
            weights=PenaltyWeights(l1_attr=1.0),
            progress=False,
        )
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    with pytest.warns(UserWarning, match="training mode"):
        distill(
            x,
            wavelet="db2",
            levels=2,
            teacher=teacher,
            weights=PenaltyWeights(l1_attr=0.1),
            config=DistillConfig(epochs=1),
            progress=False,
        )
    assert all(p.requires_grad for p in teacher.parameters())  # restored afterwards
    with pytest.raises(ValueError, match="out of range"):
        distill(
            x,
            wavelet="db2",
            levels=2,
            teacher=teacher.eval(),
            target=3,
            weights=PenaltyWeights(l1_attr=0.1),
            progress=False,
        )


def test_dataloader_input():
    data = torch.utils.data.TensorDataset(torch.randn(40, 1, 16), torch.zeros(40))
    loader = torch.utils.data.DataLoader(data, batch_size=10)
    _, history = distill(loader, transform=DWT1d("db2", 2), config=DistillConfig(epochs=2))
    assert len(history) == 2 and np.isfinite(history[-1]["train_total"])


def test_sklearn_estimator():
    est = AWDTransformer(wavelet="db2", levels=2, epochs=2, batch_size=8, weights=PenaltyWeights())
    assert clone(est).get_params() == est.get_params()
    x = np.random.default_rng(0).standard_normal((24, 16))
    features = est.fit_transform(x)
    names = est.get_feature_names_out()
    assert features.shape == (24, len(names)) == (24, 6 + 6 + 9)
    assert names[0] == "cA2_0" and names[-1] == "cD1_8"
    assert len(est.history_) == 2
    images = AWDTransformer(wavelet="haar", levels=1, epochs=1).fit(np.zeros((4, 1, 4, 4)) + 1.0)
    assert list(images.get_feature_names_out()[:5]) == [
        "cA1_0_0",
        "cA1_0_1",
        "cA1_1_0",
        "cA1_1_1",
        "cH1_0_0",
    ]
    with pytest.raises(ValueError, match="not fitted"):
        AWDTransformer().transform(x)
