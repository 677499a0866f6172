"""Training a wavelet transform: the AWD distillation loop and a scikit-learn estimator.

:func:`distill` trains the lowpass filter ``h0`` of a :class:`~shared.DWT1d` or
:class:`~shared.DWT2d` on the AWD objective (:class:`~shared.losses.AWDLoss`). With a
teacher and ``weights.l1_attr > 0`` the teacher's TRIM attributions in the wavelet domain
are penalised (adaptive wavelet distillation); without a teacher it learns a wavelet in
which the data are sparse (Recoskie & Mann's sparse wavelet learning).

The loop is mini-batch, seeded (the shuffle of epoch ``e`` depends only on the seed and
``e``), optionally early-stopped on validation data, and checkpointed every epoch so an
interrupted run resumes where it stopped and ends where an uninterrupted run ends.

The attribution penalty takes one of two paths (``DistillConfig.attribution_path``):
autograd through the teacher with a double backward (exact for any teacher), or the
transform of the teacher's input gradients, computed once per sample in a
:class:`~shared.gradient_cache.GradientCache` (a step then costs a few transforms, whatever
the teacher). By default the cached path is taken wherever it equals the exact one: a
piecewise-linear teacher, an adjoint mode, saliency or input x gradient.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.base import BaseEstimator, TransformerMixin
from torch import Tensor, nn
from tqdm.auto import tqdm

from shared.attributions import Method, trim_attributions
from shared.coeffs import coefficient_names, flat_features
from shared.gradient_cache import (
    ATTRIBUTION_PATHS,
    AttributionPlan,
    GradientCache,
    GradientSource,
    as_gradient_cache,
    attributions_from_gradients,
    plan_attributions,
)
from shared.losses import AWDLoss, PenaltyWeights, check_finite_terms
from shared.runs import StaleResultError, atomic_write, differences, write_json
from shared.transform import DWT1d, DWT2d, Mode
from shared.wavelet import LearnableWavelet

__all__ = ["AWDTransformer", "DistillConfig", "distill"]

logger = logging.getLogger(__name__)

_CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class DistillConfig:
    """Optimisation settings of :func:`distill` (also what a checkpoint must agree with).

    ``attribution_path`` chooses how the attribution penalty is computed:

    - ``"auto"`` (default): from cached teacher input gradients wherever that equals the
      exact path, i.e. a teacher made only of piecewise-linear layers (see
      :func:`~shared.gradient_cache.piecewise_linear`), the ``zero`` or (sizes divisible
      by ``2**levels``) ``periodization`` mode, and saliency or input x gradient; the
      exact path elsewhere.
    - ``"exact"``: always autograd through the teacher (double backward).
    - ``"cached"``: always the cached gradients, also for smooth teachers (LSTM, tanh...)
      and integrated gradients, where it is an approximation; the measured deviation is
      in :mod:`shared.gradient_cache`. Refused in modes that are not adjoint.
    """

    epochs: int = 50
    batch_size: int = 100
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    attr_method: Method = "saliency"
    patience: int | None = None
    normalize: bool = False
    seed: int = 0
    attribution_path: Literal["auto", "exact", "cached"] = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.attribution_path not in ATTRIBUTION_PATHS:
            raise ValueError(
                f"attribution_path must be one of {', '.join(ATTRIBUTION_PATHS)}, "
                f"got {self.attribution_path!r}"
            )


# -- data ----------------------------------------------------------------------------------
def _as_tensor(data) -> Tensor:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, Tensor):
        raise ValueError(f"expected a tensor, an array or a DataLoader, got {type(data).__name__}")
    return data


def _first(item) -> Tensor:
    if isinstance(item, (list, tuple)):
        return item[0]
    if isinstance(item, dict):
        return item["x"]
    return item


def _indexed_batches(
    data, batch_size: int, seed: int, epoch: int, shuffle: bool
) -> Iterable[tuple[Tensor | None, Tensor]]:
    """(sample indices, batch); the indices are None for a DataLoader."""
    if isinstance(data, (Tensor, np.ndarray)):
        data = _as_tensor(data)
        n = data.shape[0]
        if shuffle:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield index, data[index]
    else:
        for item in data:
            yield None, _first(item)


def _batches(data, batch_size: int, seed: int, epoch: int, shuffle: bool) -> Iterable[Tensor]:
    for _, batch in _indexed_batches(data, batch_size, seed, epoch, shuffle):
        yield batch


def _to_float(x: Tensor, device) -> Tensor:
    x = x.to(device)
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _n_samples(data) -> int | None:
    if isinstance(data, (Tensor, np.ndarray)):
        return int(data.shape[0])
    try:
        return len(data.dataset)  # DataLoader
    except (AttributeError, TypeError):
        return None


def _transform_for(data, wavelet, levels: int, mode: Mode) -> DWT1d | DWT2d:
    sample = _as_tensor(data) if isinstance(data, (Tensor, np.ndarray)) else None
    ndim = sample.ndim if sample is not None else None
    if ndim == 3:
        return DWT1d(wavelet, levels=levels, mode=mode)
    if ndim == 4:
        return DWT2d(wavelet, levels=levels, mode=mode)
    raise ValueError(
        "cannot tell 1D from 2D data: pass `transform=DWT1d(...)` or `DWT2d(...)`, or data "
        "shaped (N, C, L) or (N, C, H, W)"
    )


# -- teacher -------------------------------------------------------------------------------
class _FrozenTeacher:
    """Eval mode and no parameter gradients for the duration, restored afterwards."""

    def __init__(self, teacher: nn.Module | None) -> None:
        self.teacher = teacher
        self.flags: list[bool] = []
        self.was_training = False

    def __enter__(self):
        if self.teacher is None:
            return self
        self.was_training = self.teacher.training
        if self.was_training:
            warnings.warn(
                "the teacher was in training mode; distilling it in eval mode", stacklevel=3
            )
            self.teacher.eval()
        params = list(self.teacher.parameters())
        self.flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        return self

    def __exit__(self, *exc) -> None:
        if self.teacher is None:
            return
        for p, flag in zip(self.teacher.parameters(), self.flags, strict=True):
            p.requires_grad_(flag)


# -- one step ------------------------------------------------------------------------------
def _terms(
    transform,
    loss: AWDLoss,
    x: Tensor,
    teacher,
    target,
    method: Method,
    train: bool,
    source: GradientSource | None = None,
    index: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    coeffs = transform(x)
    x_rec = transform.inverse(coeffs, size=x.shape[2:])
    attributions = None
    if teacher is not None and loss.weights.l1_attr > 0 and source is not None:
        # No teacher pass: the transform of the cached input gradient (see DistillConfig).
        grads = source.for_batch(index, x)
        attributions = attributions_from_gradients(
            transform, coeffs, grads, method, several=source.several
        )
    elif teacher is not None and loss.weights.l1_attr > 0:
        attributions = trim_attributions(
            teacher,
            transform,
            x,
            method,
            target,
            create_graph=train,
            coeffs=coeffs,
            residual=(x - x_rec).detach(),
        )
    return loss(transform.wavelet.h0, x, x_rec, coeffs, attributions)


def _evaluate(
    transform, loss, data, teacher, target, method, batch_size, source=None
) -> dict[str, float]:
    sums: dict[str, float] = {}
    count = 0
    grad_ctx = torch.enable_grad() if teacher is not None else torch.no_grad()
    with grad_ctx:
        for index, xb in _indexed_batches(data, batch_size, 0, 0, shuffle=False):
            xb = _to_float(xb, transform.wavelet.h0.device)
            total, terms = _terms(
                transform, loss, xb, teacher, target, method, False, source, index
            )
            n = xb.shape[0]
            count += n
            for k, v in {"total": total, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
    if count == 0:
        raise ValueError("the validation data are empty")
    return {k: v / count for k, v in sums.items()}


# -- checkpoints -------------------------------------------------------------------------------
def _save_checkpoint(directory: Path, state: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    # Two files, each renamed into place: both carry the epoch, so a kill between the two
    # renames leaves parts that disagree, which the loader detects.
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"epoch": str(state["epoch"])}
    atomic_write(
        directory / f"{_CHECKPOINT}.safetensors",
        lambda p: save_file(tensors, str(p), metadata=meta),
    )
    write_json(directory / f"{_CHECKPOINT}.json", state)


def _load_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
    """The checkpoint in ``directory``; ``None`` if there is none or its parts disagree."""
    meta = directory / f"{_CHECKPOINT}.json"
    blob = directory / f"{_CHECKPOINT}.safetensors"
    if not meta.exists() or not blob.exists():
        return None
    try:
        state = json.loads(meta.read_text())
        with safe_open(str(blob), framework="pt") as handle:
            blob_epoch = (handle.metadata() or {}).get("epoch")
        tensors = load_file(str(blob))
    except Exception as err:  # any corruption is reported the same way
        raise ValueError(f"{directory}: the checkpoint cannot be read ({err})") from None
    if blob_epoch != str(state.get("epoch")):
        logger.warning(
            "%s: the checkpoint's parts come from epochs %s and %s (a write was cut off); "
            "starting this point again",
            directory,
            blob_epoch,
            state.get("epoch"),
        )
        return None
    return state, tensors


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{idx}.{key}"] = value.reshape(-1) if value.ndim == 0 else value
                plain.setdefault(str(idx), {})[key] = {"tensor": True, "scalar": value.ndim == 0}
            else:
                plain.setdefault(str(idx), {})[key] = {"value": value}
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def _restore_optimizer(optimizer, tensors: dict[str, Tensor], saved: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for idx, entry in saved["state"].items():
        restored = {}
        for key, spec in entry.items():
            if spec.get("tensor"):
                value = tensors[f"optim.{idx}.{key}"]
                restored[key] = value.reshape(()) if spec["scalar"] else value
            else:
                restored[key] = spec["value"]
        state[int(idx)] = restored
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def _fingerprint(config: DistillConfig, weights: PenaltyWeights, transform, target) -> dict:
    settings = asdict(config) | {"epochs": None}
    if settings["attribution_path"] == "auto":
        # "auto" only takes the cached path where it equals the exact one, so it does not
        # change what a checkpoint means (and checkpoints from before the setting resume).
        del settings["attribution_path"]
    return {
        "config": settings,
        "weights": weights.to_dict(),
        "kind": type(transform).__name__,
        "levels": transform.levels,
        "mode": transform.mode,
        "filter_length": len(transform.wavelet),
        "target": target if isinstance(target, (int, list)) else str(target),
    }


@dataclass
class _Attributions:
    """The attribution path of a call, and where its gradients come from."""

    plan: AttributionPlan | None = None
    source: GradientSource | None = None
    val_source: GradientSource | None = None
    seconds: float = 0.0

    def record(self, first: bool) -> dict[str, Any]:
        """What an epoch's history record says about the path."""
        if self.plan is None:
            return {}
        if self.source is None:
            return {"attribution_path": "exact"}
        path = "cached" if self.source.kind == "cache" else "cached_per_batch"
        return {"attribution_path": path} | (
            {"gradient_cache_seconds": self.seconds} if first else {}
        )


def _attribution_setup(
    config: DistillConfig,
    weights: PenaltyWeights,
    teacher: nn.Module | None,
    transform,
    data,
    val_data,
    target,
    device: torch.device,
    gradient_cache,
    needed: bool = True,
) -> _Attributions:
    """The attribution path, and where its gradients come from (train, validation)."""
    if teacher is None or weights.l1_attr <= 0 or not needed:
        return _Attributions()
    sample = _as_tensor(data) if isinstance(data, (Tensor, np.ndarray)) else None
    plan = plan_attributions(
        config.attribution_path,
        teacher,
        transform.mode,
        transform.levels,
        config.attr_method,
        sample_shape=tuple(sample.shape[1:]) if sample is not None else None,
        probe=_to_float(sample[:1], device) if sample is not None else None,
        target=target,
    )
    logger.info("attributions: the %s path (%s)", plan.path, plan.reason)
    if plan.path != "cached":
        return _Attributions(plan)
    cache = as_gradient_cache(gradient_cache)
    tic = time.perf_counter()
    options = {"batch_size": config.batch_size, "device": device}
    source = cache.source(teacher, data, target, config.attr_method, name="train", **options)
    val_source = None
    if val_data is not None:
        val_source = cache.source(
            teacher, val_data, target, config.attr_method, name="val", **options
        )
    return _Attributions(plan, source, val_source, time.perf_counter() - tic)


# -- the loop ---------------------------------------------------------------------------------
def distill(
    data,
    *,
    transform: DWT1d | DWT2d | None = None,
    wavelet: str | Sequence[float] | LearnableWavelet = "db5",
    levels: int = 4,
    mode: Mode = "zero",
    teacher: nn.Module | None = None,
    weights: PenaltyWeights | None = None,
    target=0,
    config: DistillConfig | None = None,
    val_data=None,
    device: str | torch.device = "cpu",
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    gradient_cache: GradientCache | str | os.PathLike | None = None,
) -> tuple[DWT1d | DWT2d, list[dict[str, Any]]]:
    """Train a wavelet transform on the AWD objective.

    Parameters
    ----------
    data : Tensor, ndarray or DataLoader
        Training inputs ``(N, C, L)`` or ``(N, C, H, W)``; a DataLoader may yield tensors
        or ``(x, ...)`` tuples (then its own shuffling applies).
    transform : DWT1d or DWT2d, optional
        The transform to train (trained in place). Default: built from ``wavelet``,
        ``levels`` and ``mode`` with the dimension of ``data``.
    wavelet, levels, mode
        Used when ``transform`` is not given (paper: db5, 4, "zero").
    teacher : nn.Module, optional
        The frozen model whose attributions are penalised. Without it (or with
        ``weights.l1_attr == 0``) no attributions are computed.
    weights : PenaltyWeights, optional
        Term weights; default all constraints 1, lambda = gamma = 0.
    target : int, list of int or Tensor
        Teacher output(s) to attribute (see :func:`~shared.attributions.trim_attributions`).
    config : DistillConfig, optional
        Epochs, batch size, learning rate, optimizer, attribution method, early-stopping
        patience, normalisation and seed.
    val_data : optional
        Validation inputs; their total loss drives early stopping (else the training loss).
    device : str or torch.device
        Where to train; the transform is moved there.
    checkpoint_dir : path, optional
        Folder for a checkpoint written after every epoch.
    resume : bool, default False
        Continue from the checkpoint in ``checkpoint_dir`` if one exists.
    progress : bool, optional
        Show a progress bar; default only on a terminal.
    gradient_cache : GradientCache, folder or None
        Where the teacher's input gradients of the cached attribution path live (see
        ``DistillConfig.attribution_path``): a :class:`~shared.gradient_cache.GradientCache`
        or a folder for one. Every point of a lambda x gamma grid of one run may pass the
        same folder (the gradients do not depend on the filter; the entries ``train`` and
        ``val`` are built once, under a file lock, and memory-mapped read-only by the
        others). A folder holding gradients of another teacher, data, target or method is
        refused (:class:`~shared.gradient_cache.StaleCacheError`). Default: an in-memory
        cache for this call.

    Returns
    -------
    transform : DWT1d or DWT2d
        The trained transform (the best epoch's filter under early stopping).
    history : list of dict
        Per epoch: ``epoch``, ``seconds``, ``train_<term>`` and ``val_<term>`` for
        ``total`` and every unweighted term. With attributions, also
        ``attribution_path``: ``"exact"``, ``"cached"`` or ``"cached_per_batch"`` (a
        DataLoader, whose gradients are taken per batch: a teacher forward and backward,
        no double backward); the first epoch of a call on the cached path also has
        ``gradient_cache_seconds``, the time to build or open the cache.

    Examples
    --------
    >>> import torch
    >>> from shared import DistillConfig, PenaltyWeights
    >>> x = torch.randn(64, 1, 32)
    >>> dwt, history = distill(x, wavelet="db2", levels=2, weights=PenaltyWeights(l1_coeffs=0.1),
    ...                        config=DistillConfig(epochs=2, batch_size=32), progress=False)
    >>> len(history), sorted(history[0])[:3]
    (2, ['epoch', 'seconds', 'train_cmf'])
    """
    config = config or DistillConfig()
    weights = weights or PenaltyWeights()
    n = _n_samples(data)
    if n == 0:
        raise ValueError("the training data are empty")
    if transform is None:
        transform = _transform_for(data, wavelet, levels, mode)
    if weights.l1_attr > 0 and teacher is None:
        raise ValueError("weights.l1_attr > 0 needs a teacher")
    torch.manual_seed(config.seed)
    device = torch.device(device)
    transform.to(device)
    if teacher is not None:
        teacher.to(device)
    loss = AWDLoss(weights, normalize=config.normalize)
    params = list(transform.parameters())
    if config.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.lr)
    else:
        optimizer = torch.optim.SGD(params, lr=config.lr)
    fingerprint = _fingerprint(config, weights, transform, target)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = _TrainingState.start(transform)
    if ckpt_dir is not None and resume:
        state.resume(ckpt_dir, fingerprint, transform, optimizer, device)
    bar = tqdm(
        range(state.start_epoch, config.epochs),
        desc="distill",
        disable=None if progress is None else not progress,
        leave=False,
        initial=state.start_epoch,
        total=config.epochs,
    )
    already_stopped = config.patience is not None and state.bad_epochs >= config.patience
    with _FrozenTeacher(teacher):
        attrs = _attribution_setup(
            config,
            weights,
            teacher,
            transform,
            data,
            val_data,
            target,
            device,
            gradient_cache,
            needed=not already_stopped,
        )
        for epoch in [] if already_stopped else bar:
            tic = time.perf_counter()
            sums, seen = _train_epoch(
                transform, loss, optimizer, data, teacher, target, config, attrs, epoch, device
            )
            record: dict[str, Any] = {"epoch": epoch}
            record.update(attrs.record(first=epoch == state.start_epoch))
            record.update({f"train_{k}": v / seen for k, v in sums.items()})
            if val_data is not None:
                val = _evaluate(
                    transform,
                    loss,
                    val_data,
                    teacher,
                    target,
                    config.attr_method,
                    config.batch_size,
                    attrs.val_source,
                )
                record.update({f"val_{k}": v for k, v in val.items()})
            record["seconds"] = time.perf_counter() - tic
            monitored = record["val_total"] if val_data is not None else record["train_total"]
            state.update(record, monitored, transform)
            logger.debug(
                "epoch %d: train %.6g%s",
                epoch,
                record["train_total"],
                f", val {record['val_total']:.6g}" if val_data is not None else "",
            )
            bar.set_postfix(loss=f"{monitored:.4g}")
            if ckpt_dir is not None:
                state.save(ckpt_dir, epoch, optimizer, fingerprint, transform)
            if config.patience is not None and state.bad_epochs >= config.patience:
                logger.info("early stop at epoch %d (best %d)", epoch, state.best_epoch)
                break
    if config.patience is not None and state.best_epoch >= 0:
        with torch.no_grad():
            transform.wavelet.h0.copy_(state.best_h0)
    return transform, state.history


def _train_epoch(
    transform, loss, optimizer, data, teacher, target, config, attrs, epoch: int, device
) -> tuple[dict[str, float], int]:
    """One pass over the training data: the summed loss terms and the samples seen."""
    sums: dict[str, float] = {}
    seen = 0
    batches = _indexed_batches(data, config.batch_size, config.seed, epoch, True)
    for i, (index, xb) in enumerate(batches):
        xb = _to_float(xb, device)
        optimizer.zero_grad(set_to_none=True)
        total, terms = _terms(
            transform,
            loss,
            xb,
            teacher,
            target,
            config.attr_method,
            True,
            attrs.source,
            index,
        )
        check_finite_terms({**terms, "total": total}, f"at epoch {epoch}, batch {i}")
        total.backward()
        optimizer.step()
        seen += xb.shape[0]
        for k, v in {"total": total, **terms}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * xb.shape[0]
    if seen == 0:
        raise ValueError("the training data are empty")
    return sums, seen


@dataclass
class _TrainingState:
    """History, best epoch and early-stopping count of a distillation; checkpointed."""

    history: list[dict[str, Any]]
    start_epoch: int
    best_value: float
    best_epoch: int
    best_h0: Tensor
    bad_epochs: int

    @classmethod
    def start(cls, transform) -> _TrainingState:
        return cls([], 0, math.inf, -1, transform.wavelet.h0.detach().clone(), 0)

    def update(self, record: dict[str, Any], monitored: float, transform) -> None:
        self.history.append(record)
        if monitored < self.best_value:
            self.best_value, self.best_epoch = monitored, record["epoch"]
            self.best_h0 = transform.wavelet.h0.detach().clone()
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1

    def resume(self, ckpt_dir: Path, fingerprint, transform, optimizer, device) -> None:
        loaded = _load_checkpoint(ckpt_dir)
        if loaded is None:
            return
        state, tensors = loaded
        if state["fingerprint"] != json.loads(json.dumps(fingerprint)):
            changed = differences(state["fingerprint"], fingerprint)
            raise StaleResultError(
                f"{ckpt_dir}: this checkpoint of an unfinished run was made with other "
                f"settings ({'; '.join(changed)}); rerun with --force to redo it"
            )
        with torch.no_grad():
            transform.wavelet.h0.copy_(tensors["h0"].to(device))
        _restore_optimizer(optimizer, tensors, state["optimizer"])
        self.history = state["history"]
        self.start_epoch = state["epoch"] + 1
        # JSON keeps no infinity: a best value never set comes back as null.
        self.best_value = math.inf if state["best_value"] is None else state["best_value"]
        self.best_epoch = state["best_epoch"]
        self.best_h0 = tensors["best_h0"].to(device)
        self.bad_epochs = state["bad_epochs"]
        logger.info("resuming from %s at epoch %d", ckpt_dir, self.start_epoch)

    def save(self, ckpt_dir: Path, epoch: int, optimizer, fingerprint, transform) -> None:
        opt_tensors, opt_state = _optimizer_tensors(optimizer)
        _save_checkpoint(
            ckpt_dir,
            {
                "epoch": epoch,
                "history": self.history,
                "best_value": self.best_value,
                "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "optimizer": opt_state,
                "fingerprint": fingerprint,
            },
            {"h0": transform.wavelet.h0, "best_h0": self.best_h0, **opt_tensors},
        )


# -- coefficient features ----------------------------------------------------------------
class AWDTransformer(TransformerMixin, BaseEstimator):
    """scikit-learn estimator around :func:`distill`: fit a wavelet, transform to coefficients.

    Parameters
    ----------
    teacher : nn.Module, optional
        Frozen teacher whose attributions are penalised (AWD); ``None`` learns a sparse
        wavelet without one.
    wavelet, levels, mode
        Initial wavelet and transform settings.
    weights : PenaltyWeights, optional
        Term weights (lambda is ``l1_coeffs``, gamma is ``l1_attr``).
    target : int or list of int
        Teacher output(s) to attribute.
    attr_method, epochs, batch_size, lr, patience, normalize
        See :class:`DistillConfig`.
    ndim : {1, 2}, optional
        Dimension of the samples; by default 2D inputs ``(n, L)`` and 3D ``(n, C, L)`` are
        1D signals and 4D ``(n, C, H, W)`` images.
    random_state : int
        Seed.
    device : str
        Training device.

    Examples
    --------
    >>> import numpy as np
    >>> from shared import AWDTransformer
    >>> est = AWDTransformer(wavelet="db2", levels=2, epochs=1, batch_size=16)
    >>> features = est.fit_transform(np.random.default_rng(0).standard_normal((32, 16)))
    >>> features.shape[1] == len(est.get_feature_names_out())
    True
    """

    def __init__(
        self,
        teacher: nn.Module | None = None,
        wavelet: str = "db5",
        levels: int = 4,
        mode: Mode = "zero",
        weights: PenaltyWeights | None = None,
        target: int | list[int] = 0,
        attr_method: Method = "saliency",
        epochs: int = 50,
        batch_size: int = 100,
        lr: float = 1e-3,
        patience: int | None = None,
        normalize: bool = False,
        ndim: int | None = None,
        random_state: int = 0,
        device: str = "cpu",
    ) -> None:
        self.teacher = teacher
        self.wavelet = wavelet
        self.levels = levels
        self.mode = mode
        self.weights = weights
        self.target = target
        self.attr_method = attr_method
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.normalize = normalize
        self.ndim = ndim
        self.random_state = random_state
        self.device = device

    def _as_input(self, X) -> Tensor:
        x = _as_tensor(np.asarray(X) if not isinstance(X, Tensor) else X)
        x = x.to(torch.get_default_dtype())
        ndim = self.ndim if self.ndim is not None else (2 if x.ndim == 4 else 1)
        if ndim == 1:
            if x.ndim == 2:
                x = x[:, None, :]
            if x.ndim != 3:
                raise ValueError(f"1D samples must be (n, L) or (n, C, L), got {tuple(x.shape)}")
        else:
            if x.ndim == 3:
                x = x[:, None]
            if x.ndim != 4:
                raise ValueError(
                    f"2D samples must be (n, H, W) or (n, C, H, W), got {tuple(x.shape)}"
                )
        return x

    def fit(self, X, y=None) -> AWDTransformer:
        """Distil a wavelet on ``X`` (``y`` is ignored; the teacher supplies the targets)."""
        x = self._as_input(X)
        cls = DWT1d if x.ndim == 3 else DWT2d
        transform = cls(LearnableWavelet(self.wavelet), levels=self.levels, mode=self.mode)
        config = DistillConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            attr_method=self.attr_method,
            patience=self.patience,
            normalize=self.normalize,
            seed=self.random_state,
        )
        self.transform_, self.history_ = distill(
            x,
            transform=transform,
            teacher=self.teacher,
            weights=self.weights,
            target=self.target,
            config=config,
            device=self.device,
            progress=False,
        )
        with torch.no_grad():
            self.feature_names_ = np.asarray(
                coefficient_names(self.transform_(x[:1].to(self.device)))
            )
        self.n_features_in_ = int(np.prod(x.shape[1:]))
        return self

    def transform(self, X) -> np.ndarray:
        """Flattened wavelet coefficients, ``(n_samples, n_features)``, pywt order."""
        if not hasattr(self, "transform_"):
            raise ValueError("this AWDTransformer is not fitted yet; call fit first")
        x = self._as_input(X).to(self.device)
        with torch.no_grad():
            return flat_features(self.transform_(x)).cpu().numpy()

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names saying band, level and position of each output feature."""
        if not hasattr(self, "feature_names_"):
            raise ValueError("this AWDTransformer is not fitted yet; call fit first")
        return self.feature_names_
