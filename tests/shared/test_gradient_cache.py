"""The cached attribution path: equal to the double backward where it should be, the cache
on disk (fingerprints, memory maps, one builder at a time), and the choice of path."""

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from cosmology.teacher import build_teacher
from molecular_partner.teacher import LSTMTeacher
from shared import DistillConfig, DWT1d, DWT2d, LearnableWavelet, PenaltyWeights, distill
from shared.attributions import trim_attributions
from shared.coeffs import flatten_coeffs
from shared.distill import _terms
from shared.gradient_cache import (
    GradientCache,
    GradientSource,
    StaleCacheError,
    attributions_from_gradients,
    input_gradients,
    is_adjoint,
    piecewise_linear,
    plan_attributions,
)
from shared.losses import AWDLoss

WEIGHTS = PenaltyWeights(l1_coeffs=0.1, l1_attr=1.0)


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _nontrivial(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch-norm statistics, affine terms and input scaling away from the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(
                    0.1 * torch.randn(module.running_mean.shape, generator=gen)
                )
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
        if hasattr(model, "scale"):
            model.scale.input_mean.fill_(0.3)
            model.scale.input_std.fill_(2.0)
    return model


def _teacher(arch: str, width: int | None = None) -> nn.Module:
    torch.manual_seed(1)
    return _frozen(_nontrivial(build_teacher(arch, width=width)).double())


def _penalty_and_grad(transform, x, teacher, method, target, cached: bool):
    """(total loss, its terms, d total / d h0, d l1_attr / d h0) on one path."""
    loss = AWDLoss(WEIGHTS)
    source = GradientSource(teacher, target, method) if cached else None
    total, terms = _terms(transform, loss, x, teacher, target, method, True, source, None)
    grad_total, grad_attr = (
        torch.autograd.grad(v, transform.h0, retain_graph=True)[0]
        for v in (total, terms["l1_attr"])
    )
    return total.detach(), terms, grad_total, grad_attr


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _compare(teacher, mode, method, target=0, levels=3, n=3, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=gen, dtype=torch.float64)
    dwt = DWT2d(LearnableWavelet("db5", noise=0.2, seed=seed), levels=levels, mode=mode)
    dwt.double()
    exact = _penalty_and_grad(dwt, x, teacher, method, target, cached=False)
    cached = _penalty_and_grad(dwt, x, teacher, method, target, cached=True)
    return exact, cached


# -- equality with the double backward ------------------------------------------------------------
@pytest.mark.parametrize("arch,width", [("small", 8), ("resnet18", 8)])
@pytest.mark.parametrize("mode", ["zero", "periodization"])
@pytest.mark.parametrize("method", ["saliency", "input_x_gradient"])
def test_cached_penalty_and_its_filter_gradient_equal_the_double_backward(
    arch, width, mode, method
):
    teacher = _teacher(arch, width)
    (e_total, e_terms, e_grad, e_attr), (c_total, c_terms, c_grad, c_attr) = _compare(
        teacher, mode, method
    )
    assert float(e_terms["l1_attr"].detach()) > 0
    assert abs(float(e_total - c_total)) <= 1e-10 * abs(float(e_total))
    for name in e_terms:
        expected, got = float(e_terms[name].detach()), float(c_terms[name].detach())
        assert got == pytest.approx(expected, rel=1e-10)
    # The filter was perturbed far from orthogonal, so the exact path's second-order term
    # would show if the teacher had one.
    assert _max_rel(c_attr, e_attr) <= 1e-10
    assert _max_rel(c_grad, e_grad) <= 1e-10


def test_several_targets_equal_the_double_backward():
    teacher = _teacher("small", 8)
    exact, cached = _compare(teacher, "zero", "saliency", target=[0, 1])
    assert _max_rel(cached[3], exact[3]) <= 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["zero", "periodization"])
def test_full_width_resnet18_equals_the_double_backward(mode):
    teacher = _teacher("resnet18")
    for method in ("saliency", "input_x_gradient"):
        exact, cached = _compare(teacher, mode, method, n=2)
        assert _max_rel(cached[3], exact[3]) <= 1e-10
        assert _max_rel(cached[2], exact[2]) <= 1e-10


def test_the_comparison_detects_a_smooth_teacher():
    """The equality above is not vacuous: with a smooth layer the two paths differ."""
    teacher = _teacher("small", 8)
    teacher.head[1] = nn.Softplus(beta=5.0)
    exact, cached = _compare(teacher, "zero", "saliency")
    assert float(exact[1]["l1_attr"]) == pytest.approx(float(cached[1]["l1_attr"]), rel=1e-10)
    assert _max_rel(cached[3], exact[3]) > 1e-6


def test_integrated_gradients_use_the_same_nodes():
    # db5 in periodization mode reconstructs perfectly, where the cached path integral is
    # exact; a ReLU teacher makes the integral depend on where it is sampled.
    torch.manual_seed(0)
    teacher = _frozen(
        nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1)).double()
    )
    x = torch.randn(4, 1, 32, dtype=torch.float64)
    dwt = DWT1d("db5", levels=2, mode="periodization").double()
    for n_steps in (5, 32):
        exact = trim_attributions(teacher, dwt, x, "integrated_gradients", n_steps=n_steps)
        grads = input_gradients(teacher, x, 0, "integrated_gradients", n_steps=n_steps)
        cached = attributions_from_gradients(dwt, dwt(x), grads, "integrated_gradients")
        for a, b in zip(cached, exact, strict=True):
            assert _max_rel(a, b) <= 1e-10
    other = input_gradients(teacher, x, 0, "integrated_gradients", n_steps=6)
    assert _max_rel(other, grads) > 1e-6


def _distill(x, teacher, path, **kwargs):
    config = DistillConfig(epochs=2, batch_size=4, lr=1e-2, attribution_path=path)
    return distill(
        x,
        wavelet=LearnableWavelet("db5", noise=0.05, seed=3),
        levels=2,
        mode="zero",
        teacher=teacher,
        weights=kwargs.pop("weights", PenaltyWeights(l1_coeffs=1e-3, l1_attr=1e4)),
        config=config,
        progress=False,
        **kwargs,
    )


def test_a_distillation_learns_the_same_filter_on_both_paths():
    teacher = _teacher("small", 4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 32, 32, generator=gen, dtype=torch.float64)
    val = torch.randn(4, 1, 32, 32, generator=gen, dtype=torch.float64)
    exact, h_exact = _distill(x, teacher, "exact", val_data=val)
    auto, h_auto = _distill(x, teacher, "auto", val_data=val)
    plain, _ = _distill(x, teacher, "exact", weights=PenaltyWeights(l1_coeffs=1e-3))
    assert [h["attribution_path"] for h in h_exact] == ["exact", "exact"]
    assert [h["attribution_path"] for h in h_auto] == ["cached", "cached"]
    assert h_auto[0]["gradient_cache_seconds"] >= 0 and "gradient_cache_seconds" not in h_auto[1]
    # The attribution term moved the filter, so agreeing on it means something.
    moved = float((exact.h0 - plain.h0).abs().max())
    assert moved > 1e-4, moved
    assert float((auto.h0 - exact.h0).abs().max()) <= 1e-10
    for a, b in zip(h_auto, h_exact, strict=True):
        assert a["val_l1_attr"] == pytest.approx(b["val_l1_attr"], rel=1e-10)
        assert a["train_total"] == pytest.approx(b["train_total"], rel=1e-10)


def test_a_dataloader_takes_the_gradient_per_batch():
    teacher = _teacher("small", 4)
    x = torch.randn(8, 1, 32, 32, dtype=torch.float64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    exact, _ = _distill(loader, teacher, "exact", transform=DWT2d("db5", 2))
    auto, history = _distill(loader, teacher, "auto", transform=DWT2d("db5", 2))
    assert history[0]["attribution_path"] == "cached_per_batch"
    assert float((auto.h0 - exact.h0).abs().max()) <= 1e-10


# -- which path ---------------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1)
        self.bn = nn.BatchNorm1d(1)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class _Net(nn.Module):
    """A custom forward around allowed layers, with one operation chosen by the test."""

    def __init__(self, op) -> None:
        super().__init__()
        self.block = _Residual()
        self.fc = nn.Linear(16, 1)
        self.op = op

    def forward(self, x):
        return self.fc(self.op(self.block(x)).flatten(1))


PIECEWISE_LINEAR = {
    "sequential": lambda: nn.Sequential(
        nn.Conv1d(1, 2, 3),
        nn.BatchNorm1d(2),
        nn.LeakyReLU(),
        nn.MaxPool1d(2),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(14, 1),
    ),
    "residual": lambda: _Net(lambda h: h - 0.5 * h.mean(dim=-1, keepdim=True)),
    "scaled by a constant": lambda: _Net(lambda h: h / 3.0),
    "small cnn": lambda: build_teacher("small", width=4),
    "resnet18": lambda: build_teacher("resnet18", width=4),
}
SMOOTH = {
    "tanh module": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.Tanh()), "Tanh"),
    "lstm teacher": (lambda: LSTMTeacher(hidden=4, length=16), "LSTM"),
    "sigmoid in forward": (lambda: _Net(torch.sigmoid), "sigmoid"),
    "square in forward": (lambda: _Net(lambda h: h * h), "mul"),
    "divide by the input": (lambda: _Net(lambda h: h / h.norm()), "norm"),
    "exp method": (lambda: _Net(lambda h: h.exp()), "exp"),
    "control flow": (lambda: _Net(lambda h: h if h.sum() > 0 else -h), "traced"),
}


@pytest.mark.parametrize("name", sorted(PIECEWISE_LINEAR))
def test_piecewise_linear_teachers_are_recognised(name):
    teacher = PIECEWISE_LINEAR[name]().eval()
    ok, reason = piecewise_linear(teacher)
    assert ok, reason
    plan = plan_attributions("auto", teacher, "zero", 2, "saliency", probe=None)
    assert plan.path == "cached" and plan.exact_equivalent


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_smooth_teachers_fall_back_to_the_exact_path(name):
    build, word = SMOOTH[name]
    teacher = build().eval()
    ok, reason = piecewise_linear(teacher)
    assert not ok and word in reason
    plan = plan_attributions("auto", teacher, "zero", 2, "saliency")
    assert plan.path == "exact" and word in plan.reason
    forced = plan_attributions("cached", teacher, "zero", 2, "saliency")
    assert forced.path == "cached" and not forced.exact_equivalent


def test_training_mode_layers_are_not_piecewise_linear():
    for layer in (nn.BatchNorm1d(1), nn.Dropout(0.5)):
        net = nn.Sequential(layer, nn.Flatten(), nn.Linear(16, 1))
        assert piecewise_linear(net.eval())[0]
        ok, reason = piecewise_linear(net.train())
        assert not ok and "training mode" in reason


def test_the_probe_catches_what_the_structural_check_cannot_see(monkeypatch):
    class Hidden(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 3 * x**2 * grad

    probe = torch.randn(2, 1, 16)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    assert plan_attributions("auto", net, "zero", 2, "saliency", probe=probe).path == "cached"
    # A structural check that wrongly approves a cubic teacher: the probe still refuses it.
    monkeypatch.setattr("shared.gradient_cache.piecewise_linear", lambda t: (True, "assumed"))
    cubic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    cubic.forward = lambda x: Hidden.apply(nn.Sequential.forward(cubic, x))
    plan = plan_attributions("auto", cubic, "zero", 2, "saliency", probe=probe)
    assert plan.path == "exact" and "second derivative" in plan.reason


def test_modes_methods_and_sizes_that_are_not_exact_use_the_exact_path():
    net = nn.Sequential(nn.Flatten(), nn.Linear(40, 1)).eval()

    def path(setting, mode, levels, method="saliency", shape=None):
        return plan_attributions(setting, net, mode, levels, method, sample_shape=shape).path

    assert path("auto", "symmetric", 2) == "exact"
    assert path("auto", "zero", 2, "integrated_gradients") == "exact"
    assert path("cached", "zero", 2, "integrated_gradients") == "cached"
    assert path("auto", "periodization", 3, shape=(1, 40)) == "cached"
    assert path("auto", "periodization", 4, shape=(1, 40)) == "exact"
    assert path("auto", "periodization", 2) == "exact"  # sizes unknown
    assert path("exact", "zero", 2) == "exact"
    with pytest.raises(ValueError, match="adjoint"):
        plan_attributions("cached", net, "symmetric", 2, "saliency")
    with pytest.raises(ValueError, match="attribution_path"):
        DistillConfig(attribution_path="fast")
    assert is_adjoint("zero", 5, (1, 7)) and not is_adjoint("reflect", 1, (1, 8))
    dwt = DWT1d("db2", levels=3, mode="periodization")
    with pytest.raises(ValueError, match="adjoint"):
        x = torch.randn(1, 1, 36)
        attributions_from_gradients(dwt, dwt(x), torch.zeros(1, 1, 1, 36), "saliency")


def test_an_lstm_teacher_is_distilled_on_the_exact_path_by_default():
    teacher = LSTMTeacher(hidden=4, length=16).double().eval()
    x = torch.randn(8, 1, 16, dtype=torch.float64)
    kwargs = {"teacher": teacher, "weights": PenaltyWeights(l1_attr=1.0), "progress": False}
    config = DistillConfig(epochs=1, batch_size=8)
    _, history = distill(x, wavelet="db2", levels=2, config=config, **kwargs)
    assert history[0]["attribution_path"] == "exact"
    forced = DistillConfig(epochs=1, batch_size=8, attribution_path="cached")
    _, history = distill(x, wavelet="db2", levels=2, config=forced, **kwargs)
    assert history[0]["attribution_path"] == "cached"


# -- the cache on disk -----------------------------------------------------------------------
def _linear_teacher(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _frozen(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)))


def test_a_stale_cache_is_refused_and_names_what_differs(tmp_path):
    teacher, x = _linear_teacher(), torch.randn(10, 1, 16)
    GradientCache(tmp_path).gradients(teacher, x)
    cache = GradientCache(tmp_path)
    assert cache.gradients(teacher, x).path.parent == tmp_path  # same inputs: reused
    with pytest.raises(StaleCacheError, match=r"another teacher\b"):
        cache.gradients(_linear_teacher(seed=1), x)
    with pytest.raises(StaleCacheError, match=r"another data\b"):
        cache.gradients(teacher, x + 1)
    with pytest.raises(StaleCacheError, match=r"another target\b"):
        cache.gradients(teacher, x, target=1)
    with pytest.raises(StaleCacheError, match=r"another method, n_steps\b"):
        cache.gradients(teacher, x, method="integrated_gradients")
    # Saliency and input x gradient need the same gradient: one entry serves both.
    cache.gradients(teacher, x, method="input_x_gradient")
    x.mul_(2)  # in place: the remembered hash of x must not be trusted
    with pytest.raises(StaleCacheError, match="data"):
        cache.gradients(teacher, x)
    with pytest.raises(StaleCacheError, match="teacher"):
        distill(
            x,
            wavelet="db2",
            levels=2,
            teacher=_linear_teacher(seed=2),
            weights=PenaltyWeights(l1_attr=1.0),
            config=DistillConfig(epochs=1),
            progress=False,
            gradient_cache=tmp_path,
        )
    fresh = _linear_teacher(seed=1)
    rebuilt = GradientCache(tmp_path, on_stale="recompute").gradients(fresh, x)
    expected = input_gradients(fresh, x).numpy()
    np.testing.assert_allclose(rebuilt.values, expected, rtol=1e-6)
    assert len(list(tmp_path.glob("train.*.npy"))) == 1  # the stale array is gone


def test_a_data_fingerprint_given_by_the_caller_replaces_the_hash(tmp_path):
    teacher, x = _linear_teacher(), torch.randn(6, 1, 16)
    cache = GradientCache(tmp_path)
    cache.gradients(teacher, x, data_fingerprint="run-42")
    assert cache.gradients(teacher, x + 1, data_fingerprint="run-42").values.shape[0] == 6
    with pytest.raises(StaleCacheError, match="data"):
        cache.gradients(teacher, x, data_fingerprint="run-43")


def test_a_memory_mapped_cache_gives_the_results_of_one_in_memory(tmp_path):
    teacher = _teacher("small", 4).float()
    x = torch.randn(12, 1, 32, 32)
    in_memory = GradientCache()
    mapped = GradientCache(tmp_path, memory_budget=0)
    scratch = GradientCache(memory_budget=0)  # no folder: a temporary one
    a = in_memory.gradients(teacher, x)
    b = mapped.gradients(teacher, x)
    c = scratch.gradients(teacher, x)
    assert not a.memory_mapped and b.memory_mapped and c.memory_mapped
    assert a.values.dtype == np.float32 and not b.values.flags.writeable
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.values, c.values)
    scratch_folder = c.path.parent
    scratch.close()
    assert not scratch_folder.exists()
    runs = {}
    for label, cache in (("memory", in_memory), ("mapped", mapped)):
        dwt, _ = distill(
            x,
            wavelet="db4",
            levels=2,
            teacher=teacher,
            weights=PenaltyWeights(l1_attr=1e3),
            config=DistillConfig(epochs=1, batch_size=4),
            progress=False,
            gradient_cache=cache,
        )
        runs[label] = dwt.h0.detach()
    assert torch.equal(runs["memory"], runs["mapped"])


class _SlowCounting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        time.sleep(0.2)
        return self.inner(x)


def test_two_workers_build_one_entry_once(tmp_path):
    teacher = _SlowCounting(_linear_teacher()).eval()
    x = torch.randn(8, 1, 16)
    results, errors = [], []

    def worker() -> None:
        try:
            results.append(GradientCache(tmp_path).gradients(teacher, x).values)
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert teacher.calls == 1  # one batch, built by one worker; the other read it
    np.testing.assert_array_equal(results[0], results[1])
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".lock", ".npy"]


def test_cached_gradients_are_the_teacher_input_gradients():
    teacher = _linear_teacher()
    x = torch.randn(5, 1, 16)
    entry = GradientCache(batch_size=2).gradients(teacher, x, target=[1, 0])
    assert entry.values.shape == (5, 2, 1, 16) and entry.several
    for t, target in enumerate([1, 0]):
        xg = x.clone().requires_grad_(True)
        teacher(xg)[:, target].sum().backward()
        np.testing.assert_allclose(entry.values[:, t], xg.grad.numpy(), rtol=1e-6, atol=1e-7)
    batch = entry.batch(torch.tensor([3, 0]), dtype=torch.float64)
    assert batch.dtype == torch.float64
    assert torch.equal(batch[1].float(), torch.from_numpy(entry.values[0].copy()))
    dwt = DWT1d("db2", 2)
    attr = attributions_from_gradients(dwt, dwt(x[[3, 0]]), batch, "saliency", several=True)
    assert len(attr) == 2 and len(flatten_coeffs(attr[0])) == 3


@pytest.mark.gpu
def test_the_cached_path_on_a_cuda_device_equals_the_double_backward(tmp_path):
    teacher = _teacher("small", 4)
    x = torch.randn(8, 1, 32, 32, dtype=torch.float64)
    runs = {}
    for path, cache in (("exact", None), ("auto", GradientCache(tmp_path, memory_budget=0))):
        config = DistillConfig(epochs=2, batch_size=4, lr=1e-2, attribution_path=path)
        dwt, history = distill(
            x,
            wavelet=LearnableWavelet("db5", noise=0.05, seed=3),
            levels=2,
            teacher=teacher,
            weights=PenaltyWeights(l1_coeffs=1e-3, l1_attr=1e4),
            config=config,
            device="cuda",
            progress=False,
            gradient_cache=cache,
        )
        runs[path] = (dwt.h0.detach().cpu(), history[0]["attribution_path"])
    assert runs["exact"][1] == "exact" and runs["auto"][1] == "cached"
    assert float((runs["exact"][0] - runs["auto"][0]).abs().max()) <= 1e-10
