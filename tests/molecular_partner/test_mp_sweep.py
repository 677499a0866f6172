"""``awd sweep molecular-partner`` on a tiny simulated set: outputs, selection, warm starts."""

import json

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from molecular_partner.data import build_dataset, write_dataset
from molecular_partner.simulate import SimulationConfig, simulate_cells
from molecular_partner.sweep import make_task
from shared import load_transform
from shared.cli import _register_domains, app

_register_domains()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp_sweep_data")
    tracks, _ = simulate_cells(4, SimulationConfig(n_pits=400), seed=1)
    write_dataset(build_dataset(tracks, test_cells=["cell4"]), root)
    return root


def test_sweep_2x2_through_the_cli(dataset, tmp_path):
    torch.set_num_threads(1)
    config = tmp_path / "sweep.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "domain": "molecular-partner",
                "l1_coeffs": [0.001, 0.005],
                "l1_attr": [0.0, 0.1],
                "base": {
                    "data": str(dataset),
                    "settings": {
                        "teacher": {"epochs": 3, "patience": 2},
                        "distill": {"train": {"epochs": 2}},
                        "evaluate": {"cv_folds": 3},
                    },
                },
            }
        )
    )
    out = tmp_path / "sweep"
    args = ["sweep", "molecular-partner", "--config", str(config), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (out / "teacher" / "model.safetensors").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and summary["val_score"].between(-1, 1).all()
    assert set(summary["point"]) == {
        "lam0.001_gam0", "lam0.001_gam0.1", "lam0.005_gam0", "lam0.005_gam0.1"
    }  # fmt: skip
    selected = json.loads((out / "selected.json").read_text())
    best = summary.loc[summary["val_score"].idxmax(), "point"]
    assert selected["point"] == best and -1 < selected["test_r2"] <= 1
    assert (out / "heatmap.png").stat().st_size > 1000
    # every gamma > 0 point starts from its neighbour's saved filter
    for lam in ("0.001", "0.005"):
        first = json.loads((out / f"lam{lam}_gam0" / "wavelet.json").read_text())["extra"]
        meta = json.loads((out / f"lam{lam}_gam0.1" / "wavelet.json").read_text())["extra"]
        assert first["warm_start_from"] is None
        assert meta["warm_start_from"] == f"lam{lam}_gam0"
        neighbour = load_transform(out / f"lam{lam}_gam0" / "wavelet")
        assert meta["initial_h0"] == neighbour.wavelet.h0.tolist()
        point = json.loads((out / f"lam{lam}_gam0.1" / "point.json").read_text())
        assert point["warm_start_from"] == f"lam{lam}_gam0"
    # a rerun resumes: nothing is distilled again
    before = {p: (out / p / "point.json").stat().st_mtime_ns for p in summary["point"]}
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert before == {p: (out / p / "point.json").stat().st_mtime_ns for p in summary["point"]}


def test_sweep_task_bad_base(tmp_path):
    with pytest.raises(ValueError, match=r"base\.data"):
        make_task({})
    with pytest.raises(ValueError, match="unknown base key"):
        make_task({"data": "x", "epochs": 3})
    with pytest.raises(ValueError, match="outcome"):
        make_task({"data": "x", "outcome": "counts"})
    with pytest.raises(ValueError, match="no setting"):
        make_task({"data": "x", "settings": {"distill": {"epoch": 3}}})
