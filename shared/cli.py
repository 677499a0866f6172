"""The ``awd`` command line.

The domain packages plug in through the ``awd.domains`` entry points
(:func:`shared.commands.discover_domains`): each offers a :class:`shared.commands.Domain`
with its Typer sub-application, and optionally its ``awd demo`` and ``awd figures`` hooks
and its ``awd sweep`` task. The core names no domain. Errors are one line ``error: ...``
with exit code 2.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import typer

from shared.commands import Domain, discover_domains, display_path, fail, user_errors

app = typer.Typer(
    name="awd",
    help=(
        "Adaptive wavelet distillation: distil a trained network into a learned wavelet "
        "and a small interpretable predictor.\n\n"
        "In each domain, every step works on one run directory (--run RUN): "
        "train-teacher --data DATA, distill, evaluate, report, and predict INPUTS --out FILE "
        "to apply a saved student to new data. Errors are one line 'error: ...' (exit 2)."
    ),
    no_args_is_help=True,
    add_completion=False,
)
simulation_app = typer.Typer(
    help="The paper's simulation experiment: recover a planted wavelet.", no_args_is_help=True
)
app.add_typer(simulation_app, name="simulation")

# The sweep task of the core's own experiment (domains bring theirs through their plugin).
_CORE_SWEEP_TASKS = {"simulation": "shared.simulation:make_sweep_task"}

# Space a demo run needs (simulated data, runs and reports), checked before starting.
_DEMO_MIN_FREE_BYTES = 500 * 1024**2

_registered: dict[str, Domain] = {}


def _register_domains() -> dict[str, Domain]:
    """Discover the installed domains and add their sub-applications (once)."""
    for name, domain in discover_domains().items():
        if name in _registered:
            continue
        app.add_typer(domain.app, name=name)
        _registered[name] = domain
    return _registered


def _sweep_tasks() -> dict[str, str]:
    tasks = dict(_CORE_SWEEP_TASKS)
    for name, domain in _register_domains().items():
        if domain.sweep_task:
            tasks[name] = domain.sweep_task
    return tasks


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Our own progress at INFO; third-party chatter (font subsetting, Ray) only if verbose.
    names = ["shared", *(n for d in _registered.values() for n in d.loggers)]
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


@simulation_app.command("run")
def simulation_run(
    out: Path = typer.Option(Path("results/simulation"), help="Run directory to write."),
    config: Path | None = typer.Option(None, help="YAML file with SimulationConfig fields."),
    set_: list[str] = typer.Option([], "--set", help="Override a field, e.g. weights.l1_attr=0.5"),
) -> None:
    """Distil a perturbed db5 back from a teacher that uses one planted wavelet level."""
    from shared.config import load_config
    from shared.simulation import SimulationConfig, run_simulation

    with user_errors():
        cfg = load_config(SimulationConfig, config, set_)
        metrics = run_simulation(out, cfg)
    typer.echo(json.dumps(metrics, indent=2))


@app.command()
def sweep(
    domain: str = typer.Argument(..., help="simulation, or an installed domain."),
    config: Path = typer.Option(..., help="YAML file with SweepConfig fields (grids, base)."),
    out: Path = typer.Option(..., help="Sweep folder (rerun the same command to resume)."),
    engine: str | None = typer.Option(None, help="local or ray (default: the config's)."),
    workers: int | None = typer.Option(None, help="Parallel chains (local engine)."),
    address: str | None = typer.Option(None, help="HOST:PORT of a running Ray cluster."),
    set_: list[str] = typer.Option([], "--set", help="Override a field, e.g. base.seed=3"),
    force: bool = typer.Option(
        False, "--force", help="Redo a sweep folder made with other settings (it is cleared)."
    ),
) -> None:
    """Run a lambda x gamma sweep with warm starts; select on validation, report test once.

    Rerunning the same command resumes; a folder made with other settings is refused.
    """
    from shared.config import load_config
    from shared.sweep import SweepConfig, TaskSpec, run_sweep

    tasks = _sweep_tasks()
    if domain not in tasks:
        fail(f"unknown domain {domain!r}; choose from {sorted(tasks)}")
    overrides = list(set_)
    for key, value in (("engine", engine), ("workers", workers), ("address", address)):
        if value is not None:
            overrides.append(f"{key}={value}")
    with user_errors():
        cfg = load_config(SweepConfig, config, overrides)
        result = run_sweep(
            cfg, TaskSpec(tasks[domain], dict(cfg.base)), out, expected_domain=domain, force=force
        )
    sel = result["selected"]
    tests = {k: v for k, v in sel.items() if k.startswith("test_")}
    typer.echo(
        f"selected {sel['point']} (validation score {sel['val_score']:.4g}); test: {tests}; "
        f"summary: {out / 'summary.csv'}"
    )


@app.command()
def figures(
    results: Path = typer.Option(Path("results"), help="Folder of saved run directories."),
    out: Path = typer.Option(Path("results/figures"), help="Where the figures go."),
) -> None:
    """Rebuild the paper's figures from saved run directories (PNG, PDF and CSV each).

    A missing run directory is named and skipped; every other figure is still built.
    """
    from shared.figures import make_core_figures

    report = make_core_figures(results, out)
    for domain in _register_domains().values():
        if domain.make_figures is not None:
            domain.make_figures(results, out, report)
    for path in report.written:
        typer.echo(f"wrote {path}")
    for line in report.missing:
        typer.echo(f"missing: {line}", err=True)
    if not report.written:
        raise typer.Exit(code=1)


def _check_output_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".awd-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        fail(f"{out}: the output folder is not writable ({err})")
    free = shutil.disk_usage(out).free
    if free < _DEMO_MIN_FREE_BYTES:
        fail(
            f"{out}: only {free / 1024**2:.0f} MiB free; the demo needs about "
            f"{_DEMO_MIN_FREE_BYTES / 1024**2:.0f} MiB"
        )


@app.command()
def demo(
    out: Path = typer.Option(Path("results/demo"), help="Output folder."),
) -> None:
    """Run the main job on embedded default data and write results under OUT.

    Runs the simulation experiment and every domain's demo (simulated data, teacher,
    distillation, students, report), then writes OUT/summary.md and OUT/summary.json.
    """
    from shared.runs import write_json
    from shared.simulation import run_simulation

    _check_output_folder(out)
    tic = time.perf_counter()
    summary: dict[str, dict] = {}
    typer.echo("[demo] simulation experiment")
    summary["simulation"] = {"metrics": run_simulation(out / "simulation")}
    for command, domain in _register_domains().items():
        if domain.run_demo is None:
            continue
        typer.echo(f"[demo] {command}")
        summary[command] = domain.run_demo(out / command.replace("-", "_"))
    summary["seconds"] = {"total": time.perf_counter() - tic}
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_summary_markdown(summary, out))
    seconds = summary["seconds"]["total"]
    typer.echo(f"demo finished in {seconds:.0f} s; summary: {out / 'summary.md'}")
    for name, part in summary.items():
        report = part.get("report") if isinstance(part, dict) else None
        if report:
            typer.echo(f"  {name} report: {report}")


def _domain_headlines(summary: dict) -> dict:
    """Each domain's headline (``report/headline.json`` beside its report), when written."""
    from shared.report import Headline

    heads = {}
    for name, part in summary.items():
        report = part.get("report") if isinstance(part, dict) else None
        path = Path(report).with_name("headline.json") if report else None
        if path is not None and path.is_file():
            heads[name] = Headline.load(path)
    return heads


def _simulation_verdict(sim: dict) -> str:
    moved = "moved towards" if sim["distance_final"] < sim["distance_init"] else "moved away from"
    return (
        f"simulation experiment: from a perturbed db5, AWD {moved} "
        f"the planted wavelet (distance {sim['distance_init']:.3f} → {sim['distance_final']:.3f}); "
        f"the attribution share on the planted level went {sim['attribution_mass_init']:.2f} → "
        f"{sim['attribution_mass_final']:.2f}."
    )


def _summary_markdown(summary: dict, summary_dir: Path) -> str:
    sim = summary["simulation"]["metrics"]
    heads = _domain_headlines(summary)
    lines = ["# awd demo", ""]
    lines += [f"- {_simulation_verdict(sim)}"] + [f"- {h.verdict}" for h in heads.values()]
    lines += [
        "",
        "**These numbers are toy-sized**: tiny simulated data sets and a few minutes of "
        "training on a CPU, to show that every step runs end to end. They say nothing about "
        "how well AWD works; the README's Results (full-size runs, committed under `results/`) "
        "do. Paths below are relative to this file's folder.",
        "",
    ]
    warnings = [(name, w) for name, h in heads.items() for w in h.warnings]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {name}: {w}" for name, w in warnings] + [""]
    lines += [
        "## Simulation experiment (planted db5 level)",
        "",
        "| quantity | start | end |",
        "| --- | ---: | ---: |",
        f"| distance to db5 (min over shifts, signs) | {sim['distance_init']:.4f} | "
        f"{sim['distance_final']:.4f} |",
        f"| attribution share on the planted level | {sim['attribution_mass_init']:.2f} | "
        f"{sim['attribution_mass_final']:.2f} |",
        "",
        f"Teacher test R²: {sim['teacher_test_r2']:.3f}.",
        "",
    ]
    runs = {}
    for name, part in summary.items():
        if name in ("simulation", "seconds") or not isinstance(part, dict):
            continue
        lines += [f"## {name}", ""]
        table = heads[name].markdown() if name in heads else part.get("table")
        if table:
            lines += [table, ""]
        if part.get("report"):
            runs[name] = display_path(Path(part["report"]).parent.parent, summary_dir)
            lines += [f"Report: `{display_path(part['report'], summary_dir)}`", ""]
    lines += ["## What to run next", ""]
    lines += ["- Open the reports above in a browser: each opens with its answer in words."]
    for name, run in runs.items():
        lines.append(
            f"- {name}, on your own data: `awd {name} train-teacher --run RUN --data DATA "
            "--config …`, then `distill`, `evaluate`, `report` and `predict` with the same "
            f'`--run RUN` (README.md, "Your own data"); `awd {name} predict --run {run} …` '
            "applies this demo's student (toy-sized)."
        )
    lines += [
        "- Full-size runs: the scripts under `scripts/` (hours on a CPU); "
        "`awd figures` redraws the paper's figures from `results/`.",
        "",
        f"Total time: {summary['seconds']['total']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Entry point of the ``awd`` console script."""
    import matplotlib

    # Figures are written to files; the backend is chosen here, at the entry point.
    matplotlib.use("Agg")
    _register_domains()
    from tqdm.contrib.logging import logging_redirect_tqdm

    # The console handler exists before the redirect (which keeps its format); the
    # callback's basicConfig then finds it configured. Log lines go through tqdm.write,
    # above the progress bars instead of through them.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with logging_redirect_tqdm():
        app()


if __name__ == "__main__":
    main()
