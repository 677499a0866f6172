"""CDEP on a decoy: does the explanation penalty keep a teacher off a spurious feature?

In both domains a simulated artifact is correlated with the target in the training and
validation data only, and the teacher is trained three ways:

* ``clean``: on data without the decoy (the reference);
* ``plain``: on data with the decoy, no penalty;
* ``cdep``: on data with the decoy and the CD explanation penalty (``teacher.cdep_weight``)
  on the decoy's group (``teacher.cdep_groups``), the weight chosen on validation.

Each teacher is scored on the test split three ways: with the decoy as in training
(``as_trained``), with the decoy removed (``removed``: the clean test data) and with the
decoy's relation to the target reversed (``flipped``). A teacher that uses the decoy gets
worse when it is removed or flipped; one that does not, does not.

Maps (``cosmology.simulate``): noisy, smoothed 64^2 convergence maps of the ten AWD
cosmologies, 80 per cosmology, split 70/10/20 by realization; the small CNN teacher. Two
decoys, each a fixed pattern at one scale whose amplitude grows with Omega_m
(``flipped``: shrinks with it), up to half the pixel SD: a checkerboard (the pixel scale;
the penalised group is ``level1`` of the Haar transform) and waves of a 4-pixel period
(the penalised group is the Fourier annulus ``f0.22-0.28``). Traces
(``molecular_partner.simulate``): 6 simulated cells split by cell (one test cell, one
validation cell); the LSTM regression teacher; the decoy is a step of one SD over samples
30-37 in the auxilin-positive tracks (``flipped``: in the negative ones), the penalised
group the window ``t30-38``.

The penalty weight is chosen from a small grid on the validation split (held-out
realizations / the held-out training cell) by the worst validation error over the three
conditions; the test split is scored once. SDs are bootstrap SDs over test items;
differences between conditions are paired (same resampled items), as in
:mod:`shared.evaluation`. ``--dev`` scores the validation split instead (to develop the
experiment without reading the test split).

Usage::

    python scripts/interpret_decoy.py --seeds 0 1   # both domains, about 30 min, one thread
    python scripts/interpret_decoy.py --quick --dev # a smoke run in about a minute
    python scripts/interpret_decoy.py --domain cosmology

Writes ``results/interpret/decoy_<domain>.json`` and ``results/interpret/decoy.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.evaluation import bootstrap_draws, bootstrap_sd, paired_difference, r2, rmse
from shared.interpret import NamedGroups, trim_cd
from shared.runs import environment_info, write_json

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ("as_trained", "removed", "flipped")
#: Samples of the traces' decoy step (a, b): samples a..b-1 of the 40.
WINDOW = (30, 38)
ARMS = ("clean", "plain", "cdep")
logger = logging.getLogger("interpret-decoy")


# --------------------------------------------------------------------------- common


def condition_scores(
    y: np.ndarray, preds: dict[str, np.ndarray], draws: np.ndarray
) -> dict[str, Any]:
    """RMSE (and R^2) per condition with bootstrap SDs; paired differences to as_trained.

    Examples
    --------
    >>> y = np.arange(6.0)
    >>> out = condition_scores(y, {"as_trained": y, "removed": y + 1}, bootstrap_draws(6, 50, 0))
    >>> out["removed"]["rmse"], out["removed"]["rmse_minus_as_trained"]
    (1.0, 1.0)
    """
    out: dict[str, Any] = {}
    base = preds["as_trained"]
    for cond, p in preds.items():
        row = {
            "rmse": rmse(y, p),
            "rmse_sd": bootstrap_sd(rmse, y, p, draws),
            "r2": r2(y, p),
            "r2_sd": bootstrap_sd(r2, y, p, draws),
        }
        if cond != "as_trained":
            diff, sd = paired_difference(rmse, y, p, base, draws)
            row["rmse_minus_as_trained"], row["rmse_minus_as_trained_sd"] = diff, sd
        out[cond] = row
    return out


def decoy_score(
    model: torch.nn.Module, x: torch.Tensor, named: NamedGroups, target: int
) -> dict[str, float]:
    """Mean |CD score| of the decoy's group, and the SD of the output over the same inputs
    (the scale it is read against), in the output's units (float64, no graph)."""
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        res = trim_cd(model, x.double(), named, named.groups)
    rel, out = res.rel[0, :, target], (res.rel + res.irrel)[0, :, target]
    return {"decoy_cd_abs": float(rel.abs().mean()), "output_sd": float(out.std())}


def choose_weight(val_worst: dict[float, float]) -> float:
    """The grid weight with the lowest worst-case validation error (ties: the smaller).

    Examples
    --------
    >>> choose_weight({1.0: 0.3, 10.0: 0.2, 100.0: 0.2})
    10.0
    """
    return min(sorted(val_worst), key=lambda w: val_worst[w])


# --------------------------------------------------------------------------- maps


def checkerboard(n: int) -> torch.Tensor:
    """The pixel-scale pattern ``(-1)^(i + j)`` of an ``n x n`` map (all in Haar level 1).

    Examples
    --------
    >>> checkerboard(2).tolist()
    [[1.0, -1.0], [-1.0, 1.0]]
    """
    i = torch.arange(n)
    return ((-1.0) ** (i[:, None] + i[None, :])).float()


def waves(n: int) -> torch.Tensor:
    """``cos(pi i / 2) + cos(pi j / 2)``: a period of 4 pixels, all at ``|f| = 0.25``.

    Examples
    --------
    >>> waves(4)[0].round().tolist()
    [2.0, 1.0, 0.0, 1.0]
    """
    c = torch.cos(torch.pi * torch.arange(n, dtype=torch.float64) / 2)
    return (c[:, None] + c[None, :]).float()


#: The maps' decoys: a pattern (RMS 1) and the group CDEP penalises.
MAP_DECOYS: dict[str, dict[str, Any]] = {
    "checkerboard": {
        "pattern": checkerboard,
        "group": "level1",
        "described": "checkerboard (-1)^(i+j): the pixel scale, all in Haar wavelet level 1",
    },
    "waves": {
        "pattern": waves,
        "group": "f0.22-0.28",
        "described": "cos(pi i/2) + cos(pi j/2): a period of 4 pixels, all in the Fourier "
        "annulus 0.22 <= |f| < 0.28 cycles per pixel",
    },
}


def add_map_decoy(
    maps: torch.Tensor, level: np.ndarray, amplitude: float, pattern=checkerboard
) -> torch.Tensor:
    """``maps + amplitude * level * pattern``; ``level`` in [0, 1] per map.

    Examples
    --------
    >>> add_map_decoy(torch.zeros(2, 2, 2), np.array([0.0, 1.0]), 0.5)[1, 0].tolist()
    [0.5, -0.5]
    """
    scale = torch.as_tensor(amplitude * np.asarray(level), dtype=maps.dtype)
    return maps + scale[:, None, None] * pattern(maps.shape[-1]).to(maps.dtype)


def _map_conditions(
    maps: torch.Tensor, level: np.ndarray, amplitude: float, pattern
) -> dict[str, torch.Tensor]:
    return {
        "as_trained": add_map_decoy(maps, level, amplitude, pattern),
        "removed": maps,
        "flipped": add_map_decoy(maps, 1.0 - level, amplitude, pattern),
    }


def _map_splits(work: Path, quick: bool):
    from cosmology.config import RunConfig
    from cosmology.cosmologies import design_ten
    from cosmology.noise import ShapeNoise
    from cosmology.pipeline import load_splits
    from cosmology.simulate import simulate_dataset

    n_maps, n_pix = (24, 32) if quick else (80, 64)
    root = simulate_dataset(
        work / "maps",
        design_ten(include_neutrinos=False),
        n_maps=n_maps,
        n_pix=n_pix,
        noise=ShapeNoise(sigma_e=0.26, n_gal=30.0),
        smoothing_arcmin=1.0,
        seed=0,
    )
    return load_splits(root, RunConfig()), n_maps


class _MapArms:
    """Train and score the maps' teachers of one seed."""

    def __init__(self, splits, work: Path, epochs: int, scored: str) -> None:
        from cosmology.config import TeacherConfig

        self.splits, self.work, self.scored = splits, work, scored
        self.base = TeacherConfig(
            width=8, epochs=epochs, batch_size=32, lr=3e-3, patience=epochs, threads=1
        )
        self.y = {s: splits.targets[s] for s in ("val", "test")}
        self.draws = bootstrap_draws(len(self.y[scored]), 1000, seed=1)

    def train(self, maps: dict[str, torch.Tensor], weight: float, group: str, seed: int):
        from cosmology.teacher import train_teacher

        conf = replace(
            self.base,
            seed=seed,
            cdep_weight=weight,
            cdep_groups=(group,) if weight else (),
            cdep_wavelet="haar",
        )
        tic = time.perf_counter()
        t = self.splits.targets
        model, hist = train_teacher(
            maps["train"],
            torch.as_tensor(t["train"]),
            maps["val"],
            torch.as_tensor(t["val"]),
            conf,
            self.work / "teacher_ckpt",
            progress=False,
        )
        logger.info(
            "maps: %s weight %g seed %d: %.0f s", group, weight, seed, time.perf_counter() - tic
        )
        return model, len(hist)

    def preds(self, model, data, split: str) -> dict[str, np.ndarray]:
        from cosmology.teacher import predict

        return {c: predict(model, data[split][c]) for c in CONDITIONS}

    def score(self, model, n_ep: int, data, named: NamedGroups) -> dict[str, Any]:
        y, pt = self.y[self.scored], self.preds(model, data, self.scored)
        return {
            "epochs_run": n_ep,
            "omega_m": condition_scores(y[:, 0], {c: p[:, 0] for c, p in pt.items()}, self.draws),
            "sigma_8": condition_scores(y[:, 1], {c: p[:, 1] for c, p in pt.items()}, self.draws),
            "decoy_cd_omega_m": decoy_score(
                model, data[self.scored]["as_trained"][:32, None], named, 0
            ),
        }


def cosmology_experiment(
    work: Path, quick: bool, seeds: Sequence[int], dev: bool = False
) -> dict[str, Any]:
    """The maps' decoy experiments (see the module docstring); ``dev`` scores validation."""
    scored = "val" if dev else "test"
    epochs = 3 if quick else 25
    weights = (0.1,) if quick else (0.01, 0.03, 0.1, 0.3, 1.0)
    splits, n_maps = _map_splits(work, quick)
    om_train = splits.targets["train"][:, 0]
    lo, hi = float(om_train.min()), float(om_train.max())
    level = {s: np.clip((splits.targets[s][:, 0] - lo) / (hi - lo), 0.0, 1.0) for s in splits.maps}
    amplitude = 0.5 * float(splits.maps["train"].std())
    arms = _MapArms(splits, work, epochs, scored)
    y_val = splits.targets["val"][:, 0]
    decoys: dict[str, Any] = {
        name: {"described": d["described"], "cdep_groups": [d["group"]], "seeds": []}
        for name, d in MAP_DECOYS.items()
    }
    for seed in seeds:
        clean = arms.train(splits.maps, 0.0, "none", seed)
        for name, d in MAP_DECOYS.items():
            data = {
                s: _map_conditions(splits.maps[s], level[s], amplitude, d["pattern"])
                for s in splits.maps
            }
            trained = {s: data[s]["as_trained"] for s in data}
            named = NamedGroups([d["group"]], dims=2, wavelet="haar")
            models = {"clean": clean, "plain": arms.train(trained, 0.0, d["group"], seed)}
            val_worst, grid = {}, {}
            for w in weights:
                model, n_ep = arms.train(trained, w, d["group"], seed)
                pv = arms.preds(model, data, "val")
                val_worst[w] = max(rmse(y_val, pv[c][:, 0]) for c in CONDITIONS)
                grid[w] = (model, n_ep)
            chosen = choose_weight(val_worst)
            models["cdep"] = grid[chosen]
            decoys[name]["seeds"].append(
                {
                    "seed": seed,
                    "cdep_weight": chosen,
                    "validation_worst_rmse_omega_m": {str(w): v for w, v in val_worst.items()},
                    "arms": {a: arms.score(m, n, data, named) for a, (m, n) in models.items()},
                }
            )
    return {
        "domain": "cosmology",
        "data": {
            "cosmologies": 10,
            "maps_per_cosmology": n_maps,
            "n_pix": splits.n_pix,
            "side_angle_deg": splits.side_angle_deg,
            "noise": "shape noise sigma_e 0.26, n_gal 30/arcmin^2, 1' Gaussian smoothing",
            "split": "by realization within each cosmology, 70/10/20 (train/val/test), "
            "split seed 0",
            "n_train": int(splits.maps["train"].shape[0]),
            "n_val": int(splits.maps["val"].shape[0]),
            "n_test": int(splits.maps["test"].shape[0]),
        },
        "decoy": {
            "amplitude": "0.5 x pixel SD of the training maps x (Omega_m - min) / (max - min) "
            "over the training cosmologies; flipped: x (max - Omega_m) / (max - min)",
            "amplitude_max": amplitude,
            "follows": "omega_m",
            "cdep_wavelet": "haar",
        },
        "decoys": decoys,
        "teacher": {
            "arch": "small CNN, width 8",
            "epochs": epochs,
            "batch_size": 32,
            "lr": 3e-3,
            "augment": "dihedral",
            "early_stopping": "best validation loss (validation maps carry the decoy as in "
            "training)",
        },
        "scored_split": scored,
        "weight_grid": list(weights),
        "selection": "weight with the lowest worst-case validation RMSE of Omega_m over the "
        "three conditions",
        "bootstrap": {"draws": 1000, "seed": 1, "items": f"{scored} maps"},
        "decoy_cd": "mean |CD score of the decoy's group| and SD of the output, standardised "
        "Omega_m, on 32 scored maps with the decoy as in training",
    }


# --------------------------------------------------------------------------- traces


def add_trace_decoy(
    x: np.ndarray, present: np.ndarray, window: tuple[int, int], height: float
) -> np.ndarray:
    """Add a step of ``height`` over samples ``window[0]..window[1]-1`` where ``present``.

    Examples
    --------
    >>> add_trace_decoy(np.zeros((2, 4)), np.array([True, False]), (1, 3), 1.0).tolist()
    [[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    out = np.array(x, dtype=np.float32, copy=True)
    out[np.asarray(present, dtype=bool), window[0] : window[1]] += height
    return out


def _trace_conditions(x: np.ndarray, positive: np.ndarray, window, height) -> dict[str, np.ndarray]:
    return {
        "as_trained": add_trace_decoy(x, positive, window, height),
        "removed": x,
        "flipped": add_trace_decoy(x, ~positive, window, height),
    }


def mp_experiment(
    work: Path, quick: bool, seeds: Sequence[int], dev: bool = False
) -> dict[str, Any]:
    """The traces' decoy experiment (see the module docstring); ``dev`` scores validation."""
    scored = "val" if dev else "test"
    from molecular_partner.config import RunConfig, TeacherSettings
    from molecular_partner.data import build_dataset, load_tracks, write_dataset
    from molecular_partner.pipeline import TRACE, read_run_data
    from molecular_partner.simulate import SimulationConfig, simulate_cells
    from molecular_partner.teacher import predict, train_teacher

    n_cells, n_pits, epochs = (4, 300, 5) if quick else (6, 800, 60)
    weights = (1.0,) if quick else (0.1, 1.0, 10.0)
    window, height = WINDOW, 1.0
    group = f"t{window[0]}-{window[1]}"
    simulate_cells(
        n_cells, SimulationConfig(n_pits=n_pits), seed=0, out_dir=work / "sim", movies=False
    )
    tracks = load_tracks([work / "sim" / "tracks.parquet"])
    write_dataset(build_dataset(tracks, test_cells=[f"cell{n_cells}"], seed=0), work / "data")
    cfg = RunConfig()
    data = read_run_data(work / "data", cfg)
    is_val = data.is_val
    x_all = {"train": np.stack(data.train[TRACE].to_list()).astype(np.float32)}
    x_all["test"] = np.stack(data.test[TRACE].to_list()).astype(np.float32)
    target, label = "Y_sig_mean_normalized", "y_consec_thresh"
    y_tr = data.train[target].to_numpy(np.float32)
    pos_tr = data.train[label].to_numpy().astype(bool)
    parts = {
        "fit": (x_all["train"][~is_val], y_tr[~is_val], pos_tr[~is_val]),
        "val": (x_all["train"][is_val], y_tr[is_val], pos_tr[is_val]),
        "test": (
            x_all["test"],
            data.test[target].to_numpy(np.float32),
            data.test[label].to_numpy().astype(bool),
        ),
    }
    cond = {s: _trace_conditions(p[0], p[2], window, height) for s, p in parts.items()}
    named = NamedGroups([group], dims=1)
    draws = bootstrap_draws(len(parts[scored][1]), 1000, seed=1)
    base = TeacherSettings(epochs=epochs, patience=15)

    def train(x_fit: np.ndarray, x_val: np.ndarray, weight: float, seed: int):
        s = replace(base, seed=seed, cdep_weight=weight, cdep_groups=(group,) if weight else ())
        tic = time.perf_counter()
        model, hist = train_teacher(
            x_fit, parts["fit"][1], s, x_val=x_val, y_val=parts["val"][1], progress=False
        )
        logger.info(
            "traces: weight %g seed %d trained in %.0f s", weight, seed, time.perf_counter() - tic
        )
        return model, len(hist)

    def preds(model, split: str) -> dict[str, np.ndarray]:
        return {c: predict(model, cond[split][c]) for c in CONDITIONS}

    per_seed = []
    for seed in seeds:
        models = {
            "clean": train(parts["fit"][0], parts["val"][0], 0.0, seed),
            "plain": train(cond["fit"]["as_trained"], cond["val"]["as_trained"], 0.0, seed),
        }
        val_worst, grid = {}, {}
        for w in weights:
            model, n_ep = train(cond["fit"]["as_trained"], cond["val"]["as_trained"], w, seed)
            pv = preds(model, "val")
            val_worst[w] = max(rmse(parts["val"][1], pv[c]) for c in CONDITIONS)
            grid[w] = (model, n_ep)
        chosen = choose_weight(val_worst)
        models["cdep"] = grid[chosen]
        x_share = torch.from_numpy(cond[scored]["as_trained"][:256])[:, None, :]
        arms = {}
        for arm, (model, n_ep) in models.items():
            arms[arm] = {
                "epochs_run": n_ep,
                "y": condition_scores(
                    parts[scored][1].astype(np.float64), preds(model, scored), draws
                ),
                "decoy_cd": decoy_score(model, x_share, named, 0),
            }
        per_seed.append(
            {
                "seed": seed,
                "cdep_weight": chosen,
                "validation_worst_rmse": {str(w): v for w, v in val_worst.items()},
                "arms": arms,
            }
        )
    return {
        "domain": "molecular_partner",
        "data": {
            "cells": n_cells,
            "pits_per_cell": n_pits,
            "split": f"by cell: test cell{n_cells}; validation = {data.val_cells} (held-out "
            "training cell, teacher.val_cells=1, seed 0); the rest fit the teacher",
            "n_fit": int((~is_val).sum()),
            "n_val": int(is_val.sum()),
            "n_test": len(parts["test"][1]),
            "target": target,
            "decoy_follows": label,
            "positive_fraction_fit": float(parts["fit"][2].mean()),
        },
        "decoy": {
            "as_trained": f"in tracks with {label} = 1",
            "flipped": f"in tracks with {label} = 0",
        },
        "decoys": {
            "step": {
                "described": f"a step of +{height} (one SD of the cell-normalised trace) over "
                f"samples {window[0]}..{window[1] - 1} of the 40",
                "cdep_groups": [group],
                "seeds": per_seed,
            }
        },
        "teacher": {
            "arch": "LSTM(1->20) + Linear, MSE",
            "epochs": epochs,
            "patience": 15,
            "batch_size": base.batch_size,
            "lr": base.lr,
            "early_stopping": "validation loss (the validation cell carries the decoy as in "
            "training)",
        },
        "scored_split": scored,
        "weight_grid": list(weights),
        "selection": "weight with the lowest worst-case validation RMSE over the three conditions",
        "bootstrap": {"draws": 1000, "seed": 1, "items": f"{scored} tracks"},
        "decoy_cd": f"mean |CD score of {group}| and SD of the output, on 256 scored tracks "
        "with the decoy as in training",
    }


# --------------------------------------------------------------------------- report


def _cell(row: dict[str, Any], key: str = "rmse") -> str:
    return f"{row[key]:.4f} ({row[key + '_sd']:.4f})"


def _diff(row: dict[str, Any]) -> str:
    return f"{row['rmse_minus_as_trained']:+.4f} ({row['rmse_minus_as_trained_sd']:.4f})"


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """The decoy tables: RMSE (bootstrap SD) per arm and condition, paired differences."""
    lines = ["# CDEP on a decoy", ""]
    what = {"cosmology": ("omega_m", "Omega_m RMSE"), "molecular_partner": ("y", "auxilin RMSE")}
    for domain, res in results.items():
        key, label = what[domain]
        d = res["data"]
        sizes = "/".join(str(d[k]) for k in ("n_train", "n_fit", "n_val", "n_test") if k in d)
        lines += [
            f"## {domain}",
            "",
            f"Split: {d['split']} ({sizes} items); scored: the {res['scored_split']} split.",
            "",
        ]
        for name, decoy in res["decoys"].items():
            for s in decoy["seeds"]:
                lines += _seed_table(name, decoy, s, res["weight_grid"], key, label)
    lines.append(
        "RMSE with bootstrap SD over the scored items (1000 draws); differences are paired over "
        "the same draws. `clean`: trained without the decoy; `plain`: with it; `cdep`: with it "
        "and the penalty on its group. Decoy CD: mean |CD score| of the decoy's group beside "
        "the SD of the teacher's output (its units)."
    )
    return "\n".join(lines) + "\n"


def _seed_table(name, decoy, s, grid, key, label) -> list[str]:
    lines = [
        f"### decoy `{name}`: {decoy['described']}; penalised group {decoy['cdep_groups']}",
        "",
        f"Teacher seed {s['seed']}; penalty weight {s['cdep_weight']:g} chosen on "
        f"validation from {grid}.",
        "",
        f"| teacher | {label}: decoy as trained | removed | flipped | removed - as "
        "trained | flipped - as trained | decoy CD / output SD |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in ARMS:
        a = s["arms"][arm]
        sc = a[key]
        cd = a.get("decoy_cd", a.get("decoy_cd_omega_m"))
        lines.append(
            f"| {arm} | {_cell(sc['as_trained'])} | {_cell(sc['removed'])} | "
            f"{_cell(sc['flipped'])} | {_diff(sc['removed'])} | {_diff(sc['flipped'])} "
            f"| {cd['decoy_cd_abs']:.3f} / {cd['output_sd']:.3f} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--domain", choices=("cosmology", "molecular_partner", "both"), default="both"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "interpret_decoy")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "interpret")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--quick", action="store_true", help="Tiny sizes, for a smoke run.")
    parser.add_argument(
        "--dev", action="store_true", help="Score the validation split (to develop without test)."
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    experiments: dict[str, Callable[..., dict[str, Any]]] = {
        "cosmology": cosmology_experiment,
        "molecular_partner": mp_experiment,
    }
    domains = list(experiments) if args.domain == "both" else [args.domain]
    results = {}
    for domain in domains:
        tic = time.perf_counter()
        res = experiments[domain](args.work / domain, args.quick, args.seeds, args.dev)
        res["seconds"] = time.perf_counter() - tic
        res["command"] = (
            "python scripts/interpret_decoy.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in (("domain", domain),))
            + (" --quick" if args.quick else "")
            + f" --seeds {' '.join(map(str, args.seeds))}"
        )
        res["environment"] = environment_info(args.seeds[0])
        write_json(args.out / f"decoy_{domain}.json", res)
        results[domain] = res
    ordered = {}
    for domain in experiments:  # both domains in one file, in a fixed order
        path = args.out / f"decoy_{domain}.json"
        if domain in results or path.exists():
            ordered[domain] = results.get(domain) or json.loads(path.read_text())
    (args.out / "decoy.md").write_text(markdown(ordered))
    logger.info("written to %s", args.out)


if __name__ == "__main__":
    main()
