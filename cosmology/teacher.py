"""Teachers for (Omega_m, sigma_8): a ResNet-18-style network, a small CPU CNN and a TaylorNet.

All take raw convergence maps ``(B, 1, N, N)`` and return the *standardised* parameters
``(B, 2)``: the input scaling and the target means and scales are buffers of the model,
so the teacher that AWD distils sees the exact maps and its outputs are comparable across
parameters (TRIM attributions of Omega_m and sigma_8 then have the same units).
``teacher.arch: taylornet`` is the coarse-grained Taylor network of :mod:`shared.taylornet`
(PROVISIONAL design, see there): 2x2 blocks of the map coarse-grained level by level down
to one pixel, each level a quadratic polynomial, no activations.

Training (:func:`train_teacher`) is Adam on the mean squared error of the standardised
targets, with random flips and 90-degree rotations (the maps' statistics are invariant
under the dihedral group), early stopping on the validation loss, a checkpoint after every
epoch and resume. The trained teacher is saved as safetensors + JSON
(:func:`shared.runs.save_model`); checkpoints are plain tensors and numbers saved by
``torch.save`` and read back with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from cosmology.config import TeacherConfig, recorded
from shared.interpret import NamedGroups, cdep_penalty
from shared.runs import (
    StaleResultError,
    atomic_write,
    check_device,
    differences,
    load_model,
    save_model,
)
from shared.taylornet import TaylorNet

__all__ = [
    "ResNet18",
    "SmallCNN",
    "TaylorTeacher",
    "build_teacher",
    "cdep_groups",
    "dihedral_augment",
    "load_teacher",
    "predict",
    "read_teacher_meta",
    "save_teacher",
    "train_teacher",
]

logger = logging.getLogger(__name__)

TEACHER_FORMAT = "awd-cosmology-teacher"
_CHECKPOINT = "teacher_checkpoint.pt"


class _Standardise(nn.Module):
    """Buffers shared by both teachers: input scale and target mean/scale."""

    def __init__(self, n_out: int) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))
        self.register_buffer("target_mean", torch.zeros(n_out))
        self.register_buffer("target_std", torch.ones(n_out))

    def set_scales(self, maps: Tensor, targets: Tensor) -> None:
        """Set the buffers from training maps ``(B, [1,] N, N)`` and targets ``(B, n_out)``."""
        with torch.no_grad():
            self.input_mean.copy_(maps.double().mean().to(self.input_mean.dtype))
            self.input_std.copy_(maps.double().std().clamp_min(1e-12).to(self.input_std.dtype))
            t = targets.double()
            self.target_mean.copy_(t.mean(0).to(self.target_mean.dtype))
            # A parameter constant over the training set keeps unit scale instead of 0.
            std = t.std(0) if t.shape[0] > 1 else torch.ones_like(t[0])
            self.target_std.copy_(torch.where(std > 0, std, torch.ones_like(std)).float())

    def standardise_targets(self, targets: Tensor) -> Tensor:
        return (targets - self.target_mean) / self.target_std

    def physical(self, outputs: Tensor) -> Tensor:
        """Standardised outputs back to parameter units."""
        return outputs * self.target_std + self.target_mean


class SmallCNN(nn.Module):
    """A small CNN sized for CPU runs: a strided stem, three conv blocks, mean pooling, an MLP.

    Global mean pooling of rectified feature maps is a learned, soft count of local
    features (peaks, voids) over the map, the kind of statistic the task rewards, and it
    makes the network accept any map size.

    Parameters
    ----------
    n_out : int
        Outputs (2: Omega_m, sigma_8).
    width : int
        Channels of the stem (then 2x, 4x, 4x); 8 gives about 16 k parameters.

    Examples
    --------
    >>> net = SmallCNN(width=4)
    >>> tuple(net(torch.randn(3, 1, 32, 32)).shape)
    (3, 2)
    """

    def __init__(self, n_out: int = 2, width: int = 8) -> None:
        super().__init__()
        # A 4x4 stride-2 stem: at full resolution a wide layer costs most of the time on a
        # CPU, and 4x4/2 with >= 4 channels can still pass every pixel on (no information
        # is discarded before the network learns what to keep).
        layers: list[nn.Module] = [
            nn.Conv2d(1, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        c_in = width
        for i, c in enumerate([2 * width, 4 * width, 4 * width]):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if i < 2:
                layers.append(nn.AvgPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c_in, 32), nn.ReLU(), nn.Linear(32, n_out))
        self.scale = _Standardise(n_out)
        self.arch = "small"

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.scale.input_mean) / self.scale.input_std
        return self.head(self.features(x).mean(dim=(-2, -1)))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.down: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.down(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) with one input channel, as the AWD reference's teacher.

    7x7/2 stem, 3x3/2 max pool, four stages of two basic blocks (64, 128, 256, 512
    channels), global average pooling, a linear head: 11.17 M parameters.

    Examples
    --------
    >>> net = ResNet18(width=8)
    >>> tuple(net(torch.randn(2, 1, 64, 64)).shape)
    (2, 2)
    """

    def __init__(self, n_out: int = 2, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        blocks: list[nn.Module] = []
        c_in = width
        for i, c in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            blocks += [_BasicBlock(c_in, c, stride), _BasicBlock(c, c, 1)]
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, n_out)
        self.scale = _Standardise(n_out)
        self.arch = "resnet18"

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.scale.input_mean) / self.scale.input_std
        return self.fc(self.blocks(self.stem(x)).mean(dim=(-2, -1)))


class TaylorTeacher(nn.Module):
    """A TaylorNet on the raw map (PROVISIONAL design, :mod:`shared.taylornet`).

    The standardised map is cut into 2x2 blocks, each block mapped to ``width`` channels
    by a quadratic polynomial (coefficients shared across positions, like a stride-2
    convolution), every level standardised per map, down to one pixel; a quadratic
    readout gives the outputs. No activation functions: the nonlinearity is the
    polynomial. Maps whose side is not a power of two are zero-padded at the end.

    Parameters
    ----------
    n_out : int
        Outputs (2: Omega_m, sigma_8).
    width : int
        Channels of every level.
    n_pix : int
        Side of the maps (fixes the number of levels, ``ceil(log2(n_pix))``).
    order, quadratic, rank, shared, norm, readout_order
        Of the :class:`~shared.taylornet.TaylorNet` (saved with the teacher).

    Examples
    --------
    >>> net = TaylorTeacher(width=4, n_pix=32)
    >>> tuple(net(torch.randn(3, 1, 32, 32)).shape), net.net.n_levels
    ((3, 2), 5)
    """

    def __init__(
        self,
        n_out: int = 2,
        width: int = 8,
        n_pix: int = 64,
        *,
        order: int = 2,
        quadratic: str = "lowrank",
        rank: int | None = None,
        shared: bool = True,
        norm: str = "layer",
        readout_order: int = 2,
    ) -> None:
        super().__init__()
        self.config = {
            "order": int(order),
            "quadratic": quadratic,
            "rank": rank,
            "shared": bool(shared),
            "norm": norm,
            "readout_order": int(readout_order),
        }
        self.width, self.n_pix = int(width), int(n_pix)
        self.net = TaylorNet(1, (n_pix, n_pix), n_out, channels=width, pad=True, **self.config)
        self.scale = _Standardise(n_out)
        self.arch = "taylornet"

    def settings(self) -> dict[str, Any]:
        """The TaylorNet settings beyond width and map size (saved in the teacher's JSON)."""
        return dict(self.config)

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.scale.input_mean) / self.scale.input_std
        return self.net(x)


#: The teacher architectures of ``teacher.arch``.
ARCHITECTURES = ("small", "resnet18", "taylornet")


def build_teacher(
    arch: str = "small",
    width: int | None = None,
    n_out: int = 2,
    *,
    n_pix: int | None = None,
    settings: dict[str, Any] | None = None,
) -> nn.Module:
    """A fresh teacher: ``small`` (default width 8), ``resnet18`` (64) or ``taylornet`` (8).

    ``n_pix`` (the map side) is needed by ``taylornet``, whose levels depend on it;
    ``settings`` are its other :class:`TaylorTeacher` settings (the CNNs take none).

    Examples
    --------
    >>> from shared.evaluation import n_parameters
    >>> n_parameters(build_teacher("resnet18"))
    11171266
    >>> build_teacher("taylornet", 4, n_pix=16).arch
    'taylornet'
    """
    if arch == "taylornet":
        if n_pix is None:
            raise ValueError("a taylornet teacher needs the map size (n_pix)")
        return TaylorTeacher(n_out, width or 8, n_pix, **(settings or {}))
    if settings:
        raise ValueError(f"the {arch!r} teacher takes no settings, got {sorted(settings)}")
    if arch == "small":
        return SmallCNN(n_out, width or 8)
    if arch == "resnet18":
        return ResNet18(n_out, width or 64)
    raise ValueError(f"unknown teacher architecture {arch!r}; accepted: {', '.join(ARCHITECTURES)}")


def dihedral_augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Apply one random element of the dihedral group D4 to each map of ``(B, C, N, N)``.

    Examples
    --------
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(8, 1, 1, 1)
    >>> y = dihedral_augment(x, torch.Generator().manual_seed(0))
    >>> bool((y.sum(dim=(1, 2, 3)) == x.sum(dim=(1, 2, 3))).all())
    True
    """
    ops = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = x.clone()
    for op in range(8):
        idx = (ops == op).nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            continue
        y = torch.rot90(x[idx], op % 4, dims=(-2, -1))
        out[idx] = y.flip(-1) if op >= 4 else y
    return out


# --------------------------------------------------------------------------- saving


def save_teacher(
    model: nn.Module, path: str | os.PathLike, n_pix: int, extra: dict[str, Any] | None = None
) -> Path:
    """Save a teacher as ``NAME.safetensors`` (weights) + ``NAME.json`` (what they mean).

    The JSON holds the architecture, width, outputs and map size the teacher was trained
    on, the architecture's own settings (``arch_settings``: a TaylorNet's order, quadratic
    form, rank, sharing, normalisation), and ``extra`` (its settings, the side angle, the
    targets).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = save_teacher(SmallCNN(width=4), pathlib.Path(tempfile.mkdtemp()) / "model", 32)
    >>> load_teacher(p, n_pix=32).arch
    'small'
    """
    meta = {
        "kind": TEACHER_FORMAT,
        "arch": model.arch,
        "width": _width_of(model),
        "n_out": int(model.scale.target_mean.numel()),
        "n_pix": int(n_pix),
        "arch_settings": model.settings() if isinstance(model, TaylorTeacher) else {},
        "extra": extra or {},
    }
    return save_model(model, path, meta)


def _width_of(model: nn.Module) -> int:
    if isinstance(model, TaylorTeacher):
        return model.width
    if isinstance(model, SmallCNN):
        return int(model.features[0].out_channels)
    return int(model.stem[0].out_channels)


def read_teacher_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The description of a saved teacher (no weights are read)."""
    _, meta = load_model(path)
    if meta.get("kind") != TEACHER_FORMAT:
        raise ValueError(f"{path}: not an awd cosmology teacher (kind={meta.get('kind')!r})")
    return meta


def load_teacher(
    path: str | os.PathLike, n_pix: int | None = None, arch: str | None = None
) -> nn.Module:
    """Load a teacher saved by :func:`save_teacher`, frozen and in eval mode.

    Parameters
    ----------
    path
        The teacher (``.../model``, ``.safetensors`` or ``.json``).
    n_pix
        Map size the teacher is about to see; an error if it was trained on another.
    arch
        Expected architecture; an error if the file holds another.

    Raises
    ------
    ValueError
        The file is not a teacher, its weights do not fit the architecture, or it was
        trained on maps of another size; the message names the file.
    """
    state, meta = load_model(path)
    if meta.get("kind") != TEACHER_FORMAT:
        raise ValueError(f"{path}: not an awd cosmology teacher (kind={meta.get('kind')!r})")
    if arch is not None and meta["arch"] != arch:
        raise ValueError(f"{path}: holds a {meta['arch']!r} teacher, expected {arch!r}")
    if n_pix is not None and meta["n_pix"] != n_pix:
        raise ValueError(
            f"{path}: the teacher was trained on {meta['n_pix']}x{meta['n_pix']} maps, "
            f"these are {n_pix}x{n_pix}"
        )
    model = build_teacher(
        meta["arch"],
        meta["width"],
        meta["n_out"],
        n_pix=meta["n_pix"],
        settings=meta.get("arch_settings") or None,
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"{path}: the weights do not fit a {meta['arch']} teacher "
            f"(width {meta['width']}): {str(err).splitlines()[0]}"
        ) from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# --------------------------------------------------------------------------- training


@torch.no_grad()
def predict(model: nn.Module, maps: Tensor, batch_size: int = 256) -> np.ndarray:
    """Teacher predictions in parameter units, ``(B, n_out)`` float64.

    Raises ``ValueError`` if any prediction is not finite.

    Examples
    --------
    >>> net = SmallCNN(width=4).eval()
    >>> predict(net, torch.randn(3, 32, 32)).shape
    (3, 2)
    """
    model.eval()
    x = maps if maps.ndim == 4 else maps[:, None]
    outs = [model(x[i : i + batch_size].float()) for i in range(0, x.shape[0], batch_size)]
    out = model.scale.physical(torch.cat(outs)).double().numpy()
    if not np.all(np.isfinite(out)):
        raise ValueError("the teacher's predictions contain NaN or infinite values")
    return out


def _val_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            dev = next(model.parameters()).device
            out = model(x[i : i + batch_size].to(dev))
            total += float(((out - y[i : i + batch_size].to(dev)) ** 2).sum())
    return total / (x.shape[0] * y.shape[1])


def cdep_groups(config: TeacherConfig) -> NamedGroups | None:
    """The groups of the CD explanation penalty of ``config`` (``None`` when it is off).

    Examples
    --------
    >>> cfg = TeacherConfig(cdep_weight=10.0, cdep_groups=("level1", "f0.35-0.71"))
    >>> cdep_groups(cfg).names, cdep_groups(TeacherConfig())
    (['level1', 'f0.35-0.71'], None)
    """
    if config.cdep_weight == 0:
        return None
    return NamedGroups(config.cdep_groups, dims=2, wavelet=config.cdep_wavelet)


def _cdep_value(model: nn.Module, x: Tensor, named: NamedGroups) -> Tensor:
    """The penalty of a batch, with batch norm on its running statistics (eval mode): CD
    decomposes a fixed function, not one that depends on the rest of the batch."""
    model.eval()
    try:
        return cdep_penalty(model, x, named.groups, transform=named)
    finally:
        model.train()


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    xt: Tensor,
    yt: Tensor,
    order: Tensor,
    gen: torch.Generator,
    config: TeacherConfig,
    named: NamedGroups | None,
    epoch: int,
) -> tuple[float, float]:
    """One pass over the training maps; the summed prediction loss and CDEP penalty."""
    device = next(model.parameters()).device
    total = penalty = 0.0
    for i in range(0, xt.shape[0], config.batch_size):
        idx = order[i : i + config.batch_size]
        if idx.numel() < 2:  # BatchNorm needs two samples
            continue
        xb = dihedral_augment(xt[idx], gen) if config.augment else xt[idx]
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(xb.to(device)) - yt[idx].to(device)) ** 2).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the teacher's loss is {float(loss)} at epoch {epoch}")
        objective = loss
        if named is not None:
            value = _cdep_value(model, xb.to(device), named)
            objective = loss + config.cdep_weight * value
            penalty += float(value.detach()) * idx.numel()
        objective.backward()
        optimizer.step()
        total += float(loss.detach()) * idx.numel()
    return total, penalty


def train_teacher(
    train_maps: Tensor,
    train_targets: Tensor,
    val_maps: Tensor,
    val_targets: Tensor,
    config: TeacherConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool | None = None,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train a teacher with early stopping on validation; checkpoint every epoch.

    Parameters
    ----------
    train_maps, val_maps
        ``(B, N, N)`` or ``(B, 1, N, N)`` maps.
    train_targets, val_targets
        ``(B, 2)`` parameters in physical units.
    config
        Architecture and optimisation settings.
    out_dir
        Folder for ``teacher_checkpoint.pt`` (and, by the caller, ``teacher.pt``).
    resume
        Continue from the checkpoint in ``out_dir`` if there is one.
    progress
        Progress bar (default: only on a terminal).

    Returns
    -------
    model : nn.Module
        The best epoch's teacher (eval mode).
    history : list of dict
        ``epoch``, ``train_loss``, ``val_loss``, ``seconds`` per epoch.

    Examples
    --------
    >>> import tempfile
    >>> from cosmology.config import TeacherConfig
    >>> x, y = torch.randn(16, 16, 16), torch.rand(16, 2)
    >>> cfg = TeacherConfig(width=4, epochs=1, batch_size=8)
    >>> model, hist = train_teacher(x, y, x, y, cfg, tempfile.mkdtemp(), progress=False)
    >>> len(hist)
    1
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xt = (train_maps if train_maps.ndim == 4 else train_maps[:, None]).float()
    xv = (val_maps if val_maps.ndim == 4 else val_maps[:, None]).float()
    if xt.shape[0] == 0 or xv.shape[0] == 0:
        raise ValueError("the teacher needs training and validation maps")
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = build_teacher(config.arch, config.width, train_targets.shape[1], n_pix=xt.shape[-1])
    model.scale.set_scales(xt, train_targets)
    # Maps stay on the host; batches move to the device (a GPU for ResNet-18 at 256^2).
    device = check_device("teacher.device", config.device)
    model.to(device)
    yt = model.scale.standardise_targets(train_targets.float())
    yv = model.scale.standardise_targets(val_targets.float())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # Halving the rate when validation stalls settles the noisy small-batch optimum.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    # Settings that do not change the result may differ on resume.
    ignored = ("epochs", "threads", "device")
    fingerprint = {k: v for k, v in recorded(config).items() if k not in ignored}
    fingerprint["n_pix"] = int(xt.shape[-1])
    named = cdep_groups(config)
    history: list[dict[str, float]] = []
    start, best_val, best_epoch, bad = 0, math.inf, -1, 0
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = out_dir / _CHECKPOINT
    if resume and ckpt.exists():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{ckpt}: the teacher checkpoint cannot be read ({err})") from None
        if state.get("fingerprint") != fingerprint:
            changed = differences(state.get("fingerprint") or {}, fingerprint)
            raise StaleResultError(
                f"{ckpt}: this checkpoint of an unfinished training was made with other "
                f"settings ({'; '.join(changed)}); rerun with --force to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best_state = state["best_model"]
        history = state["history"]
        start, best_val, best_epoch, bad = (
            state["epoch"] + 1,
            state["best_val"],
            state["best_epoch"],
            state["bad_epochs"],
        )
        logger.info("resuming the teacher from %s at epoch %d", ckpt, start)
    n = xt.shape[0]
    bar = tqdm(
        range(start, config.epochs),
        desc="teacher",
        disable=None if progress is None else not progress,
        initial=start,
        total=config.epochs,
    )
    stopped = bad >= config.patience
    for epoch in [] if stopped else bar:
        tic = time.perf_counter()
        model.train()
        # The shuffle and augmentation of epoch e depend only on the seed and e (resume).
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen)
        total, penalty = _train_epoch(model, optimizer, xt, yt, order, gen, config, named, epoch)
        val = _val_loss(model, xv, yv, 256)
        scheduler.step(val)
        record = {
            "epoch": epoch,
            "train_loss": total / n,
            "val_loss": val,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - tic,
        }
        if named is not None:
            record["cdep_penalty"] = penalty / n
        history.append(record)
        if val < best_val:
            best_val, best_epoch, bad = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        logger.debug("teacher epoch %d: train %.4f, val %.4f", epoch, total / n, val)
        bar.set_postfix(val=f"{val:.4f}")
        state = {
            "fingerprint": fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "best_model": best_state,
            "history": history,
            "epoch": epoch,
            "best_val": best_val,
            "best_epoch": best_epoch,
            "bad_epochs": bad,
        }
        atomic_write(ckpt, lambda p, s=state: torch.save(s, p))
        if bad >= config.patience:
            logger.info("teacher: early stop at epoch %d (best %d)", epoch, best_epoch)
            break
    model.load_state_dict(best_state)
    model.cpu().eval()
    return model, history
