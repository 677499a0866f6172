"""Settings of a cosmology run: frozen dataclasses, YAML files and ``a.b=value`` overrides.

One :class:`RunConfig` describes a whole run (data, teacher, distillation, students,
evaluation). The resolved configuration is written into every run directory as
``config.yaml``; later commands read it back, so ``distill``, ``evaluate`` and ``report``
need only the run directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.config import apply_overrides, config_from_dict, config_to_dict
from shared.config import load_config as shared_load_config
from shared.runs import atomic_write, write_json

__all__ = [
    "DataConfig",
    "DistillSettings",
    "EvaluateConfig",
    "RunConfig",
    "StudentConfig",
    "TeacherConfig",
    "check_run_dir",
    "load_config",
    "mark_run_dir",
    "save_config",
]

#: Marker file of a cosmology run directory (names the domain).
RUN_MARKER = "run.json"
DOMAIN = "cosmology"


@dataclass(frozen=True)
class DataConfig:
    """Where the maps are and how they are split.

    ``noise`` and ``smoothing_arcmin`` are applied at load time (use them for maps stored
    without noise); maps simulated with ``awd cosmology simulate --noise`` need neither.
    """

    root: str = ""
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_seed: int = 0
    noise: bool = False
    n_gal: float = 30.0
    sigma_e: float = 0.26
    smoothing_arcmin: float = 0.0
    noise_seed: int = 0
    block: int = 1
    targets: tuple[str, str] = ("omega_m", "sigma_8")


@dataclass(frozen=True)
class TeacherConfig:
    """The CNN teacher and its training (``arch``: ``small`` or ``resnet18``)."""

    arch: str = "small"
    width: int = 8
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8
    augment: bool = True
    seed: int = 0
    threads: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class DistillSettings:
    """The lambda x gamma grid of AWD distillation (paper: db5, J=4, zero, lr 1e-3, batch 100).

    ``target``: ``omega_m``, ``sigma_8`` or ``both``. ``n_maps`` limits the training maps
    used for distillation (0: all); ``warm_start`` chains each gamma from the previous,
    smaller gamma at the same lambda.
    """

    wavelet: str = "db5"
    levels: int = 4
    mode: str = "zero"
    lr: float = 1e-3
    batch_size: int = 100
    epochs: int = 50
    patience: int | None = None
    lambdas: tuple[float, ...] = (0.005, 0.01, 0.02)
    gammas: tuple[float, ...] = (0.0, 0.001, 0.00368, 0.0136, 0.05)
    target: str = "both"
    n_maps: int = 0
    n_val_maps: int = 200
    warm_start: bool = True
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class StudentConfig:
    """Peak-count students and their feature settings.

    ``coverages`` are the candidate histogram ranges: the central fraction of the training
    values that the bins span (chosen on validation). ``n_bins`` is the paper's 22.
    """

    n_bins: int = 22
    coverages: tuple[float, ...] = (0.95, 0.98, 0.995)
    multiscale_bins: int = 10
    multiscale_coverage: float = 0.98
    l1_bins: int = 12
    l1_coverage: float = 0.998
    ridge_alphas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
    xgb_estimators: int = 300
    xgb_depth: int = 4
    xgb_lr: float = 0.05
    n_ell_bins: int = 15
    quantiles: tuple[float, ...] = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)
    minkowski: bool = True
    minkowski_bins: int = 10
    minkowski_max_maps: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class EvaluateConfig:
    """Bootstrap and interpretation settings of ``awd cosmology evaluate``."""

    n_bootstrap: int = 1000
    bootstrap_seed: int = 1
    n_attr_maps: int = 64
    n_fourier_bands: int = 8
    top_fraction: float = 0.05
    timing_maps: int = 256


@dataclass(frozen=True)
class RunConfig:
    """Everything a cosmology run needs.

    Examples
    --------
    >>> cfg = RunConfig().override(["teacher.epochs=3", "distill.lambdas=[0.1]"])
    >>> cfg.teacher.epochs, cfg.distill.lambdas
    (3, (0.1,))
    """

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillSettings = field(default_factory=DistillSettings)
    student: StudentConfig = field(default_factory=StudentConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), the YAML form."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> RunConfig:
        """Build from a nested mapping; unknown keys are errors naming ``source``."""
        return config_from_dict(cls, data, source)

    def override(self, assignments: Sequence[str]) -> RunConfig:
        """Apply ``section.key=value`` overrides (values parsed as YAML)."""
        data = apply_overrides(self.to_dict(), assignments, strict=True)
        return RunConfig.from_dict(data, "overrides")


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (``None``: defaults) and apply overrides.

    Examples
    --------
    >>> load_config(None, ["data.root=maps"]).data.root
    'maps'
    """
    return shared_load_config(RunConfig, path, overrides, strict=True)


def save_config(cfg: RunConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically)."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    return atomic_write(path, lambda p: p.write_text(text))


def mark_run_dir(run_dir: str | os.PathLike) -> None:
    """Create ``run_dir`` and its domain marker (or check an existing one)."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_MARKER).exists():
        check_run_dir(run_dir)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN_MARKER, {"domain": DOMAIN, "format_version": 1})


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """Raise a clear ``ValueError`` unless ``run_dir`` is a cosmology run directory."""
    run_dir = Path(run_dir)
    marker = run_dir / RUN_MARKER
    if not marker.is_file():
        raise ValueError(f"{run_dir}: not a run directory ({RUN_MARKER} is missing)")
    try:
        meta = json.loads(marker.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{marker}: not valid JSON ({err})") from None
    if meta.get("domain") != DOMAIN:
        raise ValueError(
            f"{marker}: a run directory of the domain {meta.get('domain')!r}, not {DOMAIN!r}"
        )
    return run_dir
