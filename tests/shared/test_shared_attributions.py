"""TRIM attributions against captum and closed forms."""

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency

from shared import DWT1d, DWT2d, LearnableWavelet
from shared.attributions import (
    FourierBands2d,
    TRIMModel,
    compression_rate,
    residual_of,
    trim_attributions,
)
from shared.coeffs import flatten_coeffs


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.Tanh(),
            torch.nn.Conv2d(4, 4, 3, stride=2, padding=1),
            torch.nn.Softplus(),
            torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 3),
        )

    def forward(self, x):
        return self.net(x)


class SmallLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(1, 6, batch_first=True)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):  # (N, 1, L)
        out, _ = self.lstm(x.transpose(1, 2))
        return self.head(out[:, -1])


def _setup(kind):
    torch.manual_seed(0)
    if kind == "cnn":
        teacher = SmallCNN().double().eval()
        dwt = DWT2d(LearnableWavelet("db3", noise=0.02, seed=0), levels=2)
        x = torch.randn(3, 1, 12, 14, dtype=torch.float64)
    else:
        teacher = SmallLSTM().double().eval()
        dwt = DWT1d(LearnableWavelet("db3", noise=0.02, seed=0), levels=2)
        x = torch.randn(3, 1, 15, dtype=torch.float64)
    return teacher, dwt, x


def _captum_model(teacher, dwt, x):
    coeffs = dwt(x)
    model = TRIMModel(teacher, dwt, residual_of(dwt, x)).set_structure(coeffs)
    leaves = tuple(c.detach().requires_grad_() for c in flatten_coeffs(coeffs))
    return model, leaves


def _assert_close(ours, theirs, atol=1e-10):
    ours = flatten_coeffs(ours)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=atol), float((a - b).abs().max())


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
@pytest.mark.parametrize("target", [0, 1])
def test_saliency_and_input_x_gradient_equal_captum(kind, target):
    teacher, dwt, x = _setup(kind)
    model, leaves = _captum_model(teacher, dwt, x)
    ref = Saliency(model).attribute(leaves, target=target, abs=False)
    _assert_close(trim_attributions(teacher, dwt, x, "saliency", target), ref)
    ref = InputXGradient(model).attribute(leaves, target=target)
    _assert_close(trim_attributions(teacher, dwt, x, "input_x_gradient", target), ref)


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_integrated_gradients_equal_captum(kind):
    teacher, dwt, x = _setup(kind)
    model, leaves = _captum_model(teacher, dwt, x)
    ref = IntegratedGradients(model).attribute(
        leaves, baselines=tuple(torch.zeros_like(t) for t in leaves), target=1, n_steps=20
    )
    ours = trim_attributions(teacher, dwt, x, "integrated_gradients", 1, n_steps=20)
    _assert_close(ours, ref, atol=1e-9)


def test_batched_integrated_gradients_equal_per_sample():
    teacher, dwt, x = _setup("cnn")
    batched = flatten_coeffs(
        trim_attributions(
            teacher, dwt, x, "integrated_gradients", 2, n_steps=12, internal_batch_size=7
        )
    )
    for i in range(x.shape[0]):
        single = flatten_coeffs(
            trim_attributions(teacher, dwt, x[i : i + 1], "integrated_gradients", 2, n_steps=12)
        )
        for a, b in zip(batched, single, strict=True):
            assert torch.allclose(a[i : i + 1], b, atol=1e-11)


@pytest.mark.parametrize("mode", ["zero", "periodization"])
@pytest.mark.parametrize("cls,shape", [(DWT1d, (4, 1, 32)), (DWT2d, (2, 1, 16, 16))])
def test_saliency_is_the_transform_of_the_input_gradient(cls, shape, mode):
    torch.manual_seed(1)
    # Any filter, orthogonal or not: the inverse is the adjoint in these modes.
    dwt = cls(torch.randn(6, dtype=torch.float64), levels=2, mode=mode)
    if cls is DWT2d:
        teacher = SmallCNN().double().eval()
    else:
        teacher = (
            torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(32, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)
            )
            .double()
            .eval()
        )
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(teacher(x)[:, 1].sum(), x)
    expected = flatten_coeffs(dwt(grad))
    _assert_close(trim_attributions(teacher, dwt, x.detach(), "saliency", 1), expected)


def test_several_targets_and_weighted_target():
    teacher, dwt, x = _setup("cnn")
    per_target = trim_attributions(teacher, dwt, x, "saliency", [0, 2])
    assert isinstance(per_target, list) and len(per_target) == 2
    weights = torch.tensor([0.5, 0.0, -2.0], dtype=torch.float64)
    combined = trim_attributions(teacher, dwt, x, "saliency", weights)
    expected = [
        0.5 * a - 2.0 * b
        for a, b in zip(flatten_coeffs(per_target[0]), flatten_coeffs(per_target[1]), strict=True)
    ]
    _assert_close(combined, expected)


def test_attributions_are_differentiable_in_the_filter():
    teacher, dwt, x = _setup("lstm")
    attr = trim_attributions(teacher, dwt, x, "saliency", 0, create_graph=True)
    sum(a.abs().sum() for a in flatten_coeffs(attr)).backward()
    assert dwt.h0.grad is not None and dwt.h0.grad.abs().sum() > 0


def test_teacher_sees_exactly_its_input():
    """With a non-orthogonal filter the residual makes the TRIM model equal the teacher."""
    teacher, _, x = _setup("cnn")
    dwt = DWT2d(LearnableWavelet("db3", noise=0.3, seed=2), levels=2)
    coeffs = dwt(x)
    assert not torch.allclose(dwt.inverse(coeffs), x, atol=1e-3)
    model = TRIMModel(teacher, dwt, residual_of(dwt, x)).set_structure(coeffs)
    assert torch.allclose(model(*flatten_coeffs(coeffs)), teacher(x))


def test_fourier_bands_integrated_gradients_are_complete():
    """Over all bands, IG sums to f(x) - f(baseline): the bands split the prediction."""
    teacher, _, x = _setup("cnn")
    bands = FourierBands2d(5)
    parts = bands(x)
    assert torch.allclose(bands.inverse(parts), x, atol=1e-12)
    ig = trim_attributions(teacher, bands, x, "integrated_gradients", 0, n_steps=64)
    per_sample = sum(a.flatten(1).sum(1) for a in ig)
    expected = teacher(x)[:, 0] - teacher(torch.zeros_like(x))[:, 0]
    assert torch.allclose(per_sample, expected, atol=1e-6)
    masks = bands.masks(12, 14)
    assert torch.equal(masks.sum(0), torch.ones(12, 8, dtype=torch.float64))


def test_bad_input():
    teacher, dwt, x = _setup("cnn")
    with pytest.raises(ValueError, match="unknown method"):
        trim_attributions(teacher, dwt, x, "deeplift")
    with pytest.raises(ValueError, match="out of range"):
        trim_attributions(teacher, dwt, x, "saliency", 3)
    with pytest.raises(ValueError, match="length 2"):
        trim_attributions(teacher, dwt, x, "saliency", torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="empty"):
        trim_attributions(teacher, dwt, x[:0], "saliency")
    teacher.train()
    with pytest.warns(UserWarning, match="training mode"):
        trim_attributions(teacher, dwt, x, "saliency")
    assert not teacher.training


def test_compression_rate_of_a_linear_teacher_equals_the_pywt_closed_form():
    # For y = w . x and an orthogonal transform the saliency of every coefficient is the
    # transform of w itself, so the measure is a count over two pywt decompositions.
    pywt = pytest.importorskip("pywt")
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(64, generator=gen, dtype=torch.float64) * 0.01
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1, bias=False))
    teacher = teacher.double()
    with torch.no_grad():
        teacher[1].weight.copy_(w[None])
    x = torch.randn(5, 1, 64, generator=gen, dtype=torch.float64) * 0.01
    t = 2e-3
    got = compression_rate(teacher, DWT1d("db4", levels=3, mode="periodization"), x, threshold=t)
    w_c = np.concatenate(pywt.wavedec(w.numpy(), "db4", mode="periodization", level=3))
    kept = 0
    for xi in x[:, 0].numpy():
        x_c = np.concatenate(pywt.wavedec(xi, "db4", mode="periodization", level=3))
        kept += int(np.sum((np.abs(x_c) > t) & (np.abs(w_c) > t)))
    expected = kept / (5 * 64)
    assert 0.05 < expected < 0.95  # the thresholds split the coefficients
    assert got == pytest.approx(expected)
    with pytest.raises(ValueError, match="threshold"):
        compression_rate(teacher, DWT1d("db4", levels=3), x, threshold=-1.0)
