"""Our DWT engine side by side with pywt, ptwt and pytorch_wavelets, in one run.

Measures, per case and mode, the median time of

- forward + inverse with a fixed filter (no autograd), against pywt called batched with
  ``axes=`` (the anchor), ptwt and pytorch_wavelets;
- the training pass of a learnable filter: forward, inverse, squared error + 0.1 * L1 of
  the coefficients, backward to h0, against ptwt's convolution path (the one peer that can
  learn filters; it has no periodization mode).

Writes ``results/benchmarks/transforms.md`` and ``transforms.json``.
Run: ``python bench/transforms.py [--rounds 7] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pywt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import RESULTS, cpu_busy, load_note, machine, round_robin

from shared import DWT1d, DWT2d, LearnableWavelet

warnings.filterwarnings("ignore")

GOALS = {
    ("2d 64x1x256x256", "zero"): ("fwd+inv / pywt", 0.8),
    ("2d 64x1x256x256", "periodization"): ("fwd+inv / pywt", 0.8),
    ("2d 16x1x512x512", "zero"): ("fwd+inv / pywt", 1.2),
    ("2d 16x1x512x512", "periodization"): ("fwd+inv / pywt", 1.2),
    ("1d 1024x1x40", "zero"): ("fwd+inv / pywt", 2.5),
    ("1d 1024x1x40", "periodization"): ("fwd+inv / pywt", 2.5),
}
TRAIN_GOALS = {"2d 64x1x256x256": 0.5, "1d 1024x1x40": 0.6}


def _l1(coeffs) -> torch.Tensor:
    leaves = []
    for c in coeffs:
        leaves.extend(c if isinstance(c, (tuple, list)) else [c])
    return sum(t.abs().sum() for t in leaves)


def _ours(shape, levels, mode, wave):
    cls = DWT2d if len(shape) == 4 else DWT1d
    dwt = cls(LearnableWavelet(wave), levels=levels, mode=mode, check_finite=False)
    x = torch.randn(*shape)

    def fwd_inv():
        with torch.no_grad():
            dwt.inverse(dwt(x))

    def train():
        dwt.zero_grad(set_to_none=True)
        coeffs = dwt(x)
        loss = (dwt.inverse(coeffs) - x).square().sum() + 0.1 * _l1(coeffs)
        loss.backward()

    return fwd_inv, train


def _pywt(shape, levels, mode, wave):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if len(shape) == 4:
        return lambda: pywt.waverec2(
            pywt.wavedec2(x, wave, mode=mode, level=levels, axes=(-2, -1)),
            wave,
            mode,
            axes=(-2, -1),
        )
    return lambda: pywt.waverec(pywt.wavedec(x, wave, mode=mode, level=levels, axis=-1), wave, mode)


def _ptwt(shape, levels, wave):
    import ptwt

    x = torch.randn(*shape)
    h0 = torch.tensor(pywt.Wavelet(wave).rec_lo, dtype=torch.float32, requires_grad=True)

    def bank():
        h1 = h0.flip(0) * torch.tensor([(-1.0) ** k for k in range(h0.numel())])
        return ptwt.WaveletTensorTuple(h0.flip(0), h1.flip(0), h0, h1)

    fixed = ptwt.WaveletTensorTuple.from_wavelet(pywt.Wavelet(wave), torch.float32)
    if len(shape) == 4:
        dec, rec, kw = ptwt.wavedec2, ptwt.waverec2, {"axes": (-2, -1)}
    else:
        dec, rec, kw = ptwt.wavedec, ptwt.waverec, {"axis": -1}
    data = x[:, 0]
    crop = tuple(slice(0, n) for n in data.shape)

    def fwd_inv():
        with torch.no_grad():
            rec(dec(data, fixed, mode="zero", level=levels, **kw), fixed, **kw)

    def train():
        h0.grad = None
        w = bank()
        coeffs = dec(data, w, mode="zero", level=levels, **kw)
        loss = (rec(coeffs, w, **kw)[crop] - data).square().sum()
        (loss + 0.1 * _l1(coeffs)).backward()

    return fwd_inv, train


def _pytorch_wavelets(shape, levels, mode, wave):
    import pytorch_wavelets as ptw

    x = torch.randn(*shape)
    ptw_mode = "periodization" if mode == "periodization" else "zero"
    if len(shape) == 4:
        fwd, inv = (
            ptw.DWTForward(J=levels, wave=wave, mode=ptw_mode),
            ptw.DWTInverse(wave, ptw_mode),
        )
    else:
        fwd, inv = (
            ptw.DWT1DForward(J=levels, wave=wave, mode=ptw_mode),
            ptw.DWT1DInverse(wave, ptw_mode),
        )

    def fwd_inv():
        with torch.no_grad():
            inv(fwd(x))

    return fwd_inv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (pywt always uses one)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cases = [
        ("2d 64x1x256x256", (64, 1, 256, 256), 4),
        ("2d 16x1x512x512", (16, 1, 512, 512), 4),
        ("1d 1024x1x40", (1024, 1, 40), 4),
    ]
    if args.quick:
        cases = [("2d 4x1x64x64", (4, 1, 64, 64), 2), ("1d 64x1x40", (64, 1, 40), 2)]
    wave = "db5"
    rows = []
    before, tic = cpu_busy(), time.perf_counter()
    for label, shape, levels in cases:
        for mode in ("zero", "periodization"):
            ours_fi, ours_train = _ours(shape, levels, mode, wave)
            timed = {"ours": ours_fi, "pywt": _pywt(shape, levels, mode, wave)}
            timed["pytorch_wavelets"] = _pytorch_wavelets(shape, levels, mode, wave)
            train_cases = {"ours": ours_train}
            if mode == "zero":
                pt_fi, pt_train = _ptwt(shape, levels, wave)
                timed["ptwt"] = pt_fi
                train_cases["ptwt"] = pt_train
            fi = round_robin(timed, args.rounds)
            tr = round_robin(train_cases, max(3, args.rounds - 2))
            for engine, result in fi.items():
                rows.append(
                    {
                        "case": label,
                        "mode": mode,
                        "engine": engine,
                        "fwd_inv_ms": result["median_ms"],
                        "train_ms": tr.get(engine, {}).get("median_ms"),
                    }
                )
            print(
                f"{label} {mode}: "
                + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in fi.items())
            )
    note = load_note(before, cpu_busy(), time.perf_counter() - tic)
    _write(args.out, rows, note)


def _write(out: Path, rows: list[dict], note: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    by_key = {(r["case"], r["mode"], r["engine"]): r for r in rows}
    lines = [
        "# Wavelet transforms: ours against pywt, ptwt and pytorch_wavelets",
        "",
        f"Machine: {machine()}. db5, medians of round-robin runs. {note}",
        "",
        "`fwd+inv`: forward and inverse with a fixed filter; ratio to pywt (batched, `axes=`).",
        "`train`: forward, inverse, squared error + 0.1·L1 of coefficients, backward to h0; "
        "ratio to ptwt's convolution path (ptwt has no periodization mode, so the "
        "periodization row is compared with ptwt in zero mode).",
        "",
        "| case | mode | engine | fwd+inv ms | / pywt | train ms | / ptwt train | goal | met |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        pywt_ms = by_key[(r["case"], r["mode"], "pywt")]["fwd_inv_ms"]
        ptwt_train = by_key.get((r["case"], "zero", "ptwt"), {}).get("train_ms")
        ratio = r["fwd_inv_ms"] / pywt_ms
        train = f"{r['train_ms']:.1f}" if r["train_ms"] is not None else ""
        train_ratio = (
            f"{r['train_ms'] / ptwt_train:.2f}" if r["train_ms"] is not None and ptwt_train else ""
        )
        goal, met = "", ""
        if r["engine"] == "ours":
            name, limit = GOALS.get((r["case"], r["mode"]), ("", None))
            goals = []
            checks = []
            if limit is not None:
                goals.append(f"{name} ≤ {limit}")
                checks.append(ratio <= limit)
            train_limit = TRAIN_GOALS.get(r["case"])
            if train_limit is not None and train_ratio:
                goals.append(f"train / ptwt ≤ {train_limit}")
                checks.append(float(train_ratio) <= train_limit)
            goal = "; ".join(goals)
            met = "yes" if checks and all(checks) else ("no" if checks else "")
        lines.append(
            f"| {r['case']} | {r['mode']} | {r['engine']} | {r['fwd_inv_ms']:.2f} | {ratio:.2f} | "
            f"{train} | {train_ratio} | {goal} | {met} |"
        )
    (out / "transforms.md").write_text("\n".join(lines) + "\n")
    (out / "transforms.json").write_text(json.dumps({"note": note, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out / 'transforms.md'}")


if __name__ == "__main__":
    main()
