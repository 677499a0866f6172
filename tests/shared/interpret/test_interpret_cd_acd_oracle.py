"""CD against acd 0.0.2 (the reference implementation) where acd is right.

acd runs in float32 on the CPU only when told ``device="cpu"``; its max-pool rule builds
float32 outputs. Its bias rule adds 1e-20 to both magnitudes, which differs from ours only
at exact ties (both linear parts zero): generic random inputs have none, and the bias-free
models below have no bias to split at all. Its LSTM gives the bias-by-bias product of the
input and candidate gates to the relevant part inside the phrase, ours splits it as a
bias; with a zero candidate-gate bias that product is ``sigmoid(b_i) * tanh(0) = 0`` and the
two agree. Its LSTM uses ``np.tanh`` and scipy's sigmoid on
tensors; the test swaps in torch's functions for those names inside acd's module only.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from shared.interpret import contextual_decomposition

acd = pytest.importorskip("acd")
cd_propagate = pytest.importorskip("acd.scores.cd_propagate")


def _randomise_bn(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
    return model.eval()


def _cnn(bias: bool) -> nn.Module:
    return _randomise_bn(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=bias),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, bias=bias),
            nn.LeakyReLU(0.1),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(6 * 2 * 2, 8, bias=bias),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(8, 3, bias=bias),
        )
    )


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    out = []
    for r0, r1, c0, c1 in [(0, 6, 0, 12), (3, 9, 2, 7), (5, 6, 5, 6)]:
        m = np.zeros((12, 12), dtype=np.float32)
        m[r0:r1, c0:c1] = 1
        out.append(m)
    out.append((rng.random((12, 12)) > 0.5).astype(np.float32))
    return out


@pytest.mark.parametrize("bias", [True, False])
def test_cnn_scores_equal_acd(bias):
    model = _cnn(bias)
    x = torch.randn(5, 1, 12, 12)
    for mask in _masks():
        ref_rel, ref_irrel = acd.cd(x, model, mask=mask, device="cpu")
        m = torch.from_numpy(mask)
        with torch.no_grad():
            rel, irrel = contextual_decomposition(model, m * x, (1 - m) * x)
        scale = float(ref_rel.detach().abs().max() + ref_irrel.detach().abs().max())
        torch.testing.assert_close(rel, ref_rel.detach(), rtol=0, atol=2e-6 * scale)
        torch.testing.assert_close(irrel, ref_irrel.detach(), rtol=0, atol=2e-6 * scale)


def test_empty_mask_acd_gives_half_the_bias_ours_none():
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    x = torch.zeros(2, 4)  # every position a tie: both linear parts are exactly zero
    ref_rel, _ = acd.cd(x, model, mask=np.zeros(4, dtype=np.float32), device="cpu")
    torch.testing.assert_close(ref_rel.detach(), 0.5 * model[0].bias.detach().expand(2, 3))
    rel, irrel = contextual_decomposition(model, x, x)
    assert torch.equal(rel, torch.zeros(2, 3))
    torch.testing.assert_close(irrel, model(x))


class _Block(nn.Module):
    """torchvision's BasicBlock, registration order as torchvision's."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
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
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(4, 4, 1), (4, 6, 2)])
def test_basic_block_equals_acd(c_in, c_out, stride):
    block = _randomise_bn(_Block(c_in, c_out, stride))
    x = torch.randn(3, c_in, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 1:5] = 1
    rel_in, irrel_in = mask * x, (1 - mask) * x
    with torch.no_grad():
        ref_rel, ref_irrel = cd_propagate.propagate_basic_block(
            rel_in.clone(), irrel_in.clone(), block
        )
        rel, irrel = contextual_decomposition(block, rel_in, irrel_in)
    torch.testing.assert_close(rel, ref_rel, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(irrel, ref_irrel, rtol=1e-5, atol=1e-5)


class _LastHidden(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        with torch.no_grad():
            for b in (self.lstm.bias_ih_l0, self.lstm.bias_hh_l0):
                b.normal_(0, 0.5)
                b[10:15] = 0  # the candidate gate g (gate order i, f, g, o)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return h[-1]


@pytest.mark.parametrize(("start", "stop"), [(0, 3), (2, 5), (6, 6)])
def test_lstm_equals_acd_with_zero_candidate_bias(monkeypatch, start, stop):
    # acd's phrase [start, stop] is inclusive.
    monkeypatch.setattr(cd_propagate, "np", SimpleNamespace(tanh=torch.tanh))
    monkeypatch.setattr(cd_propagate, "sigmoid", torch.sigmoid)
    model = _LastHidden().eval()
    x = torch.randn(4, 7, 3)
    with torch.no_grad():
        ref_rel, ref_irrel = cd_propagate.propagate_lstm(x, model.lstm, start, stop, "cpu")
        mask = torch.zeros(1, 7, 1)
        mask[:, start : stop + 1] = 1
        rel, irrel = contextual_decomposition(model, mask * x, (1 - mask) * x)
    torch.testing.assert_close(rel, ref_rel[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(irrel, ref_irrel[:, 0], rtol=1e-5, atol=1e-6)
