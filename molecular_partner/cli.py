"""``awd molecular-partner``: data (simulate, track, build-dataset) and the AWD pipeline
(train-teacher, distill, evaluate, report)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Clathrin/auxilin: simulate, track, build the data set, train the LSTM teacher, "
        "distil wavelets, evaluate students, report."
    ),
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


# --------------------------------------------------------------------------- AWD pipeline
_CONFIG_HELP = "YAML config (sections teacher, distill, evaluate)."
_SET_HELP = "Override a setting: section.field=value (repeatable)."


def _load(config: Path | None, overrides: list[str] | None):
    from molecular_partner.config import load_config

    try:
        return load_config(config, overrides)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


def _read_data(data: Path):
    from molecular_partner.data import read_dataset

    try:
        table = read_dataset(data)
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err
    for col in ("split", "cell"):
        if col not in table.columns:
            raise typer.BadParameter(f"{data}: missing column {col!r} (splits are by cell)")
    return table


def _validation_cells(table, n: int, seed: int) -> list[str]:
    """Training cells held out for early stopping (never test cells)."""
    from molecular_partner.sweep import validation_cells

    return validation_cells(table, n, seed)


def _traces(table):
    import numpy as np

    return np.stack(table["X_same_length_normalized"].to_list()).astype(np.float32)


def _start_run(out: Path, section, seed: int, inputs: dict) -> None:
    from molecular_partner.config import write_config
    from shared.runs import environment_info, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_config(section, out / "config.yaml")
    write_json(
        out / "inputs.json", {k: str(v) if v is not None else None for k, v in inputs.items()}
    )
    write_json(out / "env.json", environment_info(seed))


@app.command("train-teacher")
def train_teacher_cmd(
    data: Path = typer.Argument(..., help="Data set folder or dataset.parquet."),
    out: Path = typer.Option(..., help="Run directory."),
    outcome: str = typer.Option("regression", help="regression (MSE) or binary (BCE)."),
    config: Path | None = typer.Option(None, help=_CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
) -> None:
    """Train the LSTM teacher on the training cells (early stopping on held-out cells)."""
    import dataclasses

    import numpy as np

    from molecular_partner.evaluate import OUTCOMES
    from molecular_partner.teacher import predict, save_teacher, train_teacher
    from shared.runs import write_json

    if outcome not in OUTCOMES:
        raise typer.BadParameter(f"--outcome must be one of {sorted(OUTCOMES)}, got {outcome!r}")
    cfg = _load(config, set_).teacher
    if outcome == "binary" and cfg.loss != "bce":
        cfg = dataclasses.replace(cfg, loss="bce")
    table = _read_data(data)
    column = OUTCOMES[outcome]
    if column not in table.columns:
        raise typer.BadParameter(f"{data}: outcome column {column!r} is missing")
    train = table[table["split"] == "train"]
    val_cells = _validation_cells(table, cfg.val_cells, cfg.seed)
    is_val = train["cell"].astype(str).isin(val_cells).to_numpy()
    x, y = _traces(train), train[column].to_numpy(dtype=np.float32)
    _start_run(out, cfg, cfg.seed, {"data": data, "outcome": outcome})
    try:
        model, history = train_teacher(
            x[~is_val],
            y[~is_val],
            cfg,
            x_val=x[is_val],
            y_val=y[is_val],
            checkpoint_dir=out,
        )
    except ValueError as err:
        raise typer.BadParameter(f"{data}: {err}") from err
    save_teacher(model, out / "teacher", history=history, settings=cfg)
    write_json(out / "history.json", history)
    summary = {"outcome": outcome, "val_cells": val_cells, "epochs_run": len(history)}
    for name, mask in (("fit", ~is_val), ("val", is_val)):
        if mask.any():
            p = predict(model, x[mask])
            if outcome == "regression":
                ss = float(np.sum((y[mask] - y[mask].mean()) ** 2)) or float("nan")
                summary[f"{name}_r2"] = 1.0 - float(np.sum((y[mask] - p) ** 2)) / ss
            else:
                summary[f"{name}_accuracy"] = float(np.mean((p >= 0.5) == (y[mask] == 1)))
    write_json(out / "metrics.json", summary)
    typer.echo(f"teacher trained ({len(history)} epochs) -> {out / 'teacher.safetensors'}")


def _teacher(path: Path, length: int = 40):
    from molecular_partner.teacher import load_teacher

    try:
        return load_teacher(path, length=length)
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err


@app.command("distill")
def distill_cmd(
    data: Path = typer.Argument(..., help="Data set folder or dataset.parquet."),
    teacher: Path = typer.Option(..., help="Teacher run directory or file."),
    out: Path = typer.Option(..., help="Run directory."),
    config: Path | None = typer.Option(None, help=_CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
) -> None:
    """Distil wavelets through the teacher over the lambda x gamma grid (resumable)."""
    from molecular_partner.distillation import distill_grid

    cfg = _load(config, set_)
    table = _read_data(data)
    model = _teacher(teacher)
    train = table[table["split"] == "train"]
    val_cells = _validation_cells(table, cfg.teacher.val_cells, cfg.teacher.seed)
    is_val = train["cell"].astype(str).isin(val_cells).to_numpy()
    x = _traces(train)
    _start_run(out, cfg.distill, cfg.distill.seed, {"data": data, "teacher": teacher})
    try:
        entries = distill_grid(x[~is_val], model, cfg.distill, out_dir=out, x_val=x[is_val])
    except ValueError as err:
        raise typer.BadParameter(f"{data}: {err}") from err
    typer.echo(f"{len(entries)} wavelets distilled -> {out / 'wavelets'}")


@app.command("evaluate")
def evaluate_cmd(
    data: Path = typer.Argument(..., help="Data set folder or dataset.parquet."),
    teacher: Path = typer.Option(..., help="Regression (MSE) teacher: run directory or file."),
    distilled: Path = typer.Option(..., "--distilled", help="Distillation run directory."),
    out: Path = typer.Option(..., help="Run directory."),
    teacher_binary: Path | None = typer.Option(None, help="BCE teacher for the binary outcome."),
    outcomes: str = typer.Option("regression,binary", help="Outcomes to evaluate."),
    config: Path | None = typer.Option(None, help=_CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
) -> None:
    """Select students by grouped CV on training cells; score them on the test cells."""
    from molecular_partner.distillation import read_grid
    from molecular_partner.evaluate import evaluate

    cfg = _load(config, set_).evaluate
    table = _read_data(data)
    model = _teacher(teacher)
    binary = _teacher(teacher_binary) if teacher_binary is not None else None
    try:
        grid = read_grid(distilled)
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err
    _start_run(
        out,
        cfg,
        cfg.seed,
        {
            "data": data,
            "teacher": teacher,
            "teacher_binary": teacher_binary,
            "distilled": distilled,
        },
    )
    try:
        metrics = evaluate(
            table,
            model,
            grid,
            cfg,
            out_dir=out,
            teacher_binary=binary,
            outcomes=tuple(o.strip() for o in outcomes.split(",") if o.strip()),
            source=str(data),
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(metrics.to_string(index=False))


@app.command("report")
def report_cmd(
    run: Path = typer.Argument(..., help="Evaluation run directory."),
    out: Path | None = typer.Option(None, help="Output folder (default: the run directory)."),
) -> None:
    """Write the HTML report, its PNGs and the Markdown results table."""
    from molecular_partner.report import write_report

    try:
        path = write_report(run, out)
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"report -> {path}")


# --------------------------------------------------------------------------- demo
_DEMO_SIZES = {
    # cells, pits per cell, teacher epochs, distillation epochs, lambdas, gammas, bootstrap
    "full": (6, 600, 30, 8, "0.001,0.005", "0,0.1", 500),
    "quick": (4, 300, 4, 2, "0.001", "0,0.1", 50),
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
        seconds = rows["predict_seconds_per_trace"].iloc[0]
        lines.append(f"| {method} | {cells[0]} | {cells[1]} | {seconds:.2e} |")
    return "\n".join(lines)


def run_demo(out: Path, quick: bool = False) -> dict:
    """Run the whole pipeline on a small simulated data set; called by ``awd demo``.

    Simulates cells (tracks only, no movies), builds the data set (the last cell is the
    test cell), trains the regression and binary LSTM teachers, distils a small
    lambda x gamma grid, evaluates every student and baseline and writes the report.

    Parameters
    ----------
    out : Path
        Output folder (one run directory per step).
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

    from molecular_partner.evaluate import read_metrics

    tic = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells, pits, t_epochs, d_epochs, lambdas, gammas, boot = _DEMO_SIZES[
        "quick" if quick else "full"
    ]

    def step(*args: object) -> None:
        logger.info("[demo] molecular-partner %s", args[0])
        app([str(a) for a in args], standalone_mode=False)

    teacher = ["--set", f"teacher.epochs={t_epochs}", "--set", "teacher.patience=10"]
    step("simulate", "--out", out / "sim", "--n-cells", cells, "--n-pits", pits, "--no-movies")
    step(
        "build-dataset", out / "sim" / "tracks.parquet", "--out", out / "data",
        "--test-cells", f"cell{cells}",
    )  # fmt: skip
    step("train-teacher", out / "data", "--out", out / "teacher", *teacher)
    step(
        "train-teacher", out / "data", "--out", out / "teacher_bin", "--outcome", "binary",
        *teacher,
    )  # fmt: skip
    step(
        "distill", out / "data", "--teacher", out / "teacher", "--out", out / "distill",
        "--set", f"distill.lambdas={lambdas}", "--set", f"distill.gammas={gammas}",
        "--set", f"distill.epochs={d_epochs}", "--set", "distill.patience=null",
    )  # fmt: skip
    step(
        "evaluate", out / "data", "--teacher", out / "teacher", "--teacher-binary",
        out / "teacher_bin", "--distilled", out / "distill", "--out", out / "evaluate",
        "--set", f"evaluate.n_bootstrap={boot}", "--set", "evaluate.xgb_estimators=100",
        "--set", "evaluate.xgb_depths=2", "--set", "evaluate.timing_repeats=5",
    )  # fmt: skip
    step("report", out / "evaluate")
    metrics = read_metrics(out / "evaluate")
    return {
        "report": str(out / "evaluate" / "report.html"),
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
            "s / trace": [fmt(r.predict_seconds_per_trace, spec=".2g") for r in table.itertuples()],
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
