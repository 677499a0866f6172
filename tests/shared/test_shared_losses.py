"""Loss terms: zero at orthogonal wavelets, positive off them, gradients, weights."""

import math

import pytest
import pywt
import torch

from shared import AWDLoss, DWT1d, DWT2d, LearnableWavelet, PenaltyWeights
from shared.attributions import trim_attributions
from shared.losses import (
    cmf_loss,
    highpass_sum_loss,
    l1_attribution_loss,
    l1_coeffs_loss,
    lowpass_sum_loss,
    orthogonality_loss,
    reconstruction_loss,
    unit_norm_loss,
)
from shared.wavelet import orthogonal_names

CONSTRAINTS = [lowpass_sum_loss, highpass_sum_loss, unit_norm_loss, cmf_loss, orthogonality_loss]


def _h(name):
    return torch.tensor(pywt.Wavelet(name).rec_lo, dtype=torch.float64)


@pytest.mark.parametrize("name", orthogonal_names())
def test_constraints_vanish_at_orthogonal_wavelets(name):
    h = _h(name)
    for term in CONSTRAINTS:
        assert float(term(h)) < 1e-18, term.__name__


@pytest.mark.parametrize("name", ["haar", "db2", "db5", "sym7", "coif2"])
def test_constraints_positive_when_perturbed(name):
    h = _h(name) + 0.05 * torch.randn(len(pywt.Wavelet(name).rec_lo), dtype=torch.float64)
    values = [float(term(h)) for term in CONSTRAINTS]
    assert min(values[2:]) > 1e-6 and max(values) > 1e-4


def _reference_cmf(h):
    """The reference's n-point check: H sampled only at the filter's own DFT points."""
    n = h.shape[0]
    power = torch.fft.fft(h).abs().square()
    return 0.5 * (power[: n // 2] + power[n // 2 :] - 2.0).square().sum()


def test_dense_cmf_catches_a_filter_the_n_point_check_misses():
    # Fit a length-10 filter to the n-point CMF condition while forcing lag-2
    # autocorrelation to 0.2: orthogonality fails, yet the n-point check is satisfied.
    h = (_h("db5") + 0.1 * torch.randn(10, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.LBFGS([h], max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        r2 = (h[:-2] * h[2:]).sum()
        loss = _reference_cmf(h) + (r2 - 0.2) ** 2 + lowpass_sum_loss(h)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    h = h.detach()
    assert float(_reference_cmf(h)) < 1e-8
    assert float(cmf_loss(h)) > 1e-3
    assert float(orthogonality_loss(h)) > 1e-3


def test_cmf_grid_must_resolve_every_lag():
    with pytest.raises(ValueError, match="n_freq"):
        cmf_loss(_h("db5"), n_freq=10)


def test_data_terms_follow_the_paper_reductions():
    x = torch.zeros(2, 1, 4)
    assert float(reconstruction_loss(x, torch.ones_like(x))) == 4.0
    assert float(reconstruction_loss(x, torch.ones_like(x), normalize=True)) == 1.0
    coeffs = [torch.full((2, 1, 3), 2.0), torch.full((2, 1, 5), -1.0)]
    # (6 + 5) / 2 levels
    assert float(l1_coeffs_loss(coeffs)) == 5.5
    assert float(l1_coeffs_loss(coeffs, normalize=True)) == 1.5
    two_d = [torch.ones(2, 1, 2, 2), (torch.ones(2, 1, 2, 2),) * 3]
    assert float(l1_coeffs_loss(two_d)) == (4 + 12) / 2
    assert float(l1_attribution_loss([coeffs, coeffs])) == 11.0


def test_awd_loss_total_is_the_weighted_sum():
    dwt = DWT1d(LearnableWavelet("db3", noise=0.05, seed=0), levels=2).double()
    x = torch.randn(4, 1, 20, dtype=torch.float64)
    coeffs = dwt(x)
    weights = PenaltyWeights(cmf=0.5, orthogonality=2.0, l1_coeffs=0.1)
    total, terms = AWDLoss(weights)(dwt.h0, x, dwt.inverse(coeffs), coeffs)
    expected = terms["reconstruction"] + sum(
        getattr(weights, k) * v for k, v in terms.items() if k != "reconstruction"
    )
    assert torch.allclose(total, expected)
    assert set(terms) == {
        "reconstruction",
        "lowpass_sum",
        "highpass_sum",
        "unit_norm",
        "cmf",
        "orthogonality",
        "l1_coeffs",
    }
    with pytest.raises(ValueError, match="needs attributions"):
        AWDLoss(PenaltyWeights(l1_attr=1.0))(dwt.h0, x, dwt.inverse(coeffs), coeffs)


class _Teacher(torch.nn.Module):
    def __init__(self, n_in):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(n_in, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)
        ).double()

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("cls,shape", [(DWT1d, (3, 1, 12)), (DWT2d, (2, 1, 8, 8))])
def test_gradcheck_total_loss_with_attribution_term(cls, shape):
    torch.manual_seed(0)
    dwt = cls(LearnableWavelet("db2"), levels=2, mode="zero")
    teacher = _Teacher(math.prod(shape[1:])).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    x = torch.randn(*shape, dtype=torch.float64)
    loss = AWDLoss(PenaltyWeights(l1_coeffs=0.3, l1_attr=0.7))
    h0 = (dwt.h0.detach() + 0.03).requires_grad_()
    # TRIM holds the residual x - W^-1 W x fixed; so does the finite-difference check.
    with torch.no_grad():
        saved = dwt.wavelet.h0.clone()
        dwt.wavelet.h0.copy_(h0)
        residual = x - dwt.inverse(dwt(x))
        dwt.wavelet.h0.copy_(saved)

    def total(h):
        saved = dwt.wavelet._parameters["h0"]
        dwt.wavelet._parameters["h0"] = h
        try:
            coeffs = dwt(x)
            attr = trim_attributions(
                teacher, dwt, x, "saliency", 1, create_graph=True, coeffs=coeffs, residual=residual
            )
            return loss(h, x, dwt.inverse(coeffs), coeffs, attr)[0]
        finally:
            dwt.wavelet._parameters["h0"] = saved

    assert torch.autograd.gradcheck(total, (h0,))


def test_weights_validation_and_legacy_names():
    with pytest.raises(ValueError, match="l1_attr"):
        PenaltyWeights(l1_attr=-1.0)
    with pytest.raises(ValueError, match="cmf"):
        PenaltyWeights(cmf=float("nan"))
    with pytest.raises(ValueError, match="unknown reference weight names"):
        PenaltyWeights.from_legacy({"lamFoo": 1.0})
    legacy = PenaltyWeights.from_legacy({"lamConv": 0.5, "lamL1wave": 0.01, "lamL1attr": 0.2})
    assert legacy == PenaltyWeights(orthogonality=0.5, l1_coeffs=0.01, l1_attr=0.2)
    assert legacy.to_dict()["l1_attr"] == 0.2
