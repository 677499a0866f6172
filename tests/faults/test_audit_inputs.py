"""Replay of the reliability audit's bad-input and bad-config cases (tables 1.1-1.3).

One test per replayable row of ``audit_reliability.md``; its id is the row (``row001``).
Every case runs the command line exactly as a user would (``awd ...`` through
:class:`typer.testing.CliRunner` on :data:`shared.cli.app`), on tiny data written here:
30 maps of 32x32, a few simulated cells, 60-frame 64x64 movies. A user error must give
exit code 2, no traceback and one line ``error: ...`` naming the file or setting and the
problem; a valid input must give exit code 0 and the right result. ``tests/faults/README.md``
maps the rows to these tests and their verdicts.

Rows that belong to the run-provenance work (1.3 settings persisted into ``config.yaml``:
100-102, 135; reruns 1.4; kills 1.5; Ray 1.7) are replayed elsewhere.
"""

from __future__ import annotations

import json
import re
import shutil
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from astropy.io import fits
from click.testing import Result
from scipy import ndimage
from scipy.io import savemat
from typer.testing import CliRunner

from cosmology.config import RunConfig
from cosmology.data import load_catalog, split_by_realization
from cosmology.io import (
    PARAMETERS_FILE,
    cosmology_dirname,
    map_filename,
    maps_dirname,
    write_map,
    write_parameters_file,
)
from molecular_partner.matfile import write_processed_tracks
from molecular_partner.simulate import (
    SimulationConfig,
    render_movie,
    simulate_cells,
    simulate_pits,
    write_movie,
)
from molecular_partner.tables import read_tracks_table, write_tracks_table
from shared.cli import _register_domains, app

RUNNER = CliRunner()
COSMOLOGIES = ((0.25, 0.75), (0.30, 0.80), (0.35, 0.85))
N_REAL = 10
N_PIX = 32


def awd(*args: object) -> Result:
    """Run ``awd ARGS`` as a user would."""
    _register_domains()
    return RUNNER.invoke(app, [str(a) for a in args])


def awd_warns(*args: object) -> tuple[Result, list[str]]:
    """Run ``awd ARGS`` and collect the warnings it gives (the user sees them on stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = awd(*args)
    return result, [str(w.message) for w in caught]


def _trace(result: Result) -> str:
    exc = result.exception
    if exc is None or isinstance(exc, SystemExit):
        return ""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def expect_error(result: Result, *patterns: str) -> str:
    """Exit 2, no traceback, one ``error:`` line matching every pattern (case-insensitive)."""
    assert not _trace(result), _trace(result)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    print(lines[0])  # shown with -s, and with the report of a failure
    for pattern in patterns:
        assert re.search(pattern, lines[0], re.IGNORECASE), f"{pattern!r} not in {lines[0]!r}"
    return lines[0]


def expect_ok(result: Result) -> Result:
    """Exit 0 without a traceback."""
    assert not _trace(result), _trace(result)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


# =========================================================================== cosmology data


def _field(rng: np.random.Generator, scale: float, n: int = N_PIX) -> np.ndarray:
    # Smoothed noise: a map with peaks, like a convergence map.
    return ndimage.gaussian_filter(rng.normal(size=(n, n)), 1.5) * scale


@pytest.fixture(scope="module")
def fits_folder(tmp_path_factory) -> Path:
    """30 maps of 32x32 (3 cosmologies x 10 realizations) and their parameters.csv."""
    root = tmp_path_factory.mktemp("fits") / "data"
    rng = np.random.default_rng(0)
    rows = []
    for c, (om, s8) in enumerate(COSMOLOGIES):
        for r in range(N_REAL):
            name = f"map_{c}_{r:02d}.fits"
            write_map(root / name, _field(rng, om), 3.5, {"omega_m": om, "sigma_8": s8})
            rows.append({"file": name, "omega_m": om, "sigma_8": s8})
    pd.DataFrame(rows).to_csv(root / "parameters.csv", index=False)
    return root


@pytest.fixture(scope="module")
def fits_splits(fits_folder) -> dict[str, list[str]]:
    """File names of each split under the default settings."""
    catalog = load_catalog(fits_folder)
    d = RunConfig().data
    labels = split_by_realization(catalog, d.split_fractions, seed=d.split_seed)
    return {s: sorted(Path(f).name for f in catalog.file[labels == s]) for s in ("train", "test")}


@pytest.fixture
def data(tmp_path, fits_folder) -> Path:
    """A fresh copy of the good FITS folder for one case to spoil."""
    return Path(shutil.copytree(fits_folder, tmp_path / "data"))


def train_teacher(run: Path, data: Path, *sets: str) -> Result:
    """``awd cosmology train-teacher`` with one epoch."""
    extra = [a for s in sets for a in ("--set", s)]
    return awd(
        "cosmology", "train-teacher", "--run", run, "--data", data,
        "--set", "teacher.epochs=1", *extra,
    )  # fmt: skip


def _rewrite(path: Path, data: np.ndarray | None = None, **header) -> None:
    with fits.open(path) as hdul:
        hdr = hdul[0].header.copy()
        arr = hdul[0].data.copy()
    for key, value in header.items():
        if value is None:
            del hdr[key]
        else:
            hdr[key] = value
    fits.PrimaryHDU(arr if data is None else data, hdr).writeto(path, overwrite=True)


def _pixel(value: float) -> Callable[[Path], None]:
    def spoil(path: Path) -> None:
        arr = fits.getdata(path).copy()
        arr[5, 7] = value
        _rewrite(path, arr)

    return spoil


def _truncate_data(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 2000])  # inside the data block


def _image_in_extension(path: Path) -> None:
    arr = fits.getdata(path)
    primary = fits.PrimaryHDU()
    primary.header["ANGLE"] = 3.5
    fits.HDUList([primary, fits.ImageHDU(arr)]).writeto(path, overwrite=True)


# Row -> (split of the spoiled map, how it is spoiled, patterns of the error line).
FITS_CASES: dict[int, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    1: ("train", _truncate_data, ("truncated",)),
    2: ("test", _truncate_data, ("truncated",)),
    3: ("train", lambda p: p.write_bytes(p.read_bytes()[:1000]), ("not a readable FITS",)),
    4: ("train", lambda p: p.write_text("not a FITS file\n"), ("not a readable FITS",)),
    5: ("train", lambda p: p.write_bytes(b""), ("not a readable FITS|empty",)),
    6: ("train", lambda p: _rewrite(p, ANGLE=None), ("ANGLE",)),
    7: ("train", lambda p: _rewrite(p, np.zeros((2, N_PIX, N_PIX), np.float32)), ("2D image",)),
    8: ("train", lambda p: _rewrite(p, np.zeros((N_PIX, 48), np.float32)), ("square 2D",)),
    9: ("train", _image_in_extension, ("2D image",)),
    10: ("train", _pixel(np.nan), ("NaN",)),
    11: ("train", _pixel(np.inf), ("infinite",)),
    13: ("train", lambda p: _rewrite(p, ANGLE=-1.0), ("positive", "-1")),
    14: ("test", lambda p: _rewrite(p, ANGLE=-1.0), ("positive", "-1")),
    15: ("train", lambda p: _rewrite(p, ANGLE="abc"), ("ANGLE", "abc")),
}


@pytest.mark.parametrize("row", sorted(FITS_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_fits_file_is_named_at_the_first_step(row, tmp_path, data, fits_splits):
    """Every spoiled map, whichever split it lands in, stops train-teacher naming the file."""
    split, spoil, patterns = FITS_CASES[row]
    name = fits_splits[split][0]
    spoil(data / name)
    expect_error(train_teacher(tmp_path / "run", data), re.escape(name), *patterns)
    assert not (tmp_path / "run" / "teacher" / "model.safetensors").exists()


def test_row012_int16_maps_are_read_as_float(tmp_path, data, fits_splits):
    name = fits_splits["train"][0]
    _rewrite(data / name, (fits.getdata(data / name) * 1000).astype(np.int16))
    expect_ok(train_teacher(tmp_path / "run", data))


def test_row016_maps_of_different_side_angles_are_refused(tmp_path, data, fits_splits):
    name = fits_splits["test"][0]
    _rewrite(data / name, ANGLE=10.0)
    expect_error(train_teacher(tmp_path / "run", data), "side angle", "3.5", "10", re.escape(name))


def test_row017_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    expect_error(train_teacher(tmp_path / "run", tmp_path / "empty"), "empty", "CSV")


def _edit_csv(data: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    csv = data / "parameters.csv"
    edit(pd.read_csv(csv, dtype=str)).to_csv(csv, index=False)
    return csv


def _set_cell(row: int, column: str, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[row, column] = value
        return table

    return edit


# Row -> (edit of parameters.csv, patterns of the error line).
CSV_CASES: dict[int, tuple[Callable[[pd.DataFrame], pd.DataFrame], tuple[str, ...]]] = {
    18: (lambda t: t.drop(columns=["sigma_8"]), ("parameters.csv", "sigma_8")),
    19: (_set_cell(3, "file", "no_such_map.fits"), ("parameters.csv", "no_such_map.fits")),
    20: (_set_cell(3, "file", "../outside_secret.fits"), ("outside_secret.fits", "outside")),
    21: (_set_cell(3, "file", "/etc/passwd"), ("/etc/passwd",)),
    22: (_set_cell(3, "omega_m", "abc"), ("parameters.csv", "omega_m", "abc")),
    23: (_set_cell(3, "file", ""), ("parameters.csv", "file", "empty|missing")),
    24: (_set_cell(3, "file", "map_0_00.fits"), ("map_0_00.fits", "twice|more than once")),
}


@pytest.mark.parametrize("row", sorted(CSV_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_parameters_csv_is_named(row, tmp_path, data):
    edit, patterns = CSV_CASES[row]
    # A real map outside the data folder, so that only containment can refuse it.
    shutil.copy(data / "map_0_01.fits", data.parent / "outside_secret.fits")
    _edit_csv(data, edit)
    expect_error(train_teacher(tmp_path / "run", data), *patterns)
    assert not (tmp_path / "run" / "teacher").exists()


def test_row025_maps_of_mixed_sizes(tmp_path, data, fits_splits):
    name = fits_splits["train"][0]
    write_map(data / name, np.zeros((64, 64)), 3.5)
    expect_error(train_teacher(tmp_path / "run", data), "different sizes", "32x32", "64x64")


def test_row026_peak_free_maps_have_no_peak_students():
    """The students' bin edges need peaks: a clear error, not an IndexError."""
    from cosmology.student import PeakFilterFeatures, _edges, raw_kernel

    with pytest.raises(ValueError, match="no peaks"):
        _edges(np.array([]), 0.98, 10)
    with pytest.raises(ValueError, match="no peaks"):
        PeakFilterFeatures(raw_kernel()).fit(torch.zeros(4, N_PIX, N_PIX))


def _full_pipeline(run: Path, data: Path) -> Result:
    expect_ok(train_teacher(run, data))
    expect_ok(
        awd(
            "cosmology", "distill", "--run", run, "--set", "distill.lambdas=[0.01]",
            "--set", "distill.gammas=[0.0,0.01]", "--set", "distill.train.epochs=1",
            "--set", "distill.levels=2",
        )
    )  # fmt: skip
    return awd(
        "cosmology", "evaluate", "--run", run, "--set", "evaluate.n_bootstrap=5",
        "--set", "evaluate.timing_maps=2", "--set", "evaluate.timing_repeats=1",
        "--set", "student.xgb_estimators=3", "--set", "evaluate.n_attr_maps=2",
    )  # fmt: skip


@pytest.mark.slow
def test_row026_peak_free_maps_full_pipeline(tmp_path, data):
    for f in data.glob("*.fits"):
        _rewrite(f, np.zeros((N_PIX, N_PIX), np.float32))
    expect_error(_full_pipeline(tmp_path / "run", data), "no peaks")


def _one_cosmology(data: Path) -> None:
    for f in data.glob("map_[12]_*.fits"):
        f.unlink()
    _edit_csv(data, lambda t: t[t["file"].str.startswith("map_0_")])


@pytest.mark.slow
def test_row027_single_cosmology_full_pipeline(tmp_path, data):
    _one_cosmology(data)
    expect_ok(_full_pipeline(tmp_path / "run", data))


def test_row028_single_cosmology_is_flagged_at_catalogue_time(data, caplog):
    """One cosmology: constant targets, so every score is meaningless; said at load time."""
    _one_cosmology(data)
    with caplog.at_level("WARNING", logger="cosmology"):
        assert load_catalog(data)["cosmology"].nunique() == 1
    assert re.search(r"one cosmology", caplog.text), caplog.text


@pytest.mark.slow
def test_row028_single_cosmology_sweep_warns(tmp_path, data, caplog):
    _one_cosmology(data)
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "domain: cosmology\nl1_coeffs: [0.01]\nl1_attr: [0.0]\nbase:\n"
        f"  data: {data}\n  settings:\n    teacher: {{epochs: 1}}\n"
        "    distill: {levels: 2, train: {epochs: 1}}\n"
    )
    with caplog.at_level("WARNING"):
        expect_ok(awd("sweep", "cosmology", "--config", config, "--out", tmp_path / "sweep"))
    assert re.search(r"one cosmology", caplog.text), caplog.text


# --------------------------------------------------------------------------- npz files


@pytest.fixture(scope="module")
def npz_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    imgs = np.stack([_field(rng, om) for om, _ in COSMOLOGIES for _ in range(N_REAL)])
    params = np.array([(0.0, om, 2.1, s8) for om, s8 in COSMOLOGIES for _ in range(N_REAL)])
    return {"imgs": imgs.astype(np.float32), "params": params}


def _npz_nan(a):
    imgs = a["imgs"].copy()
    imgs[2, 3, 3] = np.nan
    return {**a, "imgs": imgs}


def _npz_object(path: Path, a) -> None:
    ragged = np.empty(len(a["imgs"]), dtype=object)
    ragged[:] = list(a["imgs"])
    np.savez(path, imgs=ragged, params=a["params"])  # pickled: must never be loaded


# Row -> (write the npz file, patterns of the error line).
NPZ_CASES: dict[int, tuple[Callable[[Path, dict], None], tuple[str, ...]]] = {
    29: (lambda p, a: np.savez(p, imgs=a["imgs"]), ("params",)),
    30: (lambda p, a: np.savez(p, **_npz_nan(a)), ("map 2", "NaN")),
    31: (lambda p, a: np.savez(p, imgs=a["imgs"][:, :, :20], params=a["params"]), ("imgs",)),
    32: (lambda p, a: np.savez(p, imgs=a["imgs"], params=a["params"][:27]), ("params",)),
    33: (lambda p, a: p.write_bytes(np.random.default_rng(0).bytes(4096)), ("not a readable",)),
    34: (_npz_object, ("imgs",)),
}


@pytest.mark.parametrize("row", sorted(NPZ_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_npz_is_named(row, tmp_path, npz_arrays):
    write, patterns = NPZ_CASES[row]
    path = tmp_path / "maps.npz"
    write(path, npz_arrays)
    line = expect_error(train_teacher(tmp_path / "run", path), "maps.npz", *patterns)
    assert "allow_pickle" not in line


def test_row035_npz_without_side_angle_assumes_awd_pixels(tmp_path, npz_arrays, caplog):
    path = tmp_path / "maps.npz"
    np.savez(path, **npz_arrays)
    with caplog.at_level("INFO", logger="cosmology"):
        expect_ok(train_teacher(tmp_path / "run", path))
    assert "assuming AWD pixels" in caplog.text
    teacher = json.loads((tmp_path / "run" / "teacher" / "model.json").read_text())
    assert teacher["extra"]["side_angle_deg"] == pytest.approx(3.5 / 256 * N_PIX)


# --------------------------------------------------------------------------- MassiveNuS trees


@pytest.fixture(scope="module")
def tree_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "tree"
    design = pd.DataFrame(
        [(0.0, om, 2.1 + i * 0.1, s8) for i, (om, s8) in enumerate(COSMOLOGIES)],
        columns=["m_nu", "omega_m", "A_s", "sigma_8"],
    )
    rng = np.random.default_rng(2)
    for row in design.itertuples():
        folder = root / cosmology_dirname(row.m_nu, row.omega_m, row.A_s) / maps_dirname(1.0)
        for r in range(1, N_REAL + 1):
            write_map(folder / map_filename(1.0, r), _field(rng, row.omega_m), 3.5)
    write_parameters_file(root / PARAMETERS_FILE, design)
    return root


TREE_CASES: dict[int, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    36: (lambda p: p.unlink(), ("not found",)),
    37: (lambda p: p.write_text("a b c\n1 2 x\n"), ("cannot parse",)),
    38: (
        lambda p: p.write_text(p.read_text().replace("0.00000 0.25000 2.10000", "0.1 0.25 3.0")),
        ("no row matches",),
    ),
    39: (lambda p: p.write_text("0 0.0 0.3 2.1\n1 0.0 0.3 2.2\n"), ("expected 5 columns",)),
}


@pytest.mark.parametrize("row", sorted(TREE_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_tree_parameter_table_is_named(row, tmp_path, tree_folder):
    spoil, patterns = TREE_CASES[row]
    data = Path(shutil.copytree(tree_folder, tmp_path / "tree"))
    spoil(data / PARAMETERS_FILE)
    expect_error(train_teacher(tmp_path / "run", data), PARAMETERS_FILE, *patterns)


def test_tree_is_accepted(tmp_path, tree_folder):
    expect_ok(train_teacher(tmp_path / "run", tree_folder))


# --------------------------------------------------------------------------- teacher files


@pytest.fixture(scope="module")
def cosmo_run(tmp_path_factory, fits_folder) -> Path:
    """A cosmology run with a one-epoch teacher."""
    run = tmp_path_factory.mktemp("cosmo_run") / "run"
    expect_ok(train_teacher(run, fits_folder))
    return run


@pytest.fixture
def run_copy(tmp_path, cosmo_run) -> Path:
    return Path(shutil.copytree(cosmo_run, tmp_path / "run"))


def distill(run: Path, *sets: str) -> Result:
    """``awd cosmology distill`` over a one-point grid of one epoch (or as ``sets`` say)."""
    extra = [a for s in sets for a in ("--set", s)]
    return awd(
        "cosmology", "distill", "--run", run, "--set", "distill.lambdas=[0.01]",
        "--set", "distill.gammas=[0.0]", "--set", "distill.train.epochs=1",
        "--set", "distill.levels=2", *extra,
    )  # fmt: skip


class _Boom:
    """A pickle that would create a file when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _teacher_from(tmp_path: Path, data: Path, *sets: str) -> Path:
    other = tmp_path / "other_run"
    expect_ok(train_teacher(other, data, *sets))
    return other / "teacher"


def test_row040_teacher_of_other_map_size(tmp_path, run_copy, npz_arrays):
    path = tmp_path / "big.npz"
    big = np.repeat(np.repeat(npz_arrays["imgs"], 2, axis=1), 2, axis=2)
    np.savez(path, imgs=big, params=npz_arrays["params"])
    other = _teacher_from(tmp_path, path)
    for f in other.glob("model.*"):
        shutil.copy(f, run_copy / "teacher" / f.name)
    expect_error(distill(run_copy), "teacher", "64x64", "32x32")


def test_row041_teacher_of_other_architecture(tmp_path, run_copy, fits_folder):
    other = _teacher_from(tmp_path, fits_folder, "teacher.arch=resnet18", "teacher.batch_size=8")
    for f in other.glob("model.*"):
        shutil.copy(f, run_copy / "teacher" / f.name)
    expect_error(distill(run_copy), "teacher", "resnet18", "small")


def _wrong_width(teacher: Path) -> None:
    meta = json.loads((teacher / "model.json").read_text())
    meta["width"] = 16
    (teacher / "model.json").write_text(json.dumps(meta))


TEACHER_CASES: dict[int, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    42: (_wrong_width, ("model", "width")),
    43: (
        lambda t: (t / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(999)),
        ("model.safetensors",),
    ),
    44: (
        lambda t: (t / "model.safetensors").write_bytes(
            (t / "model.safetensors").read_bytes()[:5000]
        ),
        ("model.safetensors",),
    ),
}


@pytest.mark.parametrize("row", sorted(TEACHER_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_teacher_file_is_named(row, run_copy):
    spoil, patterns = TEACHER_CASES[row]
    spoil(run_copy / "teacher")
    expect_error(distill(run_copy), *patterns)


def test_row045_pickled_teacher_is_never_loaded(tmp_path, run_copy):
    marker = tmp_path / "pwned"
    torch.save({"model_state_dict": _Boom(marker)}, run_copy / "teacher" / "model.safetensors")
    expect_error(distill(run_copy), "model.safetensors")
    assert not marker.exists()


# =========================================================================== movies


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    """A 60-frame 64x64 two-channel movie (TCYX uint16) with 20 pits."""
    cfg = SimulationConfig(n_frames=60, shape=(64, 64), n_pits=20)
    return render_movie(simulate_pits(cfg, seed=0), seed=0)


def _imagej(path: Path, data: np.ndarray, axes: str = "TCYX", **meta) -> None:
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes, "finterval": 1.0, **meta})


def _good(path: Path, movie: np.ndarray) -> None:
    write_movie(path, movie, SimulationConfig(n_frames=60, shape=(64, 64)))


def _half(path: Path, movie: np.ndarray) -> None:
    _good(path, movie)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _float_movie(movie: np.ndarray, where) -> np.ndarray:
    out = movie.astype(np.float32)
    out[where] = np.nan
    return out


# Row -> (write the movie, patterns of the error line).
MOVIE_CASES: dict[int, tuple[Callable[[Path, np.ndarray], None], tuple[str, ...]]] = {
    46: (lambda p, m: p.write_bytes(np.random.default_rng(0).bytes(5000)), ("unreadable",)),
    47: (lambda p, m: p.write_text("not a movie\n"), ("unreadable",)),
    48: (_half, ("truncated",)),
    49: (lambda p, m: tifffile.imwrite(p, m[0, 0]), ("axes", "YX")),
    50: (lambda p, m: _imagej(p, np.stack([m[:10]] * 3, axis=1), "TZCYX"), ("3-D", "Z=3")),
    51: (lambda p, m: _imagej(p, m[:, 0], "TYX"), ("1 channel", "auxilin")),
    52: (lambda p, m: _imagej(p, np.concatenate([m, m[:, :1]], axis=1)), ("3 channel",)),
    53: (lambda p, m: _imagej(p, m[:1]), ("one frame",)),
    55: (lambda p, m: _imagej(p, np.zeros_like(m)), ("no clathrin tracks",)),
    56: (lambda p, m: _imagej(p, np.full_like(m, 100)), ("no clathrin tracks",)),
    57: (lambda p, m: tifffile.imwrite(p, m), ("axes", "metadata")),
    # Frames are numbered from 1 in messages (as ImageJ and cmeAnalysis do).
    58: (lambda p, m: _imagej(p, _float_movie(m, (12, 0, 5, 5))), ("NaN", "frame 13")),
    59: (lambda p, m: _imagej(p, _float_movie(m, (slice(20, 23),))), ("NaN", "frames 21-23")),
    60: (lambda p, m: _imagej(p, _float_movie(m, (slice(None), 1))), ("NaN", "auxilin")),
    61: (lambda p, m: _imagej(p, m, finterval=-1.0), ("frame interval", "-1")),
}


@pytest.mark.parametrize("row", sorted(MOVIE_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_movie_is_named(row, tmp_path, movie):
    write, patterns = MOVIE_CASES[row]
    path = tmp_path / "movie.tif"
    write(path, movie)
    out = tmp_path / "tracks.parquet"
    expect_error(awd("molecular-partner", "track", path, "--out", out), "movie.tif", *patterns)
    assert not out.exists()


def test_row054_three_frame_movie_is_tracked(tmp_path, movie):
    path = tmp_path / "movie.tif"
    _imagej(path, movie[:3])
    expect_ok(awd("molecular-partner", "track", path, "--out", tmp_path / "t.parquet"))
    assert len(read_tracks_table(tmp_path / "t.parquet")) > 0


def test_track_good_movie_and_its_frame_interval(tmp_path, movie):
    path = tmp_path / "movie.tif"
    _imagej(path, movie, finterval=2.0)
    expect_ok(awd("molecular-partner", "track", path, "--out", tmp_path / "t.parquet"))
    tracks = read_tracks_table(tmp_path / "t.parquet")
    assert len(tracks) > 0
    assert np.allclose(tracks["lifetime_s"] % 2.0, 0.0)


def test_track_library_frame_interval_and_pixel_size(tmp_path, movie):
    """Explicit values win over metadata, are checked, and a missing interval is named."""
    from molecular_partner.tracking import track_movie

    path = tmp_path / "movie.tif"
    _imagej(path, movie, finterval=2.0)
    base = track_movie(path)
    explicit = track_movie(path, frame_interval_s=0.5, pixel_size_nm=100.0)
    assert np.allclose(explicit["lifetime_s"], base["lifetime_s"] / 4)
    for bad in ({"frame_interval_s": 0.0}, {"frame_interval_s": -1}, {"pixel_size_nm": -80}):
        with pytest.raises(ValueError, match="must be a positive number"):
            track_movie(path, **bad)
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, movie, imagej=True, metadata={"axes": "TCYX"})
    with pytest.warns(UserWarning, match=r"bare.tif: no frame interval.*assuming 1 s"):
        assumed = track_movie(bare)
    assert np.allclose(assumed["lifetime_s"], base["lifetime_s"] / 2)


# =========================================================================== tracks files


@pytest.fixture(scope="module")
def cell_tracks() -> pd.DataFrame:
    """Ideal-tracker tracks of 4 simulated cells."""
    cfg = SimulationConfig(n_frames=120, shape=(64, 64), n_pits=150)
    tracks, _ = simulate_cells(4, cfg, seed=0)
    return tracks


def _mat_path(root: Path, cell: str) -> Path:
    return root / cell / "ch1" / "Tracking" / "ProcessedTracks.mat"


@pytest.fixture(scope="module")
def mat_folder(tmp_path_factory, cell_tracks) -> Path:
    """One cmeAnalysis ProcessedTracks.mat per cell, in the cmeAnalysis layout."""
    root = tmp_path_factory.mktemp("mat") / "cells"
    for cell, part in cell_tracks.groupby("cell"):
        path = _mat_path(root, str(cell))
        path.parent.mkdir(parents=True)
        write_processed_tracks(part.reset_index(drop=True), path)
    return root


def _struct(records: list[dict]) -> np.ndarray:
    names = list(records[0])
    arr = np.zeros((1, len(records)), dtype=[(n, object) for n in names])
    for i, r in enumerate(records):
        arr[0, i] = tuple(r[n] for n in names)
    return arr


def _track(**change) -> dict:
    rec = {
        "A": np.full((2, 20), 300.0),
        "pval_Ar": np.full((2, 20), 0.01),
        "lifetime_s": 20.0,
        "catIdx": 1.0,
    }
    rec.update(change)
    return {k: v for k, v in rec.items() if v is not None}


def _mat_header_garbage(path: Path) -> None:
    path.write_bytes(b"MATLAB 5.0 MAT-file" + b" " * 105 + np.random.default_rng(0).bytes(2000))


# Row -> (write the lone .mat file, patterns of the error line).
MAT_ALONE_CASES: dict[int, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    63: (_mat_header_garbage, ("unreadable MAT",)),
    64: (lambda p: savemat(p, {"other": np.ones(3)}), ("no variable 'tracks'", "other")),
    65: (lambda p: savemat(p, {"tracks": np.ones((1, 5))}), ("not a struct array",)),
    66: (
        lambda p: savemat(p, {"tracks": np.zeros((1, 0), dtype=[("A", object)])}),
        ("empty",),
    ),
    73: (lambda p: savemat(p, {"tracks": _struct([_track(A=np.ones((1, 20)))])}), ("channel",)),
    74: (lambda p: savemat(p, {"tracks": _struct([_track(pval_Ar=None)])}), ("pval_Ar",)),
    75: (
        lambda p: savemat(p, {"tracks": _struct([_track(lifetime_s="abc")])}),
        ("lifetime_s", "abc"),
    ),
}


@pytest.mark.parametrize("row", sorted(MAT_ALONE_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_mat_file_is_named(row, tmp_path):
    write, patterns = MAT_ALONE_CASES[row]
    path = _mat_path(tmp_path, "cell9")
    path.parent.mkdir(parents=True)
    write(path)
    result = awd("molecular-partner", "build-dataset", path, "--out", tmp_path / "ds")
    expect_error(result, "ProcessedTracks.mat", *patterns)


def test_row062_random_mat_beside_one_good_cell(tmp_path, mat_folder):
    bad = tmp_path / "bad" / "ProcessedTracks.mat"
    bad.parent.mkdir()
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    good = _mat_path(mat_folder, "cell1")
    result, warned = awd_warns(
        "molecular-partner", "build-dataset", bad, good, "--out", tmp_path / "ds"
    )
    expect_error(result, "ProcessedTracks.mat", "at least 2 cells")
    assert any("bad/ProcessedTracks.mat" in w and "not a MATLAB" in w for w in warned), warned


def _spoil_cell(mat_folder: Path, tmp_path: Path, cell: str, change) -> Path:
    """Copy the cells and apply ``change(i, track)`` to every track struct of ``cell``."""
    from scipy.io import loadmat

    root = Path(shutil.copytree(mat_folder, tmp_path / "cells"))
    path = _mat_path(root, cell)
    tracks = loadmat(path, squeeze_me=False, struct_as_record=True)["tracks"]
    for i, track in enumerate(tracks.ravel()):
        change(i, track)
    savemat(path, {"tracks": tracks})
    return root


def _amplitudes(value: float | None, channel: slice | int = slice(None), every: int = 1):
    """Set the amplitudes ``A`` of every ``every``-th track (``None``: make them empty)."""

    def change(i: int, track) -> None:
        if i % every:
            return
        a = np.array(track["A"], dtype=np.float64)
        if value is None:
            track["A"] = np.zeros((a.shape[0], 0))
        else:
            a[channel] = value
            track["A"] = a

    return change


def _nan_lifetime(i: int, track) -> None:
    track["lifetime_s"] = np.array([[np.nan]])


# Row -> (change of cell2's tracks, pattern of a warning). The other three cells are good,
# so the data set is built (exit 0) and the warning says what happened.
MAT_CELL_CASES: dict[int, tuple[Callable, str]] = {
    67: (_amplitudes(None), r"cell 'cell2' has no valid tracks"),
    68: (_amplitudes(None, every=3), r"dropped \d+ track\(s\).*cell2"),
    69: (_amplitudes(np.nan), r"cell 'cell2' has no valid tracks"),
    70: (_amplitudes(np.nan, channel=1, every=2), r"dropped \d+ track\(s\).*cell2"),
    71: (_amplitudes(np.inf, channel=1), r"cell 'cell2' has no valid tracks"),
    72: (_nan_lifetime, r"cell 'cell2' has no valid tracks.*lifetime missing"),
}


@pytest.mark.parametrize("row", sorted(MAT_CELL_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_tracks_of_one_cell_are_dropped_with_the_reason(row, tmp_path, mat_folder):
    change, pattern = MAT_CELL_CASES[row]
    root = _spoil_cell(mat_folder, tmp_path, "cell2", change)
    result, warned = awd_warns("molecular-partner", "build-dataset", root, "--out", tmp_path / "ds")
    expect_ok(result)
    assert any(re.search(pattern, w) for w in warned), warned


@pytest.fixture(scope="module")
def tracks_parquet(tmp_path_factory, cell_tracks) -> Path:
    return write_tracks_table(cell_tracks, tmp_path_factory.mktemp("pq") / "tracks.parquet")


def _parquet(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path, Path], None]:
    def write(path: Path, good: Path) -> None:
        write_tracks_table(change(read_tracks_table(good)), path)

    return write


PARQUET_CASES: dict[int, tuple[Callable[[Path, Path], None], tuple[str, ...]]] = {
    76: (_parquet(lambda t: t.drop(columns=["pval_Ar_Y"])), ("pval_Ar_Y",)),
    77: (_parquet(lambda t: t.drop(columns=["cell"])), ("cell",)),
    78: (_parquet(lambda t: t[t["cell"] == "cell1"]), ("at least 2 cells",)),
    79: (lambda p, g: p.write_bytes(np.random.default_rng(0).bytes(999)), ("not a readable",)),
    80: (_parquet(lambda t: t.iloc[:0]), ("no tracks",)),
    81: (_parquet(lambda t: t.assign(lifetime_s=t["lifetime_s"].astype(str))), ("lifetime_s",)),
}


@pytest.mark.parametrize("row", sorted(PARQUET_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_parquet_is_named(row, tmp_path, tracks_parquet):
    write, patterns = PARQUET_CASES[row]
    path = tmp_path / "bad.parquet"
    write(path, tracks_parquet)
    result = awd("molecular-partner", "build-dataset", path, "--out", tmp_path / "ds")
    expect_error(result, "bad.parquet", *patterns)


def test_row082_folder_with_one_cell(tmp_path, mat_folder):
    result = awd(
        "molecular-partner", "build-dataset", mat_folder / "cell1", "--out", tmp_path / "ds"
    )
    expect_error(result, "cell1", "at least 2 cells")


def test_row083_two_experiments_with_the_same_cell_names(tmp_path, mat_folder):
    """Cells named by their folder are told apart by the experiment folder, with a warning."""
    for exp in ("expA", "expB"):
        shutil.copytree(mat_folder / "cell1", tmp_path / exp / "cell1")
        shutil.copytree(mat_folder / "cell2", tmp_path / exp / "cell2")
    result, warned = awd_warns(
        "molecular-partner", "build-dataset", tmp_path / "expA", tmp_path / "expB",
        "--out", tmp_path / "ds",
    )  # fmt: skip
    expect_ok(result)
    assert any("expA/cell1" in w and "expB/cell1" in w for w in warned), warned
    split = json.loads((tmp_path / "ds" / "meta.json").read_text())["split"]
    assert sorted(split) == ["expA/cell1", "expA/cell2", "expB/cell1", "expB/cell2"]


def test_row083_parquet_tables_sharing_cell_names_are_refused(tmp_path, tracks_parquet):
    second = tmp_path / "second.parquet"
    shutil.copy(tracks_parquet, second)
    result = awd(
        "molecular-partner", "build-dataset", tracks_parquet, second, "--out", tmp_path / "ds"
    )
    expect_error(result, "cell1", "tracks.parquet", "second.parquet")


def test_mat_files_build_the_same_dataset_as_before(tmp_path, mat_folder):
    expect_ok(awd("molecular-partner", "build-dataset", mat_folder, "--out", tmp_path / "ds"))
    split = json.loads((tmp_path / "ds" / "meta.json").read_text())["split"]
    assert sorted(split) == ["cell1", "cell2", "cell3", "cell4"]


# --------------------------------------------------------------------------- AWD tables


@pytest.fixture(scope="module")
def mp_data(tmp_path_factory, tracks_parquet) -> Path:
    """A built data set (dataset.parquet, meta.json)."""
    out = tmp_path_factory.mktemp("mp_data") / "data"
    expect_ok(awd("molecular-partner", "build-dataset", tracks_parquet, "--out", out))
    return out


def _one_cell(t: pd.DataFrame) -> pd.DataFrame:
    t = t.copy()
    t["cell"] = "cell1"
    return t


AWD_CASES: dict[int, tuple[Callable[[pd.DataFrame], pd.DataFrame], tuple[str, ...]]] = {
    84: (
        lambda t: t.drop(columns=["Y_sig_mean_normalized", "y_consec_thresh"]),
        ("Y_sig_mean_normalized",),
    ),
    85: (
        lambda t: t.assign(X_same_length_normalized=[x[:30] for x in t.X_same_length_normalized]),
        ("length 40",),
    ),
    86: (lambda t: t.assign(Y_sig_mean_normalized=np.nan), ("Y_sig_mean_normalized", "NaN")),
    87: (lambda t: t.assign(split="train"), ("test",)),
    88: (_one_cell, ("2 training cells|test cells",)),
}


@pytest.mark.parametrize("row", sorted(AWD_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_awd_table_is_refused_when_built(row, tmp_path, mp_data):
    change, patterns = AWD_CASES[row]
    path = tmp_path / "awd.parquet"
    write_tracks_table(change(read_tracks_table(mp_data / "dataset.parquet")), path)
    result = awd(
        "molecular-partner", "build-dataset", path, "--awd-table", "--out", tmp_path / "ds"
    )
    expect_error(result, "awd.parquet", *patterns)


def test_awd_table_is_accepted(tmp_path, mp_data):
    result = awd(
        "molecular-partner", "build-dataset", mp_data / "dataset.parquet", "--awd-table",
        "--out", tmp_path / "ds",
    )  # fmt: skip
    expect_ok(result)


# --------------------------------------------------------------------------- MP teachers


@pytest.fixture(scope="module")
def mp_run(tmp_path_factory, mp_data) -> Path:
    run = tmp_path_factory.mktemp("mp_run") / "run"
    expect_ok(
        awd(
            "molecular-partner", "train-teacher", "--run", run, "--data", mp_data,
            "--set", "teacher.epochs=1",
        )
    )  # fmt: skip
    return run


def mp_distill(run: Path) -> Result:
    return awd(
        "molecular-partner", "distill", "--run", run, "--set", "distill.lambdas=[0.001]",
        "--set", "distill.gammas=[0.0]", "--set", "distill.train.epochs=1",
    )  # fmt: skip


def _cosmology_teacher(teacher: Path, cosmo_teacher: Path) -> None:
    for f in cosmo_teacher.glob("model.*"):
        shutil.copy(f, teacher / f.name)


MP_TEACHER_CASES: dict[int, tuple[Callable[[Path, Path], None], tuple[str, ...]]] = {
    89: (_cosmology_teacher, ("model",)),
    91: (
        lambda t, c: (t / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(999)),
        ("model.safetensors",),
    ),
    92: (lambda t, c: [f.unlink() for f in t.iterdir()], ("teacher",)),
}


@pytest.mark.parametrize("row", sorted(MP_TEACHER_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_mp_teacher_is_named(row, tmp_path, mp_run, cosmo_run):
    spoil, patterns = MP_TEACHER_CASES[row]
    run = Path(shutil.copytree(mp_run, tmp_path / "run"))
    spoil(run / "teacher", cosmo_run / "teacher")
    expect_error(mp_distill(run), *patterns)


def test_row090_pickled_mp_teacher_is_never_loaded(tmp_path, mp_run):
    run = Path(shutil.copytree(mp_run, tmp_path / "run"))
    marker = tmp_path / "pwned"
    torch.save({"model_state_dict": _Boom(marker)}, run / "teacher" / "model.safetensors")
    expect_error(mp_distill(run), "model.safetensors")
    assert not marker.exists()


# =========================================================================== configuration


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


# Row -> (YAML text, patterns of the error line) for cosmology train-teacher --config.
COSMO_YAML_CASES: dict[int, tuple[str, tuple[str, ...]]] = {
    93: ("teacher: {epochs: 1\n", ("cfg.yaml", "cannot read")),
    94: ("teacher:\n  epoch: 3\n", ("cfg.yaml", "epoch")),
    95: ("bogus:\n  x: 1\n", ("cfg.yaml", "bogus")),
    96: ("- 1\n- 2\n", ("cfg.yaml", "mapping")),
    97: ("teacher: 5\n", ("cfg.yaml", "teacher")),
}


def _not_here(reason: str):
    """A row whose fix lies outside the input loaders: fails until fixed, then must pass."""
    return pytest.mark.xfail(strict=True, reason=reason)


@pytest.mark.parametrize(
    "row",
    [r for r in sorted(COSMO_YAML_CASES)],
    ids=lambda r: f"row{r:03d}",
)
def test_bad_cosmology_config_file(row, tmp_path, fits_folder):
    text, patterns = COSMO_YAML_CASES[row]
    result = awd(
        "cosmology", "train-teacher", "--run", tmp_path / "run", "--data", fits_folder,
        "--config", _yaml(tmp_path, text), "--set", "teacher.epochs=1",
    )  # fmt: skip
    expect_error(result, *patterns)
    assert not (tmp_path / "run").exists()


def test_row098_missing_config_file(tmp_path, fits_folder):
    result = awd(
        "cosmology", "train-teacher", "--run", tmp_path / "run", "--data", fits_folder,
        "--config", tmp_path / "nope.yaml",
    )  # fmt: skip
    expect_error(result, "nope.yaml", "not found")


# Row -> (override, pattern naming the setting) for cosmology train-teacher.
COSMO_TEACHER_SETS: dict[int, tuple[str, str]] = {
    113: ("teacher.epochs=-1", "teacher.epochs"),
    114: ("teacher.epochs=0", "teacher.epochs"),
    115: ("teacher.patience=0", "teacher.patience"),
    116: ("teacher.epochs=2.5", "teacher.epochs"),
    117: ("teacher.epochs=null", "teacher.epochs"),
    118: ("teacher.lr=abc", "teacher.lr"),
    119: ("teacher.lr=-1", "teacher.lr"),
    120: ("teacher.batch_size=0", "teacher.batch_size"),
    121: ("teacher.arch=bogus", "teacher.arch"),
    122: ("teacher.width=0", "teacher.width"),
    124: ("data.split_fractions=[0.5,0.5,0.5]", "split_fractions"),
    125: ("data.split_fractions=[1,0,0]", "val split is empty"),
    126: ("data.block=3", "block-averaged by 3"),
    127: ("data.targets=[omega_m,foo]", "foo"),
}


@pytest.mark.parametrize("row", sorted(COSMO_TEACHER_SETS), ids=lambda r: f"row{r:03d}")
def test_bad_cosmology_teacher_setting(row, tmp_path, fits_folder):
    override, pattern = COSMO_TEACHER_SETS[row]
    run = tmp_path / "run"
    result = awd(
        "cosmology", "train-teacher", "--run", run, "--data", fits_folder, "--set", override
    )
    expect_error(result, pattern)
    assert not (run / "teacher" / "model.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_row123_cuda_device_on_cpu_torch(tmp_path, fits_folder):
    result = train_teacher(tmp_path / "run", fits_folder, "teacher.device=cuda")
    expect_error(result, "cuda")


# Row -> (override, pattern naming the setting) for cosmology distill on a trained run.
COSMO_DISTILL_SETS: dict[int, tuple[str, str]] = {
    99: ("distill.epoch=3", "distill.epoch"),
    103: ("distill.lambdas=abc", "distill.lambdas"),
    104: ("distill.lambdas=[-1]", "distill.lambdas"),
    105: ("distill.levels=20", "levels"),
    106: ("distill.mode=bogus", "mode"),
    107: ("distill.wavelet=bogus", "wavelet"),
    108: ("distill.target=bogus", "distill.target"),
    109: ("distill.train.batch_size=0", "batch_size"),
    110: ("distill.train.patience=0", "patience"),
    111: ("distill.gammas=[]", "distill.gammas"),
    112: ("distill.n_maps=-5", "distill.n_maps"),
}


@pytest.mark.parametrize("row", sorted(COSMO_DISTILL_SETS), ids=lambda r: f"row{r:03d}")
def test_bad_cosmology_distill_setting(row, run_copy):
    override, pattern = COSMO_DISTILL_SETS[row]
    expect_error(distill(run_copy, override), pattern)
    assert not list((run_copy / "distill").rglob("*.safetensors"))


# Row -> (override, pattern naming the setting) for cosmology evaluate.
COSMO_EVALUATE_SETS: dict[int, tuple[str, str]] = {
    128: ("student.n_bins=0", "student.n_bins"),
    129: ("student.ridge_alphas=[]", "student.ridge_alphas"),
    130: ("student.xgb_estimators=0", "student.xgb_estimators"),
    131: ("student.coverages=[1.5]", "coverages"),
    132: ("evaluate.n_bootstrap=-1", "evaluate.n_bootstrap"),
    133: ("evaluate.n_attr_maps=0", "evaluate.n_attr_maps"),
    134: ("evaluate.timing_maps=0", "evaluate.timing_maps"),
}


@pytest.mark.parametrize("row", sorted(COSMO_EVALUATE_SETS), ids=lambda r: f"row{r:03d}")
def test_bad_cosmology_evaluate_setting(row, run_copy):
    override, pattern = COSMO_EVALUATE_SETS[row]
    expect_error(awd("cosmology", "evaluate", "--run", run_copy, "--set", override), pattern)
    assert not (run_copy / "evaluate").exists()


# --------------------------------------------------------------------------- MP settings


def mp_train(run: Path, data: Path, *args: object) -> Result:
    return awd("molecular-partner", "train-teacher", "--run", run, "--data", data, *args)


MP_YAML_CASES: dict[int, tuple[str, tuple[str, ...]]] = {
    136: ("teacher: {epochs: 1\n", ("cfg.yaml",)),
    137: ("teacher:\n  epoch: 3\n", ("cfg.yaml", "epoch")),
}


@pytest.mark.parametrize("row", sorted(MP_YAML_CASES), ids=lambda r: f"row{r:03d}")
def test_bad_mp_config_file(row, tmp_path, mp_data):
    text, patterns = MP_YAML_CASES[row]
    result = mp_train(tmp_path / "run", mp_data, "--config", _yaml(tmp_path, text))
    expect_error(result, *patterns)


def test_row138_mp_override_typo_is_blamed_on_the_override(tmp_path, mp_data):
    config = _yaml(tmp_path, "teacher:\n  epochs: 1\n")
    result = mp_train(tmp_path / "run", mp_data, "--config", config, "--set", "teacher.epoch=3")
    line = expect_error(result, "teacher.epoch")
    assert "cfg.yaml" not in line


# Row -> (override, pattern naming the setting) for MP train-teacher.
MP_TEACHER_SETS: dict[str, tuple[str, str]] = {
    "139": ("bogus.x=1", "bogus"),
    "141": ("teacher.epochs=abc", "teacher.epochs"),
    "142": ("teacher.lr=abc", "teacher.lr"),
    "144": ("teacher.epochs=-1", "teacher.epochs"),
    "145": ("teacher.lr=-1", "teacher.lr"),
    "149-loss": ("teacher.loss=xyz", "teacher.loss"),
    "149-batch": ("teacher.batch_size=0", "teacher.batch_size"),
    "149-hidden": ("teacher.hidden=0", "teacher.hidden"),
    "151": ("teacher.length=30", "teacher.length=40|length 40"),
}


@pytest.mark.parametrize("row", sorted(MP_TEACHER_SETS), ids=lambda r: f"row{r}")
def test_bad_mp_teacher_setting(row, tmp_path, mp_data):
    override, pattern = MP_TEACHER_SETS[row]
    line = expect_error(mp_train(tmp_path / "run", mp_data, "--set", override), pattern)
    if row != "151":  # 151 is a mismatch of data and setting: both are named
        assert f"{mp_data}:" not in line  # a setting is not blamed on the data
    assert not (tmp_path / "run" / "teacher").exists()


MP_DISTILL_SETS: dict[str, tuple[str, str]] = {
    "140": ("distill.train.lr=abc", "distill.train.lr"),
    "143": ("distill.lambdas=abc", "distill.lambdas"),
    "146-neg": ("distill.train.epochs=-1", "epochs"),
    "146-zero": ("distill.train.epochs=0", "epochs"),
    "147-wavelet": ("distill.wavelet=bogus", "wavelet"),
    "147-levels": ("distill.levels=0", "levels"),
    "147-mode": ("distill.mode=bogus", "mode"),
    "147-attr": ("distill.train.attr_method=bogus", "attr_method"),
    "150": ("distill.gammas=[nan]", "gammas"),
}


@pytest.mark.parametrize("row", sorted(MP_DISTILL_SETS), ids=lambda r: f"row{r}")
def test_bad_mp_distill_setting(row, tmp_path, mp_run):
    override, pattern = MP_DISTILL_SETS[row]
    run = Path(shutil.copytree(mp_run, tmp_path / "run"))
    result = awd("molecular-partner", "distill", "--run", run, "--set", override)
    expect_error(result, pattern)


@pytest.mark.parametrize("override", ["evaluate.top_k=0", "evaluate.cv_folds=1"])
def test_row148_bad_mp_evaluate_setting(override, tmp_path, mp_run):
    run = Path(shutil.copytree(mp_run, tmp_path / "run"))
    result = awd("molecular-partner", "evaluate", "--run", run, "--set", override)
    expect_error(result, override.split("=")[0])


# --------------------------------------------------------------------------- simulation, sweep

SIMULATION_SETS: dict[str, tuple[str, str]] = {
    "152-n_train": ("n_train=-5", "n_train"),
    "152-typo": ("n_trian=3", "n_trian"),
    "152-planted": ("planted_level=9", "planted_level"),
    "152-levels": ("levels=0", "levels"),
    "152-epochs": ("distill.epochs=-1", "epochs"),
    "152-l1_attr": ("weights.l1_attr=-1", "l1_attr"),
    "152-features": ("student_features=2", "student_features"),
    "153-epochs": ("distill.epochs=abc", "distill.epochs"),
    "153-lr": ("distill.lr=abc", "distill.lr"),
    "154": ("noise_sd=abc", "noise_sd"),
    "155-wavelet": ("wavelet=bogus", "wavelet"),
    "155-length": ("length=7", "length"),
    "155-init": ("init_noise=-1", "init_noise"),
    "156": ("teacher_epochs=-1", "teacher_epochs"),
}


@pytest.mark.parametrize("row", sorted(SIMULATION_SETS), ids=lambda r: f"row{r}")
def test_bad_simulation_setting(row, tmp_path):
    override, pattern = SIMULATION_SETS[row]
    out = tmp_path / "sim"
    expect_error(awd("simulation", "run", "--out", out, "--set", override), pattern)
    assert not (out / "metrics.json").exists()


SWEEP_CASES: dict[str, tuple[str, str]] = {
    "157-workers": ("workers: 0\n", "workers"),
    "157-engine": ("engine: bogus\n", "engine"),
    "157-l1": ("l1_coeffs: [-1]\n", "l1_coeffs"),
    "157-repeat": ("l1_attr: [0.1, 0.1]\n", "l1_attr|repeat|duplicate"),
    "157-base-key": ("base: {bogus: 1}\n", "bogus"),
    "157-base-n": ("base: {n_train: -1}\n", "n_train"),
    "157-domain": ("domain: cosmology\n", "domain"),
    "157-empty": ("l1_attr: []\n", "l1_attr"),
    "158": ("base: {distill: {epochs: abc}}\n", "epochs"),
    "159-failures": ("max_failures: -1\n", "max_failures"),
    "159-cpus": ("cpus_per_trial: 0\n", "cpus_per_trial"),
}


@pytest.mark.parametrize("row", sorted(SWEEP_CASES), ids=lambda r: f"row{r}")
def test_bad_sweep_config(row, tmp_path):
    text, pattern = SWEEP_CASES[row]
    config = _yaml(tmp_path, "domain: simulation\n" * ("domain:" not in text) + text)
    result = awd("sweep", "simulation", "--config", config, "--out", tmp_path / "sweep")
    expect_error(result, pattern)


def test_row160_close_grid_values_get_distinct_points():
    from shared.sweep import SweepConfig, point_name

    grid = SweepConfig(l1_attr=(0.0, 0.1, 0.1000001)).grid()
    names = {point_name(w) for chain in grid.chains() for w in chain}
    assert len(names) == 3


# --------------------------------------------------------------------------- simulate options

COSMO_SIMULATE_CASES: dict[str, tuple[tuple[str, ...], str]] = {
    "161-size": (("--size", "4"), "--size"),
    "161-n_maps": (("--n-maps", "0"), "--n-maps"),
    "161-n_gal0": (("--noise", "--n-gal", "0"), "--n-gal"),
    "161-n_gal-5": (("--noise", "--n-gal", "-5"), "--n-gal"),
    "161-sigma_e": (("--noise", "--sigma-e", "-1"), "--sigma-e"),
    "161-side": (("--side-angle", "-1"), "--side-angle"),
    "162": (("--smoothing", "-1"), "--smoothing"),
    "164": (("--design", "nosuch.csv"), "nosuch.csv"),
}


@pytest.mark.parametrize("row", sorted(COSMO_SIMULATE_CASES), ids=lambda r: f"row{r}")
def test_bad_cosmology_simulate_option(row, tmp_path):
    args, pattern = COSMO_SIMULATE_CASES[row]
    out = tmp_path / "sim"
    result = awd("cosmology", "simulate", "--out", out, "--n-maps", "1", "--size", "16", *args)
    expect_error(result, re.escape(pattern))
    assert not list(out.rglob("*.fits"))


def test_row163_simulate_odd_size_and_zero_workers(tmp_path):
    design = tmp_path / "design.csv"
    design.write_text("m_nu,omega_m,A_s,sigma_8\n0.0,0.3,2.1,0.8\n")
    out = tmp_path / "sim"
    result = awd(
        "cosmology", "simulate", "--out", out, "--design", design, "--n-maps", "2",
        "--size", "33", "--workers", "0",
    )  # fmt: skip
    expect_ok(result)
    assert len(load_catalog(out)) == 2


def test_row165_out_is_a_file_for_build_dataset(tmp_path, tracks_parquet):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = awd("molecular-partner", "build-dataset", tracks_parquet, "--out", blocker)
    expect_error(result, "blocker", "not a folder")


def test_row165_out_is_a_file_for_simulate(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = awd("cosmology", "simulate", "--out", blocker, "--n-maps", "1", "--size", "16")
    expect_error(result, "blocker", "not a folder")
    result = awd("molecular-partner", "simulate", "--out", blocker, "--n-cells", "1")
    expect_error(result, "blocker", "not a folder")


@pytest.mark.parametrize(
    "command",
    ["train-teacher", "simulation", "sweep"],
)
def test_row165_out_is_a_file_for_runs(command, tmp_path, fits_folder):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    if command == "train-teacher":
        result = train_teacher(blocker, fits_folder)
    elif command == "simulation":
        result = awd("simulation", "run", "--out", blocker, "--set", "n_train=8")
    else:
        config = _yaml(tmp_path, "domain: simulation\n")
        result = awd("sweep", "simulation", "--config", config, "--out", blocker)
    expect_error(result, "blocker", "not a folder")
