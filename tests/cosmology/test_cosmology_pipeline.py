"""The cosmology pipeline end to end through the CLI on tiny data, predict, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cosmology.config import load_config
from cosmology.cosmologies import design_ten
from cosmology.io import read_map, write_map
from cosmology.pipeline import load_splits
from cosmology.predict import load_student
from cosmology.simulate import simulate_dataset
from cosmology.student import TemplateChi2, band_names, check_predictions
from cosmology.teacher import load_teacher, predict
from shared.cli import _register_domains, app
from shared.evaluation import METRICS_COLUMNS, bootstrap_draws, bootstrap_sd, rmse

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
        "distill.train.epochs=1",
        "distill.n_maps=30",
        "distill.n_val_maps=12",
        "distill.train.batch_size=15",
        "student.coverages=[0.95,0.99]",
        "student.ridge_alphas=[1.0,10.0]",
        "student.xgb_estimators=20",
        "student.minkowski_max_maps=30",
        "evaluate.n_bootstrap=50",
        "evaluate.n_attr_maps=4",
        "evaluate.timing_maps=16",
    ]
    steps = {
        "teacher": ["train-teacher", "--data", str(data_root)],
        "distill": ["distill"],
        "evaluate": ["evaluate"],
    }
    for step, command in steps.items():
        args = [*command, "--run", str(run)]
        for s in sets:
            if (
                s.split(".")[0]
                in {
                    "teacher": ("teacher",),
                    "distill": ("distill",),
                    "evaluate": ("student", "evaluate"),
                }[step]
            ):
                args += ["--set", s]
        res = _invoke(*args)
        assert res.exit_code == 0, (command, res.output)
    res = _invoke("report", "--run", str(run))
    assert res.exit_code == 0, res.output
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
        "teacher/model.safetensors",
        "teacher/model.json",
        "teacher/history.json",
        "teacher/step.json",
        "distill/grid.json",
        "distill/step.json",
        "distill/lam0.005_gam0.01/wavelet.safetensors",
        "distill/lam0.005_gam0.01/wavelet.json",
        "students/index.json",
        "students/awd/student.json",
        "students/awd_multiscale_xgboost/arrays.safetensors",
        "students/trivial/student.json",
        "evaluate/metrics.csv",
        "evaluate/comparisons.csv",
        "evaluate/step.json",
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
    meta = json.loads((run_dir / "distill/lam0.005_gam0.01/wavelet.json").read_text())
    assert meta["extra"]["warm_start_from"] == "lam0.005_gam0"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["domain"] == "cosmology" and run["data"]["fingerprint"].startswith("sha256:")
    assert Path(run["data"]["path"]).is_absolute()
    step = json.loads((run_dir / "distill" / "step.json").read_text())
    assert step["settings"]["distill"]["train"]["epochs"] == 1
    assert set(step["inputs"]) == {"data", "teacher"}
    # config.yaml holds what each step ran with.
    assert load_config(run_dir / "config.yaml").distill.train.batch_size == 15


def test_metrics_are_complete_finite_and_sensible(run_dir):
    m = pd.read_csv(run_dir / "evaluate" / "metrics.csv")
    assert list(m.columns) == METRICS_COLUMNS
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
        "awd_taylornet",
        "db5_taylornet",
        # the field's strongest statistics and our scattering students, three heads each
        *(
            f"{family}{head}"
            for family in (
                "scattering",
                "starlet_l1",
                "starlet_peaks",
                "power_peaks_minkowski",
                "awd_scattering",
                "db5_scattering",
                "awd_l1_multiscale",
                "db5_l1_multiscale",
            )
            for head in ("_pooled", "_ridge", "_xgboost")
        ),
    ):
        assert name in methods, name
    # Only the three heads for them: no per-cosmology chi-square.
    assert "scattering" not in methods and "starlet_l1" not in methods
    assert np.isfinite(m[["value", "sd", "seconds_per_item", "n_parameters"]].to_numpy()).all()
    assert (m.value >= 0).all() and (m.value < 0.5).all() and (m.sd >= 0).all()
    assert (m.n_test == 24).all() and (m.metric == "rmse").all()  # 3 cosmologies x 8 maps
    rmse = m.set_index(["method", "target"]).value
    # On this easy setting the teacher beats the constant predictor on both parameters.
    for p in ("omega_m", "sigma_8"):
        assert rmse["teacher", p] < 0.8 * rmse["trivial", p]
    sel = json.loads((run_dir / "evaluate" / "selection.json").read_text())
    assert sel["selection"]["awd"]["wavelet"] == "lam0.005_gam0.01"
    assert sel["selection"]["awd_gamma0"]["wavelet"] == "lam0.005_gam0"
    assert sel["parameters"]["teacher"] > 1000 and sel["speed_ratio_teacher_over_awd"] > 0
    chosen = sel["selection"]
    assert chosen["scattering_pooled"]["orientations"] in ("all", "relative", "mean")
    assert chosen["scattering_xgboost"] == {
        **chosen["scattering_ridge"],
        "predictor": "xgboost",
        "val_score": ANY,
    }
    assert chosen["awd_scattering_ridge"]["wavelet"] in ("lam0.005_gam0.01",)
    # Concision: the starlet students count their bin edges (5 planes x 21) and the head
    # (ridge: 2 x 100 coefficients, 2 intercepts, the scaler's 100 means and scales).
    params = sel["parameters"]
    assert params["starlet_l1_ridge"] == 5 * 21 + 2 * 100 + 2 + 2 * 100
    # The learned wavelet's 10 taps count; db5's do not.
    assert params["awd_scattering_ridge"] == params["db5_scattering_ridge"] + 10


def test_learned_wavelet_students_are_compared_with_their_db5_twins(run_dir):
    comp = pd.read_csv(run_dir / "evaluate" / "comparisons.csv")
    pairs = set(zip(comp.a, comp.b, strict=True))
    for family in ("awd_scattering", "awd_l1_multiscale"):
        for head in ("_pooled", "_ridge", "_xgboost"):
            assert (family + head, "db5" + family[3:] + head) in pairs
            assert (family + head, "teacher") in pairs


def test_trivial_is_the_training_mean(run_dir, data_root):
    preds = np.load(run_dir / "evaluate" / "predictions.npz")
    y = preds["y_test"]
    m = pd.read_csv(run_dir / "evaluate" / "metrics.csv").set_index(["method", "target"])
    # Training and test sets hold the same three cosmologies equally often.
    mean = y.mean(0)
    for j, p in enumerate(("omega_m", "sigma_8")):
        expected = np.sqrt(((y[:, j] - mean[j]) ** 2).mean())
        assert m.value["trivial", p] == pytest.approx(expected, rel=1e-4)


def _test_files(run_dir) -> list[str]:
    cfg = load_config(run_dir / "config.yaml")
    data = json.loads((run_dir / "run.json").read_text())["data"]["path"]
    return load_splits(data, cfg, ("test",)).catalogs["test"]["file"].tolist()


@pytest.mark.parametrize(
    "method",
    [
        "awd",
        "awd_multiscale_xgboost",
        "db5_l1_ridge",
        "roberts",
        "awd_taylornet",
        "scattering_ridge",
        "starlet_peaks_pooled",
        "awd_scattering_xgboost",
        "awd_l1_multiscale_ridge",
    ],
)
def test_predicting_the_test_split_reproduces_the_evaluation(run_dir, tmp_path, method):
    files = _test_files(run_dir)
    out = tmp_path / "pred.csv"
    res = _invoke("predict", *files, "--run", str(run_dir), "--out", str(out), "--method", method)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert table.file.tolist() == files and (table.student == method).all()
    y = np.load(run_dir / "evaluate" / "predictions.npz")["y_test"]
    m = pd.read_csv(run_dir / "evaluate" / "metrics.csv").set_index(["method", "target"])
    draws = bootstrap_draws(len(y), 50, 1)
    for j, p in enumerate(("omega_m", "sigma_8")):
        pred = table[p].to_numpy()
        assert float(f"{rmse(y[:, j], pred):.6g}") == m.value[method, p]
        assert float(f"{bootstrap_sd(rmse, y[:, j], pred, draws):.6g}") == m.sd[method, p]


def test_taylornet_students_terms_and_references(run_dir):
    sel = json.loads((run_dir / "evaluate" / "selection.json").read_text())["selection"]
    # the wavelet of the l1-norm ridge student; channels and weight decay from validation
    assert sel["awd_taylornet"]["wavelet"] == sel["awd_l1_ridge"]["wavelet"]
    assert sel["awd_taylornet"]["channels"] in (4, 8) and "wavelet" not in sel["db5_taylornet"]
    val = json.loads((run_dir / "evaluate" / "validation.json").read_text())
    assert sum(r["method"] == "awd_taylornet" for r in val) == 4  # 2 channels x 2 decays
    out = run_dir / "evaluate"
    terms = json.loads((out / "taylornet_terms.json").read_text())
    assert "PROVISIONAL" in terms["provisional"]
    assert [(t["method"], t["target"]) for t in terms["students"]] == [
        (m, p) for m in ("awd_taylornet", "db5_taylornet") for p in ("omega_m", "sigma_8")
    ]
    bands = band_names(4)  # 4 levels, 13 bands: cA4, cH4, cV4, cD4, ..., cD1
    first = terms["students"][0]
    assert first["bands"] == bands and {e["band"] for e in first["main_effects"]} == set(bands)
    assert len(first["interactions"]) == 13 * 14 // 2
    table = pd.read_csv(out / "taylornet_terms.csv", keep_default_na=False)
    assert set(table.kind) == {"main", "interaction"} and len(table) == 4 * (13 + 91)
    refs = json.loads((out / "taylornet_references.json").read_text())["students"]
    arrays = np.load(out / "taylornet_references.npz")
    for record in refs:
        assert len(record["classes"]) == 3 and record["chosen_on"] == "validation split"
        assert record["n_test"] == 24 and record["trivial"]["accuracy"] == pytest.approx(1 / 3)
        assert 0 <= record["test"]["accuracy"] <= 1
        for level in record["levels"]:
            assert arrays[f"{record['method']}.level{level}"].shape == (3, 13, 12)


def test_the_default_student_and_the_python_api(run_dir):
    index = json.loads((run_dir / "students" / "index.json").read_text())
    student = load_student(run_dir)
    assert student.method == index["default"] and student.method.startswith("awd")
    files = _test_files(run_dir)[:3]
    maps = np.stack([read_map(f)[0] for f in files])
    expected = np.load(run_dir / "evaluate" / "predictions.npz")[student.method][:3]
    # Three maps instead of the whole split: the 2D transform may round differently per batch.
    np.testing.assert_allclose(student.predict(maps), expected, rtol=1e-6)


def test_predict_refuses_maps_that_do_not_fit(run_dir, tmp_path):
    big = tmp_path / "big.fits"
    write_map(big, np.zeros((128, 128)), 3.5)
    res = _invoke("predict", str(big), "--run", str(run_dir), "--out", str(tmp_path / "p.csv"))
    assert res.exit_code == 2 and "big.fits" in res.output and "64x64" in res.output
    wide = tmp_path / "wide.fits"
    write_map(wide, np.zeros((64, 64)), 5.0)
    res = _invoke("predict", str(wide), "--run", str(run_dir), "--out", str(tmp_path / "p.csv"))
    assert res.exit_code == 2 and "wide.fits" in res.output and "side angle 5" in res.output
    assert not (tmp_path / "p.csv").exists()
    res = _invoke(
        "predict",
        str(big),
        "--run",
        str(run_dir),
        "--out",
        str(tmp_path / "p.csv"),
        "--method",
        "nope",
    )
    assert res.exit_code == 2 and "no student 'nope'" in res.output


def test_a_step_refuses_settings_of_another_step(run_dir):
    before = (run_dir / "config.yaml").read_text()
    res = _invoke("evaluate", "--run", str(run_dir), "--set", "distill.train.epochs=3")
    assert res.exit_code == 2 and "belongs to the distill step" in res.output
    res = _invoke("distill", "--run", str(run_dir), "--set", "distill.train.epochs=zero")
    assert res.exit_code == 2 and "distill.train.epochs: expected an integer" in res.output
    assert "Traceback" not in res.output
    assert (run_dir / "config.yaml").read_text() == before


def test_teacher_that_does_not_fit_is_refused(run_dir, tmp_path):
    path = run_dir / "teacher" / "model"
    with pytest.raises(ValueError, match="trained on 64x64 maps, these are 128x128"):
        load_teacher(path, n_pix=128)
    with pytest.raises(ValueError, match="holds a 'small' teacher"):
        load_teacher(path, arch="resnet18")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["width"] = 4
    bad = tmp_path / "bad"
    bad.with_suffix(".json").write_text(json.dumps(meta))
    bad.with_suffix(".safetensors").write_bytes(path.with_suffix(".safetensors").read_bytes())
    with pytest.raises(ValueError, match="do not fit a small teacher"):
        load_teacher(bad)
    bad.with_suffix(".safetensors").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="cannot read the weights"):
        load_teacher(bad)


def test_run_directory_of_another_domain_is_refused(tmp_path):
    run = tmp_path / "other"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"domain": "molecular-partner"}))
    for cmd in ("distill", "evaluate", "report"):
        res = _invoke(cmd, "--run", str(run))
        assert res.exit_code == 2
        assert "domain 'molecular-partner', not 'cosmology'" in res.output
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
    teacher = load_teacher(run_dir / "teacher" / "model")
    maps = torch.zeros(2, 64, 64)
    maps[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        predict(teacher, maps)


def test_bootstrap_sd_shrinks_with_more_maps():
    rng = np.random.default_rng(0)
    y = np.zeros(4000)
    pred = rng.normal(size=4000)
    sd_small = bootstrap_sd(rmse, y[:100], pred[:100], bootstrap_draws(100, 300, 0))
    sd_large = bootstrap_sd(rmse, y, pred, bootstrap_draws(4000, 300, 0))
    assert rmse(y, pred) == pytest.approx(1.0, abs=0.05)
    assert sd_large < sd_small / 3


def test_a_killed_teachers_checkpoint_of_other_settings_needs_force(data_root, tmp_path):
    """A training killed before its record, resumed with other settings: refused naming
    the change; --force starts the teacher over instead of stopping."""
    run = tmp_path / "r"
    base = ["train-teacher", "--run", str(run), "--data", str(data_root), "--resume"]
    res = _invoke(*base, "--set", "teacher.epochs=1", "--set", "teacher.batch_size=32")
    assert res.exit_code == 0, res.output
    (run / "teacher" / "step.json").unlink()  # killed after the checkpoint, before the record
    assert (run / "teacher" / "teacher_checkpoint.pt").is_file()
    other = [*base, "--set", "teacher.epochs=1", "--set", "teacher.batch_size=16"]
    res = _invoke(*other)
    assert res.exit_code == 2
    assert "batch_size: 32 -> 16" in res.output and "--force" in res.output
    res = _invoke(*other, "--force")
    assert res.exit_code == 0, res.output
    record = json.loads((run / "teacher" / "step.json").read_text())
    assert record["settings"]["teacher"]["batch_size"] == 16


def test_comparing_a_run_with_itself_gives_its_own_comparisons(run_dir, tmp_path, script):
    """Cross-run paired differences (scripts/cosmology_compare_runs.py) use the
    evaluation's own bootstrap: a run against itself reproduces comparisons.csv."""
    compare = script("cosmology_compare_runs")
    out = tmp_path / "c.csv"
    args = ["--a", str(run_dir), "--b", str(run_dir), "--pair", "awd:db5", "--out", str(out)]
    assert compare.main(args) == 0
    rows = pd.read_csv(out).set_index("target")
    ref = pd.read_csv(run_dir / "evaluate" / "comparisons.csv")
    ref = ref[(ref.a == "awd") & (ref.b == "db5")].set_index("target")
    for target in ("omega_m", "sigma_8"):
        assert rows.loc[target, "diff"] == pytest.approx(ref.loc[target, "diff"], rel=1e-5)
        assert rows.loc[target, "sd"] == pytest.approx(ref.loc[target, "sd"], rel=1e-5)
    with pytest.raises(SystemExit, match="no method 'nope'"):
        compare.main([*args[:4], "--pair", "nope:db5", "--out", str(out)])


def test_the_wavelet_oracle_reproduces_the_taylornet_students(run_dir, tmp_path, script):
    """The oracle experiment refits the chosen student (l1-norm · TaylorNet) per wavelet,
    choosing its settings on validation as the evaluation does: with db5 and with the
    grid point the evaluation used it gives the committed test RMSEs."""
    oracle = script("cosmology_wavelet_oracle")
    assert oracle.main(["--run", str(run_dir), "--out", str(tmp_path), "--max-taps", "10"]) == 0
    rows = pd.read_csv(tmp_path / "oracle_wavelets.csv").set_index("wavelet")
    assert {"db2", "db5", "sym4", "coif1", "lam0.005_gam0.01"} <= set(rows.index)
    assert "coif2" not in rows.index  # 12 taps
    metrics = pd.read_csv(run_dir / "evaluate" / "metrics.csv")
    rmse_of = metrics[metrics.metric == "rmse"].set_index(["method", "target"])["value"]
    for wavelet, method in (("db5", "db5_taylornet"), ("lam0.005_gam0.01", "awd_taylornet")):
        for target in ("omega_m", "sigma_8"):
            assert rows.loc[wavelet, f"test_rmse_{target}"] == pytest.approx(
                rmse_of[(method, target)], rel=1e-5
            ), (wavelet, target)
    assert rows.loc["db5", "omega_m_minus_db5"] == 0
    summary = json.loads((tmp_path / "oracle_wavelets.json").read_text())
    assert summary["teacher_test_rmse"]["omega_m"] == pytest.approx(
        rmse_of[("teacher", "omega_m")], rel=1e-5
    )


def test_the_taylornet_student_chooses_its_wavelet_on_validation(run_dir, tmp_path):
    """awd_taylornet: every gamma > 0 grid point is a candidate and the TaylorNet's own
    validation score decides (student.taylornet_wavelet=validation, the default)."""
    import shutil

    run = tmp_path / "r"
    shutil.copytree(run_dir, run)
    grid = ["--set", "distill.gammas=[0.0,0.01,0.1]"]
    res = _invoke("distill", "--run", str(run), *grid, "--force")
    assert res.exit_code == 0, res.output
    off = [f"student.{k}=false" for k in ("minkowski", "scattering", "starlet",
                                          "combinations", "wavelet_scattering")]  # fmt: skip
    res = _invoke("evaluate", "--run", str(run), *[a for s in off for a in ("--set", s)], "--force")
    assert res.exit_code == 0, res.output
    rows = json.loads((run / "evaluate" / "validation.json").read_text())
    tn = [r for r in rows if r["method"] == "awd_taylornet"]
    assert {r["wavelet"] for r in tn} == {"lam0.005_gam0.01", "lam0.005_gam0.1"}
    best = min(tn, key=lambda r: r["val_score"])
    chosen = json.loads((run / "evaluate" / "selection.json").read_text())["selection"]
    assert chosen["awd_taylornet"]["wavelet"] == best["wavelet"]
    assert chosen["awd_taylornet"]["val_score"] == best["val_score"]
