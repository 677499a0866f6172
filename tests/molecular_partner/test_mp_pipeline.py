"""The whole molecular-partner pipeline through the CLI on a tiny simulated set, predict,
and bad input."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from molecular_partner.config import DistillSettings, TeacherSettings, load_config
from molecular_partner.data import load_tracks
from molecular_partner.evaluate import METRICS_COLUMNS, read_metrics
from molecular_partner.predict import load_student
from molecular_partner.student import (
    LinearHead,
    TopCoefficients,
    hand_features,
    make_linear,
    shape_ratios,
)
from molecular_partner.tables import write_tracks_table
from molecular_partner.teacher import LSTMTeacher, load_teacher, save_teacher, train_teacher
from shared import DWT1d, load_transform
from shared.cli import _register_domains, app
from shared.evaluation import auc, n_parameters, r2
from shared.sweep import read_grid

_register_domains()
runner = CliRunner()


def _invoke(*args):
    result = runner.invoke(app, ["molecular-partner", *map(str, args)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """simulate -> build-dataset -> train-teacher -> distill -> evaluate -> report."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mp")
    _invoke("simulate", "--out", root / "sim", "--n-cells", 4, "--n-pits", 800, "--no-movies")
    _invoke(
        "build-dataset", root / "sim" / "tracks.parquet", "--out", root / "data",
        "--test-cells", "cell4",
    )  # fmt: skip
    run = root / "run"
    _invoke("train-teacher", "--run", run, "--data", root / "data",
            "--set", "teacher.epochs=4", "--set", "teacher.patience=2")  # fmt: skip
    _invoke(
        "distill", "--run", run, "--set", "distill.lambdas=0.001",
        "--set", "distill.gammas=0,0.01,0.1", "--set", "distill.train.epochs=2",
    )  # fmt: skip
    _invoke(
        "evaluate", "--run", run, "--set", "evaluate.n_bootstrap=50",
        "--set", "evaluate.xgb_estimators=20", "--set", "evaluate.xgb_depths=2",
        "--set", "evaluate.timing_repeats=3",
    )  # fmt: skip
    _invoke("report", "--run", run)
    return root


def test_teacher_step(pipeline):
    run = pipeline / "run"
    for name in ("model.safetensors", "model.json", "model_binary.safetensors", "step.json",
                 "history_regression.json", "metrics.json"):  # fmt: skip
        assert (run / "teacher" / name).exists(), name
    for name in ("run.json", "config.yaml", "env.json"):
        assert (run / name).exists(), name
    model = load_teacher(run / "teacher" / "model")
    assert n_parameters(model) == 1861 and model.loss == "mse"
    assert load_teacher(run / "teacher" / "model_binary").loss == "bce"
    summary = json.loads((run / "teacher" / "metrics.json").read_text())
    assert summary["val_cells"] and math.isfinite(summary["regression"]["val_r2"])
    history = json.loads((run / "teacher" / "history_regression.json").read_text())
    assert 1 <= len(history) <= 4 and all(math.isfinite(h["train_loss"]) for h in history)
    meta = json.loads((run / "run.json").read_text())
    assert meta["domain"] == "molecular-partner" and meta["data"]["path"].endswith("data")


def test_distill_step(pipeline):
    grid = read_grid(pipeline / "run" / "distill")
    points = grid["points"]
    assert grid["format"] == "awd-grid" and grid["l1_attr"] == [0.0, 0.01, 0.1]
    assert [(e["l1_coeffs"], e["l1_attr"]) for e in points] == [
        (0.001, 0.0), (0.001, 0.01), (0.001, 0.1)
    ]  # fmt: skip
    # warm starts run along gamma
    assert [e["warm_start_from"] for e in points] == [None, "lam0.001_gam0", "lam0.001_gam0.01"]
    filters = []
    for e in points:
        t = load_transform(e["wavelet"])
        assert (t.levels, t.mode, len(t.wavelet)) == (4, "zero", 10)
        assert 0 <= e["reconstruction_error"] < 0.1
        filters.append(t.wavelet.h0.detach())
        folder = pipeline / "run" / "distill" / e["point"]
        meta = json.loads((folder / "wavelet.json").read_text())
        assert meta["extra"]["gamma"] == e["l1_attr"]  # one folder per grid point
        assert (folder / "point.json").exists() and not (folder / "checkpoint").exists()
        # the warm start really loaded the neighbour's saved filter
        if e["warm_start_from"] is not None:
            neighbour = load_transform(folder.parent / e["warm_start_from"] / "wavelet")
            assert meta["extra"]["initial_h0"] == neighbour.wavelet.h0.tolist()
    assert len({tuple(f.tolist()) for f in filters}) == len(points)
    step = json.loads((pipeline / "run" / "distill" / "step.json").read_text())
    assert step["settings"]["distill"]["train"]["epochs"] == 2


def test_evaluate_outputs_and_numbers(pipeline):
    run = pipeline / "run" / "evaluate"
    metrics = read_metrics(run)
    assert list(metrics.columns) == METRICS_COLUMNS
    methods = {"awd", "awd_gamma0", "teacher", "db5", "awd_xgboost", "hand_features", "train_mean"}
    methods |= {"hand_features_xgboost", "hand_shape_xgboost", "awd_taylornet", "db5_taylornet"}
    assert set(metrics["method"]) == methods
    assert set(metrics["metric"]) == {"r2", "auc", "f1", "accuracy"}
    assert set(metrics["target"]) == {"Y_sig_mean_normalized", "y_consec_thresh"}
    assert metrics[["value", "sd", "seconds_per_item", "n_parameters"]].notna().all().all()
    assert np.isfinite(metrics[["value", "sd"]].to_numpy()).all()
    r2s = metrics[metrics.metric == "r2"].set_index("method")["value"]
    assert (r2s <= 1).all() and (r2s > -1).all()
    cls = metrics[metrics.metric != "r2"]
    assert ((cls["value"] >= 0) & (cls["value"] <= 1)).all()
    assert (metrics["seconds_per_item"] > 0).all()
    assert (metrics["n_test"] == metrics["n_test"].iloc[0]).all()
    # the wavelet students beat the training mean on this simulator
    assert r2s["db5"] > r2s["train_mean"] + 0.05 and r2s["awd"] > r2s["train_mean"] + 0.05
    info = json.loads((run / "methods.json").read_text())
    assert info["methods"]["teacher"]["regression"]["n_parameters"] == 1861
    assert info["methods"]["awd"]["regression"]["n_parameters"] == 10 + 31
    assert info["methods"]["awd"]["regression"]["gamma"] > 0
    assert info["methods"]["awd_gamma0"]["regression"]["gamma"] == 0
    for method in ("awd", "awd_gamma0", "db5"):
        rate = info["methods"][method]["regression"]["compression_rate"]
        assert 0 < rate < 1, (method, rate)
    assert info["split"]["test_cells"] == ["cell4"]
    sel = pd.read_csv(run / "selection.csv")
    assert sel["cv_score"].notna().all() and "db5" in set(sel["wavelet"])
    pred = pd.read_csv(run / "predictions.csv")
    assert len(pred) == metrics["n_test"].iloc[0] and set(pred["cell"]) == {"cell4"}
    assert load_transform(run / "wavelets" / "awd").levels == 4
    imp = json.loads((run / "importance.json").read_text())
    assert abs(sum(imp["teacher_awd"].values()) - 1) < 1e-6
    ex = json.loads((run / "examples.json").read_text())["examples"]
    assert {e["aux_positive"] for e in ex} == {True, False}
    lengths = [len(ex[0]["attributions"][b]) for b in ("cA4", "cD4", "cD3", "cD2", "cD1")]
    assert lengths == [10, 10, 12, 16, 24]
    comparisons = pd.read_csv(run / "comparisons.csv")
    pairs = {("awd", "teacher"), ("awd", "db5"), ("awd", "awd_gamma0")}
    pairs |= {("awd", "hand_features"), ("awd", "hand_features_xgboost")}
    assert pairs <= set(zip(comparisons.a, comparisons.b, strict=True))
    # the hand features' xgboost: chosen by the grouped CV (one size x one depth here)
    hand_xgb = sel[sel["wavelet"].str.startswith("hand_features+xgboost")]
    assert list(hand_xgb["wavelet"]) == ["hand_features+xgboost(n=20,depth=2)"] * 2
    for kind in ("regression", "binary"):
        record = info["methods"]["hand_features_xgboost"][kind]
        assert (record["n_estimators"], record["max_depth"]) == (20, 2)
        assert record["predictor"].startswith("XGB") and record["n_parameters"] > 20
        assert "hand_features_xgboost" not in info["chosen"][kind]


def test_report_outputs(pipeline):
    out = pipeline / "run" / "report"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6 and "<img src='figures" not in page
    for name in ("wavelets", "examples", "importance", "pred_vs_true", "selection"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "results.md").read_text()
    assert "| AWD (top-6/scale + OLS) |" in md and "Ablation" in md and "10x faster" in md
    assert "| lifetime, peak, rise time + xgboost |" in md


def test_taylornet_students_terms_and_references(pipeline):
    out = pipeline / "run" / "evaluate"
    info = json.loads((out / "methods.json").read_text())
    for kind in ("regression", "binary"):
        record = info["methods"]["awd_taylornet"][kind]
        assert record["wavelet"] == info["chosen"][kind]["awd"] and record["channels"] in (4, 8)
        assert info["methods"]["db5_taylornet"][kind]["wavelet"] == "db5"
    sel = pd.read_csv(out / "selection.csv")
    assert sel["wavelet"].str.contains("taylornet").sum() == 2 * 2 * 4  # 2 methods x 2 outcomes
    terms = json.loads((out / "taylornet_terms.json").read_text())["students"]
    assert [(t["method"], t["outcome"]) for t in terms] == [
        (m, k) for k in ("regression", "binary") for m in ("awd_taylornet", "db5_taylornet")
    ]
    assert {e["band"] for e in terms[0]["main_effects"]} == {"cA4", "cD4", "cD3", "cD2", "cD1"}
    assert len(terms[0]["interactions"]) == 15
    refs = json.loads((out / "taylornet_references.json").read_text())["students"]
    assert [r["method"] for r in refs] == ["awd_taylornet", "db5_taylornet"]
    arrays = np.load(out / "taylornet_references.npz")
    for record in refs:
        assert record["class_names"] == ["not recruited", "recruited"]
        assert record["levels"] == [1, 2, 3, 4]  # 6 ranks padded to 8: 3 levels, then the output
        assert 0 <= record["test"]["accuracy"] <= 1 and 0 <= record["trivial"]["accuracy"] <= 1
        assert arrays[f"{record['method']}.level1"].shape == (2, 5, 6)


@pytest.mark.parametrize(
    "method",
    ["awd", "awd_xgboost", "hand_features", "hand_features_xgboost", "db5", "awd_taylornet"],
)
def test_predicting_the_test_cells_reproduces_the_evaluation(pipeline, tmp_path, method):
    tracks = load_tracks([pipeline / "sim" / "tracks.parquet"])
    test_tracks = tracks[tracks["cell"] == "cell4"]
    source = tmp_path / "cell4.parquet"
    write_tracks_table(test_tracks, source)
    out = tmp_path / "pred.csv"
    _invoke("predict", source, "--run", pipeline / "run", "--out", out, "--method", method)
    pred = pd.read_csv(out)
    dropped = pd.read_csv(tmp_path / "pred_dropped.csv")
    assert len(pred) + len(dropped) == len(test_tracks)
    assert set(dropped.columns) >= {"cell", "track_id", "reason"} and dropped.reason.notna().all()
    data = pd.read_parquet(pipeline / "data" / "dataset.parquet")
    test = data[data["split"] == "test"]
    merged = test.merge(pred, on=["cell", "track_id"], how="left", validate="one_to_one")
    assert merged["auxilin_score"].notna().all() and len(pred) == len(test)
    metrics = read_metrics(pipeline / "run" / "evaluate").set_index(["method", "metric"])
    y = merged["Y_sig_mean_normalized"].to_numpy()
    assert float(f"{r2(y, merged['auxilin_score'].to_numpy()):.6g}") == metrics.value[method, "r2"]
    y_bin, prob = merged["y_consec_thresh"].to_numpy(), merged["recruitment_probability"]
    assert float(f"{auc(y_bin, prob.to_numpy()):.6g}") == metrics.value[method, "auc"]


def test_predict_defaults_and_refusals(pipeline, tmp_path):
    student = load_student(pipeline / "run")
    index = json.loads((pipeline / "run" / "students" / "index.json").read_text())
    assert student.method == index["default"] and set(student.students) == {"regression", "binary"}
    res = runner.invoke(
        app,
        [
            "molecular-partner",
            "predict",
            str(tmp_path / "none.parquet"),
            "--run",
            str(pipeline / "run"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert res.exit_code == 2 and "none.parquet" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad.parquet"
    write_tracks_table(pd.DataFrame({"cell": ["c"], "X": [np.ones(5)]}), bad)
    res = runner.invoke(
        app,
        [
            "molecular-partner",
            "predict",
            str(bad),
            "--run",
            str(pipeline / "run"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert res.exit_code == 2 and "error:" in res.output and "lifetime_s" in res.output
    assert not (tmp_path / "p.csv").exists()


def test_teacher_beats_a_constant_on_an_easy_setting(tmp_path):
    # y is the mean of the trace's last ten points: an LSTM learns it quickly.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 40)).astype(np.float32).cumsum(axis=1) / 4
    y = x[:, -10:].mean(axis=1)
    model, _ = train_teacher(
        x[:300], y[:300], TeacherSettings(epochs=15, lr=1e-2), x_val=x[300:], y_val=y[300:]
    )
    p = model(torch.from_numpy(x[300:])).detach().numpy()[:, 0]
    r2 = 1 - np.sum((y[300:] - p) ** 2) / np.sum((y[300:] - y[:300].mean()) ** 2)
    assert r2 > 0.5


def test_features_match_pywt_and_heads_fold_scalers():
    pywt = pytest.importorskip("pywt")
    x = np.random.default_rng(1).standard_normal((5, 40))
    feats = TopCoefficients(DWT1d("db5", 4, "zero"), k=6, positions=True)
    f = feats(x)
    with pytest.warns(UserWarning):
        bands = pywt.wavedec(x[2], "db5", mode="zero", level=4)
    for j, band in enumerate(bands):
        order = np.argsort(band)[::-1][:6]
        np.testing.assert_allclose(f[2, 6 * j : 6 * j + 6], band[order], atol=1e-5)
        np.testing.assert_allclose(f[2, 30 + 6 * j : 36 + 6 * j], order / len(band), atol=1e-6)
    y = (f[:, 0] > np.median(f[:, 0])).astype(int)
    logit = make_linear("binary").fit(f, y)
    np.testing.assert_allclose(
        LinearHead.from_sklearn(logit).predict(f), logit.predict_proba(f)[:, 1], atol=1e-6
    )
    t = pd.DataFrame({"lifetime_s": [20.0], "X": [np.array([1.0, 3.0, 2.0, np.nan])]})
    assert hand_features(t).iloc[0].tolist() == [20.0, 3.0, 5.0]


def test_shape_ratios_tell_an_abrupt_end_from_a_fade():
    end = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0])  # cut at scission
    fade = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0, 1.0, 0.5])
    t = pd.DataFrame({"X": [end, fade, np.array([2.0, 1.0]), np.zeros(5), np.array([])]})
    r = shape_ratios(t)
    assert list(r.columns) == ["start_over_peak", "late_over_peak", "end_over_peak",
                               "mean_over_peak"]  # fmt: skip
    np.testing.assert_allclose(r.iloc[0], [0.25, 1.0, 1.0, 3.0 / 4.0])
    np.testing.assert_allclose(r.iloc[1], [0.25, 3.0 / 4.0, 2.5 / 12.0, 17.5 / 40.0])
    # Two frames: every window is what the track has.
    np.testing.assert_allclose(r.iloc[2], [0.75, 1.0, 0.75, 0.75])
    assert r.iloc[3].isna().all() and r.iloc[4].isna().all()  # no positive peak
    with pytest.raises(ValueError, match="column 'X'"):
        shape_ratios(pd.DataFrame({"lifetime_s": [1.0]}))


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["distill.lambdas=0.1,0.2", "distill.train.patience=null"])
    assert cfg.distill.lambdas == (0.1, 0.2) and cfg.distill.train.patience is None
    with pytest.raises(ValueError, match=r"no setting 'teacher\.epoch'"):
        load_config(None, ["teacher.epoch=3"])
    with pytest.raises(ValueError, match="no setting 'epochs'"):
        load_config(None, ["epochs=3"])
    with pytest.raises(ValueError, match=r"teacher\.outcomes\[0\]: must be one of"):
        load_config(None, ["teacher.outcomes=[cells]"])
    with pytest.raises(ValueError, match=r"teacher\.val_cells: must be >= 0, got -1"):
        load_config(None, ["teacher.val_cells=-1"])
    bad = tmp_path / "c.yaml"
    bad.write_text("student: {}\n")
    with pytest.raises(ValueError, match=r"unknown keys \['student'\]"):
        load_config(bad)
    assert DistillSettings().levels == 4


def test_shipped_default_config_is_exactly_the_defaults():
    from molecular_partner.config import CONFIGS, RunConfig
    from shared.config import dump_config

    assert (CONFIGS / "default.yaml").read_text().endswith(dump_config(RunConfig()))
    assert load_config(CONFIGS / "default.yaml") == RunConfig()
    for path in CONFIGS.glob("*.yaml"):
        if "sweep" not in path.name:
            load_config(path)


# --------------------------------------------------------------------------- bad input
def test_trace_length_other_than_the_teachers():
    with pytest.raises(ValueError, match="expects traces of length 40, got 30"):
        LSTMTeacher()(torch.zeros(2, 1, 30))


def test_teacher_of_another_architecture(tmp_path):
    other = torch.nn.LSTM(1, 32, batch_first=True)
    path = tmp_path / "other.pkl"
    state = {f"lstm.{k}": v for k, v in other.state_dict().items()}
    state |= {"fc.weight": torch.zeros(1, 20), "fc.bias": torch.zeros(1)}
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(ValueError, match=r"other\.pkl.*wrong shapes.*fc\.weight"):
        load_teacher(path)
    path2 = tmp_path / "cnn.pt"
    torch.save(torch.nn.Conv1d(1, 4, 3).state_dict(), path2)
    with pytest.raises(ValueError, match=r"cnn\.pt.*missing"):
        load_teacher(path2)
    # the reference's own layout (LSTMNet(40, 20, 0) inside ReshapeModel) loads
    ref = LSTMTeacher()
    torch.save({"model_state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()}},
               tmp_path / "ref.pkl")  # fmt: skip
    loaded = load_teacher(tmp_path / "ref.pkl")
    x = torch.randn(3, 1, 40)
    torch.testing.assert_close(loaded(x), ref.eval()(x))
    save_teacher(loaded, tmp_path / "mine")
    (tmp_path / "mine.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a saved awd model"):
        load_teacher(tmp_path / "mine")


def _tiny_dataset(root, n_cells=3, per_cell=30, length=40, binary_test=None, drop=()):
    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_cells):
        for _ in range(per_cell):
            x = rng.standard_normal(length)
            split = "test" if c == n_cells - 1 else "train"
            yb = int(x[-5:].mean() > 0) if binary_test is None or split == "train" else binary_test
            rows.append(
                {
                    "cell": f"c{c}",
                    "split": split,
                    "X_same_length_normalized": x,
                    "Y_sig_mean_normalized": float(x[-5:].mean()),
                    "y_consec_thresh": yb,
                }
            )
    write_tracks_table(pd.DataFrame(rows).drop(columns=list(drop)), root / "dataset.parquet")
    return root


def _fail(*args):
    result = runner.invoke(app, ["molecular-partner", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.startswith("error: ")
    return result.output


def test_bad_inputs_are_one_line_errors(tmp_path, pipeline):
    short = _tiny_dataset(tmp_path / "short", length=30)
    out = _fail("train-teacher", "--run", tmp_path / "r1", "--data", short)
    assert "arrays of length 40" in out and not (tmp_path / "r1").exists()
    no_y = _tiny_dataset(tmp_path / "noy", drop=("Y_sig_mean_normalized",))
    out = _fail("train-teacher", "--run", tmp_path / "r2", "--data", no_y)
    assert "Y_sig_mean_normalized" in out
    out = _fail("train-teacher", "--run", tmp_path / "r3", "--data", _tiny_dataset(tmp_path / "ok"),
                "--set", "teacher.epochs=0")  # fmt: skip
    assert "teacher.epochs: must be >= 1, got 0" in out and not (tmp_path / "r3").exists()
    out = _fail("distill", "--run", tmp_path / "nothing")
    assert "not a run directory" in out
    out = _fail("evaluate", "--run", pipeline / "run", "--set", "distill.train.epochs=1")
    assert "belongs to the distill step" in out
    out = _fail("predict", pipeline / "data", "--run", pipeline / "run", "--out",
                tmp_path / "p.csv", "--method", "nope")  # fmt: skip
    assert "no student 'nope'" in out


def test_the_wavelet_oracle_reproduces_the_evaluation(pipeline, tmp_path, script):
    """The oracle experiment refits the evaluation's student: db5 and the selected AWD
    point score as in metrics.csv, and every difference is paired with db5."""
    oracle = script("molecular_partner_wavelet_oracle")
    assert oracle.main(["--run", str(pipeline / "run"), "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "oracle_wavelets.csv").set_index("wavelet")
    metrics = read_metrics(pipeline / "run" / "evaluate" / "metrics.csv")
    r2_of = metrics[metrics.metric == "r2"].set_index("method")["value"]
    methods = json.loads((pipeline / "run" / "evaluate" / "methods.json").read_text())
    awd = methods["methods"]["awd"]["regression"]["wavelet"]
    assert rows.loc["db5", "test_r2"] == pytest.approx(r2_of["db5"], abs=1e-6)
    assert rows.loc[awd, "test_r2"] == pytest.approx(r2_of["awd"], abs=1e-6)
    assert rows.loc["db5", "test_r2_minus_db5"] == 0
    assert {"sym4", "coif1", "lam0.001_gam0.01"} <= set(rows.index)
    summary = json.loads((tmp_path / "oracle_wavelets.json").read_text())
    assert (
        summary["best_on_test_pywavelets"]["test_r2"]
        == rows[rows.kind == "pywavelets"]["test_r2"].max()
    )
