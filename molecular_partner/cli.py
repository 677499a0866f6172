"""``awd molecular-partner``: simulate movies, track them, build the AWD data set."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True,
    help="Clathrin/auxilin data: simulate TIRF movies, track them, build the AWD data set.",
)

logger = logging.getLogger(__name__)


@app.command()
def simulate(
    out: Path = typer.Option(..., help="Output folder."),
    n_cells: int = typer.Option(8, help="Number of cells (one movie each)."),
    seed: int = typer.Option(0, help="Random seed."),
    n_frames: int = typer.Option(300, help="Frames per movie (1 s each)."),
    size: int = typer.Option(256, help="Movie width and height in pixels (80 nm)."),
    n_pits: int = typer.Option(300, help="Pit sites per cell."),
    movies: bool = typer.Option(True, help="Render and write the TIFF movies."),
) -> None:
    """Simulate cells: TCYX movies, ground truth and ideal-tracker tracks."""
    from molecular_partner.simulate import SimulationConfig, simulate_cells

    cfg = SimulationConfig(n_frames=n_frames, shape=(size, size), n_pits=n_pits)
    tracks, truth = simulate_cells(n_cells, cfg, seed=seed, out_dir=out, movies=movies)
    typer.echo(f"{n_cells} cell(s), {len(truth)} pits, {len(tracks)} ideal tracks -> {out}")


@app.command()
def track(
    movies: list[Path] = typer.Argument(..., help="Two-channel TIFF movies (TCYX or CTYX)."),
    out: Path = typer.Option(..., help="Output parquet tracks table."),
    aux: Path | None = typer.Option(
        None, help="Auxilin TYX movie when channels are separate files (one movie only)."
    ),
) -> None:
    """Detect and track clathrin pits, read auxilin at their positions."""
    from molecular_partner.tables import write_tracks_table
    from molecular_partner.tracking import track_movie

    if aux is not None and len(movies) != 1:
        raise typer.BadParameter("--aux goes with exactly one clathrin movie")
    tables, failed = [], []
    for m in movies:
        try:
            tables.append(track_movie(m, aux))
        except ValueError as err:
            if len(movies) == 1:
                raise typer.BadParameter(str(err)) from err
            warnings.warn(f"skipped: {err}", stacklevel=1)
            failed.append(str(m))
    if not tables:
        raise typer.BadParameter("no movie could be tracked: " + ", ".join(failed))
    import pandas as pd

    df = pd.concat(tables, ignore_index=True)
    write_tracks_table(df, out)
    typer.echo(f"{len(df)} tracks from {len(tables)} movie(s) -> {out}")


@app.command("build-dataset")
def build_dataset_cmd(
    inputs: list[Path] = typer.Argument(
        ..., help="Tracks tables (parquet), ProcessedTracks.mat files, or folders of them."
    ),
    out: Path = typer.Option(..., help="Output folder (dataset.parquet, meta.json)."),
    test_cells: str | None = typer.Option(None, help="Comma-separated test cells."),
    test_fraction: float = typer.Option(0.25, help="Fraction of cells held out."),
    seed: int = typer.Option(0, help="Seed of the cell split."),
    gates: bool = typer.Option(True, help="Drop tracks outside the 95%-purity lifetime gates."),
    lifetime_threshold: float = typer.Option(15.0, help="Keep lifetime_s above this."),
    awd_table: bool = typer.Option(
        False, help="Inputs are already in the AWD layout; only check and copy."
    ),
) -> None:
    """Apply the published cleaning and outcome rules and split by cell."""
    from molecular_partner.data import (
        build_dataset,
        load_awd_table,
        load_tracks,
        write_dataset,
    )
    from molecular_partner.tables import write_tracks_table

    try:
        if awd_table:
            if len(inputs) != 1:
                raise ValueError("--awd-table takes exactly one table")
            table = load_awd_table(inputs[0])
            path = write_tracks_table(table, out / "dataset.parquet")
            typer.echo(f"{len(table)} rows checked -> {path}")
            return
        tracks = load_tracks(inputs)
        cells = [c.strip() for c in test_cells.split(",")] if test_cells else None
        ds = build_dataset(
            tracks,
            test_cells=cells,
            test_fraction=test_fraction,
            seed=seed,
            lifetime_threshold=lifetime_threshold,
            apply_gates=gates,
            source=", ".join(map(str, inputs)),
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    path = write_dataset(ds, out)
    m = ds.meta
    typer.echo(
        f"{m['n_valid']} valid tracks, {m['n_hard']} in the data set "
        f"({m['n_train']} train / {m['n_test']} test) -> {path}"
    )
