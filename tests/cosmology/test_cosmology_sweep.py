"""``awd sweep cosmology`` on tiny data: summary, selection and warm-start metadata."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cosmology.cosmologies import design_ten
from cosmology.simulate import simulate_dataset
from cosmology.sweep import make_task
from shared.cli import _register_domains, app

runner = CliRunner()
_register_domains()

CONFIG = Path(__file__).resolve().parents[2] / "cosmology" / "configs" / "sweep_small.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("maps")
    simulate_dataset(root, design_ten(False).iloc[[4, 0, 3]], n_maps=20, n_pix=32, seed=1)
    return root


def _config(tmp_path: Path, data_root: Path) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["l1_coeffs"] = [0.01]
    cfg["l1_attr"] = [0.0, 0.01]
    cfg["base"]["data"] = str(data_root)
    settings = cfg["base"]["settings"]
    settings["teacher"].update(epochs=1, batch_size=16)
    settings["distill"].update(levels=2, n_maps=30, n_val_maps=6)
    settings["distill"]["train"].update(epochs=1, batch_size=20)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sweep_cosmology_through_the_cli(tmp_path, data_root):
    out = tmp_path / "sweep"
    args = ["sweep", "cosmology", "--config", str(_config(tmp_path, data_root)), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["point"] for r in rows] == ["lam0.01_gam0", "lam0.01_gam0.01"]
    assert all(float(r["val_score"]) > 0 for r in rows)
    selected = json.loads((out / "selected.json").read_text())
    assert selected["point"] in {r["point"] for r in rows}
    assert {"test_score", "test_rmse_omega_m", "test_rmse_sigma_8"} <= set(selected)
    meta0 = json.loads((out / "lam0.01_gam0" / "wavelet.json").read_text())
    meta1 = json.loads((out / "lam0.01_gam0.01" / "wavelet.json").read_text())
    assert meta0["extra"]["warm_start_from"] is None
    assert meta1["extra"]["warm_start_from"] == "lam0.01_gam0"
    assert (out / "teacher" / "model.safetensors").exists()
    grid = json.loads((out / "grid.json").read_text())
    assert grid["format"] == "awd-grid" and not grid["greater_is_better"]
    assert not (out / "lam0.01_gam0" / "checkpoint").exists()
    # A rerun resumes: every point is finished, nothing is distilled again.
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "selected.json").read_text())["point"] == selected["point"]


def test_bad_base_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown base key"):
        make_task({"data": "maps", "teacher": "x"})
    with pytest.raises(ValueError, match=r"'run'.*'data'"):
        make_task({})
    with pytest.raises(ValueError, match="not a run directory"):
        make_task({"run": "/nonexistent/run"})
