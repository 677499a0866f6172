"""Catalog loaders (MassiveNuS tree, npz, FITS folder + CSV), the dataset and the splits."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits

from cosmology.cosmologies import design_ten
from cosmology.data import (
    ConvergenceMapDataset,
    block_average,
    load_catalog,
    npz_images,
    split_by_realization,
)
from cosmology.io import cosmology_dirname, map_filename, write_map, write_parameters_file
from cosmology.noise import ShapeNoise

N_REAL = 6


def _rand(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.02, (n, n)).astype(np.float32)


@pytest.fixture
def tree(tmp_path):
    """A MassiveNuS-style tree written by hand: 3 cosmologies x 6 realizations of 16^2."""
    design = design_ten().iloc[:3].reset_index(drop=True)
    write_parameters_file(tmp_path / "cosmological_parameters.txt", design)
    for i, row in design.iterrows():
        folder = tmp_path / cosmology_dirname(row.m_nu, row.omega_m, row.A_s) / "Maps10"
        for r in range(1, N_REAL + 1):
            write_map(folder / map_filename(1.0, r), _rand(16, 100 * i + r), 3.5)
    # Files the loader must ignore: another redshift and an unrelated file.
    folder0 = tmp_path / cosmology_dirname(*design.iloc[0][["m_nu", "omega_m", "A_s"]])
    write_map(folder0 / "Maps15" / map_filename(1.5, 1), _rand(16, 999), 3.5)
    (folder0 / "Maps10" / "notes.txt").write_text("not a map")
    return tmp_path, design


def test_tree_catalog(tree):
    root, design = tree
    cat = load_catalog(root, z_s=1.0)
    assert len(cat) == 3 * N_REAL
    for col in ("file", "cosmology", "realization", "omega_m", "sigma_8", "side_angle_deg"):
        assert col in cat
    assert sorted(cat.cosmology.unique()) == [0, 1, 2]
    for c in range(3):
        sub = cat[cat.cosmology == c]
        assert sorted(sub.realization) == list(range(1, N_REAL + 1))
        # sigma_8 comes from the table's column 4, not recomputed.
        assert sub.sigma_8.iloc[0] == pytest.approx(design.sigma_8[c])
        assert sub.omega_m.iloc[0] == pytest.approx(design.omega_m[c])
    assert (cat.side_angle_deg == 3.5).all() and (cat.n_pix == 16).all()
    assert len(load_catalog(root)) == 3 * N_REAL + 1  # all redshifts without a filter


def test_reference_model_layout(tmp_path):
    write_parameters_file(tmp_path / "cosmological_parameters.txt", design_ten())
    for m in (0, 4):
        for r in range(2):
            write_map(tmp_path / f"model{m:03d}" / map_filename(1.0, r), _rand(8, r), 3.5)
    cat = load_catalog(tmp_path)
    assert sorted(cat.cosmology.unique()) == [0, 4]
    assert cat[cat.cosmology == 4].omega_m.iloc[0] == pytest.approx(0.2023)


def test_tree_parameter_file_errors(tree):
    root, _ = tree
    params = root / "cosmological_parameters.txt"
    text = params.read_text().splitlines()
    params.write_text("\n".join(text[:2]) + "\n")  # header + one row: two folders unmatched
    with pytest.raises(ValueError, match=r"cosmological_parameters\.txt.*no row matches"):
        load_catalog(root)
    params.write_text("0 0.0 0.3\n1 0.1 0.3\n")
    with pytest.raises(ValueError, match=r"cosmological_parameters\.txt.*5 columns"):
        load_catalog(root)
    params.unlink()
    with pytest.raises(ValueError, match=r"cosmological_parameters\.txt.*not found"):
        load_catalog(root)


def test_tree_mixed_sizes_and_missing_angle(tree):
    root, design = tree
    folder = root / cosmology_dirname(*design.iloc[1][["m_nu", "omega_m", "A_s"]]) / "Maps10"
    for f in folder.iterdir():
        f.unlink()
    write_map(folder / map_filename(1.0, 1), _rand(32, 1), 3.5)
    with pytest.raises(ValueError, match="different sizes"):
        load_catalog(root)
    (folder / map_filename(1.0, 1)).unlink()
    fits.PrimaryHDU(_rand(16, 2)).writeto(folder / map_filename(1.0, 1))
    with pytest.raises(ValueError, match=r"WLconv_z1\.00_0001r\.fits.*ANGLE"):
        load_catalog(root)
    assert len(load_catalog(root, side_angle_deg=3.5, z_s=1.0)) == 2 * N_REAL + 1


def test_npz_catalog_and_memmap(tmp_path):
    """The reference layout: sample i is cosmology i % 10, realization i // 10."""
    rows = design_ten()
    n = 30
    imgs = np.random.default_rng(0).normal(size=(n, 8, 8)).astype(np.float32)
    params = rows[["m_nu", "omega_m", "A_s"]].to_numpy()[np.arange(n) % 10]
    np.savez(tmp_path / "cosmo.npz", imgs=imgs, params=params)
    assert isinstance(npz_images(tmp_path / "cosmo.npz"), np.memmap)
    cat = load_catalog(tmp_path / "cosmo.npz")
    assert len(cat) == n and sorted(cat.cosmology.unique()) == list(range(10))
    np.testing.assert_array_equal(
        cat.set_index("index").loc[np.arange(n), "cosmology"], np.arange(n) % 10
    )
    np.testing.assert_array_equal(
        cat.set_index("index").loc[np.arange(n), "realization"], np.arange(n) // 10
    )
    # sigma_8 of the AWD cosmologies comes from their table.
    np.testing.assert_allclose(cat.groupby("cosmology").sigma_8.first(), rows.sigma_8)
    assert cat.side_angle_deg.iloc[0] == pytest.approx(3.5 * 8 / 256)
    ds = ConvergenceMapDataset(cat)
    i = int(np.flatnonzero(cat["index"] == 17)[0])
    x, y = ds[i]
    np.testing.assert_array_equal(x[0].numpy(), imgs[17])
    assert y.tolist() == pytest.approx([rows.omega_m[7], rows.sigma_8[7]], rel=1e-6)
    # A compressed npz still loads (into memory).
    np.savez_compressed(tmp_path / "c.npz", imgs=imgs, params=params)
    assert len(load_catalog(tmp_path / "c.npz")) == n


def test_npz_unknown_cosmology_gets_sigma8(tmp_path):
    np.savez(tmp_path / "u.npz", imgs=np.zeros((2, 4, 4)), params=[[0.0, 0.3, 2.1]] * 2)
    cat = load_catalog(tmp_path / "u.npz")
    assert cat.sigma_8.iloc[0] == pytest.approx(0.85, abs=0.01)
    np.savez(tmp_path / "w.npz", imgs=np.zeros((2, 4, 4)), params=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"w\.npz.*params"):
        load_catalog(tmp_path / "w.npz")


def test_folder_with_csv(tmp_path):
    for i in range(4):
        write_map(tmp_path / f"m{i}.fits", _rand(8, i), 2.0)
    pd.DataFrame(
        {
            "file": [f"m{i}.fits" for i in range(4)],
            "omega_m": [0.3, 0.3, 0.25, 0.25],
            "sigma_8": [0.8, 0.8, 0.9, 0.9],
        }
    ).to_csv(tmp_path / "parameters.csv", index=False)
    cat = load_catalog(tmp_path)
    assert cat.cosmology.tolist() == [0, 0, 1, 1]
    assert cat.realization.tolist() == [0, 1, 0, 1]
    assert (cat.side_angle_deg == 2.0).all()
    pd.DataFrame({"file": ["m0.fits"], "omega": [0.3]}).to_csv(tmp_path / "parameters.csv")
    with pytest.raises(ValueError, match=r"parameters\.csv.*missing columns"):
        load_catalog(tmp_path)
    pd.DataFrame({"file": ["gone.fits"], "omega_m": [0.3], "sigma_8": [0.8]}).to_csv(
        tmp_path / "parameters.csv"
    )
    with pytest.raises(ValueError, match=r"parameters\.csv.*gone\.fits"):
        load_catalog(tmp_path)


def test_splits_disjoint_and_reproducible(tree):
    root, _ = tree
    cat = load_catalog(root, z_s=1.0)
    a = split_by_realization(cat, (0.5, 0.25, 0.25), seed=3)
    b = split_by_realization(cat, (0.5, 0.25, 0.25), seed=3)
    pd.testing.assert_series_equal(a, b)
    assert not a.isna().any()
    for _, group in cat.groupby("cosmology"):
        sets = {s: set(group.realization[a[group.index] == s]) for s in ("train", "val", "test")}
        assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"])
        assert not (sets["val"] & sets["test"])
        assert sum(len(v) for v in sets.values()) == N_REAL
        assert len(sets["train"]) == 3
    c = split_by_realization(cat, (0.5, 0.25, 0.25), seed=4)
    assert not a.equals(c)
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_realization(cat, (0.5, 0.2))


def test_dataset_transforms(tree):
    root, _ = tree
    cat = load_catalog(root, z_s=1.0)
    raw = ConvergenceMapDataset(cat)
    x, y = raw[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and y.shape == (2,)
    blocked = ConvergenceMapDataset(cat, block=2)
    np.testing.assert_allclose(blocked[0][0][0].numpy(), block_average(x[0].numpy(), 2), rtol=1e-6)
    noise = ShapeNoise(sigma_e=0.26, n_gal=30.0)
    noisy = ConvergenceMapDataset(cat, noise=noise, seed=1)
    diff = (noisy[0][0] - x).numpy()
    pixel = 3.5 * 60 / 16
    assert diff.std() == pytest.approx(noise.pixel_sigma(pixel), rel=0.25)
    torch.testing.assert_close(noisy[0][0], ConvergenceMapDataset(cat, noise=noise, seed=1)[0][0])
    smooth_q = ConvergenceMapDataset(cat, smoothing=30 * u.arcmin)[0][0]
    smooth_f = ConvergenceMapDataset(cat, smoothing=0.5 * 60)[0][0]
    torch.testing.assert_close(smooth_q, smooth_f)
    assert smooth_q.std() < 0.5 * x.std()


def test_dataset_rejects_bad_maps(tree):
    root, _ = tree
    cat = load_catalog(root, z_s=1.0)
    path = cat.file.iloc[0]
    data = _rand(16, 0)
    data[0, 0] = np.nan
    hdu = fits.PrimaryHDU(data)
    hdu.header["ANGLE"] = 3.5
    hdu.writeto(path, overwrite=True)
    with pytest.raises(ValueError, match="NaN"):
        ConvergenceMapDataset(cat)[0]
    write_map(path, _rand(8, 0), 3.5)
    with pytest.raises(ValueError, match=r"WLconv.*shape \(8, 8\)"):
        ConvergenceMapDataset(cat)[0]
    mixed = cat.copy()
    mixed.loc[0, "n_pix"] = 8
    with pytest.raises(ValueError, match="different sizes"):
        ConvergenceMapDataset(mixed)
