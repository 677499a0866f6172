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
