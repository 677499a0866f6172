"""Settings of a molecular-partner run: frozen dataclasses, YAML files and overrides.

One :class:`RunConfig` describes a whole run: ``teacher`` (the LSTM teachers of each
outcome), ``distill`` (the lambda x gamma grid; its ``train`` section is
:class:`shared.DistillConfig`) and ``evaluate`` (students, selection, bootstrap, timing).
Every value is checked against its type and range (:mod:`shared.config`) before anything
runs. ``configs/default.yaml`` is exactly these defaults; the resolved settings of a run
are in ``RUN/config.yaml``.

Examples
--------
>>> cfg = load_config(None, ["teacher.epochs=3", "distill.gammas=0,0.1"])
>>> cfg.teacher.epochs, cfg.distill.gammas
(3, (0.0, 0.1))
>>> load_config(None, ["evaluate.cv_folds=1"])
Traceback (most recent call last):
...
ValueError: config.evaluate.cv_folds: must be >= 2, got 1
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.config import INERT_WHEN_NO_CDEP, INERT_WHEN_NO_REALITY_CHECKS, record_settings, setting
from shared.config import load_config as _load_config
from shared.distill import DistillConfig
from shared.interpret.named import check_group_names
from shared.transform import Mode

__all__ = [
    "DOMAIN",
    "OUTCOMES",
    "DistillSettings",
    "EvaluateSettings",
    "RunConfig",
    "TeacherSettings",
    "load_config",
    "recorded",
]

DOMAIN = "molecular-partner"
#: The outcomes: the regression target (auxilin signal) and the binary one (recruited).
OUTCOMES = {"regression": "Y_sig_mean_normalized", "binary": "y_consec_thresh"}
#: The shipped configuration files.
CONFIGS = Path(__file__).resolve().parent / "configs"

Outcome = Literal["regression", "binary"]


@dataclass(frozen=True)
class TeacherSettings:
    """LSTM teachers: the reference's LSTM(1 -> 20) + Linear(20, 1), trained with Adam.

    One teacher per outcome in ``outcomes``: MSE for ``regression``
    (``Y_sig_mean_normalized``, the one AWD distils) and BCE for ``binary``
    (``y_consec_thresh``). Early stopping watches the loss on ``val_cells`` training
    cells held out by cell. ``arch: taylornet`` trains the provisional coarse-grained
    Taylor network of :mod:`shared.taylornet` instead, ``width`` channels per level
    (``hidden`` is the LSTM's).
    """

    arch: Literal["lstm", "taylornet"] = "lstm"
    width: int = setting(8, ge=1)
    hidden: int = setting(20, ge=1)
    length: int = setting(40, ge=2)
    outcomes: tuple[Outcome, ...] = setting(("regression", "binary"), nonempty=True)
    epochs: int = setting(200, ge=1)
    batch_size: int = setting(100, ge=1)
    lr: float = setting(1e-3, gt=0)
    patience: int = setting(15, ge=1)
    val_cells: int = setting(1, ge=0)
    seed: int = 0
    # The CD explanation penalty (CDEP, Rieger et al. 2020): cdep_weight > 0 adds
    # cdep_weight x the mean |CD score| of each group of cdep_groups in the teacher's
    # output (the paper's L1 form, prior 0) to the loss, so the teacher learns not to use
    # that part of the trace. Groups of traces: t<a>-<b> (samples a..b-1), cD<j>, cA<j>,
    # level<j> (wavelet cdep_wavelet), see shared.interpret.named. At 0 (the default)
    # training is exactly as without it.
    cdep_weight: float = setting(0.0, ge=0)
    cdep_groups: tuple[str, ...] = ()
    cdep_wavelet: str = "db5"

    def __post_init__(self) -> None:
        if "regression" not in self.outcomes:
            raise ValueError("teacher.outcomes must include 'regression' (the teacher AWD distils)")
        check_group_names(self.cdep_groups, dims=1)
        if self.cdep_weight > 0 and not self.cdep_groups:
            raise ValueError("cdep_weight > 0 needs cdep_groups (the groups to penalise)")


@dataclass(frozen=True)
class DistillSettings:
    """The lambda x gamma grid of 1D AWD through the teacher (paper: db5, J=4, ``zero``).

    For each lambda the gammas run in increasing order, each warm-started from the
    previous gamma's wavelet (the reference's continuation path). ``train`` holds the
    optimisation of every point (:class:`shared.DistillConfig`).
    """

    wavelet: str = "db5"
    levels: int = setting(4, ge=1)
    mode: Mode = "zero"
    lambdas: tuple[float, ...] = setting((0.0001, 0.001, 0.005), ge=0, nonempty=True)
    gammas: tuple[float, ...] = setting((0.0, 0.001, 0.01, 0.1, 1.0), ge=0, nonempty=True)
    warm_start: bool = True
    train: DistillConfig = field(default_factory=lambda: DistillConfig(epochs=20, patience=5))


@dataclass(frozen=True)
class EvaluateSettings:
    """Students, selection and evaluation.

    ``top_k`` values per scale feed the paper's OLS student (6 per scale, 30 features);
    the xgboost student also gets their positions. Selection is by cross-validation
    grouped by cell on training cells only; the test cells are used once, at the end.
    ``taylornet`` adds the TaylorNet students (provisional design, :mod:`shared.taylornet`)
    on the top-k values: ``taylornet_channels`` x ``taylornet_weight_decays`` chosen by
    the same grouped CV, each trained for ``taylornet_epochs`` epochs.

    Interpretation: TRIM attributions and CD scores per wavelet level of the test traces;
    ACD hierarchies of ``n_acd_examples`` test traces over units of ``acd_tile``
    coefficients. ``reality_checks`` adds the model- and label-randomisation tests of
    every attribution on ``reality_check_items`` test traces; the label test retrains the
    regression teacher on shuffled outcomes for ``reality_check_epochs`` epochs.
    """

    top_k: int = setting(6, ge=1)
    cv_folds: int = setting(5, ge=2)
    n_bootstrap: int = setting(1000, ge=0)
    timing_repeats: int = setting(20, ge=1)
    xgb_estimators: tuple[int, ...] = setting((100, 300), ge=1, nonempty=True)
    xgb_depths: tuple[int, ...] = setting((2, 3), ge=1, nonempty=True)
    xgb_learning_rate: float = setting(0.05, gt=0)
    n_examples: int = setting(3, ge=0)
    taylornet: bool = True
    taylornet_channels: tuple[int, ...] = setting((4, 8), ge=2, nonempty=True)
    taylornet_weight_decays: tuple[float, ...] = setting((0.01, 0.1), ge=0, nonempty=True)
    taylornet_epochs: int = setting(40, ge=1)
    seed: int = 0
    n_acd_examples: int = setting(2, ge=0)
    acd_tile: int = setting(2, ge=1)
    reality_checks: bool = False
    reality_check_items: int = setting(64, ge=2)
    reality_check_epochs: int = setting(20, ge=1)


@dataclass(frozen=True)
class RunConfig:
    """All sections together (what a YAML file in ``molecular_partner/configs`` holds)."""

    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    distill: DistillSettings = field(default_factory=DistillSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)


#: Settings added after runs were first recorded, and when each leaves the results as
#: they were: a step's record leaves them out then, so the runs made before stay valid.
_INERT = {
    TeacherSettings: {
        **INERT_WHEN_NO_CDEP,
        "arch": lambda t: t.arch == "lstm",
        "width": lambda t: t.arch == "lstm",
    },
    EvaluateSettings: {
        "n_acd_examples": lambda e: e.n_acd_examples == 2,
        "acd_tile": lambda e: e.acd_tile == 2,
        **INERT_WHEN_NO_REALITY_CHECKS,
    },
}


def recorded(section: object) -> dict:
    """A section's settings as a step records them: options that are off left out.

    Examples
    --------
    >>> "cdep_weight" in recorded(TeacherSettings()), "arch" in recorded(TeacherSettings())
    (False, False)
    >>> recorded(TeacherSettings(cdep_weight=1.0, cdep_groups=("t0-8",)))["cdep_groups"]
    ('t0-8',)
    """
    return record_settings(section, _INERT.get(type(section)))


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    base: RunConfig | None = None,
) -> RunConfig:
    """Defaults (or ``base``), a YAML file, then ``section.field=value`` overrides; all checked.

    Examples
    --------
    >>> load_config(None, ["distill.train.epochs=3"]).distill.train.epochs
    3
    """
    return _load_config(RunConfig, path, overrides, base=base)
