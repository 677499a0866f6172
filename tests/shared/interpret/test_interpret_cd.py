"""Contextual decomposition: conservation, the bias convention, execution order, errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cosmology.teacher import build_teacher
from molecular_partner.teacher import LSTMTeacher
from shared.interpret import (
    UnsupportedOperationError,
    cd_batched,
    cd_masks,
    contextual_decomposition,
)

D = torch.float64


def _randomise_buffers(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics and input scaling, so every offset is exercised."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
        scale = getattr(model, "scale", None)
        if scale is not None:
            scale.input_mean.fill_(0.3)
            scale.input_std.fill_(1.7)
    return model.double().eval()


class _Block(nn.Module):
    """A torchvision-style BasicBlock (identity or downsampling shortcut)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class _Functional(nn.Module):
    """Functional ops in forward: offsets, scaling, F.relu, torch.flatten, residual sums."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        x = (x - 0.25) / 1.5
        y = F.relu(self.conv(x))
        y = y + F.conv2d(
            x, torch.ones(3, 2, 1, 1, dtype=x.dtype), torch.full((3,), 0.1, dtype=x.dtype)
        )
        y = F.max_pool2d(torch.sigmoid(y) * 2.0 - y.tanh(), 2)
        return self.fc(torch.flatten(F.avg_pool2d(y, 1), 1)) + 0.5


class _Seq(nn.Module):
    """One layer wrapped with reshapes so that it sees its natural input layout."""

    def __init__(self, layer, shape):
        super().__init__()
        self.layer, self.shape = layer, shape

    def forward(self, x):
        return self.layer(x.reshape(x.shape[0], *self.shape)).flatten(1)


def _lstm(**kw):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, **kw)

        def forward(self, x):
            if not self.lstm.batch_first:
                x = x.transpose(0, 1)
            out, (h, c) = self.lstm(x)
            out = out if self.lstm.batch_first else out.transpose(0, 1)
            return torch.cat([out.flatten(1), h.transpose(0, 1).flatten(1), c[-1]], 1)

    return M()


LAYERS = {
    "linear": (nn.Linear(24, 5), (24,)),
    "conv1d": (nn.Conv1d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 12)),
    "conv2d": (nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 4, 3)),
    "relu": (nn.ReLU(), (24,)),
    "leaky_relu": (nn.LeakyReLU(0.2), (24,)),
    "tanh": (nn.Tanh(), (24,)),
    "sigmoid": (nn.Sigmoid(), (24,)),
    "maxpool1d": (nn.MaxPool1d(3, stride=2, padding=1), (2, 12)),
    "maxpool2d": (nn.MaxPool2d(2), (2, 4, 3)),
    "avgpool1d": (nn.AvgPool1d(2), (2, 12)),
    "avgpool2d": (nn.AvgPool2d(2, padding=1), (2, 4, 3)),
    "adaptive_avg1d": (nn.AdaptiveAvgPool1d(5), (2, 12)),
    "adaptive_avg2d": (nn.AdaptiveAvgPool2d((2, 2)), (2, 4, 3)),
    "adaptive_max1d": (nn.AdaptiveMaxPool1d(5), (2, 12)),
    "adaptive_max2d": (nn.AdaptiveMaxPool2d((3, 2)), (2, 4, 3)),
    "batchnorm1d_2d": (nn.BatchNorm1d(24), (24,)),
    "batchnorm1d_3d": (nn.BatchNorm1d(2), (2, 12)),
    "batchnorm2d": (nn.BatchNorm2d(2), (2, 4, 3)),
    "flatten": (nn.Flatten(), (2, 4, 3)),
    "dropout": (nn.Dropout(0.5), (24,)),
    "identity": (nn.Identity(), (24,)),
    "block_identity": (_Block(2, 2, 1), (2, 4, 3)),
    "block_downsample": (_Block(2, 3, 2), (2, 4, 3)),
}


def _cases():
    for name, (layer, shape) in LAYERS.items():
        yield name, _Seq(layer, shape), (24,)
    yield "lstm_batch_first", _lstm(batch_first=True), (6, 3)
    yield "lstm_two_layers_seq_first", _lstm(num_layers=2), (6, 3)
    yield "functional", _Functional(), (2, 8, 8)
    yield "teacher_small", build_teacher("small"), (1, 32, 32)
    yield "teacher_resnet18", build_teacher("resnet18"), (1, 32, 32)
    yield "teacher_lstm", LSTMTeacher(), (1, 40)


with torch.random.fork_rng(devices=[]):
    torch.manual_seed(12)
    CASES = {name: (model, shape) for name, model, shape in _cases()}


@pytest.fixture(params=sorted(CASES))
def case(request):
    model, shape = CASES[request.param]
    torch.manual_seed(1)
    return _randomise_buffers(model), torch.randn(3, *shape, dtype=D)


def _mask(x, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(x.shape[1:], generator=gen, dtype=D) > 0.5).to(D)


def test_conservation(case):
    model, x = case
    with torch.no_grad():
        out = model(x)
        for seed in range(2):
            m = _mask(x, seed)
            rel, irrel = contextual_decomposition(model, m * x, (1 - m) * x)
            assert rel.shape == out.shape
            assert float((rel + irrel - out).abs().max()) < 1e-10
            # A mask that is neither empty nor full gives both parts something.
            assert float(rel.abs().max()) > 0 and float(irrel.abs().max()) > 0


def test_full_mask_is_the_output_and_empty_mask_is_zero(case):
    model, x = case
    with torch.no_grad():
        out = model(x)
        rel, irrel = contextual_decomposition(model, x, torch.zeros_like(x))
        torch.testing.assert_close(rel, out, rtol=0, atol=1e-12)
        assert torch.equal(irrel, torch.zeros_like(irrel))
        rel, irrel = contextual_decomposition(model, torch.zeros_like(x), x)
        assert torch.equal(rel, torch.zeros_like(rel))
        torch.testing.assert_close(irrel, out, rtol=0, atol=1e-12)


def test_bias_split_in_proportion_and_ties_to_the_irrelevant_part():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3).double().eval()
    with torch.no_grad():
        layer.weight[2] = 0  # output 2 is the bias alone: a tie in every sample
    x = torch.randn(4, 5, dtype=D)
    x[3] = 0  # a sample whose linear parts are exactly 0 everywhere
    m = torch.tensor([1, 1, 0, 0, 0], dtype=D)
    rel, irrel = contextual_decomposition(layer, m * x, (1 - m) * x)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    lin_rel, lin_irrel = (m * x).numpy() @ w.T, ((1 - m) * x).numpy() @ w.T
    total = np.abs(lin_rel) + np.abs(lin_irrel)
    share = np.divide(np.abs(lin_rel), total, out=np.zeros_like(total), where=total > 0)
    np.testing.assert_allclose(rel.detach().numpy(), lin_rel + share * b, atol=1e-14)
    np.testing.assert_allclose(irrel.detach().numpy(), lin_irrel + (1 - share) * b, atol=1e-14)
    assert (rel[:, 2] == 0).all() and (rel[3] == 0).all()
    # With the whole input relevant, the tie's bias follows the input; with none, it does not.
    full_rel, full_irrel = contextual_decomposition(layer, x[:3], torch.zeros_like(x[:3]))
    assert torch.equal(full_irrel, torch.zeros_like(full_irrel))
    torch.testing.assert_close(full_rel, layer(x[:3]), rtol=0, atol=1e-15)
    empty_rel, _ = contextual_decomposition(layer, torch.zeros_like(x), x)
    assert torch.equal(empty_rel, torch.zeros_like(empty_rel))


def test_whole_input_rows_even_through_a_dead_layer():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every hidden unit dead: the last bias is a tie
    x = torch.randn(2, 3, dtype=D)
    out = model(x)
    torch.testing.assert_close(out, model[2].bias.expand(2, 2))
    rel, irrel = contextual_decomposition(model, x, torch.zeros_like(x))
    assert torch.equal(rel, out) and torch.equal(irrel, torch.zeros_like(out))
    m = torch.tensor([1.0, 0.0, 0.0], dtype=D)
    rel, irrel = contextual_decomposition(model, m * x, (1 - m) * x)
    assert torch.equal(rel, torch.zeros_like(out)) and torch.equal(irrel, out)


def test_execution_order_not_registration_order():
    class Shuffled(nn.Module):
        def __init__(self):
            super().__init__()
            self.last = nn.Linear(6, 2)
            self.act = nn.ReLU()
            self.first = nn.Linear(4, 6)

        def forward(self, x):
            return self.last(self.act(self.first(x)))

    torch.manual_seed(0)
    shuffled = Shuffled().double().eval()
    ordered = nn.Sequential(shuffled.first, shuffled.act, shuffled.last)
    x = torch.randn(5, 4, dtype=D)
    m = torch.tensor([1, 0, 1, 0], dtype=D)
    with torch.no_grad():
        got = contextual_decomposition(shuffled, m * x, (1 - m) * x)
        want = contextual_decomposition(ordered, m * x, (1 - m) * x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("model", "shape", "name"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.GELU()), (4,), "GELU"),
        (nn.Sequential(nn.LayerNorm(4)), (4,), "LayerNorm"),
        (nn.Sequential(nn.Conv3d(1, 1, 1)), (1, 2, 2, 2), "Conv3d"),
        (nn.Sequential(nn.GRU(4, 3)), (2, 4), "GRU"),
    ],
)
def test_unsupported_layer_is_named(model, shape, name):
    x = torch.randn(2, *shape)
    with pytest.raises(UnsupportedOperationError, match=name):
        contextual_decomposition(model.eval(), x, x)


def test_unsupported_functional_and_data_dependent_code_raise():
    class Softplus(nn.Module):
        def forward(self, x):
            return F.softplus(x)

    class Branch(nn.Module):
        def forward(self, x):
            return x if x.sum().item() > 0 else -x

    class Compare(nn.Module):
        def forward(self, x):
            return x * (x > 0)

    class Product(nn.Module):
        def forward(self, x):
            return x * x

    class ViewInPlace(nn.Module):
        def forward(self, x):
            x = x.clone()
            x[:, :2].mul_(2.0)
            return x

    x = torch.randn(2, 4)
    for model, pattern in [
        (Softplus(), "softplus"),
        (Branch(), "data-dependent"),
        (Compare(), "gt"),
        (Product(), "bilinear"),
        (ViewInPlace(), "view"),
    ]:
        with pytest.raises(UnsupportedOperationError, match=pattern):
            contextual_decomposition(model, x, x)


def test_training_mode_batchnorm_and_dropout_raise():
    x = torch.randn(3, 4)
    for layer in (nn.BatchNorm1d(4), nn.Dropout(0.2)):
        with pytest.raises(UnsupportedOperationError, match="training"):
            contextual_decomposition(nn.Sequential(layer).train(), x, x)


def test_module_with_its_own_rule_is_not_traced():
    class Square(nn.Module):
        calls = 0

        def forward(self, x):
            return x * x  # a product of two decomposed tensors: no function rule

        def contextual_decomposition(self, rel, irrel):
            Square.calls += 1
            return rel * rel, (rel + irrel) ** 2 - rel * rel

    model = nn.Sequential(nn.Linear(3, 3), Square(), nn.Linear(3, 1)).double().eval()
    x = torch.randn(4, 3, dtype=D)
    m = torch.tensor([1.0, 0.0, 1.0], dtype=D)
    rel, irrel = contextual_decomposition(model, m * x, (1 - m) * x)
    assert Square.calls == 1
    torch.testing.assert_close(rel + irrel, model(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["teacher_small", "teacher_lstm", "functional"])
def test_batched_groups_equal_one_at_a_time(name):
    model, shape = CASES[name]
    model = _randomise_buffers(model)
    x = torch.randn(4, *shape, dtype=D)
    masks = torch.stack([_mask(x, s) for s in range(5)])
    with torch.no_grad():
        batched = cd_masks(model, x, masks, chunk_size=7)
        for g in range(5):
            rel, irrel = contextual_decomposition(model, masks[g] * x, (1 - masks[g]) * x)
            torch.testing.assert_close(batched.rel[g], rel, rtol=0, atol=1e-12)
            torch.testing.assert_close(batched.irrel[g], irrel, rtol=0, atol=1e-12)


def test_cd_batched_rows_are_group_major():
    model = nn.Sequential(nn.Linear(3, 2, bias=False)).double().eval()
    x = torch.randn(2, 3, dtype=D)
    seen = []

    def relevant(xs, groups, samples):
        seen.append((groups.tolist(), samples.tolist()))
        return xs * (groups[:, None] == torch.arange(3)).to(D)

    scores = cd_batched(model, x, relevant, 3, chunk_size=4)
    assert seen == [([0, 0, 1, 1], [0, 1, 0, 1]), ([2, 2], [0, 1])]
    w = model[0].weight.detach()
    torch.testing.assert_close(scores.rel[1], x[:, 1:2] * w[:, 1])


def test_scores_are_differentiable_in_the_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double().eval()
    x = torch.randn(3, 3, dtype=D)
    m = torch.tensor([1.0, 0.0, 1.0], dtype=D)
    weight = model[0].weight

    def score(w):
        with torch.nn.utils.stateless._reparametrize_module(model, {"0.weight": w}):
            return contextual_decomposition(model, m * x, (1 - m) * x)[0]

    assert torch.autograd.gradcheck(score, (weight.detach().clone().requires_grad_(True),))


def test_dtype_follows_the_input():
    model = build_teacher("small").eval()
    x = torch.randn(2, 1, 16, 16)
    rel, irrel = contextual_decomposition(model, x, x)
    assert rel.dtype == irrel.dtype == torch.float32


@pytest.mark.gpu
def test_runs_on_cuda():
    model = _randomise_buffers(build_teacher("small")).cuda()
    x = torch.randn(2, 1, 32, 32, dtype=D, device="cuda")
    m = _mask(x).cuda()
    rel, irrel = contextual_decomposition(model, m * x, (1 - m) * x)
    assert rel.device.type == "cuda"
    assert float((rel + irrel - model(x)).abs().max()) < 1e-10
