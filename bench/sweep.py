"""The same 8-point sweep with 1 and 2 local workers, and on a local Ray instance.

Two chains (two lambdas) of four gammas each, on the simulation experiment. Goals: 2 local
workers take <= 0.65x the time of 1; the Ray engine on one machine <= 0.75x.
Writes ``results/benchmarks/sweep.md`` and ``.json``. Run: ``python bench/sweep.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import RESULTS, cpu_busy, load_note, machine

from shared.sweep import SweepConfig, run_sweep

FACTORY = "shared.simulation:make_sweep_task"
BASE = {"n_train": 8000, "n_test": 1000, "teacher_epochs": 5, "distill": {"epochs": 100}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    grid = {"l1_coeffs": (1e-5, 1e-4), "l1_attr": (0.0, 0.03, 0.1, 1.0)}
    engines = {
        "local, 1 worker": SweepConfig(base=BASE, workers=1, **grid),
        "local, 2 workers": SweepConfig(base=BASE, workers=2, **grid),
        "ray, local instance (2 CPUs)": SweepConfig(base=BASE, engine="ray", workers=2, **grid),
    }
    rows = []
    before, tic = cpu_busy(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # The teacher is trained once and shared, as a rerun of a sweep would reuse it.
        run_sweep(SweepConfig(base=BASE, l1_coeffs=(1e-5,), l1_attr=(0.0,)), FACTORY, tmp)
        teacher = Path(tmp) / "teacher"
        for name, config in engines.items():
            root = Path(tmp) / name.split(",")[0].replace(" ", "_") / str(config.workers)
            root.mkdir(parents=True)
            for suffix in (".safetensors", ".json"):
                target = (root / "teacher").with_suffix(suffix)
                target.write_bytes(teacher.with_suffix(suffix).read_bytes())
            start = time.perf_counter()
            result = run_sweep(config, FACTORY, root)
            seconds = time.perf_counter() - start
            rows.append(
                {"engine": name, "seconds": seconds, "selected": result["selected"]["point"]}
            )
            print(f"{name}: {seconds:.1f} s, selected {rows[-1]['selected']}")
    base_s = rows[0]["seconds"]
    goals = {"local, 2 workers": 0.65, "ray, local instance (2 CPUs)": 0.75}
    note = load_note(before, cpu_busy(), time.perf_counter() - tic)
    lines = [
        "# Sweep engines: the same 8-point sweep (2 chains x 4 points)",
        "",
        f"Machine: {machine()}. {note}",
        "",
        "| engine | seconds | / 1 worker | goal | met | selected point |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for r in rows:
        ratio = r["seconds"] / base_s
        goal = goals.get(r["engine"])
        met = "" if goal is None else ("yes" if ratio <= goal else "no")
        goal_text = "" if goal is None else f"≤ {goal}"
        lines.append(
            f"| {r['engine']} | {r['seconds']:.1f} | {ratio:.2f} | {goal_text} | {met} | "
            f"{r['selected']} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.md").write_text("\n".join(lines) + "\n")
    (args.out / "sweep.json").write_text(json.dumps({"note": note, "rows": rows}, indent=1))
    print(f"wrote {args.out / 'sweep.md'}")


if __name__ == "__main__":
    main()
