"""Students, teachers and configs of the cosmology pipeline, against oracles where one exists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cosmology._lenstools import convergence_map
from cosmology.config import CONFIGS, RunConfig, TeacherConfig, load_config
from cosmology.statistics import filter_maps, find_peaks
from cosmology.student import (
    MultiscalePeakFeatures,
    PeakFilterFeatures,
    PowerSpectrumFeatures,
    TemplateChi2,
    WaveletL1Features,
    _best_window,
    laplace_kernel,
    make_regressor,
    raw_kernel,
    roberts_cross,
    wavelet_kernels,
)
from cosmology.teacher import (
    SmallCNN,
    build_teacher,
    dihedral_augment,
    train_teacher,
)
from shared import DWT2d, LearnableWavelet
from shared.config import dump_config
from shared.evaluation import n_parameters as count_parameters


def _maps(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=(n, size, size)), (0, 1.2, 1.2), mode="wrap")


def test_raw_peak_histogram_equals_lenstools_away_from_edges():
    maps = _maps(6)
    maps[:, 0, :] = maps[:, -1, :] = maps[:, :, 0] = maps[:, :, -1] = -10.0
    f = PeakFilterFeatures(raw_kernel(), n_bins=12, coverage=0.99).fit(torch.from_numpy(maps))
    ours = f.transform(torch.from_numpy(maps))
    for i in range(len(maps)):
        _, density = convergence_map(maps[i], 3.5).peakCount(f.edges_[0])
        np.testing.assert_array_equal(ours[i], np.rint(density * np.diff(f.edges_[0])))


def test_kernel_values_at_peaks_equal_full_filtering():
    maps = torch.from_numpy(_maps(4, seed=1))
    kernels = np.concatenate([wavelet_kernels(DWT2d("db5", levels=1)), laplace_kernel()])
    f = PeakFilterFeatures(kernels, n_bins=8).fit(maps)
    values, which = f.values(maps)
    filtered = filter_maps(maps, torch.as_tensor(kernels))
    mask = find_peaks(maps, "interior")
    w, r, c = mask.nonzero(as_tuple=True)
    torch.testing.assert_close(values, filtered[w, :, r, c])
    torch.testing.assert_close(which, w)
    hist = f.transform(maps)
    for i in range(len(maps)):
        for k in range(len(kernels)):
            ref, _ = np.histogram(filtered[w, k, r, c][w == i].numpy(), f.edges_[k])
            np.testing.assert_array_equal(hist[i, k * 8 : (k + 1) * 8], ref)


def test_kernel_window_considers_the_last_position():
    # The reference's range(len(h) - 3) never looked at the last window.
    f = np.array([0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 1.0])
    np.testing.assert_array_equal(_best_window(f), [1.0, -1.0, 1.0])
    k = wavelet_kernels(LearnableWavelet("db5"))
    assert k.shape == (4, 3, 3)
    np.testing.assert_allclose(k[1:].sum(axis=(1, 2)), 0.0, atol=1e-12)


def test_roberts_cross_of_a_step():
    x = torch.zeros(1, 6, 6)
    x[:, :, 3:] = 1.0
    r = roberts_cross(x)[0, 0]
    # Pixels whose 2x2 blocks straddle the step see it in two blocks, sqrt(2) each.
    assert float(r[2, 2]) == pytest.approx(2 * np.sqrt(2))
    assert float(r[2, 0]) == pytest.approx(2 * np.sqrt(2))  # the wrap-around step
    assert float(r[2, 4]) == 0.0


def test_multiscale_features_cover_every_band():
    maps = torch.from_numpy(_maps(5)).float()
    f = MultiscalePeakFeatures(DWT2d("db5", levels=3), n_bins=4).fit(maps)
    X = f.transform(maps)
    names = f.names()
    assert X.shape == (5, len(names)) == (5, 10 * 2 * 4)
    assert names[0] == "cA3_max_bin0" and names[-1] == "cD1_min_bin3"
    assert X.sum() > 0


def test_multiscale_histograms_equal_pywt_bands_and_numpy_histograms():
    pywt = pytest.importorskip("pywt")
    maps = torch.from_numpy(_maps(4, size=64))
    f = MultiscalePeakFeatures(DWT2d("db5", levels=2, mode="zero"), n_bins=5).fit(maps)
    X = f.transform(maps)
    for i in range(maps.shape[0]):
        coeffs = pywt.wavedec2(maps[i].numpy(), "db5", mode="zero", level=2)
        bands = [coeffs[0]] + [b for detail in coeffs[1:] for b in detail]
        signed = [sign * band for band in bands for sign in (1.0, -1.0)]
        assert len(signed) == len(f.edges_)
        for k, (x, edges) in enumerate(zip(signed, f.edges_, strict=True)):
            heights = x[find_peaks(torch.from_numpy(x), "interior").numpy()]
            ref, _ = np.histogram(heights, edges)
            # numpy closes its last bin; ours is half-open like every other bin.
            ref[-1] -= int(np.sum(heights == edges[-1]))
            np.testing.assert_array_equal(X[i, 5 * k : 5 * k + 5], ref)


def test_wavelet_l1_features_equal_pywt_bands_binned_by_numpy():
    pywt = pytest.importorskip("pywt")
    maps = torch.from_numpy(_maps(3, size=64))
    f = WaveletL1Features(DWT2d("db5", levels=2, mode="zero"), n_bins=6, coverage=0.9).fit(maps)
    X = f.transform(maps)
    assert X.shape == (3, len(f.names())) == (3, 7 * 6)
    for i in range(3):
        coeffs = pywt.wavedec2(maps[i].numpy(), "db5", mode="zero", level=2)
        bands = [coeffs[0]] + [b for detail in coeffs[1:] for b in detail]
        for k, (band, edges) in enumerate(zip(bands, f.edges_, strict=True)):
            v = band.ravel()
            # Values outside the range count in the end bins.
            which = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, 5)
            ref = np.bincount(which, weights=np.abs(v), minlength=6)
            np.testing.assert_allclose(X[i, 6 * k : 6 * k + 6], ref, rtol=1e-9, atol=1e-12)


def test_template_classifier_both_covariances():
    rng = np.random.default_rng(0)
    y = np.repeat([[0.2, 0.7], [0.3, 0.8], [0.4, 0.9]], 60, axis=0)
    X = rng.normal(size=(180, 5)) + 6 * y[:, :1]
    for cov in ("per_class", "pooled"):
        model = TemplateChi2(cov).fit(X, y)
        pred = model.predict(X)
        assert set(map(tuple, pred)) <= set(map(tuple, y))
        assert (pred == y).all(axis=1).mean() > 0.6
    assert TemplateChi2("pooled").fit(X, y).n_parameters() == 3 * 5 + 15
    with pytest.raises(ValueError, match="per_class"):
        TemplateChi2("diagonal")


def test_regressors_fit_a_linear_signal():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    y = np.stack([X[:, 0], X[:, 1] - X[:, 2]], axis=1)
    ridge = make_regressor("ridge", alpha=1e-3).fit(X, y)
    assert np.abs(ridge.predict(X) - y).max() < 0.01
    xgb = make_regressor("xgboost", n_estimators=50).fit(X, y)
    assert np.sqrt(((xgb.predict(X) - y) ** 2).mean()) < 0.5
    with pytest.raises(ValueError, match="unknown regressor"):
        make_regressor("lasso")


def test_power_spectrum_features_are_finite_logs():
    maps = torch.from_numpy(_maps(3, 64))
    X = PowerSpectrumFeatures(3.5, 8).fit(maps).transform(maps)
    assert X.shape == (3, 8) and np.isfinite(X).all()


def test_teacher_architectures_and_augmentation():
    assert count_parameters(build_teacher("resnet18")) == 11171266
    assert count_parameters(SmallCNN()) < 20_000
    with pytest.raises(ValueError, match="unknown teacher architecture"):
        build_teacher("vgg16")
    x = torch.randn(64, 1, 8, 8)
    y = dihedral_augment(x, torch.Generator().manual_seed(0))
    # Each output map is one of the 8 symmetries of its input.
    for i in range(8):
        images = [torch.rot90(x[i, 0], k, (0, 1)) for k in range(4)]
        images += [im.flip(-1) for im in images]
        assert any(torch.equal(y[i, 0], im) for im in images)


def test_teacher_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 16, 16, generator=g)
    t = torch.rand(24, 2, generator=g)
    cfg = TeacherConfig(width=4, epochs=3, batch_size=8, patience=10, augment=True)
    full, hist_full = train_teacher(x, t, x[:8], t[:8], cfg, tmp_path / "a", progress=False)
    short = TeacherConfig(width=4, epochs=2, batch_size=8, patience=10, augment=True)
    train_teacher(x, t, x[:8], t[:8], short, tmp_path / "b", progress=False)
    resumed, hist = train_teacher(
        x, t, x[:8], t[:8], cfg, tmp_path / "b", resume=True, progress=False
    )
    assert len(hist) == 3
    assert hist[-1]["val_loss"] == pytest.approx(hist_full[-1]["val_loss"], rel=1e-5)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    other = TeacherConfig(width=4, epochs=3, batch_size=8, patience=10, lr=0.01)
    with pytest.raises(ValueError, match="other settings"):
        train_teacher(x, t, x[:8], t[:8], other, tmp_path / "b", resume=True, progress=False)


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["distill.gammas=[0, 0.01]", "teacher.arch=resnet18"])
    assert cfg.distill.gammas == (0.0, 0.01) and cfg.teacher.arch == "resnet18"
    with pytest.raises(ValueError, match=r"no setting 'teacher\.depth'"):
        load_config(None, ["teacher.depth=3"])
    for bad_value, message in (
        ("teacher.arch=vgg", r"teacher\.arch: must be one of 'small', 'resnet18'"),
        ("teacher.epochs=1.5", r"teacher\.epochs: expected an integer, got 1\.5"),
        ("teacher.lr=-1", r"teacher\.lr: must be > 0"),
        ("distill.gammas=[0, -0.1]", r"distill\.gammas: values must be >= 0"),
        ("distill.lambdas=[]", r"distill\.lambdas: must not be empty"),
        ("student.coverages=[1.5]", r"student\.coverages: values must be <= 1"),
        ("data.split_fractions=[0.5, 0.5, 0.5]", "split_fractions must sum to 1"),
        ("distill.train.epochs=0", r"distill\.train.*epochs must be >= 1"),
        ("data.noise=maybe", r"data\.noise: expected true or false"),
    ):
        with pytest.raises(ValueError, match=message):
            load_config(None, [bad_value])
    bad = tmp_path / "c.yaml"
    bad.write_text("teacher:\n  widht: 3\n")
    with pytest.raises(ValueError, match=r"unknown keys \[.widht.\]"):
        load_config(bad)
    with pytest.raises(ValueError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_default_config_is_exactly_the_defaults():
    assert (CONFIGS / "default.yaml").read_text().endswith(dump_config(RunConfig()))
    assert load_config(CONFIGS / "default.yaml") == RunConfig()
    for path in CONFIGS.glob("*.yaml"):
        if "sweep" not in path.name:
            load_config(path)  # every shipped config is valid
