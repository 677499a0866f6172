"""Settings of a cosmology run: frozen dataclasses, YAML files and ``a.b=value`` overrides.

One :class:`RunConfig` describes a whole run: ``data`` (split, noise), ``teacher``,
``distill`` (the lambda x gamma grid; its ``train`` section is :class:`shared.DistillConfig`),
``student`` and ``evaluate``. Every value is checked against its type and range
(:mod:`shared.config`) before anything runs. ``configs/default.yaml`` is exactly these
defaults; the resolved settings of a run are in ``RUN/config.yaml``.

Examples
--------
>>> cfg = load_config(None, ["teacher.epochs=3", "distill.lambdas=[0.1]"])
>>> cfg.teacher.epochs, cfg.distill.lambdas
(3, (0.1,))
>>> load_config(None, ["teacher.epochs=0"])
Traceback (most recent call last):
...
ValueError: config.teacher.epochs: must be >= 1, got 0
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
    "DataConfig",
    "DistillSettings",
    "EvaluateConfig",
    "RunConfig",
    "StudentConfig",
    "TeacherConfig",
    "load_config",
    "recorded",
]

DOMAIN = "cosmology"
#: The shipped configuration files.
CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class DataConfig:
    """How the maps are split and observed.

    ``noise`` and ``smoothing_arcmin`` are applied at load time (for maps stored without
    noise); maps simulated with ``awd cosmology simulate --noise`` need neither.
    ``side_angle_deg`` is for maps whose files carry no side angle (FITS without an
    ``ANGLE`` header, npz without ``side_angle_deg``).
    """

    split_fractions: tuple[float, float, float] = setting((0.7, 0.1, 0.2), ge=0)
    split_seed: int = 0
    noise: bool = False
    n_gal: float = setting(30.0, gt=0)
    sigma_e: float = setting(0.26, ge=0)
    smoothing_arcmin: float = setting(0.0, ge=0)
    noise_seed: int = 0
    block: int = setting(1, ge=1)
    side_angle_deg: float | None = setting(None, gt=0)
    targets: tuple[str, str] = ("omega_m", "sigma_8")

    def __post_init__(self) -> None:
        if abs(sum(self.split_fractions) - 1.0) > 1e-9:
            raise ValueError(f"split_fractions must sum to 1, got {list(self.split_fractions)}")


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher and its training (``arch``: ``small`` or ``resnet18``, CNNs, or
    ``taylornet``, the provisional coarse-grained Taylor network of :mod:`shared.taylornet`;
    ``width`` is its channels per level)."""

    arch: Literal["small", "resnet18", "taylornet"] = "small"
    width: int = setting(8, ge=1)
    epochs: int = setting(40, ge=1)
    batch_size: int = setting(64, ge=2)
    lr: float = setting(1e-3, gt=0)
    weight_decay: float = setting(1e-4, ge=0)
    patience: int = setting(8, ge=1)
    augment: bool = True
    seed: int = 0
    threads: int = setting(0, ge=0)
    device: str = "cpu"
    # The CD explanation penalty (CDEP, Rieger et al. 2020): cdep_weight > 0 adds
    # cdep_weight x the mean |CD score| of each group of cdep_groups in each standardised
    # output (the paper's L1 form, prior 0) to the loss, so the teacher learns not to use
    # those scales. Groups of maps: level<j>, cA<j>, cH<j>, cV<j>, cD<j> (wavelet
    # cdep_wavelet) or f<lo>-<hi> (a Fourier annulus in cycles per pixel), see
    # shared.interpret.named. At 0 (the default) training is exactly as without it.
    cdep_weight: float = setting(0.0, ge=0)
    cdep_groups: tuple[str, ...] = ()
    cdep_wavelet: str = "db5"

    def __post_init__(self) -> None:
        check_group_names(self.cdep_groups, dims=2)
        if self.cdep_weight > 0 and not self.cdep_groups:
            raise ValueError("cdep_weight > 0 needs cdep_groups (the groups to penalise)")


@dataclass(frozen=True)
class DistillSettings:
    """The lambda x gamma grid of AWD distillation (paper: db5, J=4, zero, lr 1e-3, batch 100).

    ``target``: ``omega_m``, ``sigma_8`` or ``both`` (the teacher outputs attributed).
    ``n_maps`` / ``n_val_maps`` limit the training / validation maps used (0: all);
    ``warm_start`` chains each gamma from the previous, smaller gamma at the same lambda.
    ``train`` holds the optimisation of every point (:class:`shared.DistillConfig`).
    """

    wavelet: str = "db5"
    levels: int = setting(4, ge=1)
    mode: Mode = "zero"
    lambdas: tuple[float, ...] = setting((0.005, 0.01, 0.02), ge=0, nonempty=True)
    gammas: tuple[float, ...] = setting((0.0, 0.001, 0.00368, 0.0136, 0.05), ge=0, nonempty=True)
    warm_start: bool = True
    target: Literal["omega_m", "sigma_8", "both"] = "both"
    n_maps: int = setting(0, ge=0)
    n_val_maps: int = setting(200, ge=0)
    device: str = "cpu"
    train: DistillConfig = field(default_factory=DistillConfig)


@dataclass(frozen=True)
class StudentConfig:
    """Students and baselines and their feature settings.

    ``coverages`` are the candidate histogram ranges: the central fraction of the training
    values that the bins span (chosen on validation). ``n_bins`` is the paper's 22.
    ``taylornet`` adds the TaylorNet students (provisional design, :mod:`shared.taylornet`)
    on the wavelet l1-norm: ``taylornet_channels`` x ``taylornet_weight_decays`` chosen on
    validation, each trained for ``taylornet_epochs`` epochs; ``taylornet_wavelet``
    says which learned wavelet ``awd_taylornet`` reads: ``validation``, every gamma > 0
    grid point with the TaylorNet's own validation score deciding, or ``l1_ridge``, the
    one chosen for the l1-norm ridge student (the rule of the earlier committed runs).

    The field's strongest statistics, each through pooled chi-square, ridge and xgboost:
    ``scattering`` adds kymatio's Morlet scattering transform (``scattering_j`` scales,
    ``scattering_l`` angles; the angle reduction is chosen on validation among
    ``scattering_orientations``; ``scattering_log`` takes the log of orders 1 and 2);
    ``starlet`` the starlet l1-norm and starlet peaks (``starlet_scales`` planes, the
    coarse one included; ``starlet_l1_bins``, ``starlet_peak_bins`` bins over the central
    ``starlet_coverage`` of the training values); ``combinations`` the power spectrum +
    raw peaks + Minkowski functionals in one set (with ``minkowski``) and the wavelet
    l1-norm + multi-scale peaks in one set (learned wavelet and db5);
    ``wavelet_scattering`` the scattering transform through the learned wavelet and db5.
    A ``scattering_j`` or ``starlet_scales`` too large for the maps is lowered to the
    largest the maps allow (with a warning, recorded in the selection).
    """

    n_bins: int = setting(22, ge=1)
    coverages: tuple[float, ...] = setting((0.95, 0.98, 0.995), gt=0, le=1, nonempty=True)
    multiscale_bins: int = setting(10, ge=1)
    multiscale_coverage: float = setting(0.98, gt=0, le=1)
    l1_bins: int = setting(12, ge=1)
    l1_coverage: float = setting(0.998, gt=0, le=1)
    ridge_alphas: tuple[float, ...] = setting((0.01, 0.1, 1.0, 10.0, 100.0), gt=0, nonempty=True)
    xgb_estimators: int = setting(300, ge=1)
    xgb_depth: int = setting(4, ge=1)
    xgb_lr: float = setting(0.05, gt=0)
    n_ell_bins: int = setting(15, ge=1)
    quantiles: tuple[float, ...] = setting(
        (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999), ge=0, le=1, nonempty=True
    )
    minkowski: bool = True
    minkowski_bins: int = setting(10, ge=1)
    minkowski_max_maps: int = setting(1000, ge=2)
    taylornet: bool = True
    taylornet_channels: tuple[int, ...] = setting((4, 8), ge=2, nonempty=True)
    taylornet_weight_decays: tuple[float, ...] = setting((0.01, 0.1), ge=0, nonempty=True)
    taylornet_epochs: int = setting(60, ge=1)
    taylornet_wavelet: Literal["validation", "l1_ridge"] = "validation"
    scattering: bool = True
    scattering_j: int = setting(4, ge=1)
    scattering_l: int = setting(8, ge=1)
    scattering_orientations: tuple[Literal["all", "relative", "mean"], ...] = setting(
        ("all", "relative", "mean"), nonempty=True
    )
    scattering_log: bool = True
    starlet: bool = True
    starlet_scales: int = setting(5, ge=2)
    starlet_l1_bins: int = setting(20, ge=1)
    starlet_peak_bins: int = setting(20, ge=1)
    starlet_coverage: float = setting(0.998, gt=0, le=1)
    combinations: bool = True
    wavelet_scattering: bool = True
    seed: int = 0


@dataclass(frozen=True)
class EvaluateConfig:
    """Bootstrap, timing and interpretation settings of ``awd cosmology evaluate``.

    Interpretation: TRIM attributions and CD scores per wavelet level and Fourier band on
    ``n_attr_maps`` test maps; ACD hierarchies of ``n_acd_examples`` test maps, with at
    most ``acd_tiles`` x ``acd_tiles`` units per finest band. ``reality_checks`` adds the
    model- and label-randomisation tests of every attribution on
    ``reality_check_items`` test maps; the label test retrains the teacher on shuffled
    training targets for ``reality_check_epochs`` epochs.
    """

    n_bootstrap: int = setting(1000, ge=0)
    bootstrap_seed: int = 1
    n_attr_maps: int = setting(64, ge=1)
    n_fourier_bands: int = setting(8, ge=1)
    top_fraction: float = setting(0.05, gt=0, le=1)
    timing_maps: int = setting(256, ge=1)
    timing_repeats: int = setting(5, ge=1)
    n_acd_examples: int = setting(2, ge=0)
    acd_tiles: int = setting(4, ge=1)
    reality_checks: bool = False
    reality_check_items: int = setting(16, ge=2)
    reality_check_epochs: int = setting(3, ge=1)


@dataclass(frozen=True)
class RunConfig:
    """Everything a cosmology run needs (see the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillSettings = field(default_factory=DistillSettings)
    student: StudentConfig = field(default_factory=StudentConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


#: Settings added after runs were first recorded, and when each leaves the results as
#: they were: a step's record leaves them out then, so the runs made before stay valid.
_INERT = {
    TeacherConfig: INERT_WHEN_NO_CDEP,
    EvaluateConfig: {
        "n_acd_examples": lambda e: e.n_acd_examples == 2,
        "acd_tiles": lambda e: e.acd_tiles == 4,
        **INERT_WHEN_NO_REALITY_CHECKS,
    },
}


def recorded(section: object) -> dict:
    """A section's settings as a step records them: options that are off left out.

    Examples
    --------
    >>> "cdep_groups" in recorded(TeacherConfig())
    False
    >>> recorded(TeacherConfig(cdep_weight=1.0, cdep_groups=("level1",)))["cdep_groups"]
    ('level1',)
    """
    return record_settings(section, _INERT.get(type(section)))


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    base: RunConfig | None = None,
) -> RunConfig:
    """Defaults (or ``base``), a YAML file, then ``section.key=value`` overrides; all checked.

    Examples
    --------
    >>> load_config(None, ["data.side_angle_deg=3.5"]).data.side_angle_deg
    3.5
    """
    return _load_config(RunConfig, path, overrides, base=base)
