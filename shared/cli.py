"""The ``awd`` command line.

The CLI is the one place that wires the domain-free core (``shared``) to the domain
packages: each domain contributes a Typer sub-application named ``app`` in its own
``cli`` module, registered here under the domain's name, and may offer a
``run_demo(out: Path) -> dict`` hook that ``awd demo`` calls.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import time
from pathlib import Path
from types import ModuleType

import typer

app = typer.Typer(
    name="awd",
    help=(
        "Adaptive wavelet distillation: distil a trained network into a learned wavelet "
        "and a small interpretable predictor."
    ),
    no_args_is_help=True,
    add_completion=False,
)
simulation_app = typer.Typer(
    help="The paper's simulation experiment: recover a planted wavelet.", no_args_is_help=True
)
app.add_typer(simulation_app, name="simulation")

# (module, command name) of each domain's sub-application.
_DOMAIN_APPS = (
    ("cosmology.cli", "cosmology"),
    ("molecular_partner.cli", "molecular-partner"),
)
_registered: dict[str, ModuleType] = {}

# The sweep task of each domain, as "module:function" (built again in every worker).
_SWEEP_TASKS = {
    "simulation": "shared.simulation:make_sweep_task",
    "cosmology": "cosmology.sweep:make_task",
    "molecular-partner": "molecular_partner.sweep:make_task",
}

# Space a demo run needs (simulated data, runs and reports), checked before starting.
_DEMO_MIN_FREE_BYTES = 500 * 1024**2


def _register_domains() -> dict[str, ModuleType]:
    """Import each domain's CLI module and add its sub-application (once)."""
    for module_name, command in _DOMAIN_APPS:
        if command in _registered:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # A domain without a CLI yet is simply absent; any other missing module is a bug.
            if err.name != module_name:
                raise
            continue
        app.add_typer(module.app, name=command)
        _registered[command] = module
    return _registered


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Our own progress at INFO; third-party chatter (font subsetting, Ray) only if verbose.
    for name in ("shared", "cosmology", "molecular_partner"):
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

    try:
        cfg = load_config(SimulationConfig, config, set_)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    metrics = run_simulation(out, cfg)
    typer.echo(json.dumps(metrics, indent=2))


@app.command()
def sweep(
    domain: str = typer.Argument(..., help=f"One of: {', '.join(_SWEEP_TASKS)}."),
    config: Path = typer.Option(..., help="YAML file with SweepConfig fields (grids, base)."),
    out: Path = typer.Option(..., help="Sweep folder (rerun the same command to resume)."),
    engine: str | None = typer.Option(None, help="local or ray (default: the config's)."),
    workers: int | None = typer.Option(None, help="Parallel chains (local engine)."),
    address: str | None = typer.Option(None, help="HOST:PORT of a running Ray cluster."),
    set_: list[str] = typer.Option([], "--set", help="Override a field, e.g. base.seed=3"),
) -> None:
    """Run a lambda x gamma sweep with warm starts; select on validation, report test once."""
    import importlib.util

    from shared.config import load_config
    from shared.sweep import SweepConfig, run_sweep

    if domain not in _SWEEP_TASKS:
        raise typer.BadParameter(f"unknown domain {domain!r}; choose from {list(_SWEEP_TASKS)}")
    factory = _SWEEP_TASKS[domain]
    if importlib.util.find_spec(factory.split(":")[0]) is None:
        raise typer.BadParameter(f"the domain {domain!r} has no sweep task in this version")
    overrides = list(set_)
    for key, value in (("engine", engine), ("workers", workers), ("address", address)):
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        cfg = load_config(SweepConfig, config, overrides)
        result = run_sweep(cfg, factory, out, expected_domain=domain)
    except (ValueError, ConnectionError) as err:
        raise typer.BadParameter(str(err)) from None
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
    for module in _register_domains().values():
        hook = getattr(module, "make_figures", None)
        if hook is not None:
            hook(results, out, report)
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
        raise typer.BadParameter(f"{out}: the output folder is not writable ({err})") from None
    free = shutil.disk_usage(out).free
    if free < _DEMO_MIN_FREE_BYTES:
        raise typer.BadParameter(
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
    for command, module in _register_domains().items():
        hook = getattr(module, "run_demo", None)
        if hook is None:
            continue
        typer.echo(f"[demo] {command}")
        summary[command] = hook(out / command.replace("-", "_"))
    summary["seconds"] = {"total": time.perf_counter() - tic}
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_summary_markdown(summary, out))
    seconds = summary["seconds"]["total"]
    typer.echo(f"demo finished in {seconds:.0f} s; summary: {out / 'summary.md'}")
    for name, part in summary.items():
        report = part.get("report") if isinstance(part, dict) else None
        if report:
            typer.echo(f"  {name} report: {report}")


def _display_path(path: str | Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies inside it (no machine paths in summaries)."""
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _summary_markdown(summary: dict, summary_dir: Path) -> str:
    lines = ["# awd demo", ""]
    sim = summary["simulation"]["metrics"]
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
    for name, part in summary.items():
        if name in ("simulation", "seconds") or not isinstance(part, dict):
            continue
        lines += [f"## {name}", ""]
        table = part.get("table")
        if table:
            lines += [table, ""]
        if part.get("report"):
            lines += [f"Report: `{_display_path(part['report'], summary_dir)}`", ""]
    lines.append(f"Total time: {summary['seconds']['total']:.0f} s.")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Entry point of the ``awd`` console script."""
    _register_domains()
    app()


if __name__ == "__main__":
    main()
