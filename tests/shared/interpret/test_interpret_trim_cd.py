"""TRIM + CD: coefficient groups, pywt / numpy oracles, the shipped teachers, scales."""

import math

import numpy as np
import pytest
import pywt
import torch
from torch import nn

from cosmology.teacher import build_teacher
from molecular_partner.teacher import LSTMTeacher
from shared import DWT1d, DWT2d
from shared.attributions import FourierBands2d
from shared.interpret import (
    band_groups,
    block_groups,
    fourier_groups,
    fourier_scales,
    level_groups,
    standard_groups,
    trim_cd,
    wavelet_scales,
)

D = torch.float64
# pywt warns when boundary effects reach every coefficient; the oracle holds regardless.
pytestmark = pytest.mark.filterwarnings("ignore:Level value of .* is too high")


def _linear_teacher(n_in: int, n_out: int = 2) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out, bias=False)).double().eval()


def _pywt_part_2d(x: np.ndarray, wavelet: str, levels: int, mode: str, keep) -> np.ndarray:
    """pywt: reconstruct one map from the coefficients ``keep(level_entry, band)`` says to keep."""
    coeffs = pywt.wavedec2(x, wavelet, mode=mode, level=levels)
    kept = [coeffs[0] * keep(0, 0)]
    for k, triple in enumerate(coeffs[1:], start=1):
        kept.append(tuple(c * keep(k, b) for b, c in enumerate(triple)))
    rec = pywt.waverec2(kept, wavelet, mode=mode)
    return rec[: x.shape[0], : x.shape[1]]


@pytest.mark.parametrize(
    ("wavelet", "mode", "size"), [("db2", "zero", 17), ("db3", "periodization", 16)]
)
def test_linear_teacher_is_its_exact_linear_decomposition_2d(wavelet, mode, size):
    x = torch.randn(3, 1, size, size, dtype=D)
    dwt = DWT2d(wavelet, levels=2, mode=mode)
    model = _linear_teacher(size * size)
    groups = band_groups(dwt(x))
    with torch.no_grad():
        res = trim_cd(model, x, dwt, groups, chunk_size=5)
    w = model[1].weight.detach().numpy()
    for g in range(len(groups)):
        k_keep, b_keep = (0, 0) if g == 0 else ((g - 1) // 3 + 1, (g - 1) % 3)
        wanted = (k_keep, b_keep)
        for n in range(3):
            part = _pywt_part_2d(
                x[n, 0].numpy(), wavelet, 2, mode, lambda k, b, want=wanted: float((k, b) == want)
            )
            np.testing.assert_allclose(res.rel[g, n].numpy(), w @ part.ravel(), atol=1e-10)
            np.testing.assert_allclose(
                res.irrel[g, n].numpy(), w @ (x[n, 0].numpy() - part).ravel(), atol=1e-10
            )


def test_linear_teacher_1d_levels_against_pywt():
    x = torch.randn(4, 1, 40, dtype=D)
    dwt = DWT1d("db5", levels=3, mode="zero")
    model = _linear_teacher(40, 1)
    with torch.no_grad():
        res = trim_cd(model, x, dwt, level_groups(dwt(x)))
    w = model[1].weight.detach().numpy()
    for g in range(4):
        for n in range(4):
            coeffs = pywt.wavedec(x[n, 0].numpy(), "db5", mode="zero", level=3)
            kept = [c * float(i == g) for i, c in enumerate(coeffs)]
            part = pywt.waverec(kept, "db5", mode="zero")[:40]
            np.testing.assert_allclose(res.rel[g, n].numpy(), w @ part, atol=1e-10)


def test_linear_teacher_fourier_annuli_against_numpy():
    x = torch.randn(2, 1, 12, 16, dtype=D)
    bands = FourierBands2d(3, edges=[0.0, 0.1, 0.3, 0.75])
    model = _linear_teacher(12 * 16)
    with torch.no_grad():
        res = trim_cd(model, x, bands, fourier_groups(bands))
    w = model[1].weight.detach().numpy()
    fy = np.fft.fftfreq(12)[:, None]
    fx = np.fft.fftfreq(16)[None, :]
    radius = np.hypot(fy, fx)
    for g, (lo, hi) in enumerate([(0.0, 0.1), (0.1, 0.3), (0.3, 0.75)]):
        annulus = (radius >= lo) & (radius < hi)
        for n in range(2):
            part = np.fft.ifft2(np.fft.fft2(x[n, 0].numpy()) * annulus).real
            np.testing.assert_allclose(res.rel[g, n].numpy(), w @ part.ravel(), atol=1e-10)


def _teacher_cases():
    torch.manual_seed(5)
    small = build_teacher("small")
    resnet = build_teacher("resnet18")
    lstm = LSTMTeacher()
    for model in (small, resnet):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.normal_(0, 0.3)
                    m.running_var.uniform_(0.5, 2)
    maps = torch.randn(2, 1, 32, 32, dtype=D)
    traces = torch.randn(3, 1, 40, dtype=D)
    return [
        ("small", small, maps, DWT2d("db5", levels=2, mode="zero"), "band"),
        ("small", small, maps, FourierBands2d(4), "level"),
        ("resnet18", resnet, maps, DWT2d("db2", levels=3, mode="periodization"), "level"),
        ("resnet18", resnet, maps, FourierBands2d(3), "level"),
        ("lstm", lstm, traces, DWT1d("db5", levels=4, mode="zero"), "level"),
        ("lstm", lstm, traces, DWT1d("db2", levels=2, mode="periodization"), "block"),
    ]


@pytest.mark.parametrize("index", range(6))
def test_every_teacher_conserves_for_every_group(index):
    _, model, x, transform, by = _teacher_cases()[index]
    model = model.double().eval()
    groups = standard_groups(transform, x, by=by, block=5)
    with torch.no_grad():
        res = trim_cd(model, x, transform, groups, chunk_size=16)
        out = model(x)
    assert res.rel.shape == (len(groups), *out.shape)
    assert float((res.rel + res.irrel - out).abs().max()) < 1e-10
    assert float(res.rel.abs().max()) > 0


def test_groups_partition_the_coefficients():
    coeffs = DWT2d("db2", levels=2)(torch.randn(1, 1, 20, 20))
    for groups in (level_groups(coeffs), band_groups(coeffs), block_groups(coeffs, 3)):
        leaves = [c for entry in coeffs for c in (entry if isinstance(entry, tuple) else [entry])]
        for i, leaf in enumerate(leaves):
            cover = sum(torch.as_tensor(g.masks[i]).expand(leaf.shape[1:]) for g in groups)
            assert torch.equal(cover, torch.ones(leaf.shape[1:]))


def test_group_names_follow_pywt_and_the_scales_table():
    coeffs = DWT2d("haar", levels=2)(torch.randn(1, 1, 8, 8))
    assert [g.name for g in band_groups(coeffs)] == [
        "cA2", "cH2", "cV2", "cD2", "cH1", "cV1", "cD1",
    ]  # fmt: skip
    names = [g.name for g in level_groups(coeffs)]
    assert names == [r["name"] for r in wavelet_scales(2)] == ["cA2", "level2", "level1"]


def test_scales_in_multipoles_and_arcmin():
    pixel = 1.6
    nyquist_ell = math.pi / math.radians(pixel / 60)  # half a cycle per pixel
    rows = wavelet_scales(3, pixel_arcmin=pixel)
    finest, approx = rows[-1], rows[0]
    assert finest["ell_max"] == pytest.approx(nyquist_ell)
    assert finest["ell_min"] == pytest.approx(nyquist_ell / 2)
    assert (finest["arcmin_min"], finest["arcmin_max"]) == pytest.approx((2 * pixel, 4 * pixel))
    assert approx["ell_min"] == 0 and approx["arcmin_max"] is None
    assert approx["ell_max"] == pytest.approx(nyquist_ell / 8)
    fourier = fourier_scales([0.0, 0.25, 0.5], pixel_arcmin=pixel)
    assert fourier[1]["ell_max"] == pytest.approx(nyquist_ell)


@pytest.mark.parametrize("f", [0.07, 0.18, 0.31])
def test_fourier_scales_locate_a_plane_wave(f):
    """A cosine of frequency f lands in the annulus whose scale row contains f and its ell."""
    n, pixel = 64, 2.0
    k = round(f * n)  # on the grid, so the wave is one Fourier mode
    x = np.mgrid[:n, :n][1]
    wave = torch.from_numpy(np.cos(2 * np.pi * k * x / n))[None, None]
    bands = FourierBands2d(4)
    energy = [float((b**2).sum()) for b in bands(wave)]
    band = int(np.argmax(energy))
    assert energy[band] == pytest.approx(sum(energy))
    row = fourier_scales(bands, pixel_arcmin=pixel)[band]
    assert row["f_min"] <= k / n < row["f_max"]
    ell = 2 * np.pi * (k / n) / math.radians(pixel / 60)
    assert row["ell_min"] <= ell < row["ell_max"]


@pytest.mark.parametrize("level", [1, 2, 3])
def test_wavelet_scales_locate_a_plane_wave(level):
    """A wave in the middle of level j's nominal band puts most energy in level j."""
    n = 128
    period = 2**level * math.sqrt(2)
    x = np.arange(n)[None, :] * np.ones((n, 1))
    wave = torch.from_numpy(np.cos(2 * np.pi * x / period))[None, None]
    dwt = DWT2d("db8", levels=4, mode="periodization")
    with torch.no_grad():
        coeffs = dwt(wave)
    energy = {
        g.name: float(sum((c**2).sum() for c in (entry if isinstance(entry, tuple) else [entry])))
        for g, entry in zip(level_groups(coeffs), coeffs, strict=True)
    }
    row = next(r for r in wavelet_scales(4) if r["name"] == f"level{level}")
    assert row["period_min_px"] <= period < row["period_max_px"]
    assert energy[f"level{level}"] > 0.8 * sum(energy.values())


def test_summary_is_json_and_matches_the_scores():
    import json

    x = torch.randn(5, 1, 16, dtype=D)
    dwt = DWT1d("haar", levels=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.ReLU(), nn.Linear(3, 2))
    res = trim_cd(model.double().eval(), x, dwt, level_groups(dwt(x)))
    rows = res.summary(target=1)
    json.dumps(rows)
    np.testing.assert_allclose([r["mean"] for r in rows], res.rel[..., 1].mean(1).detach())


def test_group_masks_must_fit_the_transform():
    x = torch.randn(2, 1, 16, dtype=D)
    groups = level_groups(DWT1d("haar", levels=3)(x))
    with pytest.raises(ValueError, match="leaf masks"):
        trim_cd(_linear_teacher(16), x, DWT1d("haar", levels=2), groups)
