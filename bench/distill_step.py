"""One full AWD training step, and the teacher's share of it.

A step is: transform, inverse, TRIM saliency with the graph kept (so the attribution
penalty can be differentiated), every loss term, backward (double backward through the
inverse and the teacher), optimizer step. Two settings:

- 2D: 64 maps of 256x256, a small 3-layer CNN teacher, db5, J=4, zero mode;
- 1D: 1024 traces of length 40, an LSTM(1 -> 20) teacher, db5, J=4, zero mode.

The teacher's share is measured by the same step with an identity transform in place of
the wavelet (saliency with respect to the input plus its double backward). The goal is
a 2D step that is teacher-bound: wavelet part <= teacher part.

Writes ``results/benchmarks/distill_step.md`` and ``.json``.
Run: ``python bench/distill_step.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import RESULTS, cpu_busy, load_note, machine, round_robin

from shared import AWDLoss, DWT1d, DWT2d, PenaltyWeights
from shared.attributions import trim_attributions


class SmallCNN(nn.Module):
    """Three stride-2 convolutions, global average pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LSTMTeacher(nn.Module):
    """LSTM(1 -> 20) on the trace, last hidden state -> linear (the reference's layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 20, batch_first=True)
        self.fc = nn.Linear(20, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(1, 2))
        return self.fc(out[:, -1])


class Identity(nn.Module):
    """The identity as a 'transform', to time the teacher's part of a step alone."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]

    def inverse(self, coeffs) -> torch.Tensor:
        return coeffs[0]


def _step_fn(transform, teacher, x, weights):
    loss = AWDLoss(weights)
    params = list(transform.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3) if params else None

    def step() -> None:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        coeffs = transform(x)
        x_rec = transform.inverse(coeffs)
        attr = trim_attributions(
            teacher,
            transform,
            x,
            "saliency",
            0,
            create_graph=True,
            coeffs=coeffs,
            residual=(x - x_rec).detach(),
        )
        if isinstance(transform, Identity):
            total = sum(a.abs().sum() for a in attr) / x.shape[0]
            # Differentiate the attribution penalty to the input, as the step does to h0.
            x.grad = None
            total.backward()
            return
        total, _ = loss(transform.wavelet.h0, x, x_rec, coeffs, attr)
        total.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    weights = PenaltyWeights(l1_coeffs=0.01, l1_attr=0.01)
    settings = [
        ("2D: 64 maps 256x256, small CNN", DWT2d, SmallCNN(), torch.randn(64, 1, 256, 256)),
        ("1D: 1024 traces of 40, LSTM(1->20)", DWT1d, LSTMTeacher(), torch.randn(1024, 1, 40)),
    ]
    rows = []
    before, tic = cpu_busy(), time.perf_counter()
    for label, cls, teacher, x in settings:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        transform = cls("db5", levels=4, mode="zero", check_finite=False)
        x_leaf = x.clone().requires_grad_(True)
        times = round_robin(
            {
                "step": _step_fn(transform, teacher, x, weights),
                "teacher": _step_fn(Identity(), teacher, x_leaf, weights),
            },
            args.rounds,
        )
        step, teach = times["step"]["median_ms"], times["teacher"]["median_ms"]
        rows.append(
            {
                "setting": label,
                "step_ms": step,
                "teacher_ms": teach,
                "wavelet_ms": max(step - teach, 0.0),
                "teacher_share": teach / step,
            }
        )
        print(f"{label}: step {step:.1f} ms, teacher {teach:.1f} ms")
    note = load_note(before, cpu_busy(), time.perf_counter() - tic)
    lines = [
        "# One AWD training step (saliency with double backward)",
        "",
        f"Machine: {machine()}. Medians of {args.rounds} round-robin runs. {note}",
        "",
        "The teacher's part is the same step with the identity in place of the wavelet; the "
        "wavelet part is the rest. Goal: the 2D step is teacher-bound (wavelet ≤ teacher).",
        "",
        "| setting | step ms | teacher ms | wavelet ms | teacher share | teacher-bound |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        bound = "yes" if r["wavelet_ms"] <= r["teacher_ms"] else "no"
        lines.append(
            f"| {r['setting']} | {r['step_ms']:.1f} | {r['teacher_ms']:.1f} | "
            f"{r['wavelet_ms']:.1f} | {100 * r['teacher_share']:.0f}% | {bound} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distill_step.md").write_text("\n".join(lines) + "\n")
    (args.out / "distill_step.json").write_text(json.dumps({"note": note, "rows": rows}, indent=1))
    print(f"wrote {args.out / 'distill_step.md'}")


if __name__ == "__main__":
    main()
