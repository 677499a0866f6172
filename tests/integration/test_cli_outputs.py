"""What the commands tell their users: tracking settings and their sources, the grid's
progress, the demo summary's verdicts and warnings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shared.cli import _register_domains, _summary_markdown, app
from shared.report import Headline
from shared.sweep import Grid, run_grid

runner = CliRunner()


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    """A small simulated movie with ImageJ metadata (1 s frames, 80 nm) and one without."""
    tifffile = pytest.importorskip("tifffile")
    from molecular_partner.simulate import (
        SimulationConfig,
        render_movie,
        simulate_pits,
        write_movie,
    )

    out = tmp_path_factory.mktemp("movies")
    cfg = SimulationConfig(n_frames=40, shape=(32, 32), n_pits=4)
    movie = render_movie(simulate_pits(cfg))
    write_movie(out / "with_meta.tif", movie, cfg)
    tifffile.imwrite(out / "bare.tif", movie, imagej=True, metadata={"axes": "TCYX"})
    return out


def _track(*args):
    _register_domains()
    result = runner.invoke(app, ["molecular-partner", "track", *map(str, args)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_track_warns_and_names_the_frame_interval_it_assumes(movies, tmp_path):
    out = _track(movies / "bare.tif", "--out", tmp_path / "t.parquet")
    assert "no frame interval in the movie's metadata; assuming 1 s per frame" in out
    assert "--frame-interval" in out
    assert (tmp_path / "t.parquet").is_file()


def test_track_reads_metadata_and_takes_settings(movies, tmp_path):
    import pandas as pd

    out = _track(movies / "with_meta.tif", "--out", tmp_path / "a.parquet")
    assert "warning" not in out and "1 s per frame (metadata), pixel 80 nm (metadata)" in out
    out = _track(
        movies / "bare.tif",
        "--out",
        tmp_path / "b.parquet",
        "--frame-interval",
        "2",
        "--pixel-size",
        "100",
        "--threshold",
        "4",
    )
    assert "warning" not in out and "2 s per frame (given), pixel 100 nm (given)" in out
    # PSF and linking defaults are for 80 nm pixels: rescaled to 100 nm.
    assert "PSF σ 0.80 / 0.72 px, threshold 4, link radius 2.00 px" in out
    one, two = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert two["lifetime_s"].max() > one["lifetime_s"].max()


def test_run_grid_reports_each_point_and_resumes(tmp_path):
    class Task:
        greater_is_better = False

        def run_point(self, weights, warm_start, out):
            return {"val_score": weights.l1_coeffs + weights.l1_attr}

    calls = []
    run_grid(Task(), Grid((0.1,), (0.0, 1.0)), tmp_path, progress=lambda *a: calls.append(a))
    assert calls == [(0, 2, None), (1, 2, "lam0.1_gam0"), (2, 2, "lam0.1_gam1"), (2, 2, None)]
    calls.clear()
    run_grid(Task(), Grid((0.1,), (0.0, 1.0)), tmp_path, progress=lambda *a: calls.append(a))
    assert calls == [(2, 2, None), (2, 2, None)]


def test_demo_summary_opens_with_verdicts_and_says_what_next(tmp_path):
    report = tmp_path / "cosmology" / "run" / "report" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    Headline(
        "cosmology",
        "cosmology: the AWD student ties its teacher.",
        "On 12 test maps ...",
        warnings=["Every setting was chosen on 6 validation maps: too few to select on."],
        table=[{"method": "CNN teacher", "RMSE Ωₘ": "0.088 ± 0.011"}],
    ).save(report.with_name("headline.json"))
    sim = {
        "distance_init": 0.236,
        "distance_final": 0.004,
        "attribution_mass_init": 0.61,
        "attribution_mass_final": 0.85,
        "teacher_test_r2": 0.99,
    }
    summary = {
        "simulation": {"metrics": sim},
        "cosmology": {"report": str(report), "table": "| 43 rows |"},
        "seconds": {"total": 120.0},
    }
    text = _summary_markdown(json.loads(json.dumps(summary)), tmp_path)
    lines = text.splitlines()
    assert lines[0] == "# awd demo"
    assert lines[2].startswith("- simulation experiment: ") and "0.236 → 0.004" in lines[2]
    assert lines[3] == "- cosmology: the AWD student ties its teacher."
    assert "toy-sized" in text and "## What to run next" in text
    assert "- cosmology: Every setting was chosen on 6 validation maps" in text
    assert "| CNN teacher | 0.088 ± 0.011 |" in text and "43 rows" not in text
    assert "`cosmology/run/report/report.html`" in text and str(tmp_path) not in text
