"""The LSTM teacher: clathrin trace -> auxilin outcome.

The architecture is the reference's ``LSTMNet(40, 20, 0)``: one LSTM layer (input 1,
hidden 20) read once over the 40-point trace, its last hidden state into ``Linear(20, 1)``
(1,861 parameters). Parameter names match the reference (``lstm.*``, ``fc.*``), so a
reference checkpoint (a dict whose ``model_state_dict`` holds that state dict) loads as it
is. Our own teachers are saved as safetensors plus a JSON description; reference files are
read with ``torch.load(..., weights_only=True)``, which cannot run code.

``teacher.arch: taylornet`` replaces the LSTM by :class:`TaylorTeacher1d`, the
coarse-grained Taylor network of :mod:`shared.taylornet` (PROVISIONAL design, see there):
pairs of trace points coarse-grained level by level, each level a quadratic polynomial, no
activations; trained, saved, loaded and distilled like the LSTM.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from molecular_partner.config import TeacherSettings
from shared.evaluation import n_parameters
from shared.interpret import NamedGroups, cdep_penalty
from shared.interpret.named import penalty_record
from shared.runs import load_model, save_model
from shared.taylornet import TaylorNet

__all__ = [
    "LSTMTeacher",
    "TaylorTeacher1d",
    "build_teacher",
    "cdep_groups",
    "load_teacher",
    "n_parameters",
    "predict",
    "save_teacher",
    "train_teacher",
]

logger = logging.getLogger(__name__)

FORMAT = "awd-mp-teacher"


class LSTMTeacher(nn.Module):
    """LSTM(1 -> hidden) over the trace, last hidden state -> Linear(hidden, 1).

    Parameters
    ----------
    hidden : int, default 20
        Hidden size (the reference's 20).
    length : int, default 40
        Trace length the teacher was trained on; other lengths are refused, because the
        LSTM would run but its answers would mean nothing.
    loss : {"mse", "bce"}
        What the output is: a regression value (MSE) or a logit (BCE).

    Examples
    --------
    >>> import torch
    >>> model = LSTMTeacher()
    >>> model(torch.randn(5, 1, 40)).shape, n_parameters(model)
    (torch.Size([5, 1]), 1861)
    """

    def __init__(self, hidden: int = 20, length: int = 40, loss: str = "mse") -> None:
        super().__init__()
        self.hidden = hidden
        self.length = length
        self.loss = loss
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Traces ``(N, 1, L)`` or ``(N, L)`` -> outputs ``(N, 1)``."""
        if x.ndim == 3:
            if x.shape[1] != 1:
                raise ValueError(f"traces must have one channel, got shape {tuple(x.shape)}")
            x = x[:, 0, :]
        if x.ndim != 2:
            raise ValueError(f"traces must be (N, 1, L) or (N, L), got {tuple(x.shape)}")
        if x.shape[-1] != self.length:
            raise ValueError(
                f"the teacher expects traces of length {self.length}, got {x.shape[-1]}; "
                "resample the traces (molecular_partner.data.downsample) or retrain"
            )
        _, (h, _) = self.lstm(x.unsqueeze(-1))
        return self.fc(h[-1])

    def describe(self) -> dict[str, Any]:
        """Architecture as JSON-able settings."""
        return {"hidden": self.hidden, "length": self.length, "loss": self.loss}

    def label(self) -> str:
        """The architecture in a few words, for tables."""
        return f"LSTM(1->{self.hidden}) + Linear ({self.loss})"


def _levels_of(length: int) -> tuple[int, bool]:
    """Coarse-graining levels of a trace length, and whether it must be zero-padded.

    An even length is halved while it stays even (40 -> 20 -> 10 -> 5, the readout then
    sees 5 positions); an odd one is padded to the next power of two.
    """
    levels, size = 0, length
    while size % 2 == 0 and size > 1:
        levels, size = levels + 1, size // 2
    if levels == 0 and length > 1:
        return (length - 1).bit_length(), True
    return levels, False


class TaylorTeacher1d(nn.Module):
    """A TaylorNet over the trace (PROVISIONAL design, :mod:`shared.taylornet`).

    Pairs of neighbouring points are mapped to ``width`` channels by a quadratic
    polynomial (coefficients shared along the trace), every level standardised per
    trace, while the length stays even (40 -> 20 -> 10 -> 5); a quadratic readout over the
    last level gives one output. No activation functions.

    Parameters
    ----------
    width : int, default 8
        Channels of every level.
    length : int, default 40
        Trace length; other lengths are refused.
    loss : {"mse", "bce"}
        What the output is: a regression value (MSE) or a logit (BCE).
    order, quadratic, rank, shared, norm, readout_order
        Of the :class:`~shared.taylornet.TaylorNet` (saved with the teacher).

    Examples
    --------
    >>> model = TaylorTeacher1d(width=4)
    >>> model(torch.randn(5, 1, 40)).shape, model.net.n_levels
    (torch.Size([5, 1]), 3)
    """

    def __init__(
        self,
        width: int = 8,
        length: int = 40,
        loss: str = "mse",
        *,
        order: int = 2,
        quadratic: str = "lowrank",
        rank: int | None = None,
        shared: bool = True,
        norm: str = "layer",
        readout_order: int = 2,
    ) -> None:
        super().__init__()
        self.width, self.length, self.loss = int(width), int(length), loss
        self.config = {
            "order": int(order),
            "quadratic": quadratic,
            "rank": rank,
            "shared": bool(shared),
            "norm": norm,
            "readout_order": int(readout_order),
        }
        levels, pad = _levels_of(self.length)
        self.net = TaylorNet(
            1, self.length, 1, channels=[self.width] * levels, pad=pad, **self.config
        )

    def forward(self, x: Tensor) -> Tensor:
        """Traces ``(N, 1, L)`` or ``(N, L)`` -> outputs ``(N, 1)``."""
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3 or x.shape[1] != 1:
            raise ValueError(f"traces must be (N, 1, L) or (N, L), got {tuple(x.shape)}")
        if x.shape[-1] != self.length:
            raise ValueError(
                f"the teacher expects traces of length {self.length}, got {x.shape[-1]}; "
                "resample the traces (molecular_partner.data.downsample) or retrain"
            )
        return self.net(x)

    def describe(self) -> dict[str, Any]:
        """Architecture as JSON-able settings."""
        return {
            "arch": "taylornet",
            "width": self.width,
            "length": self.length,
            "loss": self.loss,
            **self.config,
        }

    def label(self) -> str:
        """The architecture in a few words, for tables."""
        return f"TaylorNet({self.net.n_levels} levels x {self.width} channels) ({self.loss})"


#: The teacher architectures of ``teacher.arch``.
ARCHITECTURES = ("lstm", "taylornet")


def meta_arch(model: nn.Module) -> str:
    """The ``teacher.arch`` of a teacher module.

    Examples
    --------
    >>> meta_arch(LSTMTeacher()), meta_arch(TaylorTeacher1d())
    ('lstm', 'taylornet')
    """
    return "taylornet" if isinstance(model, TaylorTeacher1d) else "lstm"


def build_teacher(settings: TeacherSettings | None = None, loss: str = "mse") -> nn.Module:
    """A fresh teacher of ``settings.arch``: the LSTM (``hidden``) or the TaylorNet (``width``).

    Examples
    --------
    >>> n_parameters(build_teacher(TeacherSettings()))
    1861
    >>> type(build_teacher(TeacherSettings(arch="taylornet"), "bce")).__name__
    'TaylorTeacher1d'
    """
    s = settings or TeacherSettings()
    if s.arch == "taylornet":
        return TaylorTeacher1d(s.width, s.length, loss)
    if s.arch == "lstm":
        return LSTMTeacher(s.hidden, s.length, loss)
    raise ValueError(
        f"unknown teacher architecture {s.arch!r}; accepted: {', '.join(ARCHITECTURES)}"
    )


def _loss_fn(kind: str):
    return nn.MSELoss() if kind == "mse" else nn.BCEWithLogitsLoss()


@torch.no_grad()
def predict(model: LSTMTeacher, x: np.ndarray | Tensor, batch_size: int = 4096) -> np.ndarray:
    """Teacher outputs for traces (probabilities for a BCE teacher), shape ``(N,)``.

    Examples
    --------
    >>> predict(LSTMTeacher(), np.zeros((3, 40), dtype=np.float32)).shape
    (3,)
    """
    model.eval()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    out = [model(x[i : i + batch_size])[:, 0] for i in range(0, x.shape[0], batch_size)]
    y = torch.cat(out) if out else torch.zeros(0)
    if model.loss == "bce":
        y = torch.sigmoid(y)
    return y.numpy().astype(np.float64)


def cdep_groups(settings: TeacherSettings) -> NamedGroups | None:
    """The groups of the CD explanation penalty of ``settings`` (``None`` when it is off).

    Examples
    --------
    >>> cdep_groups(TeacherSettings(cdep_weight=1.0, cdep_groups=("t0-8", "cD1"))).names
    ['t0-8', 'cD1']
    """
    if settings.cdep_weight == 0:
        return None
    return NamedGroups(settings.cdep_groups, dims=1, wavelet=settings.cdep_wavelet)


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    xt: Tensor,
    yt: Tensor,
    order: Tensor,
    s: TeacherSettings,
    named: NamedGroups | None,
) -> tuple[float, float]:
    """One pass over the training traces; the summed prediction loss and CDEP penalty."""
    total = penalty = 0.0
    for i in range(0, len(xt), s.batch_size):
        idx = order[i : i + s.batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt[idx])[:, 0], yt[idx])
        objective = loss
        if named is not None:
            # CD decomposes the model as it predicts (eval mode); traces as (B, 1, L).
            model.eval()
            value = cdep_penalty(model, xt[idx][:, None, :], named.groups, transform=named)
            model.train()
            objective = loss + s.cdep_weight * value
            penalty += float(value.detach()) * len(idx)
        objective.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total, penalty


def train_teacher(
    x_train: np.ndarray,
    y_train: np.ndarray,
    settings: TeacherSettings | None = None,
    *,
    loss: str = "mse",
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[LSTMTeacher, list[dict[str, float]]]:
    """Train the LSTM teacher with Adam and early stopping on the validation loss.

    Parameters
    ----------
    x_train, y_train : ndarray
        Traces ``(N, L)`` and outcomes ``(N,)`` (0/1 for ``loss="bce"``).
    settings : TeacherSettings, optional
        Architecture and optimisation (reference: hidden 20, Adam 1e-3, batch 100).
    loss : {"mse", "bce"}
        MSE for a continuous outcome (the reference's), BCE for a 0/1 outcome.
    x_val, y_val : ndarray, optional
        Validation data (held-out training cells); without them the training loss is
        monitored.
    checkpoint_dir : path, optional
        The best model so far is written there (``checkpoint.safetensors``) every time it
        improves.
    progress : bool, optional
        Progress bar; default only on a terminal.

    Returns
    -------
    model : LSTMTeacher
        The best epoch's weights.
    history : list of dict
        ``epoch``, ``train_loss``, ``val_loss``, ``seconds`` per epoch.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((64, 40)).astype(np.float32)
    >>> model, hist = train_teacher(x, x[:, -1], TeacherSettings(epochs=2), progress=False)
    >>> len(hist)
    2
    """
    s = settings or TeacherSettings()
    x_train = np.asarray(x_train, dtype=np.float32)
    if x_train.ndim != 2 or x_train.shape[1] != s.length:
        raise ValueError(
            f"training traces must be (N, {s.length}), got {x_train.shape}; set "
            "teacher.length to the trace length"
        )
    if len(x_train) == 0:
        raise ValueError("no training traces")
    y_train = np.asarray(y_train, dtype=np.float32)
    if loss not in ("mse", "bce"):
        raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
    if loss == "bce" and not np.isin(y_train, (0.0, 1.0)).all():
        raise ValueError("a BCE teacher needs 0/1 outcomes (use loss='mse' for continuous)")
    torch.manual_seed(s.seed)
    model = build_teacher(s, loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    loss_fn = _loss_fn(loss)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if has_val:
        xv = torch.from_numpy(np.asarray(x_val, dtype=np.float32))
        yv = torch.from_numpy(np.asarray(y_val, dtype=np.float32))
    best = {"loss": math.inf, "epoch": -1, "state": None}
    history: list[dict[str, float]] = []
    gen = torch.Generator().manual_seed(s.seed)
    named = cdep_groups(s)
    bad = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    bar = tqdm(range(s.epochs), desc="teacher", disable=None if progress is None else not progress)
    for epoch in bar:
        tic = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total, penalty = _train_epoch(model, optimizer, loss_fn, xt, yt, order, s, named)
        model.eval()
        record = {"epoch": epoch, "train_loss": total / len(xt)}
        if named is not None:
            record["cdep_penalty"] = penalty / len(xt)
        with torch.no_grad():
            if has_val:
                record["val_loss"] = float(loss_fn(model(xv)[:, 0], yv))
        record["seconds"] = time.perf_counter() - tic
        history.append(record)
        monitored = record.get("val_loss", record["train_loss"])
        if not math.isfinite(monitored):
            raise ValueError(f"the teacher's loss is not finite at epoch {epoch}; lower the lr")
        if monitored < best["loss"]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = {"loss": monitored, "epoch": epoch, "state": state}
            bad = 0
            if ckpt is not None:
                save_teacher(model, ckpt / "checkpoint", history=history, settings=s)
        else:
            bad += 1
        bar.set_postfix(loss=f"{monitored:.4g}")
        if bad >= s.patience:
            logger.info("teacher: early stop at epoch %d (best %d)", epoch, best["epoch"])
            break
    model.load_state_dict(best["state"])
    model.eval()
    logger.info("teacher: best epoch %d, monitored loss %.4g", best["epoch"], best["loss"])
    return model, history


def save_teacher(
    model: nn.Module,
    path: str | Path,
    *,
    history: list[dict] | None = None,
    settings: TeacherSettings | None = None,
) -> Path:
    """Save a teacher as ``NAME.safetensors`` (weights) and ``NAME.json`` (architecture).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = save_teacher(LSTMTeacher(), pathlib.Path(tempfile.mkdtemp()) / "teacher")
    >>> n_parameters(load_teacher(p))
    1861
    """
    meta = {
        "kind": FORMAT,
        "architecture": model.describe(),
        "settings": asdict(settings) if settings is not None else None,
        "history": history,
    }
    if settings is not None and settings.cdep_weight > 0:
        meta["cdep"] = penalty_record(
            settings.cdep_weight, settings.cdep_groups, settings.cdep_wavelet, history or []
        )
    return save_model(model, path, meta)


def _reference_state(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable or unsafe file is reported the same way
        raise ValueError(
            f"{path}: cannot read the teacher file with torch.load(weights_only=True) ({err})"
        ) from None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict (nor a dict with 'model_state_dict')")
    # A ReshapeModel wrapper prefixes the names with "model."
    return {k.removeprefix("model."): v for k, v in obj.items()}


def _from_description(arch: dict[str, Any]) -> nn.Module:
    """The module a saved teacher's ``architecture`` describes (LSTM when it names none)."""
    kind = arch.get("arch", "lstm")
    if kind == "taylornet":
        settings = {
            k: arch[k] for k in ("order", "quadratic", "rank", "shared", "norm", "readout_order")
        }
        return TaylorTeacher1d(
            int(arch["width"]), int(arch["length"]), str(arch["loss"]), **settings
        )
    if kind == "lstm":
        return LSTMTeacher(int(arch["hidden"]), int(arch["length"]), str(arch["loss"]))
    raise ValueError(f"unknown teacher architecture {kind!r}; accepted: {', '.join(ARCHITECTURES)}")


def load_teacher(
    path: str | Path, length: int = 40, loss: str | None = None, arch: str | None = None
) -> nn.Module:
    """Load a teacher: ours (safetensors + JSON) or a reference checkpoint (.pkl/.pt/.pth).

    Parameters
    ----------
    path : path
        ``NAME.safetensors`` / ``NAME.json`` / ``NAME`` written by :func:`save_teacher`, or
        a ``torch.save`` file holding the reference's ``LSTMNet(40, 20, 0)`` state dict
        (directly or under ``model_state_dict``).
    length : int
        Trace length of a reference checkpoint (ours record theirs).
    loss : {"mse", "bce"}, optional
        What a reference checkpoint outputs (default ``mse``, the reference's).
    arch : {"lstm", "taylornet"}, optional
        Expected architecture (``teacher.arch``); an error if the file holds another.

    Raises
    ------
    ValueError
        The file is unreadable or holds another architecture; the message names the
        file and the parameters that do not fit.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "ref.pkl"
    >>> torch.save({"model_state_dict": LSTMTeacher().state_dict()}, p)
    >>> load_teacher(p).hidden
    20
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if path.suffix in (".safetensors", ".json", ""):
        state, meta = load_model(path)
        if meta.get("kind") != FORMAT:
            raise ValueError(f"{path}: not a saved molecular-partner teacher")
        model = _from_description(meta["architecture"])
        source = path
    else:
        state = _reference_state(path)
        hidden = state["lstm.weight_hh_l0"].shape[1] if "lstm.weight_hh_l0" in state else 20
        model = LSTMTeacher(int(hidden), length, loss or "mse")
        source = path
    held = meta_arch(model)
    if arch is not None and held != arch:
        raise ValueError(f"{source}: holds a {held!r} teacher, expected {arch!r} (teacher.arch)")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if missing or extra or wrong:
        what = (
            f"an LSTM(1 -> {model.hidden}) + Linear({model.hidden}, 1)"
            if isinstance(model, LSTMTeacher)
            else f"a {model.label()}"
        )
        raise ValueError(
            f"{source}: not {what} teacher"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
            + (f"; wrong shapes {wrong}" if wrong else "")
        )
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    model.eval()
    return model
