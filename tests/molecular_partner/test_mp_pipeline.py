"""The whole molecular-partner pipeline through the CLI on a tiny simulated set, and bad input."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from molecular_partner.config import DistillSettings, TeacherSettings, load_config
from molecular_partner.evaluate import METRICS_COLUMNS, evaluate, read_metrics
from molecular_partner.student import LinearHead, TopCoefficients, hand_features, make_linear
from molecular_partner.tables import write_tracks_table
from molecular_partner.teacher import (
    LSTMTeacher,
    load_teacher,
    n_parameters,
    save_teacher,
    train_teacher,
)
from shared import DWT1d, load_transform
from shared.cli import _register_domains, app

_register_domains()
runner = CliRunner()


def _invoke(*args):
    result = runner.invoke(app, ["molecular-partner", *map(str, args)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """simulate -> build-dataset -> train-teacher (x2) -> distill -> evaluate -> report."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mp")
    _invoke("simulate", "--out", root / "sim", "--n-cells", 4, "--n-pits", 800, "--no-movies")
    _invoke(
        "build-dataset", root / "sim" / "tracks.parquet", "--out", root / "data",
        "--test-cells", "cell4",
    )  # fmt: skip
    quick = ["--set", "teacher.epochs=4", "--set", "teacher.patience=2"]
    _invoke("train-teacher", root / "data", "--out", root / "teacher", *quick)
    _invoke(
        "train-teacher", root / "data", "--out", root / "teacher_bin", "--outcome", "binary", *quick
    )
    _invoke(
        "distill", root / "data", "--teacher", root / "teacher", "--out", root / "distill",
        "--set", "distill.lambdas=0.001", "--set", "distill.gammas=0,0.01,0.1",
        "--set", "distill.epochs=2",
    )  # fmt: skip
    _invoke(
        "evaluate", root / "data", "--teacher", root / "teacher", "--distilled",
        root / "distill", "--teacher-binary", root / "teacher_bin", "--out", root / "eval",
        "--set", "evaluate.n_bootstrap=50", "--set", "evaluate.xgb_estimators=20",
        "--set", "evaluate.xgb_depths=2", "--set", "evaluate.timing_repeats=3",
    )  # fmt: skip
    _invoke("report", root / "eval", "--out", root / "report")
    return root


def test_teacher_run(pipeline):
    run = pipeline / "teacher"
    for name in ("teacher.safetensors", "teacher.json", "config.yaml", "history.json", "env.json"):
        assert (run / name).exists(), name
    model = load_teacher(run)
    assert n_parameters(model) == 1861 and model.loss == "mse"
    assert load_teacher(pipeline / "teacher_bin").loss == "bce"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["val_cells"] and math.isfinite(summary["val_r2"])
    history = json.loads((run / "history.json").read_text())
    assert 1 <= len(history) <= 4 and all(math.isfinite(h["train_loss"]) for h in history)


def test_distill_run(pipeline):
    grid = json.loads((pipeline / "distill" / "grid.json").read_text())["entries"]
    assert [(e["lambda"], e["gamma"]) for e in grid] == [(0.001, 0.0), (0.001, 0.01), (0.001, 0.1)]
    # warm starts run along gamma
    assert [e["warm_start_from"] for e in grid] == [None, "lam0.001_gam0", "lam0.001_gam0.01"]
    filters = []
    for e in grid:
        t = load_transform(pipeline / "distill" / e["path"])
        assert (t.levels, t.mode, len(t.wavelet)) == (4, "zero", 10)
        assert 0 <= e["reconstruction_error"] < 0.1
        filters.append(t.wavelet.h0.detach())
        meta = json.loads((pipeline / "distill" / e["path"]).with_suffix(".json").read_text())
        assert meta["extra"]["gamma"] == e["gamma"]  # one folder per grid point
        assert (pipeline / "distill" / e["name"] / "point.json").exists()
        assert not (pipeline / "distill" / e["name"] / "checkpoint").exists()
        # the warm start really loaded the neighbour's saved filter
        if e["warm_start_from"] is not None:
            neighbour = load_transform(pipeline / "distill" / e["warm_start_from"] / "wavelet")
            assert meta["extra"]["initial_h0"] == neighbour.wavelet.h0.tolist()
    assert len({tuple(f.tolist()) for f in filters}) == len(grid)
    assert (pipeline / "distill" / "config.yaml").exists()
    assert (pipeline / "distill" / "env.json").exists()


def test_evaluate_outputs_and_numbers(pipeline):
    run = pipeline / "eval"
    metrics = read_metrics(run)
    assert list(metrics.columns) == METRICS_COLUMNS
    methods = {"awd", "awd_gamma0", "teacher", "db5", "awd_xgboost", "hand_features", "train_mean"}
    assert set(metrics["method"]) == methods
    assert set(metrics["metric"]) == {"r2", "auc", "f1", "accuracy"}
    assert metrics[["value", "sd", "predict_seconds_per_trace"]].notna().all().all()
    assert np.isfinite(metrics[["value", "sd"]].to_numpy()).all()
    r2 = metrics[metrics.metric == "r2"].set_index("method")["value"]
    assert (r2 <= 1).all() and (r2 > -1).all()
    cls = metrics[metrics.metric != "r2"]
    assert ((cls["value"] >= 0) & (cls["value"] <= 1)).all()
    assert (metrics["predict_seconds_per_trace"] > 0).all()
    assert (metrics["n_test"] == metrics["n_test"].iloc[0]).all()
    # the wavelet students beat the training mean on this simulator
    assert r2["db5"] > r2["train_mean"] + 0.05 and r2["awd"] > r2["train_mean"] + 0.05
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
    assert [len(ex[0]["attributions"][b]) for b in ("cA4", "cD4", "cD3", "cD2", "cD1")] == [
        10,
        10,
        12,
        16,
        24,
    ]


def test_report_outputs(pipeline):
    out = pipeline / "report"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "<img src='figures" not in page
    for name in ("wavelets", "examples", "importance", "pred_vs_true", "selection"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "results.md").read_text()
    assert "| AWD (top-6/scale + OLS) |" in md and "Ablation" in md and "10x faster" in md


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


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["distill.lambdas=0.1,0.2", "distill.patience=none"])
    assert cfg.distill.lambdas == (0.1, 0.2) and cfg.distill.patience is None
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(None, ["teacher.epoch=3"])
    with pytest.raises(ValueError, match=r"section\.field=value"):
        load_config(None, ["epochs=3"])
    bad = tmp_path / "c.yaml"
    bad.write_text("student: {}\n")
    with pytest.raises(ValueError, match="unknown section"):
        load_config(bad)
    assert DistillSettings().levels == 4


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
    with pytest.raises(ValueError, match="not a saved molecular-partner teacher"):
        load_teacher(tmp_path / "mine")


def _tiny_table(n_cells=3, per_cell=30, length=40, binary_test=None):
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
    return pd.DataFrame(rows)


def _grid(tmp_path):
    from molecular_partner.distillation import distill_grid, read_grid

    x = np.stack(_tiny_table()["X_same_length_normalized"]).astype(np.float32)
    s = DistillSettings(lambdas=(0.001,), gammas=(0.0, 0.1), epochs=1)
    distill_grid(x, LSTMTeacher(), s, out_dir=tmp_path / "d", progress=False)
    return read_grid(tmp_path / "d")


def test_evaluate_bad_inputs(tmp_path):
    grid = _grid(tmp_path)
    fast = dict(n_bootstrap=20, xgb_estimators=(10,), xgb_depths=(2,), timing_repeats=1)
    from molecular_partner.config import EvaluateSettings

    settings = EvaluateSettings(cv_folds=2, **fast)
    # traces of another length than the teacher expects
    short = _tiny_table(length=30)
    with pytest.raises(ValueError, match="length 30 but the teacher expects 40"):
        evaluate(short, LSTMTeacher(), grid, settings, out_dir=tmp_path / "e0")
    # a missing outcome column: warned and skipped; both missing: an error
    no_bin = _tiny_table().drop(columns="y_consec_thresh")
    with pytest.warns(UserWarning, match="'y_consec_thresh' is missing"):
        m = evaluate(no_bin, LSTMTeacher(), grid, settings, out_dir=tmp_path / "e1")
    assert set(m["metric"]) == {"r2"}
    with pytest.raises(ValueError, match="Y_sig_mean_normalized"):
        evaluate(
            no_bin.drop(columns="Y_sig_mean_normalized"),
            LSTMTeacher(),
            grid,
            settings,
            out_dir=tmp_path / "e2",
        )
    # a test split with a single class: AUC undefined -> NaN with a warning
    single = _tiny_table(binary_test=1)
    with pytest.warns(UserWarning, match="single class"):
        m = evaluate(
            single,
            LSTMTeacher(),
            grid,
            settings,
            out_dir=tmp_path / "e3",
            outcomes=("binary",),
        )
    auc = m[m.metric == "auc"]["value"]
    assert auc.isna().all()
    assert m[m.metric == "accuracy"]["value"].notna().all()
    # no split column
    with pytest.raises(ValueError, match="missing column 'split'"):
        evaluate(
            _tiny_table().drop(columns="split"),
            LSTMTeacher(),
            grid,
            settings,
            out_dir=tmp_path / "e4",
        )


def test_cli_bad_inputs(tmp_path, pipeline):
    table = _tiny_table().drop(columns="Y_sig_mean_normalized")
    write_tracks_table(table, tmp_path / "d" / "dataset.parquet")
    result = runner.invoke(
        app,
        ["molecular-partner", "train-teacher", str(tmp_path / "d"), "--out", str(tmp_path / "t")],
    )
    assert result.exit_code != 0 and "Y_sig_mean_normalized" in result.output
    bad = tmp_path / "bad.pkl"
    torch.save({"model_state_dict": {"w": torch.zeros(3)}}, bad)
    result = runner.invoke(
        app,
        [
            "molecular-partner", "distill", str(pipeline / "data"), "--teacher", str(bad),
            "--out", str(tmp_path / "x"),
        ],
    )  # fmt: skip
    assert result.exit_code != 0 and "bad.pkl" in result.output
