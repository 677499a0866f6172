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
    FORCE_OPTION,
    RUN_OPTION,
    SET_OPTION,
    Domain,
    add_run_commands,
    check_out_folder,
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


@app.command()
def simulate(
    out: Path = typer.Option(..., help="Output folder."),
    n_cells: int = typer.Option(8, help="Number of cells (one movie each)."),
    seed: int = typer.Option(0, help="Random seed."),
    n_frames: int = typer.Option(300, help="Frames per movie (1 s each)."),
    size: int = typer.Option(256, help="Movie width and height in pixels (80 nm)."),
    n_pits: int = typer.Option(300, help="Pit sites per cell."),
    physics: str = typer.Option(
        "v1",
        help="Trace-to-outcome physics (molecular_partner.simulate.PHYSICS); "
        "recorded in config.json.",
    ),
    movies: bool = typer.Option(True, help="Render and write the TIFF movies."),
) -> None:
    """Simulate cells: TCYX movies, ground truth and ideal-tracker tracks."""
    from molecular_partner.simulate import PHYSICS, SimulationConfig, simulate_cells

    check_out_folder(out)
    if n_cells < 1:
        fail(f"--n-cells must be >= 1, got {n_cells}")
    if physics not in PHYSICS:
        fail(f"--physics must be one of {', '.join(sorted(PHYSICS))}, got {physics!r}")
    with user_errors():
        cfg = SimulationConfig(
            n_frames=n_frames, shape=(size, size), n_pits=n_pits, physics=physics
        )
        tracks, truth = simulate_cells(n_cells, cfg, seed=seed, out_dir=out, movies=movies)
    typer.echo(
        f"{n_cells} cell(s), {len(truth)} pits, {len(tracks)} ideal tracks "
        f"(physics {physics}) -> {out}"
    )


# The detection defaults of TrackingConfig hold for this pixel size (the simulator's).
_DEFAULT_PIXEL_NM = 80.0
# What the tracker assumes without a frame interval (molecular_partner.tracking).
_DEFAULT_FRAME_S = 1.0


def _movie_metadata(path: Path) -> dict[str, float]:
    """Frame interval (s) and pixel size (nm) from a TIFF's ImageJ tags; pixels not read."""
    import tifffile

    info: dict[str, float] = {}
    try:
        with tifffile.TiffFile(path) as tf:
            meta = tf.imagej_metadata or {}
            tag = tf.pages[0].tags.get("XResolution")
    except Exception:  # an unreadable file is reported by the tracker, with its reason
        return info
    if meta.get("finterval"):
        info["frame_interval_s"] = float(meta["finterval"])
    if tag is not None and meta.get("unit") in ("um", "micron", "\\u00B5m", "µm"):
        num, den = tag.value
        if num and den:
            info["pixel_size_nm"] = 1000.0 * den / num
    return info


def _tracking_config(
    path: Path, given: dict, frame_interval: float | None, pixel_size: float | None
):
    """The settings for one movie, and the lines that say where each came from."""
    from dataclasses import replace

    from molecular_partner.tracking import TrackingConfig

    meta = _movie_metadata(path)
    notes = []
    if frame_interval is not None:
        dt, dt_from = frame_interval, "given"
    elif "frame_interval_s" in meta:
        dt, dt_from = meta["frame_interval_s"], "metadata"
    else:
        dt, dt_from = _DEFAULT_FRAME_S, "assumed"
        notes.append(
            f"warning: {path}: no frame interval in the movie's metadata; assuming "
            f"{dt:g} s per frame (lifetimes and the 15 s threshold depend on it; pass "
            "--frame-interval SECONDS)"
        )
    px = pixel_size if pixel_size is not None else meta.get("pixel_size_nm")
    base = TrackingConfig()
    # PSF widths and displacements are fixed in nanometres: rescale the pixel defaults.
    factor = _DEFAULT_PIXEL_NM / px if px else 1.0
    cfg = replace(
        base,
        psf_sigma_px=(
            given["psf_sigma"] if given["psf_sigma"] is not None else base.psf_sigma_px[0] * factor,
            given["psf_sigma_aux"]
            if given["psf_sigma_aux"] is not None
            else base.psf_sigma_px[1] * factor,
        ),
        threshold=given["threshold"],
        alpha=given["alpha"],
        link_radius_px=given["link_radius"]
        if given["link_radius"] is not None
        else base.link_radius_px * factor,
        gap_radius_px=given["gap_radius"]
        if given["gap_radius"] is not None
        else base.gap_radius_px * factor,
        max_gap=given["max_gap"],
        merge_split=given["merge_split"],
        frame_interval_s=dt,
    )
    where = "given" if pixel_size is not None else ("metadata" if px else "assumed")
    notes.append(
        f"{path.name}: {dt:g} s per frame ({dt_from}), pixel {px or _DEFAULT_PIXEL_NM:g} nm "
        f"({where}); "
        f"PSF σ {cfg.psf_sigma_px[0]:.2f} / {cfg.psf_sigma_px[1]:.2f} px, threshold "
        f"{cfg.threshold:g}, link radius {cfg.link_radius_px:.2f} px, gaps up to "
        f"{cfg.max_gap} frames"
    )
    return cfg, notes


@app.command()
def track(
    movies: list[Path] = typer.Argument(..., help="Two-channel TIFF movies (TCYX or CTYX)."),
    out: Path = typer.Option(..., help="Output parquet tracks table."),
    aux: Path | None = typer.Option(
        None, help="Auxilin TYX movie when channels are separate files (one movie only)."
    ),
    frame_interval: float | None = typer.Option(
        None,
        min=0.0,
        help="Seconds between frames; overrides the movie's metadata (ImageJ 'finterval'). "
        "Without either, 1 s is assumed, with a warning.",
    ),
    pixel_size: float | None = typer.Option(
        None,
        min=0.0,
        help="Pixel size in nm; overrides the movie's metadata. The PSF and linking "
        "defaults are for 80 nm pixels and are rescaled to this size unless given.",
    ),
    psf_sigma: float | None = typer.Option(
        None, min=0.0, help="PSF SD of the clathrin channel, in pixels."
    ),
    psf_sigma_aux: float | None = typer.Option(
        None, min=0.0, help="PSF SD of the auxilin channel, in pixels."
    ),
    threshold: float = typer.Option(
        5.0, min=0.0, help="Detection threshold on the LoG response, in robust noise units."
    ),
    alpha: float = typer.Option(
        0.05, min=0.0, max=1.0, help="Level of the amplitude test (cmeAnalysis: 0.05)."
    ),
    link_radius: float | None = typer.Option(
        None, min=0.0, help="Largest frame-to-frame displacement, in pixels."
    ),
    gap_radius: float | None = typer.Option(
        None, min=0.0, help="Largest displacement across a gap, in pixels."
    ),
    max_gap: int = typer.Option(2, min=0, help="Gap closing reach in frames (cmeAnalysis: 2)."),
    merge_split: bool = typer.Option(
        True, help="Allow merging and splitting (compound tracks, catIdx 5-8)."
    ),
) -> None:
    """Detect and track clathrin pits, read auxilin at their positions.

    The frame interval and pixel size come from the movie's ImageJ metadata unless given;
    every movie's settings are printed.
    """
    from molecular_partner.tables import write_tracks_table
    from molecular_partner.tracking import track_movie

    if aux is not None and len(movies) != 1:
        fail("--aux goes with exactly one clathrin movie")
    for name, value in (("--frame-interval", frame_interval), ("--pixel-size", pixel_size)):
        if value is not None and value <= 0:
            fail(f"{name} must be positive, got {value:g}")
    given = {
        "psf_sigma": psf_sigma,
        "psf_sigma_aux": psf_sigma_aux,
        "threshold": threshold,
        "alpha": alpha,
        "link_radius": link_radius,
        "gap_radius": gap_radius,
        "max_gap": max_gap,
        "merge_split": merge_split,
    }
    tables, failed = [], []
    for m in movies:
        cfg, notes = _tracking_config(m, given, frame_interval, pixel_size)
        for note in notes:
            typer.echo(note, err=note.startswith("warning:"))
        try:
            tables.append(track_movie(m, aux, config=cfg))
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

    check_out_folder(out)
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
    force: bool = FORCE_OPTION,
) -> None:
    """Start a run on a data set and train its LSTM teachers (one per outcome).

    Teachers already trained with the same settings are kept.
    """
    from molecular_partner.pipeline import check_step_overrides, run_train_teacher, start_run

    with user_errors():
        check_step_overrides(overrides or [], "teacher")
        run_dir, cfg = start_run(run, data, config, overrides or [])
        summary = run_train_teacher(run_dir, cfg, force=force)
    parts = []
    for outcome in cfg.teacher.outcomes:
        part = summary[outcome]
        score = part.get("val_r2", part.get("val_accuracy"))
        what = "R²" if "val_r2" in part else "accuracy"
        shown = f", validation {what} {score:.3f}" if score is not None else ""
        parts.append(f"{outcome} ({part['epochs_run']} epochs{shown})")
    typer.echo(f"teachers trained: {'; '.join(parts)} -> {run / 'teacher'}")


add_run_commands(
    app,
    command="molecular-partner",
    package="molecular_partner",
    docs={
        "distill": "Distil wavelets through the regression teacher over the lambda x gamma grid.",
        "evaluate": (
            "Select students by grouped CV on training cells; score them on the test cells."
        ),
        "report": "Write the HTML report, its PNGs and the Markdown results table.",
    },
)


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
_DEMO_ROWS = (
    "awd",
    "awd_gamma0",
    "db5",
    "awd_xgboost",
    "teacher",
    "hand_features",
    "hand_features_xgboost",
    "hand_shape_xgboost",
)


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

    from molecular_partner.evaluate import read_metrics
    from molecular_partner.report import results_rows
    from shared.figures import estimates_figure

    rows = results_rows(read_metrics(run), json.loads((run / "methods.json").read_text()))
    panels = [
        # Two lines each: the method names take most of the width.
        ("r2", "r2_sd", "test R², auxilin signal\n(±1 SD)"),
        ("auc", "auc_sd", "test AUC, recruited or not\n(±1 SD)"),
    ]
    return estimates_figure(
        rows, out, "molecular_partner_results", [p for p in panels if rows[p[0]].notna().any()]
    )


def _grid_heatmap(selection: Path, out: Path) -> list[Path]:
    import pandas as pd

    from shared.figures import heatmap_figure

    table = pd.read_csv(selection)
    grid = table[(table["outcome"] == "regression") & table["lambda"].notna()]
    grid = grid[~grid["wavelet"].str.contains("xgboost")]
    return heatmap_figure(
        grid,
        out,
        "molecular_partner",
        value="cv_score",
        label="grouped-CV R²\n(training cells)",
        title="molecular partner: OLS student over λ × γ",
    )


def make_figures(results: Path, out: Path, report) -> None:
    """``awd figures`` hook: the committed simulated run's wavelets, results and grid."""
    from shared.figures import wavelet_figure

    run = results / "molecular_partner" / "simulated"
    wavelets = {"AWD": run / "wavelets" / "awd", "AWD, γ = 0": run / "wavelets" / "awd_gamma0"}
    report.build(
        "molecular-partner learned wavelets",
        [p.with_suffix(".safetensors") for p in wavelets.values()],
        lambda: wavelet_figure(
            wavelets,
            out,
            "molecular_partner_wavelets",
            xlabel="support (samples of the 40-point trace)",
        ),
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
