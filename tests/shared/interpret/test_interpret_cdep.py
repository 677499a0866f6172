"""CDEP: the penalty's value, its gradient, and training away a planted decoy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared.attributions import FourierBands2d
from shared.interpret import cd_masks, cdep_penalty, fourier_groups, trim_cd

D = torch.float64


def _decoy_data(n: int, gen: torch.Generator, decoy_follows_label: bool):
    """Feature 0-3: the label, noisily (about 88 % separable); feature 7: the decoy."""
    y = torch.randint(0, 2, (n,), generator=gen)
    sign = 2.0 * y - 1
    x = torch.randn(n, 8, generator=gen)
    x[:, :4] += 0.6 * sign[:, None]
    decoy = sign if decoy_follows_label else 2.0 * torch.randint(0, 2, (n,), generator=gen) - 1
    x[:, 7] = 2.0 * decoy
    return x, y


def _train(lam: float, loss: str = "l1", steps: int = 150):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x, y = _decoy_data(512, gen, True)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    decoy = torch.zeros(8)
    decoy[7] = 1
    for _ in range(steps):
        opt.zero_grad()
        objective = F.cross_entropy(net(x), y)
        if lam:
            objective = objective + lam * cdep_penalty(net, x, decoy, loss=loss)
        objective.backward()
        opt.step()
    x_test, y_test = _decoy_data(2000, gen, False)
    with torch.no_grad():
        accuracy = float((net(x_test).argmax(1) == y_test).float().mean())
        decoy_score = float(cd_masks(net, x_test, decoy[None]).rel.abs().mean())
    return accuracy, decoy_score


def test_penalty_removes_the_reliance_on_a_planted_decoy():
    plain_acc, plain_decoy = _train(0.0)
    cdep_acc, cdep_decoy = _train(10.0)
    # Without the penalty the net reads the decoy, which is random at test time.
    assert plain_acc < 0.65
    # With it, it reads the noisy real features (the Bayes accuracy is about 0.88).
    assert cdep_acc > 0.8
    assert cdep_decoy < 0.05 * plain_decoy


def test_softmax_penalty_is_the_published_expression():
    acd = pytest.importorskip("acd")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).eval()
    x = torch.randn(6, 1, 6, 6)
    mask = np.zeros((6, 6), dtype=np.float32)
    mask[:3, :3] = 1
    rel, irrel = acd.cd(x, net, mask=mask, device="cpu")
    # score_funcs.cdep: softmax over the stacked (rel, irrel), relevant share, mean.
    published = F.softmax(torch.stack((rel, irrel), dim=1), dim=1)[:, 0].mean()
    ours = cdep_penalty(net, x, torch.from_numpy(mask), loss="softmax")
    torch.testing.assert_close(ours, published, rtol=1e-5, atol=1e-6)


def test_l1_penalty_targets_and_prior():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double().eval()
    x = torch.randn(7, 5, dtype=D)
    masks = torch.eye(5, dtype=D)[:2]
    rel = cd_masks(net, x, masks).rel.detach()
    got = cdep_penalty(net, x, masks, target=[0, 2], prior=0.1)
    torch.testing.assert_close(got.detach(), (rel[..., [0, 2]] - 0.1).abs().mean())


def test_penalty_gradient_matches_finite_differences():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double().eval()
    x = torch.randn(6, 4, dtype=D)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=D)

    def penalty(w):
        with torch.nn.utils.stateless._reparametrize_module(net, {"2.weight": w}):
            return cdep_penalty(net, x, mask, loss="softmax")

    w = net[2].weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(penalty, (w,))


def test_penalty_on_fourier_bands_trains_the_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 1))
    net = net.double().eval()
    x = torch.randn(3, 1, 8, 8, dtype=D)
    bands = FourierBands2d(3)
    high = fourier_groups(bands)[2:]
    value = cdep_penalty(net, x, high, transform=bands)
    value.backward()
    assert net[0].weight.grad is not None and float(net[0].weight.grad.abs().sum()) > 0
    with torch.no_grad():
        rel = trim_cd(net, x, bands, high).rel
    torch.testing.assert_close(value.detach(), rel.abs().mean())
