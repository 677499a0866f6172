"""Runs that never lie: kills, reruns with other settings, workers, locks, torn files, NaN.

Each test names the defect of the reliability audit it covers (High 1-4, Medium 5-7; the
input defects are in ``test_audit_inputs.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from molecular_partner.data import build_dataset, write_dataset
from molecular_partner.simulate import SimulationConfig, simulate_cells
from shared import DistillConfig, PenaltyWeights, distill, load_transform
from shared.cli import _register_domains, app
from shared.runs import FolderLock, StaleResultError, clean_temp_files, write_json
from shared.sweep import Grid, SweepConfig, run_grid, run_sweep

_register_domains()
runner = CliRunner()
SIM = "shared.simulation:make_sweep_task"
TINY_SIM = {"n_train": 400, "n_test": 100, "teacher_epochs": 3,
            "distill": {"epochs": 2, "batch_size": 128}}  # fmt: skip


def _mp(*args) -> object:
    return runner.invoke(app, ["molecular-partner", *map(str, args)])


def _ok(result) -> None:
    assert result.exit_code == 0, result.output + repr(result.exception)


def _refused(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output and result.output.startswith("error: ")
    for needle in needles:
        assert needle in result.output, (needle, result.output)


@pytest.fixture(scope="module")
def mp_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mp_faults")
    tracks, _ = simulate_cells(3, SimulationConfig(n_pits=300), seed=2)
    write_dataset(build_dataset(tracks, test_cells=["cell3"]), root / "data")
    return root / "data"


TEACHER = ["--set", "teacher.epochs=2", "--set", "teacher.patience=2"]
GRID = ["--set", "distill.lambdas=[0.001]", "--set", "distill.gammas=[0,0.1]",
        "--set", "distill.train.epochs=1"]  # fmt: skip
EVAL = ["--set", "evaluate.n_bootstrap=10", "--set", "evaluate.xgb_estimators=[5]",
        "--set", "evaluate.xgb_depths=[2]", "--set", "evaluate.timing_repeats=1",
        "--set", "evaluate.cv_folds=2"]  # fmt: skip


@pytest.fixture(scope="module")
def mp_run(mp_data, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("mp_run") / "run"
    _ok(_mp("train-teacher", "--run", run, "--data", mp_data, *TEACHER))
    _ok(_mp("distill", "--run", run, *GRID))
    _ok(_mp("evaluate", "--run", run, *EVAL))
    return run


# --------------------------------------------------------------------------- High 1: reruns
def test_a_rerun_with_other_settings_is_refused_and_records_stay_true(mp_run):
    """Audit 166/167: a rerun with other settings reused old points and rewrote config.yaml."""
    config = (mp_run / "config.yaml").read_text()
    grid = (mp_run / "distill" / "grid.json").read_bytes()
    result = _mp("distill", "--run", mp_run, "--set", "distill.train.epochs=3",
                 "--set", "distill.wavelet=sym5")  # fmt: skip
    _refused(result, "distill.train.epochs: 1 -> 3", "distill.wavelet: db5 -> sym5", "--force")
    assert (mp_run / "config.yaml").read_text() == config
    assert (mp_run / "distill" / "grid.json").read_bytes() == grid
    # The same settings again: nothing to do, nothing rewritten.
    _ok(_mp("distill", "--run", mp_run))
    assert (mp_run / "distill" / "grid.json").read_bytes() == grid


def test_force_redoes_the_step_and_removes_what_was_made_from_it(mp_data, tmp_path):
    run = tmp_path / "run"
    _ok(_mp("train-teacher", "--run", run, "--data", mp_data, *TEACHER))
    _ok(_mp("distill", "--run", run, *GRID))
    _ok(_mp("evaluate", "--run", run, *EVAL))
    old = load_transform(run / "distill" / "lam0.001_gam0.1" / "wavelet").h0
    _ok(_mp("distill", "--run", run, "--set", "distill.train.epochs=2", "--force"))
    assert not (run / "evaluate").exists() and not (run / "students").exists()
    new = load_transform(run / "distill" / "lam0.001_gam0.1" / "wavelet").h0
    assert not torch.equal(old, new)
    step = json.loads((run / "distill" / "step.json").read_text())
    assert step["settings"]["distill"]["train"]["epochs"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["distill"]["train"]["epochs"] == 2
    # A new grid value only adds a point: kept points are not redone.
    before = (run / "distill" / "lam0.001_gam0.1" / "point.json").read_bytes()
    _ok(_mp("distill", "--run", run, "--set", "distill.gammas=[0,0.1,1.0]"))
    assert (run / "distill" / "lam0.001_gam0.1" / "point.json").read_bytes() == before
    assert (run / "distill" / "lam0.001_gam1" / "point.json").exists()
    # The report refuses an evaluation older than the grid.
    _ok(_mp("evaluate", "--run", run, *EVAL))
    _ok(_mp("distill", "--run", run, "--set", "distill.gammas=[0,0.1,1.0,2.0]"))
    _refused(_mp("report", "--run", run), "older than its inputs", "grid", "evaluate")


def test_a_retrained_teacher_is_not_silently_used_by_old_points(mp_run, mp_data, tmp_path):
    result = _mp("train-teacher", "--run", mp_run, "--set", "teacher.epochs=3")
    _refused(result, "teacher.epochs: 2 -> 3", "distill")
    # Same settings: the teacher is kept, not retrained.
    before = (mp_run / "teacher" / "model.safetensors").read_bytes()
    _ok(_mp("train-teacher", "--run", mp_run, *TEACHER))
    assert (mp_run / "teacher" / "model.safetensors").read_bytes() == before


def test_a_sweep_folder_of_other_settings_is_refused(tmp_path):
    """Audit 168/169: a sweep rerun selected among old points and scored new data."""
    cfg = SweepConfig(domain="simulation", l1_coeffs=(1e-4,), l1_attr=(0.0,), base=TINY_SIM)
    run_sweep(cfg, SIM, tmp_path)
    other = SweepConfig(domain="simulation", l1_coeffs=(1e-4,), l1_attr=(0.0,),
                        base={**TINY_SIM, "noise_sd": 0.5})  # fmt: skip
    with pytest.raises(StaleResultError, match=r"base\.noise_sd: \(none\) -> 0\.5"):
        run_sweep(other, SIM, tmp_path)
    smaller = SweepConfig(domain="simulation", l1_coeffs=(1e-4,), l1_attr=(0.0,),
                          base={**TINY_SIM, "teacher_hidden": 8})  # fmt: skip
    with pytest.raises(StaleResultError, match="teacher_hidden"):
        run_sweep(smaller, SIM, tmp_path)
    result = run_sweep(smaller, SIM, tmp_path, force=True)
    assert json.loads((tmp_path / "sweep.json").read_text())["base"]["teacher_hidden"] == 8
    assert result["selected"]["point"] == "lam0.0001_gam0"


def test_a_point_made_from_another_warm_start_is_not_reused(tmp_path):
    class Task:
        greater_is_better = False
        provenance: ClassVar[dict] = {"settings": 1}

        def run_point(self, weights, warm_start, out):
            (out / "wavelet.safetensors").write_bytes(os.urandom(8))
            return {"val_score": 1.0}

    run_grid(Task(), Grid((0.1,), (0.0, 1.0)), tmp_path)
    (tmp_path / "lam0.1_gam0" / "wavelet.safetensors").write_bytes(b"changed")
    with pytest.raises(StaleResultError, match=r"lam0\.1_gam1.*warm_start"):
        run_grid(Task(), Grid((0.1,), (0.0, 1.0)), tmp_path)
    Task.provenance = {"settings": 2}
    with pytest.raises(StaleResultError, match=r"task\.settings: 1 -> 2"):
        run_grid(Task(), Grid((0.1,), (0.0,)), tmp_path)
    run_grid(Task(), Grid((0.1,), (0.0, 1.0)), tmp_path, replace_stale=True)


# --------------------------------------------------------------------------- High 2: workers
def _sweep_cmd(config: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "shared.cli", "sweep", "simulation", "--config", str(config),
            "--out", str(out), "--workers", str(workers)]  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its (gone) parent.
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)]
)
def test_workers_die_with_their_driver(tmp_path, sig):
    """Audit 173-175: after the driver was killed, its pool workers kept training."""
    config = tmp_path / "sweep.yaml"
    base = {**TINY_SIM, "distill": {"epochs": 40, "batch_size": 64}}
    config.write_text(yaml.safe_dump({"domain": "simulation", "l1_coeffs": [1e-5, 1e-4],
                                      "l1_attr": [0.0, 0.1], "base": base}))  # fmt: skip
    out = tmp_path / "sweep"
    log = open(tmp_path / "driver.log", "w")  # the child writes to it until it is killed
    proc = subprocess.Popen(_sweep_cmd(config, out, 2), stdout=log, stderr=log)
    events = out / "events.jsonl"
    deadline = time.time() + 600
    pids: set[int] = set()
    while time.time() < deadline and len(pids) < 2:
        if events.exists():
            pids = {json.loads(line)["pid"] for line in events.read_text().splitlines()}
        time.sleep(0.1)
    assert len(pids) == 2, (tmp_path / "driver.log").read_text()[-2000:]
    os.kill(proc.pid, sig)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "a worker outlived its driver"
    # The rerun finishes the grid on its own (no other writer holds a point).
    subprocess.run(_sweep_cmd(config, out, 2), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    assert len(list(out.glob("*/point.json"))) == 4


def test_one_writer_per_folder_and_stale_locks_are_taken_over(tmp_path):
    cfg = SweepConfig(domain="simulation", l1_coeffs=(1e-4,), l1_attr=(0.0,), base=TINY_SIM)
    with (
        FolderLock(tmp_path, "another sweep"),
        pytest.raises(ValueError, match="in use by process"),
    ):
        run_sweep(cfg, SIM, tmp_path)
    # A lock left by a process that no longer exists is stale.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_json(tmp_path / ".lock", {"pid": dead.pid, "host": os.uname().nodename, "since": 0})
    run_sweep(cfg, SIM, tmp_path)
    assert not (tmp_path / ".lock").exists()


def test_temp_files_of_killed_writes_are_removed_at_the_next_start(mp_run):
    litter = mp_run / "distill" / "lam0.001_gam0" / ".wavelet.json.abc123.tmp"
    litter.write_text("half a file")
    (mp_run / ".config.yaml.x.tmp").write_text("half")
    _ok(_mp("distill", "--run", mp_run))
    assert not litter.exists() and not (mp_run / ".config.yaml.x.tmp").exists()
    assert clean_temp_files(mp_run, recursive=True) == []


def test_a_killed_distill_resumes_to_the_uninterrupted_result(mp_data, tmp_path):
    """Kill a distill step mid-grid (subprocess, SIGKILL); the rerun ends where one run ends."""
    runs = {}
    for name in ("once", "killed"):
        run = tmp_path / name
        _ok(_mp("train-teacher", "--run", run, "--data", mp_data, *TEACHER))
        runs[name] = run
    grid = ["--set", "distill.lambdas=[0.001]", "--set", "distill.gammas=[0,0.1,1.0]",
            "--set", "distill.train.epochs=25"]  # fmt: skip
    _ok(_mp("distill", "--run", runs["once"], *grid))
    cmd = [sys.executable, "-m", "shared.cli", "molecular-partner", "distill", "--run",
           str(runs["killed"]), *grid]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = runs["killed"] / "distill" / "lam0.001_gam0.1" / "checkpoint"
    deadline = time.time() + 240
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (runs["killed"] / "distill" / "step.json").exists()
    _ok(_mp("distill", "--run", runs["killed"], *grid))
    for point in ("lam0.001_gam0", "lam0.001_gam0.1", "lam0.001_gam1"):
        a = load_transform(runs["once"] / "distill" / point / "wavelet").h0
        b = load_transform(runs["killed"] / "distill" / point / "wavelet").h0
        assert torch.equal(a, b), point


# --------------------------------------------------------------------------- High 3 and 4: settings
def test_bad_set_values_are_refused_before_anything_is_written(mp_run, mp_data, tmp_path):
    """Audit 100-102, 113-117, 135: bad values were saved into config.yaml, or crashed."""
    config = (mp_run / "config.yaml").read_text()
    for bad, message in (
        ("distill.train.lr=abc", "distill.train.lr: expected a number, got 'abc'"),
        ("distill.train.epochs=abc", "distill.train.epochs: expected an integer"),
        ("distill.train.epochs=-1", "epochs must be >= 1"),
        ("distill.lambdas=abc", "distill.lambdas[0]: expected a number"),
    ):
        _refused(_mp("distill", "--run", mp_run, "--set", bad), message)
    assert (mp_run / "config.yaml").read_text() == config
    for bad, message in (
        ("teacher.epochs=0", "teacher.epochs: must be >= 1, got 0"),
        ("teacher.epochs=2.5", "teacher.epochs: expected an integer, got 2.5"),
        ("teacher.epochs=null", "teacher.epochs: expected an integer, got None"),
        ("teacher.patience=0", "teacher.patience: must be >= 1, got 0"),
        ("teacher.lr=-1", "teacher.lr: must be > 0"),
    ):
        run = tmp_path / bad.split("=")[0].replace(".", "_")
        _refused(_mp("train-teacher", "--run", run, "--data", mp_data, "--set", bad), message)
        assert not run.exists()
    result = runner.invoke(app, ["simulation", "run", "--out", str(tmp_path / "s"),
                                 "--set", "teacher_epochs=-1"])  # fmt: skip
    _refused(result, "teacher_epochs: must be >= 1, got -1")


# --------------------------------------------------------------------------- Medium 6 and 7
def test_a_torn_checkpoint_is_detected_and_the_point_starts_over(tmp_path):
    """Audit 180: a checkpoint torn between its two files resumed to another result."""
    x = torch.randn(64, 1, 32, generator=torch.Generator().manual_seed(0))
    cfg = DistillConfig(epochs=4, batch_size=16)
    w = PenaltyWeights(l1_coeffs=0.1)

    def run(folder: Path, epochs: int) -> torch.Tensor:
        config = DistillConfig(epochs=epochs, batch_size=16)
        t, _ = distill(x, wavelet="db2", levels=2, weights=w, config=config,
                       checkpoint_dir=folder, resume=True, progress=False)  # fmt: skip
        return t.h0.detach()

    full = run(tmp_path / "full", 4)
    run(tmp_path / "torn", 2)
    run(tmp_path / "later", 3)
    # Epoch-3 tensors beside the epoch-2 record: a kill between the two renames.
    (tmp_path / "torn" / "checkpoint.safetensors").write_bytes(
        (tmp_path / "later" / "checkpoint.safetensors").read_bytes()
    )
    resumed = run(tmp_path / "torn", cfg.epochs)
    assert torch.equal(resumed, full)


def test_a_non_finite_score_is_stored_as_null_and_skipped_by_selection(tmp_path):
    """Audit 170: a NaN score became the string "nan" and broke selection on every rerun."""

    class Task:
        greater_is_better = True

        def prepare(self, root):
            pass

        def run_point(self, weights, warm_start, out):
            return {"val_score": float("nan") if weights.l1_attr == 0 else weights.l1_attr}

        def test_score(self, out):
            return {"r2": 0.5}

    import shared.sweep as sweep_module

    records = run_grid(Task(), Grid((0.1,), (0.0, 1.0)), tmp_path)
    point = json.loads((tmp_path / "lam0.1_gam0" / "point.json").read_text())
    assert point["val_score"] is None and point["val_score_note"] == "not finite (nan)"
    selected = sweep_module._select_and_score(
        tmp_path, SweepConfig(l1_coeffs=(0.1,), l1_attr=(0.0, 1.0)), Task(), records
    )
    assert selected["selected"]["point"] == "lam0.1_gam1"
    assert selected["skipped"] == ["lam0.1_gam0"]
    # And on a rerun, from the files.
    again = run_grid(Task(), Grid((0.1,), (0.0, 1.0)), tmp_path)
    assert again == records


# --------------------------------------------------------------------------- Medium 5: Ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_with_a_relative_out_writes_nothing_outside_it(tmp_path, monkeypatch):
    """Audit 185: a relative --out made Ray trials write into Ray's working folders."""
    monkeypatch.chdir(tmp_path)
    cfg = SweepConfig(domain="simulation", l1_coeffs=(1e-5, 1e-4), l1_attr=(0.0,),
                      base=TINY_SIM, engine="ray", workers=2)  # fmt: skip
    result = run_sweep(cfg, SIM, "relative/out")
    assert (tmp_path / "relative" / "out" / "lam1e-05_gam0" / "point.json").exists()
    assert len(result["points"]) == 2


# --------------------------------------------------------------------------- determinism
def test_the_same_seed_gives_byte_identical_files(mp_data, tmp_path):
    paths = {}
    for name in ("a", "b"):
        run = tmp_path / name
        _ok(_mp("train-teacher", "--run", run, "--data", mp_data, *TEACHER))
        _ok(_mp("distill", "--run", run, *GRID))
        _ok(_mp("evaluate", "--run", run, *EVAL))
        paths[name] = run
    hashed = ["teacher/model.safetensors", "distill/lam0.001_gam0.1/wavelet.safetensors",
              "students/awd/regression/arrays.safetensors", "evaluate/comparisons.csv"]  # fmt: skip
    for rel in hashed:
        assert (paths["a"] / rel).read_bytes() == (paths["b"] / rel).read_bytes(), rel
    # metrics.csv: byte-identical but for the timing column.
    import pandas as pd

    a, b = (pd.read_csv(paths[n] / "evaluate" / "metrics.csv") for n in ("a", "b"))
    cols = [c for c in a.columns if c != "seconds_per_item"]
    assert a[cols].to_csv(index=False) == b[cols].to_csv(index=False)
    np.testing.assert_array_equal(a.value, b.value)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_ray_worker_is_retried_and_the_sweep_completes(tmp_path):
    """Issue [runs] 4: a Ray worker killed mid-sweep; its trial is retried."""
    import threading

    out = tmp_path / "ray"
    events = out / "events.jsonl"
    killed: list[int] = []

    def killer() -> None:
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            if events.exists():
                lines = [json.loads(x) for x in events.read_text().splitlines()]
                finished = [e for e in lines if e["event"] == "finish"]
                if finished:
                    pid = finished[0]["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    base = {**TINY_SIM, "distill": {"epochs": 6, "batch_size": 64}}
    cfg = SweepConfig(domain="simulation", l1_coeffs=(1e-5, 1e-4), l1_attr=(0.0, 0.1, 1.0),
                      base=base, engine="ray", workers=2, max_failures=2)  # fmt: skip
    result = run_sweep(cfg, SIM, out)
    thread.join(timeout=1)
    assert killed, "no worker was killed"
    assert len(result["points"]) == 6 and len(list(out.glob("*/point.json"))) == 6
    starts = [json.loads(x) for x in events.read_text().splitlines()]
    assert any(e["pid"] != killed[0] for e in starts if e["event"] == "start")
