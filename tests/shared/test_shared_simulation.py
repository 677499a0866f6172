"""The simulation experiment, configs, and the core CLI commands."""

import json

import pytest
import torch
from typer.testing import CliRunner

from shared import DistillConfig, PenaltyWeights, load_transform
from shared.cli import _register_domains, app
from shared.config import apply_overrides, config_to_dict, load_config
from shared.runs import load_model
from shared.simulation import SimulationConfig, filter_distance, make_data, run_simulation


def test_simulation_recovers_the_planted_wavelet(tmp_path):
    metrics = run_simulation(tmp_path, SimulationConfig())
    assert metrics["teacher_test_r2"] > 0.9
    assert metrics["distance_final"] < 0.5 * metrics["distance_init"]
    assert metrics["attribution_mass_final"] > metrics["attribution_mass_init"]
    assert metrics["attribution_mass_final"] >= 0.8
    for name in ("config.yaml", "teacher.safetensors", "wavelet.safetensors", "history.csv"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["distance_final"] == pytest.approx(metrics["distance_final"])
    assert load_config(SimulationConfig, tmp_path / "config.yaml") == SimulationConfig()
    state, meta = load_model(tmp_path / "teacher")
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert meta["hidden"] == SimulationConfig().teacher_hidden
    assert load_transform(tmp_path / "wavelet").levels == 4


def test_response_uses_only_the_planted_coefficients():
    cfg = SimulationConfig(n_train=64, n_test=8, noise_sd=0.0)
    data = make_data(cfg)
    from shared import DWT1d

    coeffs = DWT1d("db5", 4, "zero")(data["x_train"])
    expected = 2.0 * coeffs[2][:, 0, 7:10].sum(1)
    assert torch.allclose(data["y_train"], expected, atol=1e-5)


def test_filter_distance_is_shift_and_sign_invariant():
    g = torch.randn(10)
    assert filter_distance(-torch.roll(g, 3), g) == pytest.approx(0.0, abs=1e-12)
    assert filter_distance(g + 0.1, g) > 0.1


def test_config_loading(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text("n_train: 100\nweights:\n  l1_attr: 0.25\ndistill:\n  epochs: 3\n")
    cfg = load_config(SimulationConfig, path, ["distill.lr=0.01", "positions=[1, 2]"])
    assert cfg.n_train == 100 and cfg.weights == PenaltyWeights(l1_coeffs=1e-4, l1_attr=0.25)
    assert cfg.distill == DistillConfig(epochs=3, batch_size=256, lr=0.01)
    assert cfg.positions == (1, 2)
    assert config_to_dict(cfg)["positions"] == [1, 2]
    with pytest.raises(ValueError, match=r"no setting 'n_trian'"):
        load_config(SimulationConfig, overrides=["n_trian=3"])
    with pytest.raises(ValueError, match=r"unknown keys \['n_trian'\]"):
        load_config(SimulationConfig, overrides=["n_trian=3"], strict=False)
    with pytest.raises(ValueError, match="l1_attr must be finite and >= 0"):
        load_config(SimulationConfig, overrides=["weights.l1_attr=-1"])
    with pytest.raises(ValueError, match=r"key\.path=value"):
        apply_overrides({}, ["n_train"])
    with pytest.raises(ValueError, match="planted_level"):
        SimulationConfig(planted_level=5)


def test_cli_simulation_and_demo_checks(tmp_path):
    _register_domains()
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "simulation",
            "run",
            "--out",
            str(tmp_path / "sim"),
            "--set",
            "n_train=256",
            "--set",
            "teacher_epochs=2",
            "--set",
            "distill.epochs=1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "sim" / "metrics.json").read_text())["planted_level"] == 3
    bad = runner.invoke(app, ["simulation", "run", "--set", "levels=0"])
    assert bad.exit_code != 0 and "levels" in bad.output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["demo", "--out", str(blocker / "demo")])
    assert result.exit_code != 0 and "not writable" in result.output
    assert "simulation" in runner.invoke(app, ["--help"]).output
