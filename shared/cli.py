"""The ``awd`` command line.

The CLI is the one place that wires the domain-free core (``shared``) to the domain
packages: each domain contributes a Typer sub-application named ``app`` in its own
``cli`` module, registered here under the domain's name.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

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

# (module, command name) of each domain's sub-application.
_DOMAIN_APPS = (
    ("cosmology.cli", "cosmology"),
    ("molecular_partner.cli", "molecular-partner"),
)


def _register_domains() -> None:
    for module_name, command in _DOMAIN_APPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # A domain without a CLI yet is simply absent; any other missing module is a bug.
            if err.name != module_name:
                raise
            continue
        app.add_typer(module.app, name=command)


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def demo(
    out: Path = typer.Option(Path("results/demo"), help="Output folder."),
) -> None:
    """Run the main job on embedded default data and write results under OUT."""
    from shared.demo import run_demo

    summary = run_demo(out)
    typer.echo(f"demo finished; summary: {summary}")


def main() -> None:
    """Entry point of the ``awd`` console script."""
    _register_domains()
    app()


if __name__ == "__main__":
    main()
