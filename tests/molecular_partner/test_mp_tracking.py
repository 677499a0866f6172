"""Tracking scored against the simulator's ground truth; movie reading and bad input."""

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from molecular_partner import track_movie
from molecular_partner.data import add_outcomes
from molecular_partner.simulate import (
    SimulationConfig,
    render_movie,
    score_tracking,
    simulate_pits,
    truth_aux_positive,
    write_movie,
)
from molecular_partner.tracking import read_movie, track_array


def _score(n_frames, size, n_pits, seed):
    gt = simulate_pits(
        SimulationConfig(n_frames=n_frames, shape=(size, size), n_pits=n_pits), seed=seed
    )
    tracks = track_array(render_movie(gt, seed=seed + 1))
    sc = score_tracking(tracks, gt)
    rec = sc["recovered"]
    labels = add_outcomes(tracks.iloc[rec["track"].to_numpy()])["y_consec_thresh"].to_numpy()
    truth = truth_aux_positive(gt)[rec["pit_id"].to_numpy()]
    return sc, labels, truth


def test_tracking_recovers_pits_and_labels():
    sc, labels, truth = _score(100, 96, 80, seed=11)
    assert sc["n_detectable"] >= 50
    assert sc["recovery"] >= 0.85
    assert truth.any() and (~truth).any()
    assert (labels == truth).mean() >= 0.90


@pytest.mark.slow
def test_tracking_full_size_movie():
    sc, labels, truth = _score(300, 256, 300, seed=21)
    assert sc["n_detectable"] >= 200
    assert sc["recovery"] >= 0.85
    assert (labels == truth).mean() >= 0.90


def test_scoring_can_fail():
    gt = simulate_pits(SimulationConfig(n_frames=60, shape=(64, 64), n_pits=20), seed=2)
    tracks = track_array(render_movie(gt, seed=3))
    # Shift every track by 5 px: nothing matches any more.
    shifted = tracks.assign(x=[x + 5 for x in tracks["x"]])
    assert score_tracking(shifted, gt)["recovery"] < 0.2
    # Halve every track: completeness fails.
    half = tracks.assign(
        f=[f[: max(1, len(f) // 2)] for f in tracks["f"]],
        x=[x[: max(1, len(x) // 2)] for x in tracks["x"]],
        y=[y[: max(1, len(y) // 2)] for y in tracks["y"]],
    )
    assert score_tracking(half, gt)["recovery"] < 0.3


@pytest.fixture
def movie_file(tmp_path):
    cfg = SimulationConfig(n_frames=40, shape=(48, 48), n_pits=15)
    return write_movie(tmp_path / "cellA.tif", render_movie(simulate_pits(cfg, seed=1)), cfg)


def test_track_movie_file_and_metadata(movie_file):
    movie, info = read_movie(movie_file)
    assert movie.shape == (40, 2, 48, 48)
    assert info["frame_interval_s"] == 1.0
    assert info["pixel_size_nm"] == pytest.approx(80.0)
    tracks = track_movie(movie_file)
    assert {"lifetime_s", "catIdx", "X", "Y", "pval_Ar_Y", "cell"} <= set(tracks.columns)
    assert (tracks["cell"] == "cellA").all()
    assert set(tracks["catIdx"]) <= set(range(1, 9))
    for row in tracks.itertuples():
        assert len(row.X) == len(row.Y) == len(row.pval_Ar_Y) == row.lifetime_s
        assert len(row.X_startBuffer) <= 5 and len(row.X_endBuffer) <= 5


def test_separate_channel_files(tmp_path, movie_file):
    movie, _ = read_movie(movie_file)
    c, a = tmp_path / "c.tif", tmp_path / "a.tif"
    tifffile.imwrite(c, movie[:, 0].astype(np.uint16), imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(a, movie[:, 1].astype(np.uint16), imagej=True, metadata={"axes": "TYX"})
    both, _ = read_movie(c, a)
    np.testing.assert_array_equal(both, movie)
    with pytest.raises(ValueError, match="need 2"):
        read_movie(c)


def test_bad_tiffs(tmp_path, movie_file):
    three = tmp_path / "three.tif"
    tifffile.imwrite(
        three, np.zeros((5, 3, 16, 16), np.uint16), imagej=True, metadata={"axes": "TCYX"}
    )
    with pytest.raises(ValueError, match=r"three\.tif.*3 channel"):
        read_movie(three)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((16, 16), np.uint16))
    with pytest.raises(ValueError, match=r"flat\.tif.*axes"):
        read_movie(flat)
    vol = tmp_path / "vol.tif"
    tifffile.imwrite(
        vol, np.zeros((4, 3, 16, 16), np.uint16), imagej=True, metadata={"axes": "TZYX"}
    )
    with pytest.raises(ValueError, match="3-D"):
        read_movie(vol)
    trunc = tmp_path / "trunc.tif"
    data = movie_file.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"trunc\.tif"):
        read_movie(trunc)


def test_cli_end_to_end(tmp_path):
    from molecular_partner.cli import app

    runner = CliRunner()
    sim = tmp_path / "sim"
    r = runner.invoke(
        app,
        [
            "simulate",
            "--out",
            str(sim),
            "--n-cells",
            "3",
            "--n-frames",
            "60",
            "--size",
            "48",
            "--n-pits",
            "30",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (sim / "cell1.tif").exists() and (sim / "truth.parquet").exists()
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    r = runner.invoke(
        app,
        [
            "track",
            str(sim / "cell1.tif"),
            str(sim / "cell2.tif"),
            str(tmp_path / "broken.tif"),
            "--out",
            str(tmp_path / "t.parquet"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.parquet").exists()
    r = runner.invoke(
        app,
        [
            "build-dataset",
            str(sim / "tracks.parquet"),
            "--out",
            str(tmp_path / "ds"),
            "--test-cells",
            "cell3",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ds" / "dataset.parquet").exists()
    r = runner.invoke(
        app, ["track", str(tmp_path / "broken.tif"), "--out", str(tmp_path / "x.parquet")]
    )
    assert r.exit_code != 0 and not (tmp_path / "x.parquet").exists()
