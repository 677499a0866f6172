"""The field's strongest statistics (kymatio scattering, starlet l1-norm and peaks) and the
scattering transform through a 2D DWT, against oracles: kymatio itself, direct numpy and
pywt computations; saved students predict what they predicted before saving."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch
from scipy import ndimage

from cosmology import _kymatio
from cosmology.statistics import B3_SPLINE, starlet
from cosmology.student import (
    STUDENT_CLASSES,
    ConcatFeatures,
    MapStudent,
    PixelQuantileFeatures,
    ScatteringFeatures,
    StarletL1Features,
    StarletPeakFeatures,
    TemplateChi2,
    WaveletScatteringFeatures,
    make_regressor,
    scattering_paths,
)
from shared import DWT2d, LearnableWavelet
from shared.students import load_student, save_student


def _maps(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), (0, 1.0, 1.0), mode="wrap")
    return torch.from_numpy(x)


# --------------------------------------------------------------------------- kymatio


def test_the_sph_harm_alias_keeps_the_old_convention():
    # Y_1^1(polar, azimuth) = -1/2 sqrt(3 / (2 pi)) sin(polar) exp(i azimuth)
    az, pol = 0.7, 1.2
    expected = -0.5 * np.sqrt(3 / (2 * np.pi)) * np.sin(pol) * np.exp(1j * az)
    assert np.isclose(_kymatio.sph_harm(1, 1, az, pol), expected)
    assert np.isclose(scipy.special.sph_harm(1, 1, az, pol), expected)


def _kymatio_oracle(maps: torch.Tensor, J: int, L: int, orientations: str, log: bool):
    """kymatio called directly, map averages, angles combined in numpy."""
    from kymatio.torch import Scattering2D  # importable: cosmology._kymatio ran first

    s = Scattering2D(J=J, shape=maps.shape[-2:], L=L)(maps.contiguous())
    mean = s.mean(dim=(-2, -1)).double().numpy()
    groups: dict[tuple, list[int]] = {}
    for c, path in enumerate(scattering_paths(J, L)):
        if len(path) == 2 and orientations != "all":
            key = (1, path[0])
        elif len(path) == 4 and orientations == "mean":
            key = (2, path[0], path[2])
        elif len(path) == 4 and orientations == "relative":
            key = (2, path[0], path[2], (path[3] - path[1]) % L)
        else:
            key = (len(path), *path)
        groups.setdefault(key, []).append(c)
    out = np.stack([mean[:, idx].mean(1) for idx in groups.values()], 1)
    if log:
        out[:, 1:] = np.log(out[:, 1:])
    return out


@pytest.mark.parametrize(
    ("orientations", "log", "n_features"),
    [("all", True, 1 + 3 * 4 + 16 * 3), ("relative", False, 1 + 3 + 4 * 3), ("mean", True, 7)],
)
def test_scattering_features_equal_kymatio_called_directly(orientations, log, n_features):
    maps = _maps(5).float()
    f = ScatteringFeatures(J=3, L=4, log=log, orientations=orientations).fit(maps)
    X = f.transform(maps)
    assert X.shape == (5, n_features) == (5, len(f.names()))
    np.testing.assert_allclose(X, _kymatio_oracle(maps, 3, 4, orientations, log), rtol=1e-6)
    # The kymatio paths are in kymatio's own order.
    assert len(scattering_paths(3, 4)) == 1 + 3 * 4 + 16 * 3
    assert f.names()[0] == "S0" and f.names()[-1].startswith("S2_j1_")


def test_scattering_refuses_too_many_scales_and_unknown_reductions():
    with pytest.raises(ValueError, match="2\\*\\*J <= N"):
        ScatteringFeatures(J=6).fit(torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="orientations"):
        ScatteringFeatures(orientations="some")


# --------------------------------------------------------------------------- starlet


def test_b3_spline_kernel_and_its_holes():
    np.testing.assert_array_equal(np.array(B3_SPLINE) * 16, [1, 4, 6, 4, 1])
    delta = torch.zeros(1, 33, 33, dtype=torch.float64)
    delta[0, 16, 16] = 1.0
    w = starlet(delta, 3)
    # Scale 0: the delta minus its B3 smoothing, the outer product of the filter.
    smooth1 = delta[0] - w[0, 0]
    h = np.array(B3_SPLINE)
    expected = np.zeros((33, 33))
    expected[14:19, 14:19] = np.outer(h, h)
    np.testing.assert_allclose(smooth1.numpy(), expected, atol=1e-15)
    # Scale 1 smooths with one hole between the taps: the coarse plane is the B3 filter
    # dilated by 2 applied to the first smoothing.
    h2 = np.zeros(9)
    h2[::2] = h
    expected2 = ndimage.convolve(expected, np.outer(h2, h2), mode="constant")
    np.testing.assert_allclose(w[0, 2].numpy(), expected2, atol=1e-15)


def test_starlet_scales_and_coarse_residual_sum_back_to_the_map_exactly():
    # Integer maps: every smoothing is a dyadic rational, exactly representable.
    rng = np.random.default_rng(1)
    maps = torch.from_numpy(rng.integers(-50, 50, size=(3, 32, 32)).astype(np.float64))
    w = starlet(maps, 5)
    assert w.shape == (3, 5, 32, 32)
    assert torch.equal(w.sum(1), maps)
    x = _maps(2)
    torch.testing.assert_close(starlet(x, 4).sum(1), x, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="n_scales"):
        starlet(x, 6)


def _numpy_starlet(x: np.ndarray, n_scales: int) -> list[np.ndarray]:
    """A direct à trous: loops over the taps, mirrored indices."""
    h = np.array(B3_SPLINE)
    n = x.shape[0]

    def mirror(i: int) -> int:
        while i < 0 or i >= n:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i

    planes, c = [], x
    for j in range(n_scales - 1):
        step = 2**j
        rows = np.zeros_like(c)
        for a in range(n):
            for b in range(n):
                rows[a, b] = sum(h[k] * c[a, mirror(b + (k - 2) * step)] for k in range(5))
        smooth = np.zeros_like(c)
        for a in range(n):
            for b in range(n):
                smooth[a, b] = sum(h[k] * rows[mirror(a + (k - 2) * step), b] for k in range(5))
        planes.append(c - smooth)
        c = smooth
    return [*planes, c]


def _numpy_peaks(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    heights = []
    for a in range(1, n - 1):
        for b in range(1, n - 1):
            around = np.delete(x[a - 1 : a + 2, b - 1 : b + 2].ravel(), 4)
            if x[a, b] > around.max():
                heights.append(x[a, b])
    return np.array(heights)


def test_starlet_features_equal_a_direct_numpy_computation():
    maps = _maps(3, size=16, seed=2)
    l1 = StarletL1Features(n_scales=3, n_bins=5, coverage=0.9).fit(maps)
    peaks = StarletPeakFeatures(n_scales=3, n_bins=4, coverage=0.9).fit(maps)
    X1, X2 = l1.transform(maps), peaks.transform(maps)
    assert X1.shape == (3, 15) and X2.shape == (3, 12)
    assert l1.names()[0] == "w1_l1_bin0" and peaks.names()[-1] == "c2_peaks_bin3"
    for i in range(3):
        planes = _numpy_starlet(maps[i].numpy(), 3)
        for j, plane in enumerate(planes):
            np.testing.assert_allclose(starlet(maps[i], 3)[j].numpy(), plane, atol=1e-14)
            e = l1.edges_[j]
            v = plane.ravel()
            which = np.clip(np.searchsorted(e, v, side="right") - 1, 0, 4)
            ref = np.bincount(which, weights=np.abs(v), minlength=5)
            np.testing.assert_allclose(X1[i, 5 * j : 5 * j + 5], ref, rtol=1e-12)
            heights = _numpy_peaks(plane)
            ref, _ = np.histogram(heights, peaks.edges_[j])
            ref[-1] -= int(np.sum(heights == peaks.edges_[j][-1]))  # ours: half-open bins
            np.testing.assert_array_equal(X2[i, 4 * j : 4 * j + 4], ref)
    assert l1.n_parameters() == 3 * 6 and peaks.n_parameters() == 3 * 5


# --------------------------------------------------------------------------- DWT scattering


@pytest.mark.filterwarnings("ignore:Level value of:UserWarning")
def test_wavelet_scattering_equals_pywt():
    pywt = pytest.importorskip("pywt")
    maps = _maps(2, size=64)
    f = WaveletScatteringFeatures(DWT2d("db5", levels=3, mode="zero"), log=False).fit(maps)
    X = f.transform(maps)
    names = f.names()
    assert X.shape == (2, len(names)) == (2, 1 + 9 + 9 * 3)
    for i in range(2):
        coeffs = pywt.wavedec2(maps[i].numpy(), "db5", mode="zero", level=3)
        ref = {"A3": coeffs[0].mean()}
        for level, detail in zip((3, 2, 1), coeffs[1:], strict=True):
            for o, band in zip("HVD", detail, strict=True):
                ref[f"{o}{level}"] = np.abs(band).mean()
                if level == 3:
                    continue
                sub = pywt.wavedec2(np.abs(band), "db5", mode="zero", level=3 - level)
                for level2, detail2 in zip(range(3, level, -1), sub[1:], strict=True):
                    for o2, band2 in zip("HVD", detail2, strict=True):
                        ref[f"{o}{level}_{o2}{level2}"] = np.abs(band2).mean()
        assert sorted(ref) == sorted(names)
        np.testing.assert_allclose(X[i], [ref[n] for n in names], rtol=1e-9, atol=1e-12)
    logged = WaveletScatteringFeatures(DWT2d("db5", levels=3, mode="zero")).transform(maps)
    np.testing.assert_allclose(logged[:, 1:], np.log(X[:, 1:]), rtol=1e-12)
    np.testing.assert_array_equal(logged[:, 0], X[:, 0])


# --------------------------------------------------------------------------- saved students


def _round_trip(tmp_path, features, model_kind: str, taps: int = 0):
    maps = _maps(24, seed=4).float()
    y = np.repeat([[0.25, 0.8], [0.3, 0.85], [0.35, 0.9]], 8, axis=0)
    features.fit(maps)
    X = features.transform(maps)
    model = TemplateChi2("pooled") if model_kind == "pooled" else make_regressor(model_kind)
    model.fit(X, y)
    student = MapStudent(features, model, "m", 32, 3.5, ("omega_m", "sigma_8"), n_taps=taps)
    before = student.predict(maps)
    save_student(tmp_path / "m", student, {"method": "m"})
    loaded, _ = load_student(tmp_path / "m", STUDENT_CLASSES)
    np.testing.assert_array_equal(loaded.predict(maps), before)
    assert loaded.n_parameters() == student.n_parameters()
    return student


def test_saved_peer_students_predict_what_they_predicted(tmp_path):
    s = _round_trip(tmp_path / "a", ScatteringFeatures(J=3, L=4, orientations="relative"), "ridge")
    assert s.n_parameters() == s.model.n_parameters()  # nothing fitted in the features
    s = _round_trip(tmp_path / "b", StarletL1Features(4, 6), "pooled")
    assert s.n_parameters() == s.model.n_parameters() + 4 * 7
    _round_trip(tmp_path / "c", StarletPeakFeatures(4, 6), "xgboost")
    learned = DWT2d(LearnableWavelet("db5"), levels=2, mode="zero")
    with torch.no_grad():
        learned.wavelet.h0.add_(0.01)
    s = _round_trip(tmp_path / "d", WaveletScatteringFeatures(learned), "ridge", taps=10)
    assert s.n_parameters() == s.model.n_parameters() + 10
    both = ConcatFeatures([PixelQuantileFeatures((0.5,)), StarletPeakFeatures(3, 4)])
    s = _round_trip(tmp_path / "e", both, "ridge")
    assert s.n_parameters() == s.model.n_parameters() + 3 * 5
