"""The cosmology pipeline end to end through the CLI on tiny data, and its bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cosmology.cosmologies import design_ten
from cosmology.evaluate import METRIC_COLUMNS, bootstrap_rmse
from cosmology.simulate import simulate_dataset
from cosmology.student import TemplateChi2, check_predictions
from cosmology.teacher import load_teacher, predict
from shared.cli import _register_domains, app

runner = CliRunner()
_register_domains()

# Three well separated cosmologies (Omega_m 0.20, 0.30, 0.42) of the ten.
ROWS = [4, 0, 3]


def _invoke(*args: str):
    result = runner.invoke(app, ["cosmology", *args])
    return result


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("maps")
    simulate_dataset(root, design_ten(False).iloc[ROWS], n_maps=40, n_pix=64, seed=3)
    return root


@pytest.fixture(scope="module")
def run_dir(data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    sets = [
        "teacher.epochs=12",
        "teacher.batch_size=16",
        "teacher.lr=0.003",
        "teacher.patience=12",
        "distill.lambdas=[0.005]",
        "distill.gammas=[0.0,0.01]",
        "distill.epochs=1",
        "distill.n_maps=30",
        "distill.n_val_maps=12",
        "distill.batch_size=15",
        "student.coverages=[0.95,0.99]",
        "student.ridge_alphas=[1.0,10.0]",
        "student.xgb_estimators=20",
        "student.minkowski_max_maps=30",
        "evaluate.n_bootstrap=50",
        "evaluate.n_attr_maps=4",
        "evaluate.timing_maps=16",
    ]
    args = ["train-teacher", "--run", str(run), "--data", str(data_root)]
    for s in sets:
        args += ["--set", s]
    res = _invoke(*args)
    assert res.exit_code == 0, res.output
    for cmd in ("distill", "evaluate", "report"):
        res = _invoke(cmd, "--run", str(run))
        assert res.exit_code == 0, (cmd, res.output)
    return run


def test_distilling_a_finished_grid_again_changes_nothing(run_dir):
    grid = run_dir / "distill" / "grid.json"
    before = grid.stat().st_mtime_ns, grid.read_bytes()
    res = _invoke("distill", "--run", str(run_dir))
    assert res.exit_code == 0, res.output
    # Untouched: a newer grid.json would mark the evaluation stale.
    assert (grid.stat().st_mtime_ns, grid.read_bytes()) == before


def test_every_command_writes_its_outputs(run_dir):
    for rel in (
        "run.json",
        "config.yaml",
        "env.json",
        "teacher/teacher.pt",
        "teacher/history.json",
        "distill/grid.json",
        "distill/lam0.005_gam0.01/transform.safetensors",
        "distill/lam0.005_gam0.01/transform.json",
        "evaluate/metrics.csv",
        "evaluate/metrics.md",
        "evaluate/selection.json",
        "report/report.html",
        "report/wavelet.png",
        "report/fourier_trim.png",
        "report/pred_vs_true.png",
    ):
        assert (run_dir / rel).is_file(), rel
    html = (run_dir / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 9 and "src='http" not in html
    meta = json.loads((run_dir / "distill/lam0.005_gam0.01/transform.json").read_text())
    assert meta["extra"]["warm_start_from"] == "lam0.005_gam0"


def test_metrics_are_complete_finite_and_sensible(run_dir):
    m = pd.read_csv(run_dir / "evaluate" / "metrics.csv")
    assert list(m.columns) == METRIC_COLUMNS
    methods = set(m.method)
    for name in (
        "awd",
        "awd_gamma0",
        "teacher",
        "db5",
        "raw_peaks",
        "laplace",
        "roberts",
        "power_spectrum",
        "power_peaks",
        "power_peaks_pooled",
        "pixel_quantiles",
        "minkowski",
        "trivial",
        "awd_multiscale_ridge",
        "awd_multiscale_xgboost",
        "awd_l1",
        "awd_l1_pooled",
        "awd_gamma0_l1",
        "db5_l1",
    ):
        assert name in methods, name
    assert np.isfinite(m[["rmse", "rmse_sd", "predict_seconds_per_map"]].to_numpy()).all()
    assert (m.rmse >= 0).all() and (m.rmse < 0.5).all() and (m.rmse_sd >= 0).all()
    assert (m.n_test == 24).all()  # 3 cosmologies x 8 test realizations
    rmse = m.set_index(["method", "parameter"]).rmse
    # On this easy setting the teacher beats the constant predictor on both parameters.
    for p in ("omega_m", "sigma_8"):
        assert rmse["teacher", p] < 0.8 * rmse["trivial", p]
    sel = json.loads((run_dir / "evaluate" / "selection.json").read_text())
    assert sel["selection"]["awd"]["wavelet"] == "lam0.005_gam0.01"
    assert sel["selection"]["awd_gamma0"]["wavelet"] == "lam0.005_gam0"
    assert sel["parameters"]["teacher"] > 1000 and sel["speed_ratio_teacher_over_awd"] > 0


def test_trivial_is_the_training_mean(run_dir, data_root):
    preds = np.load(run_dir / "evaluate" / "predictions.npz")
    y = preds["y_test"]
    m = pd.read_csv(run_dir / "evaluate" / "metrics.csv").set_index(["method", "parameter"])
    # Training and test sets hold the same three cosmologies equally often.
    mean = y.mean(0)
    for j, p in enumerate(("omega_m", "sigma_8")):
        expected = np.sqrt(((y[:, j] - mean[j]) ** 2).mean())
        assert m.rmse["trivial", p] == pytest.approx(expected, rel=1e-4)


def test_teacher_that_does_not_fit_is_refused(run_dir, tmp_path):
    path = run_dir / "teacher" / "teacher.pt"
    with pytest.raises(ValueError, match="trained on 64x64 maps, these are 128x128"):
        load_teacher(path, n_pix=128)
    with pytest.raises(ValueError, match="holds a 'small' teacher"):
        load_teacher(path, arch="resnet18")
    payload = torch.load(path, weights_only=True)
    payload["width"] = 4
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(ValueError, match="do not fit a small teacher"):
        load_teacher(bad)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable teacher file"):
        load_teacher(tmp_path / "junk.pt")


def test_run_directory_of_another_domain_is_refused(tmp_path):
    run = tmp_path / "other"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"domain": "molecular_partner"}))
    for cmd in ("distill", "evaluate", "report"):
        res = _invoke(cmd, "--run", str(run))
        assert res.exit_code == 2
        assert "domain 'molecular_partner', not 'cosmology'" in res.output
    res = _invoke("evaluate", "--run", str(tmp_path / "missing"))
    assert res.exit_code == 2 and "not a run directory" in res.output


def test_single_cosmology_template_and_nan_predictions_are_refused():
    X = np.random.default_rng(0).normal(size=(20, 4))
    y = np.tile([0.3, 0.8], (20, 1))
    with pytest.raises(ValueError, match="at least two cosmologies"):
        TemplateChi2().fit(X, y)
    with pytest.raises(ValueError, match="method 'x': 1 predictions are NaN"):
        check_predictions(np.array([[0.3, 0.8], [np.nan, 0.8]]), "method 'x'")


def test_teacher_nan_predictions_are_refused(run_dir):
    teacher = load_teacher(run_dir / "teacher" / "teacher.pt")
    maps = torch.zeros(2, 64, 64)
    maps[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        predict(teacher, maps)


def test_bootstrap_sd_shrinks_with_more_maps():
    rng = np.random.default_rng(0)
    y = np.zeros((4000, 1))
    pred = rng.normal(size=(4000, 1))
    _, sd_small = bootstrap_rmse(y[:100], pred[:100], 300)
    rmse, sd_large = bootstrap_rmse(y, pred, 300)
    assert rmse[0] == pytest.approx(1.0, abs=0.05)
    assert sd_large[0] < sd_small[0] / 3
