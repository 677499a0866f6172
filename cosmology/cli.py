"""``awd cosmology``: simulate, train-teacher, distill, evaluate, report, predict.

Every step after ``simulate`` works on one run directory (``--run RUN``, the contract of
:class:`shared.runs.RunDir`); errors are one line ``error: ...`` with exit code 2.
"""

from __future__ import annotations

import logging
import math
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
    help="Weak-lensing convergence maps -> (Omega_m, sigma_8): simulate, train the CNN "
    "teacher, distil wavelets, evaluate students, report, predict.",
)

logger = logging.getLogger(__name__)


@app.callback()
def _cosmology() -> None:
    """Weak-lensing convergence maps -> (Omega_m, sigma_8)."""


#: Smallest accepted value of simulate's options, and whether the bound itself is allowed.
_SIMULATE_BOUNDS = {
    "--n-cosmologies": (1, True),
    "--n-maps": (1, True),
    "--size": (8, True),
    "--side-angle": (0.0, False),
    "--z-s": (0.0, False),
    "--n-gal": (0.0, False),
    "--sigma-e": (0.0, True),
    "--smoothing": (0.0, True),
}


def _check_simulate_options(out: Path, counts: dict, amounts: dict) -> None:
    """Refuse out-of-range options and an ``--out`` that is a file, before any work."""
    for option, value in {**counts, **amounts}.items():
        bound, inclusive = _SIMULATE_BOUNDS[option]
        ok = math.isfinite(value) and (value >= bound if inclusive else value > bound)
        if not ok:
            rule = f">= {bound:g}" if inclusive else f"> {bound:g}"
            fail(f"{option} must be {rule}, got {value:g}")
    check_out_folder(out)


@app.command()
def simulate(
    out: Path = typer.Option(Path("data/cosmology/sim"), help="Output root (MassiveNuS layout)."),
    design: str = typer.Option(
        "ten", help="'ten' (the AWD cosmologies), 'lhs' (Latin hypercube) or a CSV path."
    ),
    n_cosmologies: int = typer.Option(10, help="Cosmologies of the Latin hypercube."),
    n_maps: int = typer.Option(100, help="Maps per cosmology."),
    size: int = typer.Option(256, help="Map size in pixels."),
    side_angle: float = typer.Option(3.5, help="Side angle in degrees."),
    z_s: float = typer.Option(1.0, help="Source redshift."),
    noise: bool = typer.Option(False, "--noise/--no-noise", help="Add galaxy shape noise."),
    n_gal: float = typer.Option(30.0, help="Galaxies per arcmin^2 (with --noise)."),
    sigma_e: float = typer.Option(0.26, help="Ellipticity rms per component (with --noise)."),
    smoothing: float = typer.Option(0.0, help="Gaussian smoothing sigma in arcmin (0: none)."),
    neutrinos: bool = typer.Option(
        True, "--neutrinos/--no-neutrinos", help="Keep M_nu of the ten-cosmology design."
    ),
    gaussian: bool = typer.Option(False, help="Gaussian instead of lognormal fields."),
    seed: int = typer.Option(0, help="Random seed."),
    workers: int = typer.Option(1, help="Worker processes."),
) -> None:
    """Simulate shifted-lognormal convergence maps (resumable; existing maps are kept)."""
    from cosmology.cosmologies import design_csv, design_lhs, design_ten
    from cosmology.data import load_catalog
    from cosmology.noise import ShapeNoise
    from cosmology.simulate import simulate_dataset

    _check_simulate_options(
        out,
        {"--n-cosmologies": n_cosmologies, "--n-maps": n_maps, "--size": size},
        {
            "--side-angle": side_angle,
            "--z-s": z_s,
            "--n-gal": n_gal,
            "--sigma-e": sigma_e,
            "--smoothing": smoothing,
        },
    )
    if design not in ("ten", "lhs") and not Path(design).is_file():
        fail(f"--design: 'ten', 'lhs' or an existing CSV file, got {design}")
    with user_errors():
        if design == "ten":
            table = design_ten(include_neutrinos=neutrinos)
        elif design == "lhs":
            table = design_lhs(n_cosmologies, seed=seed)
        else:
            table = design_csv(Path(design))
        root = simulate_dataset(
            out,
            table,
            n_maps=n_maps,
            n_pix=size,
            side_angle_deg=side_angle,
            z_s=z_s,
            noise=ShapeNoise(sigma_e=sigma_e, n_gal=n_gal) if noise else None,
            smoothing_arcmin=smoothing or None,
            seed=seed,
            workers=workers,
            gaussian=gaussian,
        )
        catalog = load_catalog(root)
    typer.echo(
        f"{len(catalog)} maps of {size}x{size} px over {catalog.cosmology.nunique()} "
        f"cosmologies under {out}"
    )


@app.command("train-teacher")
def train_teacher_cmd(
    run: Path = RUN_OPTION,
    data: Path | None = typer.Option(None, help="The maps: a folder or an .npz (new runs)."),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
    resume: bool = typer.Option(False, help="Continue from the teacher checkpoint."),
    force: bool = FORCE_OPTION,
) -> None:
    """Start a run on the maps and train its CNN teacher (standardised Omega_m, sigma_8).

    A teacher already trained with the same settings is kept.
    """
    from cosmology.pipeline import check_step_overrides, run_train_teacher, start_run

    with user_errors():
        check_step_overrides(overrides or [], "teacher")
        run_dir, cfg = start_run(run, data, config, overrides or [])
        summary = run_train_teacher(run_dir, cfg, resume=resume, force=force)
    typer.echo(
        f"teacher ({summary['arch']}, {summary['parameters']} parameters) trained for "
        f"{summary['epochs_run']} epochs; best validation loss {summary['best_val_loss']:.4f} "
        f"(standardised units) -> {run / 'teacher'}"
    )


add_run_commands(
    app,
    command="cosmology",
    package="cosmology",
    docs={
        "distill": (
            "Distil the lambda x gamma grid of wavelets from the run's frozen teacher (TRIM)."
        ),
        "evaluate": (
            "Fit the students and baselines, select on validation, score on test, save them."
        ),
        "report": "Write the self-contained HTML report and its PNG figures from saved results.",
    },
)


@app.command("predict")
def predict_cmd(
    maps: list[Path] = typer.Argument(..., help="FITS maps, folders of them, or .npz stacks."),
    run: Path = RUN_OPTION,
    out: Path = typer.Option(..., help="The predictions CSV to write."),
    method: str | None = typer.Option(
        None, help="A saved student (default: the AWD student selected on validation)."
    ),
    side_angle: float | None = typer.Option(
        None, help="Side angle in degrees, for maps whose files carry none."
    ),
) -> None:
    """Estimate (Omega_m, sigma_8) of new maps with a run's saved student."""
    from cosmology.predict import predict_files

    with user_errors():
        table = predict_files(run, maps, out, method, side_angle)
    used = table["student"].iloc[0] if len(table) else method
    typer.echo(f"{len(table)} maps predicted with {used} -> {out}")


# Sizes of ``run_demo``: (cosmology rows of the ten, maps each, pixels, teacher epochs,
# distillation epochs, lambdas, gammas, bootstrap draws).
_DEMO_SIZES = {
    "full": ([4, 1, 0, 2, 3], 100, 64, 30, 4, [0.005, 0.02], [0.0, 0.001, 0.01], 500),
    "quick": ([4, 0, 3], 20, 32, 1, 1, [0.005], [0.0, 0.01], 20),
}


def run_demo(out: Path, quick: bool = False) -> dict:
    """Run the whole pipeline on a small simulated noisy data set; called by ``awd demo``.

    Simulates noisy, smoothed convergence maps of a few of the ten AWD cosmologies, trains
    the small CNN teacher briefly, distils a small lambda x gamma grid, evaluates every
    student and baseline (selection on validation, RMSE on test), saves them and writes
    the report: ``out/run`` is a complete run directory that ``predict`` accepts.

    Parameters
    ----------
    out : Path
        Output folder: ``sim/`` (maps) and ``run/`` (the run directory).
    quick : bool
        Tiny sizes (seconds; for tests) instead of the demo's (a few minutes on 2 cores).

    Returns
    -------
    dict
        ``report`` (path of ``report.html``), ``table`` (Markdown table of the metrics),
        ``metrics`` (the rows of ``metrics.csv``) and ``seconds``.

    Examples
    --------
    >>> import tempfile
    >>> result = run_demo(Path(tempfile.mkdtemp()), quick=True)  # doctest: +SKIP
    >>> sorted(result)  # doctest: +SKIP
    ['metrics', 'report', 'seconds', 'table']
    """
    import time

    from cosmology.cosmologies import design_ten
    from cosmology.evaluate import metrics_markdown, read_metrics, run_evaluate
    from cosmology.noise import ShapeNoise
    from cosmology.pipeline import load_splits, run_distill, run_train_teacher, start_run
    from cosmology.report import write_report
    from cosmology.simulate import simulate_dataset

    tic = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, n_maps, n_pix, t_epochs, d_epochs, lambdas, gammas, boot = _DEMO_SIZES[
        "quick" if quick else "full"
    ]
    logger.info("[demo] cosmology: simulating %d x %d maps of %d^2", len(rows), n_maps, n_pix)
    root = simulate_dataset(
        out / "sim",
        design_ten(include_neutrinos=False).iloc[rows],
        n_maps=n_maps,
        n_pix=n_pix,
        noise=ShapeNoise(sigma_e=0.26, n_gal=30.0),
        smoothing_arcmin=1.0,
        seed=0,
    )
    sets = [
        f"teacher.epochs={t_epochs}",
        "teacher.batch_size=32",
        "teacher.lr=0.003",
        f"teacher.patience={t_epochs}",
        f"distill.lambdas={lambdas}",
        f"distill.gammas={gammas}",
        f"distill.levels={3 if n_pix >= 64 else 2}",
        f"distill.train.epochs={d_epochs}",
        "distill.train.lr=0.01",
        "distill.train.batch_size=50",
        "distill.n_maps=300",
        "distill.n_val_maps=40",
        "student.coverages=[0.95,0.99]",
        "student.ridge_alphas=[0.1,1.0,10.0]",
        "student.xgb_estimators=50",
        "student.minkowski_max_maps=100",
        f"evaluate.n_bootstrap={boot}",
        "evaluate.n_attr_maps=8",
        "evaluate.timing_maps=32",
    ]
    run, cfg = start_run(out / "run", root, None, sets)
    splits = load_splits(run.data_path, cfg)
    logger.info("[demo] cosmology: teacher")
    run_train_teacher(run, cfg, splits=splits)
    logger.info("[demo] cosmology: distillation")
    run_distill(run, cfg, splits=splits)
    logger.info("[demo] cosmology: students and baselines")
    run_evaluate(run, cfg, splits=splits)
    report = write_report(run.root)
    metrics = read_metrics(run.root / "evaluate" / "metrics.csv")
    return {
        "report": str(report),
        "table": metrics_markdown(metrics).rstrip("\n"),
        "metrics": metrics.to_dict(orient="records"),
        "seconds": time.perf_counter() - tic,
    }


def _peak_histogram_figure(table_path: Path, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    import pandas as pd

    from shared.figures import save_figure, style

    table = pd.read_csv(table_path)
    kernels = list(dict.fromkeys(table["kernel"]))
    with style():
        fig, axes = plt.subplots(1, len(kernels), figsize=(3.2 * len(kernels), 3), sharey=True)
        om = table["omega_m"]
        norm = plt.Normalize(om.min(), max(om.max(), om.min() + 1e-9))
        cmap = plt.get_cmap("viridis")
        for ax, kernel in zip(axes, kernels, strict=True):
            part = table[table["kernel"] == kernel]
            for (omega, _), cosmo in part.groupby(["omega_m", "sigma_8"], sort=True):
                centres = 0.5 * (cosmo["lo"] + cosmo["hi"])
                ax.plot(centres, cosmo["mean_peaks_per_map"], color=cmap(norm(omega)), lw=1)
            ax.set_title(f"AWD {kernel} kernel")
            ax.set_xlabel("filtered convergence at the peak")
        axes[0].set_ylabel("mean peaks per map")
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="$\\Omega_m$")
        return save_figure(fig, out, "cosmology_peak_histograms", table)


def _grid_heatmap(table_path: Path, out: Path) -> list[Path]:
    import pandas as pd

    from shared.figures import heatmap_figure

    return heatmap_figure(
        pd.read_csv(table_path),
        out,
        "cosmology",
        value="val_score",
        label="validation RMSE / SD\n(lower is better)",
        higher_is_better=False,
        title="cosmology: paper's student over λ × γ",
    )


def _results_figure(run: Path, out: Path) -> list[Path]:
    import json

    import pandas as pd

    from cosmology.report import GROUPS, PARAMETERS, headline_rows
    from shared.evaluation import read_metrics
    from shared.figures import estimates_figure

    comparisons = run / "comparisons.csv"
    rows = headline_rows(
        read_metrics(run / "metrics.csv"),
        json.loads((run / "selection.json").read_text()),
        pd.read_csv(comparisons) if comparisons.exists() else None,
    )
    trivial = rows[rows["group"] == GROUPS[4]]
    shown = rows[rows["group"] != GROUPS[4]]
    note = "training mean: " + ", ".join(
        f"{'Ωₘ' if p == 'omega_m' else 'σ₈'} {trivial[p].iloc[0]:.3g}" for p in PARAMETERS
    )
    return estimates_figure(
        shown.reset_index(drop=True),
        out,
        "cosmology_results",
        [
            ("omega_m", "omega_m_sd", "test RMSE of $\\Omega_m$ (±1 bootstrap SD)"),
            ("sigma_8", "sigma_8_sd", "test RMSE of $\\sigma_8$ (±1 bootstrap SD)"),
        ],
        note=note if len(trivial) else "",
    )


def make_figures(results: Path, out: Path, report) -> None:
    """``awd figures`` hook: the ten-cosmology run's wavelets, results, histograms, grid."""
    from shared.figures import wavelet_figure

    run = results / "cosmology" / "ten_cosmologies"
    wavelets = {"AWD": run / "wavelets" / "awd", "AWD, γ = 0": run / "wavelets" / "awd_gamma0"}
    report.build(
        "cosmology learned wavelets",
        [p.with_suffix(".safetensors") for p in wavelets.values()],
        lambda: wavelet_figure(
            wavelets, out, "cosmology_wavelets", xlabel="support (pixels of the finest scale)"
        ),
    )
    report.build(
        "cosmology results table",
        [run / "metrics.csv", run / "selection.json"],
        lambda: _results_figure(run, out),
    )
    hist = run / "peak_histograms.csv"
    report.build(
        "cosmology peak-count histograms", [hist], lambda: _peak_histogram_figure(hist, out)
    )
    grid = run / "validation_grid.csv"
    report.build("cosmology λ×γ heatmap", [grid], lambda: _grid_heatmap(grid, out))


#: The cosmology domain, offered to ``awd`` through the ``awd.domains`` entry point.
DOMAIN = Domain(
    name="cosmology",
    app=app,
    run_demo=run_demo,
    make_figures=make_figures,
    sweep_task="cosmology.sweep:make_task",
    loggers=("cosmology",),
)
