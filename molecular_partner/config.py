"""Run settings of the molecular-partner pipeline: frozen dataclasses read from YAML.

Each CLI command has one section (``teacher``, ``distill``, ``evaluate``); a YAML file may
hold any of them, and ``--set section.field=value`` overrides a single field. The resolved
settings are written into every run directory, so a run says exactly how it was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from shared.config import apply_overrides
from shared.runs import atomic_write

__all__ = [
    "DistillSettings",
    "EvaluateSettings",
    "PipelineConfig",
    "TeacherSettings",
    "load_config",
    "write_config",
]

OUTCOMES = ("regression", "binary")


@dataclass(frozen=True)
class TeacherSettings:
    """LSTM teacher: the reference's LSTM(1 -> 20) + Linear(20, 1), trained with Adam.

    ``loss`` is ``mse`` for the regression outcome (``Y_sig_mean_normalized``) and ``bce``
    for the binary one (``y_consec_thresh``). Early stopping watches the loss on
    ``val_cells`` training cells held out by cell.
    """

    hidden: int = 20
    length: int = 40
    loss: str = "mse"
    epochs: int = 200
    batch_size: int = 100
    lr: float = 1e-3
    patience: int = 15
    val_cells: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"teacher.loss must be 'mse' or 'bce', got {self.loss!r}")
        for name in ("hidden", "length", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"teacher.{name} must be >= 1, got {getattr(self, name)}")
        if self.val_cells < 0:
            raise ValueError(f"teacher.val_cells must be >= 0, got {self.val_cells}")


@dataclass(frozen=True)
class DistillSettings:
    """The lambda x gamma grid of 1D AWD through the teacher (paper: db5, J=4, ``zero``).

    For each lambda the gammas run in increasing order, each warm-started from the
    previous gamma's wavelet (the reference's continuation path).
    """

    wavelet: str = "db5"
    levels: int = 4
    mode: str = "zero"
    lambdas: tuple[float, ...] = (0.0001, 0.001, 0.005)
    gammas: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1, 1.0)
    epochs: int = 20
    batch_size: int = 100
    lr: float = 1e-3
    patience: int | None = 5
    attr_method: str = "saliency"
    warm_start: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.lambdas or not self.gammas:
            raise ValueError("distill.lambdas and distill.gammas must not be empty")
        if any(v < 0 for v in (*self.lambdas, *self.gammas)):
            raise ValueError("distill.lambdas and distill.gammas must be >= 0")


@dataclass(frozen=True)
class EvaluateSettings:
    """Students, selection and evaluation.

    ``top_k`` values per scale feed the paper's OLS student (6 per scale, 30 features);
    the xgboost student also gets their positions. Selection is by cross-validation
    grouped by cell on training cells only; the test cells are used once, at the end.
    """

    top_k: int = 6
    cv_folds: int = 5
    n_bootstrap: int = 1000
    timing_repeats: int = 20
    xgb_estimators: tuple[int, ...] = (100, 300)
    xgb_depths: tuple[int, ...] = (2, 3)
    xgb_learning_rate: float = 0.05
    n_examples: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"evaluate.top_k must be >= 1, got {self.top_k}")
        if self.cv_folds < 2:
            raise ValueError(f"evaluate.cv_folds must be >= 2, got {self.cv_folds}")
        if self.n_bootstrap < 0:
            raise ValueError(f"evaluate.n_bootstrap must be >= 0, got {self.n_bootstrap}")


@dataclass(frozen=True)
class PipelineConfig:
    """All sections together (what a YAML file in ``molecular_partner/configs`` holds)."""

    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    distill: DistillSettings = field(default_factory=DistillSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)


def _coerce(cls, name: str, value: Any, where: str) -> Any:
    default = {f.name: f for f in fields(cls)}[name].default
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        kind = type(default[0]) if default else float
        return tuple(kind(v) for v in value)
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{where}: {name} must be a boolean, got {value!r}")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        return None
    if isinstance(default, int) or (default is None and name == "patience"):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def _section(cls, values: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**{k: _coerce(cls, k, v, where) for k, v in values.items()})


def load_config(path: str | Path | None = None, overrides: list[str] | None = None):
    """Read a pipeline config from YAML and apply ``section.field=value`` overrides.

    Parameters
    ----------
    path : path, optional
        YAML file with any of the sections ``teacher``, ``distill``, ``evaluate``.
    overrides : list of str, optional
        ``section.field=value`` strings (lists as ``a,b,c``).

    Returns
    -------
    PipelineConfig

    Examples
    --------
    >>> cfg = load_config(None, ["teacher.epochs=3", "distill.gammas=0,0.1"])
    >>> cfg.teacher.epochs, cfg.distill.gammas
    (3, (0.0, 0.1))
    """
    where = str(path) if path is not None else "config"
    sections = {"teacher": TeacherSettings, "distill": DistillSettings}
    sections["evaluate"] = EvaluateSettings
    raw: dict = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"{path}: cannot read the YAML config ({err})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: the config must be a mapping of sections")
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f"{where}: unknown section(s) {unknown}; known: {sorted(sections)}")
    values = {k: dict(raw.get(k) or {}) for k in sections}
    for item in overrides or []:
        section, dot, _ = item.partition("=")[0].strip().partition(".")
        if "=" not in item or not dot or section not in sections:
            raise ValueError(f"override {item!r} must look like section.field=value")
    # YAML values, so `[0, 0.1]` works; a bare `0,0.1` stays a string for _coerce to split.
    apply_overrides(values, overrides or [])
    return PipelineConfig(**{k: _section(cls, values[k], where) for k, cls in sections.items()})


def write_config(config: Any, path: str | Path) -> Path:
    """Write a (section of a) config as YAML, atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_config(TeacherSettings(), pathlib.Path(tempfile.mkdtemp()) / "c.yaml")
    >>> load_config(None).teacher == TeacherSettings()
    True
    """
    data = dataclasses.asdict(config)
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    for k, v in data.items():
        if isinstance(v, dict):
            data[k] = {a: list(b) if isinstance(b, tuple) else b for a, b in v.items()}
    text = yaml.safe_dump(data, sort_keys=False)
    return atomic_write(path, lambda p: p.write_text(text))
