"""Sweeps: engines agree, resumption after a kill, warm starts, bad input."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from shared import load_transform
from shared.config import load_config
from shared.sweep import SweepConfig, check_ray_address, run_sweep

FACTORY = "shared.simulation:make_sweep_task"
TINY = {
    "n_train": 400,
    "n_test": 100,
    "teacher_epochs": 3,
    "distill": {"epochs": 2, "batch_size": 128},
}


def _config(**kw) -> SweepConfig:
    return SweepConfig(
        domain="simulation", l1_coeffs=(1e-5, 1e-4), l1_attr=(0.0, 0.1, 1.0), base=TINY, **kw
    )


def _scores(result) -> dict:
    return {r["point"]: round(r["val_score"], 10) for r in result["points"]}


def test_local_engines_agree_and_warm_starts_chain(tmp_path):
    one = run_sweep(_config(), FACTORY, tmp_path / "one")
    two = run_sweep(_config(workers=2), FACTORY, tmp_path / "two")
    assert one["selected"]["point"] == two["selected"]["point"]
    assert _scores(one) == _scores(two)
    assert len(one["points"]) == 6 and "test_r2" in one["selected"]
    root = tmp_path / "one"
    assert {p.name for p in root.iterdir() if p.is_dir()} >= {"lam1e-05_gam0", "lam0.0001_gam1"}
    assert (root / "heatmap.png").stat().st_size > 1000
    # Along each chain, every point starts from its neighbour's saved filter.
    for lam in ("1e-05", "0.0001"):
        chain = [f"lam{lam}_gam0", f"lam{lam}_gam0.1", f"lam{lam}_gam1"]
        first = json.loads((root / chain[0] / "wavelet.json").read_text())["extra"]
        assert first["warm_start_from"] is None
        for prev, point in itertools.pairwise(chain):
            meta = json.loads((root / point / "wavelet.json").read_text())["extra"]
            assert meta["warm_start_from"] == prev
            neighbour = load_transform(root / prev / "wavelet").h0
            assert torch.equal(torch.tensor(meta["initial_h0"], dtype=neighbour.dtype), neighbour)


@pytest.mark.timeout(600)
def test_ray_engine_agrees_with_local(tmp_path):
    local = run_sweep(_config(), FACTORY, tmp_path / "local")
    ray_result = run_sweep(_config(engine="ray", workers=2), FACTORY, tmp_path / "ray")
    assert ray_result["selected"]["point"] == local["selected"]["point"]
    assert _scores(ray_result) == _scores(local)


def test_killed_sweep_resumes_without_repeating_points(tmp_path):
    config = tmp_path / "sweep.yaml"
    # Longer points than TINY, so the kill lands while the sweep is still running.
    base = {**TINY, "distill": {"epochs": 12, "batch_size": 64}}
    config.write_text(
        yaml.safe_dump(
            {
                "domain": "simulation",
                "l1_coeffs": [1e-5, 1e-4],
                "l1_attr": [0.0, 0.1, 1.0],
                "base": base,
            }
        )
    )
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "shared.cli",
        "sweep",
        "simulation",
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/point.json")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.time()
    finished_before = {p.parent.name for p in out.glob("*/point.json")}
    assert 1 <= len(finished_before) < 6, "the kill did not land mid-sweep"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert len(list(out.glob("*/point.json"))) == 6
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    restarted = [e["point"] for e in events if e["time"] > killed_at and e["event"] == "start"]
    # Finished points are never run again; every other point runs once after the restart.
    assert not finished_before & set(restarted)
    assert sorted(restarted) == sorted(set(restarted))
    assert set(restarted) | finished_before == {p.parent.name for p in out.glob("*/point.json")}
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 7


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="grid is empty"):
        SweepConfig(l1_attr=())
    with pytest.raises(ValueError, match="finite and >= 0"):
        SweepConfig(l1_coeffs=(-1.0,))
    with pytest.raises(ValueError, match="not 'cosmology'"):
        run_sweep(_config(), FACTORY, tmp_path, expected_domain="cosmology")
    tic = time.perf_counter()
    with pytest.raises(ConnectionError, match="cannot reach a Ray cluster"):
        check_ray_address("127.0.0.1:1", timeout=2.0)
    assert time.perf_counter() - tic < 5
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_ray_address("nowhere")
    path = Path(tmp_path / "c.yaml")
    path.write_text("domain: simulation\nl1_coeffs: [0.1]\nl1_attr: [0.0]\nengine: spark\n")
    with pytest.raises(ValueError, match="engine"):
        load_config(SweepConfig, path)


def test_one_grid_runner_one_schema_exact_point_names(tmp_path):
    """awd sweep and both domains' distill steps write grid.json through run_grid."""
    import cosmology.pipeline
    import molecular_partner.pipeline
    from shared import sweep as sweep_module
    from shared.losses import PenaltyWeights
    from shared.sweep import Grid, point_name, read_grid, run_grid

    # Both domains' distill steps go through the one runner (run_distill_step -> run_grid).
    assert cosmology.pipeline.run_distill_step is sweep_module.run_distill_step
    assert molecular_partner.pipeline.run_distill_step is sweep_module.run_distill_step
    near = PenaltyWeights(l1_attr=0.1 + 1e-15)
    assert point_name(near) != point_name(PenaltyWeights(l1_attr=0.1))
    assert point_name(PenaltyWeights(l1_coeffs=1e-05, l1_attr=0.00368)) == "lam1e-05_gam0.00368"

    class Task:
        greater_is_better = True

        def __init__(self):
            self.calls = []

        def run_point(self, weights, warm_start, out):
            self.calls.append((out.name, None if warm_start is None else warm_start.parent.name))
            return {"val_score": weights.l1_attr}

    task = Task()
    records = run_grid(task, Grid((0.2, 0.1), (1.0, 0.0), warm_start=True), tmp_path)
    assert task.calls == [
        ("lam0.1_gam0", None), ("lam0.1_gam1", "lam0.1_gam0"),
        ("lam0.2_gam0", None), ("lam0.2_gam1", "lam0.2_gam0"),
    ]  # fmt: skip
    grid = read_grid(tmp_path)
    assert grid["format"] == "awd-grid" and grid["greater_is_better"]
    assert [p["point"] for p in grid["points"]] == [r["point"] for r in records]
    assert all(p["wavelet"].endswith("wavelet") for p in grid["points"])
    again = Task()
    run_grid(again, Grid((0.2, 0.1), (1.0, 0.0)), tmp_path)  # resumed: nothing runs twice
    assert again.calls == []
    cold = Task()
    run_grid(cold, Grid((0.3,), (0.0, 1.0), warm_start=False), tmp_path / "cold")
    assert [w for _, w in cold.calls] == [None, None]


def test_sweep_writes_the_grid_schema_and_its_direction(tmp_path):
    from shared.sweep import read_grid

    result = run_sweep(
        SweepConfig(domain="simulation", l1_coeffs=(1e-4,), l1_attr=(0.0, 1.0), base=TINY),
        FACTORY,
        tmp_path,
    )
    grid = read_grid(tmp_path)
    assert grid["greater_is_better"] and [p["point"] for p in grid["points"]] == [
        r["point"] for r in result["points"]
    ]
    assert json.loads((tmp_path / "selected.json").read_text())["greater_is_better"] is True
    assert (tmp_path / "teacher.safetensors").exists()
