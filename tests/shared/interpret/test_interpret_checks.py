"""Reality checks: similarity measures against scipy / skimage, and the randomisation tests."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from shared import DWT1d, DWT2d
from shared.interpret import (
    cd_attribution,
    label_randomisation_test,
    model_randomisation_test,
    similarity,
    trim_attribution,
)
from shared.interpret.trim_cd import block_groups


def _data(n: int = 256):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 16, generator=gen)
    y = (x[:, 0, 3] + x[:, 0, 4] - x[:, 0, 10]).unsqueeze(1)
    return x, y


def _train(x, y, steps: int = 300) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def trained():
    x, y = _data()
    return _train(x, y), x, y


def _edges(model, x):
    """An 'attribution' that ignores the model: the input's edge magnitude."""
    return (x[..., 1:] - x[..., :-1]).abs()


def test_similarity_against_scipy_and_skimage():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 1, 9, 11, generator=gen), torch.randn(3, 1, 9, 11, generator=gen)
    sim = similarity(a, b)
    fa, fb = a.abs().reshape(3, -1).numpy(), b.abs().reshape(3, -1).numpy()
    rho = np.mean([spearmanr(u, v).statistic for u, v in zip(fa, fb, strict=True)])
    cos = np.mean(
        [u @ v / np.linalg.norm(u) / np.linalg.norm(v) for u, v in zip(fa, fb, strict=True)]
    )
    ssim = np.mean(
        [
            structural_similarity(u / u.max(), v / v.max(), data_range=1.0)
            for u, v in zip(a.abs()[:, 0].numpy(), b.abs()[:, 0].numpy(), strict=True)
        ]
    )
    assert sim["spearman"] == pytest.approx(rho)
    assert sim["cosine"] == pytest.approx(cos)
    assert sim["ssim"] == pytest.approx(ssim)
    coeffs = DWT1d("haar", levels=1)(torch.randn(2, 1, 8))
    assert similarity(coeffs, coeffs)["ssim"] is None


def test_gradients_of_a_trained_model_pass_both_tests(trained):
    net, x, y = trained
    attribution = trim_attribution(DWT1d("haar", levels=2), method="saliency")
    model = model_randomisation_test(net, attribution, x[:16])
    assert model["passed"] is True
    assert [s["layer"] for s in model["steps"]] == ["3", "1"]  # from the output down
    label = label_randomisation_test(lambda labels: _train(x, labels), attribution, x[:16], y)
    assert label["passed"] is True
    json.dumps([model, label])


def test_a_model_independent_edge_detector_fails_both_tests(trained):
    net, x, y = trained
    model = model_randomisation_test(net, _edges, x[:16])
    assert model["passed"] is False and model["similarity"]["spearman"] == pytest.approx(1.0)
    label = label_randomisation_test(lambda labels: _train(x, labels, steps=20), _edges, x[:16], y)
    assert label["passed"] is False


def test_edge_maps_fail_by_ssim_too():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 14 * 14, 1))
    x = torch.randn(4, 1, 16, 16)

    def edges_2d(model, x):
        return (x[..., 1:, 1:] - x[..., :-1, :-1]).abs()

    res = model_randomisation_test(net.eval(), edges_2d, x, measure="ssim")
    assert res["passed"] is False and res["similarity"]["ssim"] == pytest.approx(1.0)


def test_cd_scores_of_a_trained_model_pass(trained):
    net, x, _ = trained
    dwt = DWT1d("haar", levels=2)
    attribution = cd_attribution(dwt, block_groups(dwt(x[:1]), 2))
    res = model_randomisation_test(net, attribution, x[:16], threshold=0.5)
    assert res["passed"] is True
    assert res["threshold"] == 0.5 and res["measure"] == "spearman"


def test_the_model_is_not_modified(trained):
    net, x, _ = trained
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model_randomisation_test(net, trim_attribution(DWT2d("haar", levels=1)), x[:2].view(2, 1, 4, 4))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
