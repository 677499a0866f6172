"""`awd figures`: built from saved runs only, byte-stable, missing inputs named."""

import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from cosmology.cli import make_figures as cosmology_figures
from molecular_partner.cli import make_figures as mp_figures
from shared import DistillConfig
from shared.cli import _register_domains, app
from shared.figures import FigureReport, make_core_figures
from shared.simulation import SimulationConfig, run_simulation
from shared.sweep import SweepConfig, run_sweep

TINY = SimulationConfig(
    n_train=300, n_test=60, teacher_epochs=2, distill=DistillConfig(epochs=1, batch_size=150)
)


def test_figures_from_saved_runs_are_byte_stable(tmp_path):
    results = tmp_path / "results"
    run_simulation(results / "simulation", TINY)
    base = {"n_train": 300, "n_test": 60, "teacher_epochs": 2, "distill": {"epochs": 1}}
    sweep = SweepConfig(l1_coeffs=(1e-4,), l1_attr=(0.0, 1.0), base=base)
    run_sweep(sweep, "shared.simulation:make_sweep_task", results / "sweeps" / "tiny")
    first = make_core_figures(results, tmp_path / "a")
    second = make_core_figures(results, tmp_path / "b")
    names = sorted(p.name for p in first.written)
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in ("simulation_experiment", "heatmap_tiny")
        for ext in ("png", "pdf", "csv")
    )
    assert not first.missing
    for path in first.written:
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name
    assert second.written
    csv = (tmp_path / "a" / "simulation_experiment.csv").read_text().splitlines()
    assert csv[0] == "quantity,start,end" and len(csv) == 3


def test_missing_run_is_named_and_the_rest_is_built(tmp_path):
    results = tmp_path / "results"
    run_simulation(results / "simulation", TINY)
    shutil.copytree(results / "simulation", tmp_path / "keep")
    (results / "simulation" / "wavelet.safetensors").unlink()
    _register_domains()
    runner = CliRunner()
    result = runner.invoke(
        app, ["figures", "--results", str(results), "--out", str(tmp_path / "f")]
    )
    assert result.exit_code == 1  # nothing could be built
    assert "simulation experiment: missing" in result.output
    shutil.rmtree(results / "simulation")
    shutil.copytree(tmp_path / "keep", results / "simulation")
    result = runner.invoke(
        app, ["figures", "--results", str(results), "--out", str(tmp_path / "f")]
    )
    assert result.exit_code == 0
    assert (tmp_path / "f" / "simulation_experiment.pdf").exists()
    assert "heatmaps" in result.output  # no sweep: named, not fatal
    # The domains' hooks name their missing runs too.
    assert "molecular-partner results table: missing" in result.output
    assert "cosmology results table: missing" in result.output


def test_domain_figures_from_the_committed_results_are_byte_stable(tmp_path):
    # The committed run directories under results/ are the inputs `awd figures` promises
    # to rebuild from; the domains' hooks must draw every figure and draw it identically.
    results = Path(__file__).resolve().parents[2] / "results"
    reports = []
    for out in (tmp_path / "a", tmp_path / "b"):
        report = FigureReport()
        cosmology_figures(results, out, report)
        mp_figures(results, out, report)
        reports.append(report)
    assert not reports[0].missing
    stems = {p.stem for p in reports[0].written}
    assert stems == {
        "cosmology_wavelets",
        "cosmology_results",
        "cosmology_peak_histograms",
        "heatmap_cosmology",
        "molecular_partner_wavelets",
        "molecular_partner_results",
        "heatmap_molecular_partner",
    }
    for path in reports[0].written:
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name
    table = pd.read_csv(tmp_path / "a" / "molecular_partner_results.csv").set_index("method")
    for method in ("awd", "awd_gamma0", "db5"):
        assert 0 < table.loc[method, "compression_rate"] < 1
    assert table.loc["teacher", "n_parameters"] > table.loc["awd", "n_parameters"]
    hist = pd.read_csv(tmp_path / "a" / "cosmology_peak_histograms.csv")
    assert hist["omega_m"].nunique() == 10 and (hist["mean_peaks_per_map"] >= 0).all()
