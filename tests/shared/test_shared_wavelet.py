"""LearnableWavelet: initialisation, constraint residuals and the cascade algorithm."""

import numpy as np
import pytest
import pywt
import torch

from shared import LearnableWavelet
from shared.wavelet import alternating_flip, orthogonal_names


def _largest(residuals) -> float:
    return max(float(v.detach().abs().max()) for v in residuals.values() if v.numel())


@pytest.mark.parametrize("name", orthogonal_names())
def test_init_equals_pywt_filter_bank(name):
    wavelet = LearnableWavelet(name)
    ref = pywt.Wavelet(name)
    for ours, theirs in zip(wavelet.filter_bank, ref.filter_bank, strict=True):
        np.testing.assert_allclose(ours.detach().numpy(), theirs, atol=1e-14)


@pytest.mark.parametrize("name", orthogonal_names())
def test_constraints_vanish_for_every_orthogonal_wavelet(name):
    assert _largest(LearnableWavelet(name).constraint_residuals()) < 1e-9


@pytest.mark.parametrize("name", ["haar", "db2", "db5", "sym8", "coif3"])
def test_constraints_detect_a_perturbed_filter(name):
    assert _largest(LearnableWavelet(name, noise=0.05, seed=1).constraint_residuals()) > 1e-3


def test_noise_and_random_init_are_seeded():
    a = LearnableWavelet("db5", noise=0.1, seed=3).h0
    b = LearnableWavelet("db5", noise=0.1, seed=3).h0
    c = LearnableWavelet("db5", noise=0.1, seed=4).h0
    assert torch.equal(a, b) and not torch.equal(a, c)
    r = LearnableWavelet("db5", random=True, seed=0).h0
    assert r.shape == (10,) and abs(float(r.detach().norm()) - 1.0) < 1e-12


def test_array_init_and_flip():
    taps = np.array(pywt.Wavelet("db3").rec_lo)
    wavelet = LearnableWavelet(taps)
    assert wavelet.init_name is None
    np.testing.assert_allclose(alternating_flip(wavelet.h0).detach(), pywt.Wavelet("db3").rec_hi)


@pytest.mark.parametrize("name", ["haar", "db2", "db5", "sym6", "coif2"])
@pytest.mark.parametrize("level", [1, 4, 8])
def test_wavefun_matches_pywt(name, level):
    phi, psi, x = LearnableWavelet(name).wavefun(level)
    phi_ref, psi_ref, x_ref = pywt.Wavelet(name).wavefun(level)
    np.testing.assert_allclose(phi.detach().numpy(), phi_ref, atol=1e-12)
    np.testing.assert_allclose(psi.detach().numpy(), psi_ref, atol=1e-12)
    np.testing.assert_allclose(x.numpy(), x_ref, atol=1e-12)


def test_wavefun_is_differentiable():
    wavelet = LearnableWavelet("db3")
    phi, psi, _ = wavelet.wavefun(3)
    (phi.sum() + psi.square().sum()).backward()
    assert wavelet.h0.grad is not None and wavelet.h0.grad.abs().sum() > 0


def test_to_pywt_round_trip():
    w = LearnableWavelet("sym4").to_pywt()
    np.testing.assert_allclose(w.dec_lo, pywt.Wavelet("sym4").dec_lo, atol=1e-14)


@pytest.mark.parametrize(
    "init,match",
    [
        ("db5x", "unknown wavelet"),
        ("bior3.5", "not orthogonal"),
        ("rbio1.3", "not orthogonal"),
        ([1.0, 2.0, 3.0], "even"),
        ([[0.5, 0.5]], "1-D"),
        ([0.5, float("nan")], "NaN"),
    ],
)
def test_bad_init(init, match):
    with pytest.raises(ValueError, match=match):
        LearnableWavelet(init)
