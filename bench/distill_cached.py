"""AWD distillation without the teacher in the loop: cached gradients vs the double backward.

Three ways to run the same distillation (same teacher, same data, same batches in the same
order, db5, J=4, zero mode, saliency, Adam), timed round robin in one run:

- **ours, cached**: ``distill`` with ``attribution_path="auto"`` (the cached path for these
  piecewise-linear teachers) and a fresh in-memory gradient cache, so the cost of building
  the cache (one teacher forward and backward per map) and of choosing the path is
  included;
- **ours, cached, cache reused**: the same with a cache built beforehand, as every further
  point of a lambda x gamma grid finds it;
- **ours, exact**: ``attribution_path="exact"`` (TRIM saliency with a double backward
  through the teacher at every step);
- **awave**: the reference implementation (Yu-Group/adaptive-wavelets), one
  ``Trainer._train_iteration`` per batch with ``attr_methods="Saliency"``. awave is not on
  PyPI in a usable form: set ``AWD_AWAVE_PATH`` to a folder holding the ``awave`` package
  (exported from a clone of the repository); without it the column says so.

Teachers: the cosmology small CNN and a ResNet-18 of the paper's size
(``cosmology.teacher.build_teacher``, untrained: only the cost matters), on maps of
128 x 128. A second table times one training step on the cached path (cache built) with
each teacher: the step does not run the teacher, so their ratio should be about 1 (goal
<= 1.2).

``--deviation`` instead measures how far the cached path is from the exact one where it is
an approximation (an LSTM teacher; integrated gradients): cosine and relative error of the
h0-gradient of the attribution penalty, float64.

Writes ``results/benchmarks/distill_cached.md`` and ``.json`` (or
``distill_cached_deviation.md`` / ``.json``). Run:
``AWD_AWAVE_PATH=/path/to/export python bench/distill_cached.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import RESULTS, cpu_busy, load_note, machine, round_robin

from cosmology.teacher import build_teacher
from molecular_partner.teacher import LSTMTeacher
from shared import DistillConfig, DWT1d, DWT2d, LearnableWavelet, PenaltyWeights, distill
from shared.attributions import trim_attributions
from shared.distill import _indexed_batches, _terms
from shared.gradient_cache import (
    GradientCache,
    GradientSource,
    attributions_from_gradients,
    input_gradients,
)
from shared.losses import AWDLoss, l1_attribution_loss

N_PIX = 128
N_MAPS, BATCH, EPOCHS = 32, 8, 4  # 16 steps per distillation
STEP_BATCH = 32
LAMBDA, GAMMA = 0.01, 0.01
SEED = 0


def _maps(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.03 * torch.randn(n, 1, N_PIX, N_PIX, generator=gen)


def _teacher(arch: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_teacher(arch).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _load_awave():
    """The awave package from ``AWD_AWAVE_PATH``, or (None, why)."""
    folder = os.environ.get("AWD_AWAVE_PATH")
    if not folder:
        return None, "AWD_AWAVE_PATH is not set"
    if not (Path(folder) / "awave" / "__init__.py").exists():
        return None, f"no awave package in AWD_AWAVE_PATH={folder}"
    sys.path.insert(0, folder)
    try:
        awave = importlib.import_module("awave")
        losses = importlib.import_module("awave.losses")
    except Exception as err:  # report, do not fail the other columns
        return None, f"awave failed to import ({type(err).__name__}: {err})"
    return (awave, losses), ""


def _ours(x, teacher, path: str, cache=None):
    def run() -> None:
        distill(
            x,
            wavelet="db5",
            levels=4,
            mode="zero",
            teacher=teacher,
            weights=PenaltyWeights(l1_coeffs=LAMBDA, l1_attr=GAMMA),
            target=0,
            config=DistillConfig(
                epochs=EPOCHS, batch_size=BATCH, lr=1e-3, seed=SEED, attribution_path=path
            ),
            progress=False,
            gradient_cache=cache if cache is not None else GradientCache(),
        )

    return run


def _awave(x, teacher, awave_modules):
    awave, losses = awave_modules

    def run() -> None:
        wt = awave.DWT2d(wave="db5", mode="zero", J=4, init_factor=1, noise_factor=0)
        loss_f = losses.get_loss_f(
            lamlSum=1.0,
            lamhSum=1.0,
            lamL2norm=1.0,
            lamCMF=1.0,
            lamConv=1.0,
            lamL1wave=LAMBDA,
            lamL1attr=GAMMA,
        )
        optimizer = torch.optim.Adam(wt.parameters(), lr=1e-3)
        trainer = awave.Trainer(
            teacher,
            wt,
            optimizer,
            loss_f,
            target=0,
            device=torch.device("cpu"),
            use_residuals=True,
            attr_methods="Saliency",
        )
        # The very batches ``distill`` draws, in its order.
        for epoch in range(EPOCHS):
            for _, xb in _indexed_batches(x, BATCH, SEED, epoch, True):
                trainer._train_iteration(xb)

    return run


def _cached_step(teacher, x):
    """One training step on the cached path, the cache built beforehand."""
    transform = DWT2d("db5", levels=4, mode="zero")
    loss = AWDLoss(PenaltyWeights(l1_coeffs=LAMBDA, l1_attr=GAMMA))
    optimizer = torch.optim.Adam(transform.parameters(), lr=1e-3)
    entry = GradientCache().gradients(teacher, x)
    source = GradientSource(teacher, 0, "saliency", entry=entry)
    index = torch.arange(x.shape[0])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        total, _ = _terms(transform, loss, x, teacher, 0, "saliency", True, source, index)
        total.backward()
        optimizer.step()

    return step


def _timing(rounds: int, out: Path) -> None:
    awave_modules, awave_missing = _load_awave()
    x = _maps(N_MAPS, 1)
    teachers = {"small CNN": _teacher("small"), "ResNet-18": _teacher("resnet18")}
    steps = N_MAPS // BATCH * EPOCHS
    rows = []
    before, tic = cpu_busy(), time.perf_counter()
    for label, teacher in teachers.items():
        reused = GradientCache()
        reused.gradients(teacher, x, batch_size=BATCH)
        cases = {
            "cached": _ours(x, teacher, "auto"),
            "cached_reused": _ours(x, teacher, "auto", reused),
            "exact": _ours(x, teacher, "exact"),
        }
        if awave_modules is not None:
            cases["awave"] = _awave(x, teacher, awave_modules)
        # No warm-up round: each run takes seconds, and the median drops the first.
        times = round_robin(cases, rounds, warmup=0)
        row = {"teacher": label, "steps": steps, **{k: v["median_ms"] for k, v in times.items()}}
        rows.append(row)
        print(label, {k: round(v, 1) for k, v in row.items() if isinstance(v, float)})

    step_x = _maps(STEP_BATCH, 2)
    step_rounds = max(rounds, 5) * 4
    step_times = round_robin(
        {label: _cached_step(t, step_x) for label, t in teachers.items()}, step_rounds
    )
    note = load_note(before, cpu_busy(), time.perf_counter() - tic)
    small, resnet = step_times["small CNN"], step_times["ResNet-18"]

    def fmt(ms: float | None) -> str:
        return "absent" if ms is None else f"{ms / 1e3:.2f} s"

    lines = [
        "# AWD distillation from cached teacher gradients",
        "",
        f"Machine: {machine()}. Medians of {rounds} round-robin runs. {note}",
        "",
        f"A distillation of {steps} Adam steps ({N_MAPS} maps of {N_PIX}x{N_PIX}, batch "
        f"{BATCH}, {EPOCHS} epoch; db5, J=4, zero mode, saliency, lambda = gamma = 0.01), "
        "the same teacher and batches in every column. *cached* includes building the "
        "gradient cache (one teacher forward and backward per map) and choosing the path; "
        "*cache reused* is what a further grid point pays. awave: "
        + (
            "Yu-Group/adaptive-wavelets from `AWD_AWAVE_PATH`."
            if awave_modules
            else f"**absent** ({awave_missing})."
        )
        + " Goal: cached <= 0.1x awave.",
        "",
        "| teacher | ours, cached | ours, cached, cache reused | ours, exact | awave | "
        "cached / awave | cached / exact | reused / awave |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        aw = r.get("awave")
        lines.append(
            f"| {r['teacher']} | {fmt(r['cached'])} | {fmt(r['cached_reused'])} | "
            f"{fmt(r['exact'])} | {fmt(aw)} | "
            + (f"{r['cached'] / aw:.3f}" if aw else "n/a")
            + f" | {r['cached'] / r['exact']:.3f} | "
            + (f"{r['cached_reused'] / aw:.3f}" if aw else "n/a")
            + " |"
        )
    lines += [
        "",
        f"One training step on the cached path, cache built ({STEP_BATCH} maps of "
        f"{N_PIX}x{N_PIX}, {step_rounds} round-robin runs; the step does not call the "
        "teacher, so the minimum, least touched by other processes, is the fairer "
        "comparison). Goal: ResNet-18 within 1.2x the small CNN. Per step of the whole "
        "distillation above (cache included): small CNN "
        f"{rows[0]['cached'] / steps:.0f} ms, ResNet-18 {rows[1]['cached'] / steps:.0f} ms.",
        "",
        "| teacher | step ms, median | step ms, min |",
        "| --- | ---: | ---: |",
        f"| small CNN | {small['median_ms']:.1f} | {small['min_ms']:.1f} |",
        f"| ResNet-18 | {resnet['median_ms']:.1f} | {resnet['min_ms']:.1f} |",
        f"| ratio ResNet-18 / small CNN | {resnet['median_ms'] / small['median_ms']:.2f} | "
        f"{resnet['min_ms'] / small['min_ms']:.2f} |",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill_cached.md").write_text("\n".join(lines) + "\n")
    payload = {
        "note": note,
        "machine": machine(),
        "awave": "present" if awave_modules else f"absent: {awave_missing}",
        "settings": {
            "n_maps": N_MAPS,
            "n_pix": N_PIX,
            "batch": BATCH,
            "epochs": EPOCHS,
            "steps": steps,
            "rounds": rounds,
        },
        "rows_ms": rows,
        "step_ms": {"small CNN": small, "ResNet-18": resnet, "batch": STEP_BATCH},
    }
    (out / "distill_cached.json").write_text(json.dumps(payload, indent=1) + "\n")
    print("\n".join(lines))


# -- deviation where the cached path is an approximation ---------------------------------------
def _lstm_teacher() -> nn.Module:
    """The project's LSTM teacher, trained briefly on simulated traces."""
    from molecular_partner.config import TeacherSettings
    from molecular_partner.teacher import train_teacher

    rng = np.random.default_rng(0)
    n, length = 2000, 40
    walk = np.cumsum(rng.standard_normal((n, length)), axis=1)
    walk = (walk - walk.mean(1, keepdims=True)) / walk.std(1, keepdims=True)
    # An outcome that needs the shape of the trace: late rise above early level, saturated.
    outcome = np.tanh(walk[:, 30:].mean(1) - walk[:, :10].mean(1)) + 0.1 * rng.standard_normal(n)
    settings = TeacherSettings(epochs=15, patience=15, seed=0)
    model, _ = train_teacher(walk.astype(np.float32), outcome.astype(np.float32), settings)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, walk


def _exact_penalty(teacher, transform, x, method) -> float:
    """The penalty's value as a training step computes it (residual taken at this filter)."""
    coeffs = transform(x)
    x_rec = transform.inverse(coeffs, size=x.shape[2:])
    attr = trim_attributions(
        teacher, transform, x, method, 0, coeffs=coeffs, residual=(x - x_rec).detach()
    )
    return float(l1_attribution_loss(attr))


def _finite_differences(teacher, transform, x, method, eps: float = 1e-6) -> torch.Tensor:
    h0 = transform.h0
    out = torch.zeros_like(h0)
    with torch.no_grad():
        for k in range(h0.numel()):
            h0[k] += eps
            plus = _exact_penalty(teacher, transform, x, method)
            h0[k] -= 2 * eps
            minus = _exact_penalty(teacher, transform, x, method)
            h0[k] += eps
            out[k] = (plus - minus) / (2 * eps)
    return out


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def _penalty_grads(teacher, transform, x, method):
    coeffs = transform(x)
    x_rec = transform.inverse(coeffs, size=x.shape[2:])
    exact = trim_attributions(
        teacher,
        transform,
        x,
        method,
        0,
        create_graph=True,
        coeffs=coeffs,
        residual=(x - x_rec).detach(),
    )
    (g_exact,) = torch.autograd.grad(l1_attribution_loss(exact), transform.h0)
    grads = input_gradients(teacher, x, 0, method)
    cached = attributions_from_gradients(transform, transform(x), grads, method)
    (g_cached,) = torch.autograd.grad(l1_attribution_loss(cached), transform.h0)
    fd = _finite_differences(teacher, transform, x, method)
    return {
        "cosine": _cosine(g_cached, g_exact),
        "rel": float((g_cached - g_exact).norm() / g_exact.norm()),
        "cosine_exact_fd": _cosine(g_exact, fd),
        "cosine_cached_fd": _cosine(g_cached, fd),
        "rel_cached_fd": float((g_cached - fd).norm() / fd.norm()),
    }


def _deviation(out: Path) -> None:
    torch.manual_seed(0)
    lstm, walk = _lstm_teacher()
    lstm = lstm.double()
    traces = torch.from_numpy(walk[:256, None, :]).double()
    cnn = _teacher("small").double()
    maps = _maps(8, 3).double()[..., :32, :32] / 0.03
    rows = []
    torch.manual_seed(0)
    untrained = LSTMTeacher().double().eval()
    cases = [
        ("LSTM teacher, 256 traces of 40, J=4", lstm, traces, DWT1d, 4),
        ("untrained LSTM teacher, same traces", untrained, traces, DWT1d, 4),
        ("small CNN, 8 maps of 32x32, J=3", cnn, maps, DWT2d, 3),
    ]
    for label, teacher, x, cls, levels in cases:
        for method in ("saliency", "input_x_gradient", "integrated_gradients"):
            if "CNN" in label and method != "integrated_gradients":
                continue  # piecewise linear: equal to rounding (see the tests)
            if "untrained" in label and method == "integrated_gradients":
                continue
            for noise in (0.0, 0.05, 0.2):
                wavelet = LearnableWavelet("db5", noise=noise, seed=1)
                transform = cls(wavelet, levels=levels, mode="zero").double()
                found = _penalty_grads(teacher, transform, x, method)
                rows.append({"case": label, "method": method, "noise": noise, **found})
                print(label, method, noise, {k: f"{v:.4g}" for k, v in found.items()})
    lines = [
        "# How far the cached attribution path is from the exact one where it approximates",
        "",
        "The h0-gradient of the attribution penalty (L1 of the TRIM attributions), cached path "
        "vs the exact double backward, float64, zero mode, db5 with Gaussian noise of the "
        "given SD on its taps (seed 1). LSTM: `molecular_partner.teacher.LSTMTeacher` "
        "(hidden 20), trained 15 epochs on 2000 simulated traces (z-scored random walks; "
        "outcome tanh(late mean - early mean) + noise); the untrained one (PyTorch's "
        "initialisation, seed 0) is the setting of the reference note. For a "
        "piecewise-linear teacher "
        "saliency and input x gradient are exact (to rounding); integrated gradients "
        "are not, unless the wavelet reconstructs perfectly.",
        "",
        "The last columns compare both gradients with central finite differences (step 1e-6) "
        "of the penalty's value as a training step computes it (the residual taken at each "
        "filter). For saliency and input x gradient that value is the same on both paths, "
        "and the cached gradient is its derivative: the double backward adds the derivative "
        "through the residual that TRIM holds fixed, which no computed value has. For "
        "integrated gradients the value differs between the paths, and for the ReLU CNN it "
        "has kinks in h0, so there finite differences are no reference.",
        "",
        "| teacher | method | filter noise | cosine cached vs exact | relative error | "
        "cosine exact vs FD | cosine cached vs FD | relative error cached vs FD |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['method']} | {r['noise']} | {r['cosine']:.5f} | "
            f"{r['rel']:.2e} | {r['cosine_exact_fd']:.5f} | {r['cosine_cached_fd']:.5f} | "
            f"{r['rel_cached_fd']:.1e} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill_cached_deviation.md").write_text("\n".join(lines) + "\n")
    (out / "distill_cached_deviation.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deviation", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.deviation:
        _deviation(args.out)
    else:
        _timing(args.rounds, args.out)


if __name__ == "__main__":
    main()
