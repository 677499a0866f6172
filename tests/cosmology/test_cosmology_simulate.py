"""The simulator against its inputs: pyccl C_ell, S_8 degeneracy broken, peaks respond."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from cosmology import simulate as sim
from cosmology.cosmologies import (
    convergence_cl,
    design_csv,
    design_lhs,
    design_ten,
    sigma8_from_as,
)
from cosmology.data import load_catalog
from cosmology.io import read_map
from cosmology.noise import ShapeNoise, add_shape_noise, smooth_map
from cosmology.simulate import lognormal_shift, prepare_field, simulate_dataset
from cosmology.statistics import binned_theory, moments, peak_counts, power_spectrum

N, SIDE = 256, 3.5


def _cl_fn(omega_m: float, sigma_8: float):
    ell = np.geomspace(2.0, 2.0e5, 256)
    cl = convergence_cl(ell, omega_m, sigma_8)

    def fn(x):
        return np.exp(np.interp(np.log(x), np.log(ell), np.log(cl)))

    return fn


def _maps(omega_m: float, sigma_8: float, n_maps: int, seed: int = 0) -> np.ndarray:
    field = prepare_field(_cl_fn(omega_m, sigma_8), N, SIDE, lognormal_shift(omega_m))
    rng = np.random.default_rng(seed)
    return np.stack([field.sample(rng) for _ in range(n_maps)])


def test_cl_matches_reference_values():
    """pyccl halofit at Omega_m = 0.3, sigma_8 = 0.8, z_s = 1 (CAMB agrees within 1-2%)."""
    cl = convergence_cl(np.array([100.0, 1000.0, 10000.0]), 0.3, 0.8)
    np.testing.assert_allclose(cl, [7.3e-9, 3.95e-10, 9.7e-12], rtol=0.04)
    assert sigma8_from_as(0.3, 2.1) == pytest.approx(0.850, abs=0.005)


def test_mean_power_spectrum_matches_input_cl():
    cl = _cl_fn(0.3, 0.8)
    maps = _maps(0.3, 0.8, 96)
    edges = np.geomspace(200.0, 1.0e4, 13)
    _, ps = power_spectrum(torch.from_numpy(maps), SIDE, edges)
    ratio = ps.mean(0).numpy() / binned_theory(cl, edges, N, SIDE)
    assert np.all(np.abs(ratio - 1) < 0.10), ratio


def test_maps_are_not_periodic():
    maps = _maps(0.3, 0.8, 16)
    inner = np.abs(maps[:, 1:, :] - maps[:, :-1, :]).mean()
    edge = np.abs(maps[:, 0, :] - maps[:, -1, :]).mean()
    assert edge > 1.5 * inner  # a periodic field would join smoothly across the edge


def test_equal_s8_differ_in_skewness():
    s8 = 0.8
    low = _maps(0.2, s8 * (0.3 / 0.2) ** 0.5, 24, seed=1)
    high = _maps(0.4, s8 * (0.3 / 0.4) ** 0.5, 24, seed=2)
    sk_low = moments(torch.from_numpy(low))["skewness"].numpy()
    sk_high = moments(torch.from_numpy(high))["skewness"].numpy()
    err = np.hypot(sk_low.std(), sk_high.std()) / np.sqrt(24)
    assert sk_low.mean() - sk_high.mean() > 5 * err
    # Gaussian maps from the same C_ell carry no such information.
    field = prepare_field(_cl_fn(0.2, s8 * 1.5**0.5), N, SIDE, kappa_0=None)
    gauss = np.stack([field.sample(np.random.default_rng(i)) for i in range(8)])
    assert abs(moments(torch.from_numpy(gauss))["skewness"].mean()) < 0.1


@pytest.mark.parametrize("changed", [(0.36, 0.8), (0.3, 0.9)])
def test_raising_omega_m_or_sigma_8_raises_high_peaks(changed):
    thresholds = [0.05, 1.0]  # high peaks: kappa > 0.05, about 2.5 sigma
    base = peak_counts(_maps(0.3, 0.8, 12, seed=5), thresholds)[:, 0].double()
    more = peak_counts(_maps(*changed, 12, seed=5), thresholds)[:, 0].double()
    assert more.mean() > base.mean() + 4 * base.std() / np.sqrt(12)


def test_shape_noise_and_smoothing_levels():
    noise = ShapeNoise(0.26, 30.0)
    pixel = SIDE * 60 / N
    assert noise.pixel_sigma(pixel) == pytest.approx(0.058, abs=0.001)
    rng = np.random.default_rng(0)
    noisy = add_shape_noise(np.zeros((N, N)), noise, pixel, rng)
    smoothed = smooth_map(noisy, 1.0, pixel)
    expected = noise.sigma_e / np.sqrt(4 * np.pi * noise.n_gal * 1.0**2)
    assert smoothed.std() == pytest.approx(expected, rel=0.1)


def test_designs(tmp_path):
    ten = design_ten()
    assert len(ten) == 10 and ten.omega_m.between(0.2, 0.42).all()
    lhs = design_lhs(8, seed=3)
    assert lhs.omega_m.between(0.18, 0.42).all() and lhs.sigma_8.between(0.6, 1.0).all()
    # Latin hypercube: one point per stratum in each dimension.
    strata = np.floor((lhs.omega_m - 0.18) / 0.24 * 8).clip(0, 7)
    assert sorted(strata.astype(int)) == list(range(8))
    pd.testing.assert_frame_equal(lhs, design_lhs(8, seed=3))
    for om, a_s, s8 in lhs[["omega_m", "A_s", "sigma_8"]].itertuples(index=False):
        assert sigma8_from_as(om, a_s) == pytest.approx(s8, rel=1e-6)
    (tmp_path / "d.csv").write_text("omega_m,A_s\n0.3,2.1\n")
    d = design_csv(tmp_path / "d.csv")
    assert d.sigma_8[0] == pytest.approx(0.85, abs=0.005)
    (tmp_path / "bad.csv").write_text("om,s8\n0.3,0.8\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*omega_m"):
        design_csv(tmp_path / "bad.csv")


def _small_design() -> pd.DataFrame:
    return pd.DataFrame(
        [(0.0, 0.3, 2.1, 0.85), (0.0, 0.25, 2.3, 0.75)],
        columns=["m_nu", "omega_m", "A_s", "sigma_8"],
    )


def test_simulate_tree_is_read_by_loader_and_resumes(tmp_path):
    root = simulate_dataset(tmp_path, _small_design(), n_maps=3, n_pix=32, seed=7)
    assert root == tmp_path
    cat = load_catalog(root)
    assert len(cat) == 6 and sorted(cat.realization.unique()) == [1, 2, 3]
    assert cat.sigma_8.tolist() == pytest.approx([0.85] * 3 + [0.75] * 3)
    kappa, angle, header = read_map(cat.file[0])
    assert kappa.shape == (32, 32) and angle == 3.5 and header["OMEGA_M"] == 0.3
    before = {f: os.path.getmtime(f) for f in cat.file}
    data_before = {f: read_map(f)[0] for f in cat.file}
    os.remove(cat.file[4])
    simulate_dataset(tmp_path, _small_design(), n_maps=3, n_pix=32, seed=7)
    for f in cat.file:
        if f != cat.file[4]:
            assert os.path.getmtime(f) == before[f]  # kept, not rewritten
        np.testing.assert_array_equal(read_map(f)[0], data_before[f])  # same seed, same map
    with pytest.raises(ValueError, match=r"simulation\.json.*other settings"):
        simulate_dataset(tmp_path, _small_design(), n_maps=3, n_pix=64, seed=7)


def test_interrupted_simulation_leaves_no_partial_file(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = sim.write_map

    def flaky(path, kappa, side, params):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # interrupted while the third map is being written
        return real(path, kappa, side, params)

    monkeypatch.setattr(sim, "write_map", flaky)
    with pytest.raises(KeyboardInterrupt):
        simulate_dataset(tmp_path, _small_design(), n_maps=4, n_pix=16)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".fits")
    assert len(files) == 2
    for f in files:
        read_map(f)  # complete and valid
    monkeypatch.setattr(sim, "write_map", real)
    assert len(load_catalog(tmp_path)) == 2
    assert len(load_catalog(simulate_dataset(tmp_path, _small_design(), n_maps=4, n_pix=16))) == 8


@pytest.mark.slow
def test_workers_give_the_same_maps(tmp_path):
    a = load_catalog(
        simulate_dataset(tmp_path / "a", _small_design(), n_maps=5, n_pix=32, workers=1)
    )
    b = load_catalog(
        simulate_dataset(
            tmp_path / "b", _small_design(), n_maps=5, n_pix=32, workers=2, chunk_size=2
        )
    )
    for fa, fb in zip(a.file, b.file, strict=True):
        np.testing.assert_array_equal(read_map(fa)[0], read_map(fb)[0])


@pytest.mark.slow
def test_ten_design_with_neutrinos(tmp_path):
    cat = load_catalog(simulate_dataset(tmp_path, design_ten(), n_maps=1, n_pix=32, workers=2))
    assert len(cat) == 10
    np.testing.assert_allclose(cat.sigma_8, design_ten().sigma_8)
