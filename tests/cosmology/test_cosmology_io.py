"""FITS I/O: round trips with lenstools in both directions and clear errors on bad files."""

from __future__ import annotations

import os

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

import cosmology
from cosmology._lenstools import convergence_map, lenstools
from cosmology.io import header_params, read_map, write_map
from shared.runs import atomic_write


def _map(n: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.02, (n, n)).astype(np.float32)


def test_public_names():
    assert cosmology.read_map is read_map
    assert cosmology.write_map is write_map
    assert callable(cosmology.load_catalog)


def test_ours_loads_in_lenstools(tmp_path):
    kappa = _map()
    path = write_map(tmp_path / "a.fits", kappa, 3.5, {"omega_m": 0.31, "sigma_8": 0.82})
    lt_map = lenstools().ConvergenceMap.load(str(path))
    assert lt_map.side_angle.to(u.deg).value == pytest.approx(3.5)
    np.testing.assert_array_equal(lt_map.data, kappa.astype(np.float64))
    with fits.open(path) as hdul:
        assert hdul[0].data.dtype.kind == "f" and hdul[0].data.dtype.itemsize == 4
        assert hdul[0].header["OMEGA_M"] == pytest.approx(0.31)


def test_lenstools_saves_we_read(tmp_path):
    kappa = _map(seed=2).astype(np.float64)
    m = convergence_map(kappa, 2.0)
    m.save(str(tmp_path / "lt.fits"))
    data, angle, header = read_map(tmp_path / "lt.fits")
    assert angle == 2.0
    assert header["ITYPE"] == "ConvergenceMap"
    np.testing.assert_array_equal(data, kappa.astype(np.float32))
    assert data.dtype.isnative


def test_header_params_round_trip(tmp_path):
    params = {"omega_m": 0.3, "sigma_8": 0.8, "A_s": 2.1, "m_nu": 0.06, "z_s": 1.0, "seed": 7}
    write_map(tmp_path / "p.fits", _map(8), 3.5, params)
    _, _, header = read_map(tmp_path / "p.fits")
    back = header_params(header)
    for key, value in params.items():
        assert back[key] == pytest.approx(value)


def test_not_2d_is_an_error(tmp_path):
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, 4, 4), np.float32)).writeto(path)
    with pytest.raises(ValueError, match=r"cube\.fits.*2D"):
        read_map(path)
    empty = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(ValueError, match=r"empty\.fits.*2D"):
        read_map(empty)


def test_missing_angle_names_file_unless_given(tmp_path):
    path = tmp_path / "noangle.fits"
    fits.PrimaryHDU(_map(8)).writeto(path)
    with pytest.raises(ValueError, match=r"noangle\.fits.*ANGLE"):
        read_map(path)
    _, angle, _ = read_map(path, side_angle_deg=3.5)
    assert angle == 3.5


def test_nan_pixels_are_an_error(tmp_path):
    kappa = _map(8)
    kappa[3, 4] = np.nan
    path = tmp_path / "nan.fits"
    hdu = fits.PrimaryHDU(kappa)
    hdu.header["ANGLE"] = 3.5
    hdu.writeto(path)
    with pytest.raises(ValueError, match=r"nan\.fits.*1 NaN"):
        read_map(path)
    with pytest.raises(ValueError, match="NaN"):
        write_map(tmp_path / "out.fits", kappa, 3.5)
    assert not (tmp_path / "out.fits").exists()


def test_not_fits_is_an_error(tmp_path):
    path = tmp_path / "junk.fits"
    path.write_bytes(b"this is not a FITS file" * 10)
    with pytest.raises(ValueError, match=r"junk\.fits"):
        read_map(path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def boom(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.fits", boom)
    assert os.listdir(tmp_path) == []


def test_bad_parameter_name(tmp_path):
    with pytest.raises(ValueError, match="FITS header key"):
        write_map(tmp_path / "b.fits", _map(4), 3.5, {"a very long name": 1.0})


def test_cli_simulate_smoke(tmp_path):
    from typer.testing import CliRunner

    from cosmology.cli import app

    (tmp_path / "design.csv").write_text("omega_m,sigma_8\n0.3,0.8\n0.25,0.9\n")
    runner = CliRunner()
    args = [
        "simulate",
        "--out",
        str(tmp_path / "sim"),
        "--design",
        str(tmp_path / "design.csv"),
        "--n-maps",
        "2",
        "--size",
        "16",
        "--noise",
        "--smoothing",
        "1.0",
        "--seed",
        "3",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4 maps" in result.output
    cat = cosmology.load_catalog(tmp_path / "sim")
    assert sorted(cat.omega_m.unique()) == [0.25, 0.3]
    bad = runner.invoke(app, ["simulate", "--out", str(tmp_path / "x"), "--design", "nope"])
    assert bad.exit_code != 0
    assert not (tmp_path / "x").exists()
