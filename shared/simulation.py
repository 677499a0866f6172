"""The AWD paper's simulation experiment: can distillation find a planted wavelet?

Inputs are white noise ``x ~ N(0, I_64)``; the response is built from the db5 wavelet
coefficients of ``x`` at one detail level and a few positions, plus noise. A small
feedforward network (the teacher) learns it. AWD then starts from a *perturbed* db5 and
is trained with the teacher's attributions: if it works, the filter moves back towards
db5 (distance measured up to shifts and sign flips, as in the reference) and the
attributions concentrate on the planted level.

Everything is synthetic and domain-free, so it doubles as the quickest end-to-end check
of the core. ``awd simulation run`` writes a run directory.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from shared.attributions import trim_attributions
from shared.config import config_from_dict, config_to_dict, merge_dicts, setting
from shared.distill import DistillConfig, distill
from shared.losses import PenaltyWeights
from shared.runs import (
    atomic_write,
    environment_info,
    load_model,
    load_transform,
    save_model,
    save_transform,
    write_csv,
    write_json,
)
from shared.transform import DWT1d, DWT2d, Mode
from shared.wavelet import LearnableWavelet

__all__ = [
    "SimulationConfig",
    "SimulationSweepTask",
    "filter_distance",
    "level_mass",
    "make_data",
    "make_sweep_task",
    "run_simulation",
    "train_teacher",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of the simulation experiment (defaults: a few seconds on a CPU).

    The reference used 50,000 training samples, J=4 zero-mode db5, the third detail
    level at positions 7-9, noise SD 0.1 and an init perturbation of SD 0.3.
    """

    n_train: int = setting(8000, ge=1)
    n_test: int = setting(2000, ge=1)
    length: int = setting(64, ge=2)
    wavelet: str = "db5"
    levels: int = setting(4, ge=1)
    mode: Mode = "zero"
    planted_level: int = setting(3, ge=1)
    positions: tuple[int, ...] = setting((7, 8, 9), ge=0, nonempty=True)
    scale: float = 2.0
    noise_sd: float = setting(0.1, ge=0)
    init_noise: float = setting(0.1, ge=0)
    teacher_hidden: int = setting(32, ge=1)
    teacher_epochs: int = setting(30, ge=1)
    weights: PenaltyWeights = field(
        default_factory=lambda: PenaltyWeights(l1_coeffs=1e-4, l1_attr=1.0)
    )
    distill: DistillConfig = field(
        default_factory=lambda: DistillConfig(epochs=20, batch_size=256, lr=5e-3)
    )
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.planted_level <= self.levels:
            raise ValueError(f"planted_level must be in 1..{self.levels}, got {self.planted_level}")


def _teacher_meta(config: SimulationConfig) -> dict[str, Any]:
    return {
        "kind": "awd-simulation-teacher",
        "length": config.length,
        "hidden": config.teacher_hidden,
        "epochs": config.teacher_epochs,
    }


def _planted_index(config: SimulationConfig) -> int:
    """Index in the pywt list ``[cA_J, cD_J, ..., cD_1]`` of detail level ``planted_level``."""
    return config.levels - config.planted_level + 1


def make_data(config: SimulationConfig) -> dict[str, torch.Tensor]:
    """Training and test inputs and responses of the experiment.

    Examples
    --------
    >>> data = make_data(SimulationConfig(n_train=10, n_test=5))
    >>> tuple(data["x_train"].shape), tuple(data["y_test"].shape)
    ((10, 1, 64), (5,))
    """
    gen = torch.Generator().manual_seed(config.seed)
    n = config.n_train + config.n_test
    x = torch.randn(n, 1, config.length, generator=gen)
    truth = DWT1d(config.wavelet, config.levels, config.mode)
    with torch.no_grad():
        band = truth(x)[_planted_index(config)][:, 0]
    if max(config.positions) >= band.shape[-1]:
        raise ValueError(
            f"positions {config.positions} do not fit a band of {band.shape[-1]} coefficients"
        )
    y = config.scale * band[:, list(config.positions)].sum(1)
    y = y + config.noise_sd * torch.randn(n, generator=gen)
    split = config.n_train
    return {"x_train": x[:split], "y_train": y[:split], "x_test": x[split:], "y_test": y[split:]}


class _Feedforward(nn.Module):
    def __init__(self, length: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(length, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_teacher(
    x: torch.Tensor, y: torch.Tensor, hidden: int = 32, epochs: int = 30, seed: int = 0
) -> nn.Module:
    """Fit the feedforward teacher (64 -> hidden -> hidden -> 1) with MSE and Adam."""
    torch.manual_seed(seed)
    model = _Feedforward(x.shape[-1], hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], 128):
            idx = order[start : start + 128]
            optimizer.zero_grad()
            loss = (model(x[idx])[:, 0] - y[idx]).square().mean()
            loss.backward()
            optimizer.step()
    return model.eval()


def filter_distance(h: torch.Tensor, g: torch.Tensor) -> float:
    """Minimum L2 distance between two filters over circular shifts and sign flips.

    Examples
    --------
    >>> import torch
    >>> g = torch.tensor([1.0, 2.0, 3.0, 4.0])
    >>> filter_distance(-torch.roll(g, 1), g)
    0.0
    """
    h, g = h.detach().double().cpu(), g.detach().double().cpu()
    return min(
        float((h - sign * torch.roll(g, k)).norm()) for k in range(g.shape[0]) for sign in (1, -1)
    )


def level_mass(attributions, index: int) -> float:
    """Share of the total absolute attribution that falls on coefficient list entry ``index``."""
    total = sum(float(a.abs().sum()) for a in attributions)
    return float(attributions[index].abs().sum()) / total if total > 0 else float("nan")


def run_simulation(out: str | Path, config: SimulationConfig | None = None) -> dict[str, Any]:
    """Run the experiment and write a run directory; return its metrics.

    Writes ``config.yaml``, ``teacher.safetensors`` + ``teacher.json``, ``wavelet.safetensors`` +
    ``wavelet.json``, ``history.csv``, ``metrics.json`` and ``env.json`` under ``out``.

    Examples
    --------
    >>> import tempfile
    >>> cfg = SimulationConfig(n_train=256, n_test=64, teacher_epochs=2,
    ...                        distill=DistillConfig(epochs=1, batch_size=128))
    >>> sorted(run_simulation(tempfile.mkdtemp(), cfg))[:2]
    ['attribution_mass_final', 'attribution_mass_init']
    """
    config = config or SimulationConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    data = make_data(config)
    teacher = train_teacher(
        data["x_train"], data["y_train"], config.teacher_hidden, config.teacher_epochs, config.seed
    )
    with torch.no_grad():
        pred = teacher(data["x_test"])[:, 0]
    y_test = data["y_test"]
    r2 = 1.0 - float((pred - y_test).square().sum() / (y_test - y_test.mean()).square().sum())

    truth = LearnableWavelet(config.wavelet)
    start = LearnableWavelet(config.wavelet, noise=config.init_noise, seed=config.seed)
    transform: DWT1d | DWT2d = DWT1d(start, config.levels, config.mode)
    index = _planted_index(config)
    probe = data["x_test"][:512]
    mass_init = level_mass(trim_attributions(teacher, transform, probe), index)
    distance_init = filter_distance(transform.h0, truth.h0)
    transform, history = distill(
        data["x_train"],
        transform=transform,
        teacher=teacher,
        weights=config.weights,
        target=0,
        config=config.distill,
        progress=None,
    )
    mass_final = level_mass(trim_attributions(teacher, transform, probe), index)
    metrics = {
        "teacher_test_r2": r2,
        "distance_init": distance_init,
        "distance_final": filter_distance(transform.h0, truth.h0),
        "attribution_mass_init": mass_init,
        "attribution_mass_final": mass_final,
        "planted_level": config.planted_level,
        "seconds": time.perf_counter() - tic,
    }
    resolved = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    atomic_write(out / "config.yaml", lambda p: p.write_text(resolved))
    save_model(teacher, out / "teacher", _teacher_meta(config))
    save_transform(
        transform, out / "wavelet", weights=config.weights, history=history, seed=config.seed
    )
    write_csv(out / "history.csv", history)
    write_json(out / "metrics.json", metrics)
    write_json(out / "env.json", environment_info(config.seed))
    logger.info(
        "simulation: distance to %s %.3f -> %.3f, planted-level attribution %.2f -> %.2f",
        config.wavelet,
        metrics["distance_init"],
        metrics["distance_final"],
        mass_init,
        mass_final,
    )
    return metrics


# -- the sweep task ---------------------------------------------------------------------------
class SimulationSweepTask:
    """The simulation experiment as a sweep task (see :mod:`shared.sweep`).

    The student is the AWD-style compact predictor: ordinary least squares on the ``k``
    wavelet coefficients with the largest mean absolute attribution on training data.
    It scores well only when the learned wavelet isolates the planted coefficients.
    Validation is the last fifth of the training samples; the test split is untouched
    until the selected point is scored.
    """

    greater_is_better = True

    def __init__(self, base: dict[str, Any]) -> None:
        base = dict(base)
        self.k = int(base.pop("student_features", 3))
        merged = merge_dicts(config_to_dict(SimulationConfig()), base, "base")
        self.config = config_from_dict(SimulationConfig, merged, "base")
        self._data: dict[str, torch.Tensor] | None = None

    def prepare(self, root: Path) -> None:
        path = Path(root) / "teacher"
        if path.with_suffix(".safetensors").exists():
            return
        data = self.data()
        teacher = train_teacher(
            data["x_fit"],
            data["y_fit"],
            self.config.teacher_hidden,
            self.config.teacher_epochs,
            self.config.seed,
        )
        save_model(teacher, path, _teacher_meta(self.config))

    def data(self) -> dict[str, torch.Tensor]:
        if self._data is None:
            data = make_data(self.config)
            n_val = max(1, self.config.n_train // 5)
            self._data = {
                "x_fit": data["x_train"][:-n_val],
                "y_fit": data["y_train"][:-n_val],
                "x_val": data["x_train"][-n_val:],
                "y_val": data["y_train"][-n_val:],
                "x_test": data["x_test"],
                "y_test": data["y_test"],
            }
        return self._data

    def _teacher(self, root: Path) -> nn.Module:
        model = _Feedforward(self.config.length, self.config.teacher_hidden)
        state, _ = load_model(root / "teacher")
        model.load_state_dict(state)
        return model.eval()

    def run_point(
        self, weights: PenaltyWeights, warm_start: Path | None, out: Path
    ) -> dict[str, float]:
        cfg = self.config
        data = self.data()
        if warm_start is not None:
            transform = load_transform(warm_start)
        else:
            start = LearnableWavelet(cfg.wavelet, noise=cfg.init_noise, seed=cfg.seed)
            transform = DWT1d(start, cfg.levels, cfg.mode)
        teacher = self._teacher(out.parent)
        initial_h0 = transform.h0.detach().clone()
        transform, history = distill(
            data["x_fit"],
            transform=transform,
            teacher=teacher if weights.l1_attr > 0 else None,
            weights=weights,
            config=cfg.distill,
            checkpoint_dir=out / "checkpoint",
            resume=True,
            progress=False,
        )
        save_transform(
            transform,
            out / "wavelet",
            weights=weights,
            history=history,
            seed=cfg.seed,
            extra={
                # Relative to the sweep folder, so a sweep can be moved or shared.
                "warm_start_from": warm_start.parent.name if warm_start is not None else None,
                "initial_h0": initial_h0.tolist(),
            },
        )
        shutil.rmtree(out / "checkpoint", ignore_errors=True)
        return {"val_score": self._student_r2(transform, teacher, "x_val", "y_val")}

    def test_score(self, out: Path) -> dict[str, float]:
        transform = load_transform(out / "wavelet")
        teacher = self._teacher(out.parent)
        return {"r2": self._student_r2(transform, teacher, "x_test", "y_test")}

    def _student_r2(self, transform, teacher, x_key: str, y_key: str) -> float:
        from sklearn.linear_model import LinearRegression

        data = self.data()
        attr = trim_attributions(teacher, transform, data["x_fit"][:1024])
        importance = torch.cat([a.abs().mean(0).reshape(-1) for a in attr])
        top = torch.topk(importance, self.k).indices

        def features(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([c.reshape(c.shape[0], -1) for c in transform(x)], 1)[:, top]

        model = LinearRegression().fit(features(data["x_fit"]).numpy(), data["y_fit"].numpy())
        return float(model.score(features(data[x_key]).numpy(), data[y_key].numpy()))


def make_sweep_task(base: dict[str, Any]) -> SimulationSweepTask:
    """Factory used by ``awd sweep simulation`` (``shared.simulation:make_sweep_task``)."""
    return SimulationSweepTask(base)
