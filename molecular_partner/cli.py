"""``awd molecular-partner``: data (simulate, track, build-dataset) and the AWD pipeline
(train-teacher, distill, evaluate, report, predict).

Every pipeline step works on one run directory (``--run RUN``, the contract of
:class:`shared.runs.RunDir`); errors are one line ``error: ...`` with exit code 2.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from shared.commands import (
    CONFIG_OPTION,
    RUN_OPTION,
    SET_OPTION,
    Domain,
    fail,
    user_errors,
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=(
        "Clathrin/auxilin: simulate, track, build the data set, train the LSTM teachers, "
        "distil wavelets, evaluate students, report, predict."
    ),
)

logger = logging.getLogger(__name__)


def _check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is (or lies under) a file, before any work."""
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == out else f" ({folder} is a file)"
                fail(f"--out {out} is not a folder{where}")
            return


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

    _check_out_folder(out)
    if n_cells < 1:
        fail(f"--n-cells must be >= 1, got {n_cells}")
    with user_errors():
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
        fail("--aux goes with exactly one clathrin movie")
    tables, failed = [], []
    for m in movies:
        try:
            tables.append(track_movie(m, aux))
        except (ValueError, FileNotFoundError) as err:
            if len(movies) == 1:
                fail(str(err))
            typer.echo(f"warning: skipped {m}: {err}", err=True)
            failed.append(str(m))
    if not tables:
        fail("no movie could be tracked: " + ", ".join(failed))
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
        check_awd_splits,
        load_awd_table,
        load_tracks,
        write_dataset,
    )
    from molecular_partner.tables import write_tracks_table

    _check_out_folder(out)
    try:
        if awd_table:
            if len(inputs) != 1:
                raise ValueError("--awd-table takes exactly one table")
            table = load_awd_table(inputs[0])
            # What a run will need of the table, said now rather than at its first step.
            check_awd_splits(table, str(inputs[0]))
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
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    path = write_dataset(ds, out)
    m = ds.meta
    typer.echo(
        f"{m['n_valid']} valid tracks, {m['n_hard']} in the data set "
        f"({m['n_train']} train / {m['n_test']} test) -> {path}"
    )


# --------------------------------------------------------------------------- AWD pipeline


@app.command("train-teacher")
def train_teacher_cmd(
    run: Path = RUN_OPTION,
    data: Path | None = typer.Option(
        None, help="The data set (a folder written by build-dataset; new runs)."
    ),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
) -> None:
    """Start a run on a data set and train its LSTM teachers (one per outcome)."""
    from molecular_partner.pipeline import check_step_overrides, run_train_teacher, start_run

    with user_errors():
        check_step_overrides(overrides or [], "teacher")
        run_dir, cfg = start_run(run, data, config, overrides or [])
        summary = run_train_teacher(run_dir, cfg)
    parts = []
    for outcome in cfg.teacher.outcomes:
        part = summary[outcome]
        score = part.get("val_r2", part.get("val_accuracy"))
        what = "R²" if "val_r2" in part else "accuracy"
        shown = f", validation {what} {score:.3f}" if score is not None else ""
        parts.append(f"{outcome} ({part['epochs_run']} epochs{shown})")
    typer.echo(f"teachers trained: {'; '.join(parts)} -> {run / 'teacher'}")


@app.command("distill")
def distill_cmd(
    run: Path = RUN_OPTION,
    overrides: list[str] | None = SET_OPTION,
    workers: int = typer.Option(1, min=1, help="Parallel chains (processes)."),
) -> None:
    """Distil wavelets through the regression teacher over the lambda x gamma grid.

    Finished points are kept: rerunning the command resumes an interrupted grid.
    """
    from molecular_partner.pipeline import open_run, run_distill
    from shared.sweep import Engine

    with user_errors():
        run_dir, cfg = open_run(run, overrides or [], "distill")
        records = run_distill(
            run_dir, cfg, engine=Engine(workers=workers), overrides=overrides or []
        )
    typer.echo(f"{len(records)} wavelets distilled -> {run / 'distill'}")


@app.command("evaluate")
def evaluate_cmd(run: Path = RUN_OPTION, overrides: list[str] | None = SET_OPTION) -> None:
    """Select students by grouped CV on training cells; score them on the test cells."""
    from molecular_partner.evaluate import run_evaluate
    from molecular_partner.pipeline import open_run

    with user_errors():
        run_dir, cfg = open_run(run, overrides or [], "evaluate")
        metrics = run_evaluate(run_dir, cfg)
    typer.echo(f"{metrics.method.nunique()} methods scored -> {run / 'evaluate' / 'metrics.csv'}")
    typer.echo(f"students saved -> {run / 'students'}")


@app.command("report")
def report_cmd(
    run: Path = RUN_OPTION,
    out: Path | None = typer.Option(None, help="Output folder (default: RUN/report)."),
) -> None:
    """Write the HTML report, its PNGs and the Markdown results table."""
    from molecular_partner.report import write_report

    with user_errors():
        path = write_report(run, out)
    typer.echo(f"report -> {path}")


@app.command("predict")
def predict_cmd(
    tracks: list[Path] = typer.Argument(
        ..., help="ProcessedTracks.mat files, parquet track tables, or folders of them."
    ),
    run: Path = RUN_OPTION,
    out: Path = typer.Option(..., help="The predictions CSV to write."),
    method: str | None = typer.Option(
        None, help="A saved student (default: the AWD student selected by grouped CV)."
    ),
) -> None:
    """Predict auxilin recruitment of new tracks with a run's saved students.

    Tracks the data set's cleaning rules drop are written to OUT_dropped.csv with reasons.
    """
    from molecular_partner.predict import _dropped_path, predict_files

    with user_errors():
        table, dropped = predict_files(run, tracks, out, method)
    used = table["student"].iloc[0] if len(table) else method
    typer.echo(f"{len(table)} tracks predicted with {used} -> {out}")
    typer.echo(f"{len(dropped)} tracks dropped by the cleaning rules -> {_dropped_path(out)}")


# --------------------------------------------------------------------------- demo
_DEMO_SIZES = {
    # cells, pits per cell, teacher epochs, distillation epochs, lambdas, gammas, bootstrap
    "full": (6, 600, 30, 8, (0.001, 0.005), (0.0, 0.1), 500),
    "quick": (4, 300, 4, 2, (0.001,), (0.0, 0.1), 50),
}
_DEMO_ROWS = ("awd", "awd_gamma0", "db5", "awd_xgboost", "teacher", "hand_features")


def _metrics_table(metrics) -> str:
    """Markdown table of R2 and AUC (bootstrap SD) and the prediction time per method."""
    lines = [
        "| method | R² (SD) | AUC (SD) | end-to-end s/trace |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method in _DEMO_ROWS:
        rows = metrics[metrics["method"] == method].set_index("metric")
        if rows.empty:
            continue
        cells = [
            f"{rows.loc[m, 'value']:.3f} ({rows.loc[m, 'sd']:.3f})" if m in rows.index else "–"
            for m in ("r2", "auc")
        ]
        seconds = rows["seconds_per_item"].iloc[0]
        lines.append(f"| {method} | {cells[0]} | {cells[1]} | {seconds:.2e} |")
    return "\n".join(lines)


def run_demo(out: Path, quick: bool = False) -> dict:
    """Run the whole pipeline on a small simulated data set; called by ``awd demo``.

    Simulates cells (tracks only, no movies), builds the data set (the last cell is the
    test cell), trains the regression and binary LSTM teachers, distils a small
    lambda x gamma grid, evaluates and saves every student and baseline and writes the
    report: ``out/run`` is a complete run directory that ``predict`` accepts.

    Parameters
    ----------
    out : Path
        Output folder (``sim/``, ``data/`` and the run directory ``run/``).
    quick : bool
        Tiny sizes (seconds; for tests) instead of the demo's (a few minutes on 2 cores).

    Returns
    -------
    dict
        ``report`` (path of ``report.html``), ``table`` (Markdown table of the main
        metrics), ``metrics`` (the rows of ``metrics.csv``) and ``seconds``.

    Examples
    --------
    >>> import tempfile
    >>> result = run_demo(Path(tempfile.mkdtemp()), quick=True)  # doctest: +SKIP
    >>> sorted(result)  # doctest: +SKIP
    ['metrics', 'report', 'seconds', 'table']
    """
    import time

    from molecular_partner.data import build_dataset, load_tracks, write_dataset
    from molecular_partner.evaluate import read_metrics, run_evaluate
    from molecular_partner.pipeline import run_distill, run_train_teacher, start_run
    from molecular_partner.report import write_report
    from molecular_partner.simulate import SimulationConfig, simulate_cells

    tic = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells, pits, t_epochs, d_epochs, lambdas, gammas, boot = _DEMO_SIZES[
        "quick" if quick else "full"
    ]
    logger.info("[demo] molecular-partner: simulating %d cells", cells)
    simulate_cells(cells, SimulationConfig(n_pits=pits), seed=0, out_dir=out / "sim", movies=False)
    # The tracks as a user's would arrive: read back from the tracks table on disk.
    tracks = load_tracks([out / "sim" / "tracks.parquet"])
    write_dataset(build_dataset(tracks, test_cells=[f"cell{cells}"], seed=0), out / "data")
    sets = [
        f"teacher.epochs={t_epochs}",
        "teacher.patience=10",
        f"distill.lambdas={list(lambdas)}",
        f"distill.gammas={list(gammas)}",
        f"distill.train.epochs={d_epochs}",
        "distill.train.patience=null",
        f"evaluate.n_bootstrap={boot}",
        "evaluate.xgb_estimators=[100]",
        "evaluate.xgb_depths=[2]",
        "evaluate.timing_repeats=5",
    ]
    run, cfg = start_run(out / "run", out / "data", None, sets)
    logger.info("[demo] molecular-partner: teachers")
    run_train_teacher(run, cfg)
    logger.info("[demo] molecular-partner: distillation")
    run_distill(run, cfg)
    logger.info("[demo] molecular-partner: students and baselines")
    run_evaluate(run, cfg)
    report = write_report(run.root)
    metrics = read_metrics(run.root / "evaluate")
    return {
        "report": str(report),
        "table": _metrics_table(metrics),
        "metrics": metrics.to_dict(orient="records"),
        "seconds": time.perf_counter() - tic,
    }


def _results_figure(run: Path, out: Path) -> list[Path]:
    import json

    import pandas as pd

    from molecular_partner.evaluate import results_table
    from shared.figures import cells_figure

    table = results_table(
        pd.read_csv(run / "metrics.csv"), json.loads((run / "methods.json").read_text())
    )

    def fmt(v, sd=None, spec=".3f"):
        if pd.isna(v):
            return "–"
        return f"{v:{spec}}" + (f" ({sd:.3f})" if sd is not None and pd.notna(sd) else "")

    cells = pd.DataFrame(
        {
            "R² (SD)": [fmt(r.r2, r.r2_sd) for r in table.itertuples()],
            "AUC (SD)": [fmt(r.auc, r.auc_sd) for r in table.itertuples()],
            "compression rate": [fmt(r.compression_rate) for r in table.itertuples()],
            "parameters": [fmt(r.n_parameters, spec=".0f") for r in table.itertuples()],
            "s / trace": [fmt(r.seconds_per_item, spec=".2g") for r in table.itertuples()],
        },
        index=table["method"],
    )
    return cells_figure(cells, table, out, "molecular_partner_results", "test cells")


def _grid_heatmap(selection: Path, out: Path) -> list[Path]:
    import pandas as pd

    from shared.figures import heatmap_figure

    table = pd.read_csv(selection)
    grid = table[(table["outcome"] == "regression") & table["lambda"].notna()]
    grid = grid[~grid["wavelet"].str.contains("xgboost")]
    return heatmap_figure(
        grid, out, "molecular_partner", value="cv_score", label="grouped-CV R² (training cells)"
    )


def make_figures(results: Path, out: Path, report) -> None:
    """``awd figures`` hook: the committed simulated run's wavelets and results table."""
    from shared.figures import wavelet_figure

    run = results / "molecular_partner" / "simulated"
    wavelets = {"AWD": run / "wavelets" / "awd", "AWD, γ=0": run / "wavelets" / "awd_gamma0"}
    report.build(
        "molecular-partner learned wavelets",
        [p.with_suffix(".safetensors") for p in wavelets.values()],
        lambda: wavelet_figure(wavelets, out, "molecular_partner_wavelets"),
    )
    report.build(
        "molecular-partner results table",
        [run / "metrics.csv", run / "methods.json"],
        lambda: _results_figure(run, out),
    )
    selection = run / "selection.csv"
    report.build(
        "molecular-partner λ×γ heatmap", [selection], lambda: _grid_heatmap(selection, out)
    )


#: The molecular-partner domain, offered to ``awd`` through the ``awd.domains`` entry point.
DOMAIN = Domain(
    name="molecular-partner",
    app=app,
    run_demo=run_demo,
    make_figures=make_figures,
    sweep_task="molecular_partner.sweep:make_task",
    loggers=("molecular_partner",),
)
