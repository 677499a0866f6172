"""What the command lines of all domains share: options, the error convention, plugins.

- **One error convention**: a user error (a bad setting, a missing or malformed file, a
  step run out of order) prints one line ``error: ...`` on stderr and exits with code 2;
  never a traceback. :func:`user_errors` wraps a command's body.
- **One option style**: ``--run RUN`` names the run directory of every step, ``--config``
  a YAML file, ``--set section.key=value`` an override (repeatable).
- **Domains as plugins**: a domain package offers a :class:`Domain` object through the
  ``awd.domains`` entry point group (see ``pyproject.toml``); ``awd`` discovers them, so
  the core never names a domain.

Examples
--------
>>> import typer
>>> def body():
...     with user_errors():
...         raise ValueError("maps.fits: not a readable FITS file")
>>> try:
...     body()
... except typer.Exit as stop:
...     print(stop.exit_code)
2
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import typer

__all__ = [
    "CONFIG_OPTION",
    "FORCE_OPTION",
    "RUN_OPTION",
    "SET_OPTION",
    "Domain",
    "add_run_commands",
    "check_out_folder",
    "discover_domains",
    "fail",
    "user_errors",
]

logger = logging.getLogger(__name__)

#: Errors that mean the user asked for something that cannot be done as asked.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, ConnectionError, PermissionError)

RUN_OPTION = typer.Option(..., "--run", help="The run directory.")
CONFIG_OPTION = typer.Option(None, "--config", help="A YAML file of settings.")
SET_OPTION = typer.Option(
    None, "--set", help="Override a setting, e.g. --set teacher.epochs=5 (repeatable)."
)
FORCE_OPTION = typer.Option(
    False,
    "--force",
    help="Redo this step although results made from its old settings exist (they are removed).",
)


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user error raised inside the block into ``error: ...`` and exit code 2."""
    try:
        yield
    except USER_ERRORS as err:
        message = str(err) or type(err).__name__
        fail(message.splitlines()[0] if message else type(err).__name__)


@dataclass(frozen=True)
class Domain:
    """A domain's contribution to the ``awd`` command line.

    Parameters
    ----------
    name : str
        The sub-command (``cosmology``, ``molecular-partner``).
    app : typer.Typer
        Its commands.
    run_demo : callable, optional
        ``run_demo(out: Path) -> dict`` called by ``awd demo``.
    make_figures : callable, optional
        ``make_figures(results: Path, out: Path, report)`` called by ``awd figures``.
    sweep_task : str, optional
        ``"module:function"`` building its ``awd sweep`` task from a ``base`` dict.
    loggers : tuple of str
        Logger names of the domain (shown at INFO by default).
    """

    name: str
    app: Any
    run_demo: Callable[..., dict] | None = None
    make_figures: Callable[..., None] | None = None
    sweep_task: str | None = None
    loggers: tuple[str, ...] = ()


def discover_domains() -> dict[str, Domain]:
    """The domains installed through the ``awd.domains`` entry points, by name.

    A domain that fails to import is logged and skipped, so one broken plugin does not
    take the whole command line down.
    """
    found: dict[str, Domain] = {}
    for ep in sorted(entry_points(group="awd.domains"), key=lambda e: e.name):
        try:
            domain = ep.load()
        except (ImportError, AttributeError) as err:
            logger.warning("the domain %r could not be loaded: %s", ep.name, err)
            continue
        if not isinstance(domain, Domain):
            logger.warning("the entry point %r is not an awd Domain; skipped", ep.name)
            continue
        found[domain.name] = domain
    return found


def display_path(path: str | Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies inside it (no machine paths in summaries).

    Examples
    --------
    >>> display_path("/a/b/c.html", Path("/a"))
    'b/c.html'
    """
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is (or lies under) a file, before any work.

    Examples
    --------
    >>> check_out_folder(Path("a/new/folder"))  # a folder still to be made is fine
    """
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == out else f" ({folder} is a file)"
                fail(f"--out {out} is not a folder{where}")
            return


_STEP_NOTES = {
    "distill": "\n\nFinished points made with the same settings are kept: rerunning the command "
    "resumes an interrupted grid; points made with other settings are refused unless --force.",
}


def add_run_commands(
    app: Any,
    *,
    command: str,
    package: str,
    docs: dict[str, str],
) -> None:
    """Add the ``distill``, ``evaluate`` and ``report`` commands of a domain to ``app``.

    The three steps work the same way in every domain: they open the run directory named
    by ``--run``, check the step's ``--set`` overrides, run the step and print what it
    wrote. The domain's package provides ``pipeline.open_run`` / ``pipeline.run_distill``,
    ``evaluate.run_evaluate`` / ``evaluate.require_fresh_evaluation`` and
    ``report.headline`` / ``report.write_report``; they are imported when a command runs,
    so ``awd --help`` stays fast.

    Parameters
    ----------
    app : typer.Typer
        The domain's command group.
    command : str
        Its name on the command line (``cosmology``), for the "next:" hint.
    package : str
        The domain's Python package (``cosmology``).
    docs : dict
        The help text of each command, by ``distill``, ``evaluate`` and ``report``.

    Examples
    --------
    >>> app = typer.Typer()
    >>> add_run_commands(app, command="demo", package="demo",
    ...                  docs={"distill": "d", "evaluate": "e", "report": "r"})
    >>> sorted(c.name for c in app.registered_commands)
    ['distill', 'evaluate', 'report']
    """
    from importlib import import_module

    def module(name: str) -> Any:
        return import_module(f"{package}.{name}")

    def distill_cmd(
        run: Path = RUN_OPTION,
        overrides: list[str] | None = SET_OPTION,
        workers: int = typer.Option(1, min=1, help="Parallel chains (processes)."),
        force: bool = FORCE_OPTION,
    ) -> None:
        from shared.sweep import Engine

        pipeline = module("pipeline")
        with user_errors():
            run_dir, cfg = pipeline.open_run(run, overrides or [], "distill")
            records = pipeline.run_distill(
                run_dir, cfg, engine=Engine(workers=workers), overrides=overrides or [], force=force
            )
        typer.echo(f"{len(records)} wavelets distilled -> {run / 'distill'}")

    def evaluate_cmd(
        run: Path = RUN_OPTION,
        overrides: list[str] | None = SET_OPTION,
        force: bool = FORCE_OPTION,
    ) -> None:
        with user_errors():
            run_dir, cfg = module("pipeline").open_run(run, overrides or [], "evaluate")
            metrics = module("evaluate").run_evaluate(run_dir, cfg, force=force)
            head = module("report").headline(run_dir.root)
        typer.echo(
            f"{metrics.method.nunique()} methods scored -> {run / 'evaluate' / 'metrics.csv'}"
        )
        typer.echo(f"students saved -> {run / 'students'}")
        typer.echo("")
        typer.echo(head.terminal())
        for warning in head.warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"next: awd {command} report --run {run}")

    def report_cmd(
        run: Path = RUN_OPTION,
        out: Path | None = typer.Option(None, help="Output folder (default: RUN/report)."),
    ) -> None:
        with user_errors():
            module("evaluate").require_fresh_evaluation(run)
            path = module("report").write_report(run, out)
        typer.echo(f"report -> {path}")

    for name, body in (
        ("distill", distill_cmd),
        ("evaluate", evaluate_cmd),
        ("report", report_cmd),
    ):
        body.__doc__ = docs[name] + _STEP_NOTES.get(name, "")
        app.command(name)(body)
