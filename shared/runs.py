"""Results as data: atomic writes, fingerprints, saved models and transforms, run directories.

A trained transform is two files side by side: ``NAME.safetensors`` (the filter taps) and
``NAME.json`` (what the taps mean: init wavelet, levels, mode, dimension, penalty weights,
training history, seed, package versions). A trained model (a teacher) is the same pair:
its state dict in safetensors and its description in JSON (:func:`save_model`). Every file
is written to a temporary file in the same folder and renamed, so an interrupted run never
leaves a half-written file.

The run-directory contract, the same in both domains (:class:`RunDir`)::

    RUN/run.json        domain, format version, the data (absolute path + fingerprint)
    RUN/config.yaml     the settings, as last run by each step
    RUN/env.json        versions, device, seed
    RUN/teacher/        model.safetensors + model.json, history, step.json
    RUN/distill/        grid.json, one folder per grid point (shared.sweep), step.json
    RUN/students/       every fitted student and baseline (shared.students)
    RUN/evaluate/       metrics.csv, comparisons.csv, selection.json, step.json
    RUN/report/         report.html and its figures

Every step folder holds ``step.json``: the settings the step ran with and the
fingerprints of its inputs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from shared.transform import DWT1d, DWT2d
from shared.wavelet import LearnableWavelet

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "FolderLock",
    "RunDir",
    "StaleResultError",
    "atomic_write",
    "check_device",
    "check_step_overrides",
    "clean_temp_files",
    "differences",
    "environment_info",
    "fingerprint",
    "load_model",
    "load_transform",
    "open_run",
    "save_config",
    "save_model",
    "save_transform",
    "start_run",
    "write_csv",
    "write_json",
]

#: Version of the on-disk format of saved transforms; bumped on incompatible changes.
FORMAT_VERSION = 1


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any], suffix: str = "") -> Path:
    """Write ``path`` through ``writer(tmp_path)`` and rename it into place.

    The temporary file lives in the target folder, so the final rename is atomic; on any
    error it is removed and the target is untouched. ``suffix`` ends the temporary name,
    for writers that pick a format from it (e.g. ``".fits"``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = atomic_write(target, lambda p: p.write_text("hi"))
    >>> target.read_text()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        # mkstemp makes the file private (0600); give it the permissions of a normal file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return _jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        # JSON has no NaN: a non-finite number is stored as null (callers add the reason).
        return None
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` (dataclasses, tensors and numpy values allowed) as JSON.

    Examples
    --------
    >>> import tempfile, pathlib, json
    >>> p = write_json(pathlib.Path(tempfile.mkdtemp()) / "m.json", {"rmse": np.float64(0.5)})
    >>> json.loads(p.read_text())
    {'rmse': 0.5}
    """
    text = json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Atomically write named arrays as an ``.npz`` (read back with ``allow_pickle=False``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_npz(pathlib.Path(tempfile.mkdtemp()) / "a.npz", {"x": np.arange(3)})
    >>> with np.load(p, allow_pickle=False) as z:
    ...     z["x"].tolist()
    [0, 1, 2]
    """

    def save(target: Path) -> None:
        with open(target, "wb") as fh:
            np.savez(fh, **dict[str, Any](arrays))

    return atomic_write(path, save)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Atomically write dict rows as CSV (columns in order of first appearance).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_csv(pathlib.Path(tempfile.mkdtemp()) / "h.csv", [{"epoch": 0, "loss": 1.5}])
    >>> p.read_text().splitlines()
    ['epoch,loss', '0,1.5']

    A nested value (a dict or a list) is written as JSON, readable by ``json.loads``:

    >>> p = write_csv(p, [{"point": "a", "provenance": {"task": None}}])
    >>> p.read_text().splitlines()[1]
    'a,"{""task"": null}"'
    """
    import csv
    import io

    def cell(value: Any) -> Any:
        value = _jsonable(value)
        return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value

    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(v) for k, v in row.items()})
    text = buffer.getvalue()
    return atomic_write(path, lambda p: p.write_text(text))


@functools.lru_cache(maxsize=1)
def _git_sha() -> str | None:
    # One subprocess per process: the commit does not change while a run is going.
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(seed: int | None = None) -> dict[str, Any]:
    """Versions, device and seed: the ``env.json`` of a run directory."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for pkg in ("awd", "torch", "numpy", "PyWavelets", "scipy", "scikit-learn", "safetensors"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "cuda_available": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "git_sha": _git_sha(),
        "seed": seed,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    # Only our own suffixes are stripped: "lam0.001_gam0.01" is a name, not a suffix.
    path = Path(path)
    name = path.name
    for suffix in (".safetensors", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".safetensors"), path.with_name(name + ".json")


def save_transform(
    transform: DWT1d | DWT2d,
    path: str | os.PathLike,
    *,
    weights: Any = None,
    history: Any = None,
    seed: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Save a (trained) wavelet transform as safetensors plus JSON metadata.

    Parameters
    ----------
    transform : DWT1d or DWT2d
        The transform.
    path : path
        ``NAME``, ``NAME.safetensors`` or ``NAME.json``; both files are written.
    weights : PenaltyWeights, optional
        The penalty weights it was trained with.
    history : list of dict, optional
        Per-epoch loss terms.
    seed : int, optional
        The training seed.
    extra : mapping, optional
        More JSON-able metadata (e.g. ``warm_start_from``).

    Returns
    -------
    Path
        The safetensors file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from shared import DWT1d
    >>> p = save_transform(DWT1d("db5", 4), pathlib.Path(tempfile.mkdtemp()) / "w")
    >>> load_transform(p).levels
    4
    """
    tensors_path, meta_path = _paths(path)
    h0 = transform.wavelet.h0.detach().cpu().contiguous()
    meta = {
        "format": "awd-transform",
        "format_version": FORMAT_VERSION,
        "kind": type(transform).__name__,
        "ndim": transform.ndim,
        "levels": transform.levels,
        "mode": transform.mode,
        "filter_length": int(h0.shape[0]),
        "dtype": str(h0.dtype).removeprefix("torch."),
        "init": transform.wavelet.init_name,
        "weights": weights,
        "history": history,
        "seed": seed,
        "environment": environment_info(seed),
        "extra": dict(extra or {}),
    }
    # One metadata key: safetensors writes a metadata mapping in no fixed order, and the
    # same run must give byte-identical files.
    file_meta = {"format": f"awd-transform/{FORMAT_VERSION}"}
    atomic_write(tensors_path, lambda p: save_file({"h0": h0}, str(p), metadata=file_meta))
    write_json(meta_path, meta)
    return tensors_path


def read_transform_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a saved transform (see :func:`save_transform`)."""
    _, meta_path = _paths(path)
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: metadata file of the saved transform is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path}: not valid JSON ({err})") from None
    if meta.get("format") != "awd-transform":
        raise ValueError(f"{meta_path}: not a saved awd transform (format={meta.get('format')!r})")
    return meta


def load_transform(path: str | os.PathLike) -> DWT1d | DWT2d:
    """Load a transform saved by :func:`save_transform` (on CPU; move it with ``.to``).

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ValueError
        A file is truncated or corrupt, of another format version, or the taps do not
        match the metadata; the message names the file and what does not match.
    """
    tensors_path, meta_path = _paths(path)
    meta = read_transform_metadata(meta_path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: format version {meta.get('format_version')} is not supported "
            f"(this awd reads version {FORMAT_VERSION})"
        )
    if not tensors_path.exists():
        raise FileNotFoundError(f"{tensors_path}: filter file of the saved transform is missing")
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{tensors_path}: cannot read the filter file ({err})") from None
    if set(tensors) != {"h0"}:
        raise ValueError(f"{tensors_path}: expected one tensor 'h0', found {sorted(tensors)}")
    h0 = tensors["h0"]
    if h0.ndim != 1 or h0.shape[0] != meta["filter_length"]:
        raise ValueError(
            f"{tensors_path}: h0 has shape {tuple(h0.shape)} but the metadata says length "
            f"{meta['filter_length']}"
        )
    kinds: dict[str, type[DWT1d] | type[DWT2d]] = {"DWT1d": DWT1d, "DWT2d": DWT2d}
    if meta.get("kind") not in kinds:
        raise ValueError(f"{meta_path}: unknown transform kind {meta.get('kind')!r}")
    wavelet = LearnableWavelet(h0, dtype=h0.dtype)
    wavelet.init_name = meta.get("init")
    return kinds[meta["kind"]](wavelet, levels=meta["levels"], mode=meta["mode"])


# -- fingerprints -------------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: str | os.PathLike) -> str:
    """``sha256:...`` of a file's bytes, or of a folder's files (relative names and bytes).

    Hidden files and temporary files (names starting with ``.``) are left out of a folder's
    fingerprint, so a write in progress does not change it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x")
    >>> fingerprint(d) == fingerprint(d), fingerprint(d / "a.txt")[:7]
    (True, 'sha256:')
    """
    path = Path(path)
    if path.is_file():
        return "sha256:" + _file_digest(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(f"{rel.as_posix()}\0{_file_digest(file)}\n".encode())
    return "sha256:" + digest.hexdigest()


def check_device(setting: str, device: str) -> torch.device:
    """The torch device named by a setting; a clear error when this machine has none.

    Examples
    --------
    >>> check_device("teacher.device", "cpu")
    device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"{setting}: not a device ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting}={device}: this machine has no CUDA device; set it to cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{setting}={device}: this machine has no MPS device; set it to cpu")
    return dev


# -- saved models -----------------------------------------------------------------------------
MODEL_FORMAT = "awd-model"
MODEL_FORMAT_VERSION = 1


def save_model(model: torch.nn.Module, path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Save a torch model as ``NAME.safetensors`` (its state dict) + ``NAME.json``.

    ``meta`` says how to rebuild the module (architecture and its settings), what it was
    trained on and how; :func:`load_model` returns it with the tensors.

    Returns
    -------
    Path
        The safetensors file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = save_model(torch.nn.Linear(3, 1), pathlib.Path(tempfile.mkdtemp()) / "m",
    ...                {"arch": "linear"})
    >>> state, meta = load_model(p)
    >>> sorted(state), meta["arch"]
    (['bias', 'weight'], 'linear')
    """
    tensors_path, meta_path = _paths(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    file_meta = {"format": f"{MODEL_FORMAT}/{MODEL_FORMAT_VERSION}"}
    atomic_write(tensors_path, lambda p: save_file(state, str(p), metadata=file_meta))
    doc = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        **dict(meta),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "environment": environment_info(),
    }
    write_json(meta_path, doc)
    return tensors_path


def load_model(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and description of a model saved by :func:`save_model`.

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ValueError
        A file is truncated, corrupt or of another format; the message names it.
    """
    tensors_path, meta_path = _paths(path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: the description of the saved model is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path}: not valid JSON ({err})") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{meta_path}: not a saved awd model (format={meta.get('format')!r})")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: model format version {meta.get('format_version')} is not supported"
        )
    if not tensors_path.is_file():
        raise FileNotFoundError(f"{tensors_path}: the weights of the saved model are missing")
    try:
        state = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{tensors_path}: cannot read the weights ({err})") from None
    return state, meta


# -- run directories ---------------------------------------------------------------------------
RUN_FORMAT = "awd-run"
RUN_FORMAT_VERSION = 2
RUN_MARKER = "run.json"
STEPS = ("teacher", "distill", "students", "evaluate", "report")
#: The steps whose results are made from each step's (students are written by evaluate).
DOWNSTREAM = {
    "teacher": ("distill", "students", "evaluate", "report"),
    "distill": ("students", "evaluate", "report"),
    "evaluate": ("students", "report"),
    "report": (),
}


@dataclass
class StepRun:
    """A step in progress: whether its record matched (``status``) and what it wrote."""

    name: str
    status: str  # "new", "same" (settings and inputs as recorded) or "changed"
    changed: list[str]
    outputs: dict[str, str]


class RunDir:
    """A run directory of a domain (see the module docstring for the layout).

    Create one with :meth:`create` (the first step, given the data) and reopen it with
    :meth:`open`; both refuse a folder of another domain or format.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp()); data = tmp / "data.npz"
    >>> _ = data.write_bytes(b"maps")
    >>> run = RunDir.create(tmp / "run", "cosmology", data)
    >>> RunDir.open(tmp / "run", "cosmology").data_path == data.resolve()
    True
    >>> RunDir.open(tmp / "run", "molecular-partner")
    Traceback (most recent call last):
    ...
    ValueError: ...: a run directory of the domain 'cosmology', not 'molecular-partner'
    """

    def __init__(self, root: Path, domain: str, meta: dict[str, Any]) -> None:
        self.root = root
        self.domain = domain
        self.meta = meta

    @classmethod
    def create(cls, root: str | os.PathLike, domain: str, data: str | os.PathLike) -> RunDir:
        """Create a run for ``data`` (or reopen it when it is already a run on the same data).

        The data path is stored absolute, with its fingerprint.
        """
        root = Path(root).resolve()
        data = Path(data).resolve()
        if not data.exists():
            raise FileNotFoundError(f"{data}: the data do not exist")
        if root.exists() and not root.is_dir():
            raise ValueError(f"{root}: --run names a file, not a folder")
        if (root / RUN_MARKER).exists():
            run = cls.open(root, domain)
            if run.data_path != data:
                raise ValueError(
                    f"{root}: this run was made on {run.data_path}, not {data}; "
                    "use a new run directory for other data"
                )
            return run
        if root.exists() and any(root.iterdir()):
            raise ValueError(f"{root}: the folder exists and is not a run directory")
        meta = {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "domain": domain,
            "data": {"path": str(data), "fingerprint": fingerprint(data)},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / RUN_MARKER, meta)
        return cls(root, domain, meta)

    @classmethod
    def open(cls, root: str | os.PathLike, domain: str) -> RunDir:
        """Reopen an existing run of ``domain``."""
        root = Path(root).resolve()
        marker = root / RUN_MARKER
        if not marker.is_file():
            raise ValueError(f"{root}: not a run directory ({RUN_MARKER} is missing)")
        try:
            meta = json.loads(marker.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{marker}: not valid JSON ({err})") from None
        if meta.get("domain") != domain:
            raise ValueError(
                f"{root}: a run directory of the domain {meta.get('domain')!r}, not {domain!r}"
            )
        if meta.get("format") != RUN_FORMAT or meta.get("format_version") != RUN_FORMAT_VERSION:
            raise ValueError(
                f"{marker}: run format {meta.get('format')!r} version "
                f"{meta.get('format_version')} is not supported (this awd writes version "
                f"{RUN_FORMAT_VERSION}); rerun the pipeline into a new run directory"
            )
        return cls(root, domain, meta)

    @property
    def data_path(self) -> Path:
        """The data the run was built on (absolute)."""
        return Path(self.meta["data"]["path"])

    @property
    def data_fingerprint(self) -> str:
        """The fingerprint of the data when the run was created."""
        return str(self.meta["data"]["fingerprint"])

    @property
    def config_path(self) -> Path:
        """``RUN/config.yaml``."""
        return self.root / "config.yaml"

    def step_dir(self, name: str) -> Path:
        """The folder of step ``name`` (created)."""
        if name not in STEPS:
            raise ValueError(f"unknown step {name!r}; steps: {list(STEPS)}")
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_step(self, name: str, settings: Any, inputs: Mapping[str, str], **extra: Any) -> Path:
        """Record that step ``name`` ran with ``settings`` on ``inputs`` (fingerprints)."""
        record = {
            "step": name,
            "settings": settings,
            "inputs": dict(inputs),
            **extra,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return write_json(self.step_dir(name) / "step.json", record)

    def read_step(self, name: str) -> dict[str, Any] | None:
        """What step ``name`` recorded, or ``None`` if it has not run."""
        path = self.root / name / "step.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def require(self, name: str, command: str) -> dict[str, Any]:
        """The record of step ``name``; a clear error naming ``command`` if it has not run."""
        record = self.read_step(name)
        if record is None:
            raise ValueError(f"{self.root}: the {name} step has not run; run '{command}' first")
        return record

    def require_fresh(self, name: str, command: str, inputs: Mapping[str, str]) -> dict[str, Any]:
        """The record of step ``name``, checked against its inputs as they are now.

        A step whose inputs changed since it ran (say, the grid was distilled again after
        the evaluation) is stale: a ``StaleResultError`` names what changed and the command
        to run again.
        """
        record = self.require(name, command)
        recorded = {k: record.get("inputs", {}).get(k) for k in inputs}
        changed = [k for k, v in inputs.items() if recorded[k] != v]
        if changed:
            raise StaleResultError(
                f"{self.root}: the {name} step is older than its inputs ({', '.join(changed)} "
                f"changed since); run '{command}' again"
            )
        return record

    def write_environment(self, seed: int | None = None) -> Path:
        """``RUN/env.json``: versions, device, seed."""
        return write_json(self.root / "env.json", environment_info(seed))

    def check_data(self) -> str:
        """The data's fingerprint now; a ``StaleResultError`` if it changed since the run began."""
        if not self.data_path.exists():
            raise FileNotFoundError(f"{self.data_path}: the data of the run {self.root} are gone")
        now = fingerprint(self.data_path)
        if now != self.data_fingerprint:
            raise StaleResultError(
                f"{self.root}: the data under {self.data_path} changed since the run was made; "
                "make a new run directory for the new data"
            )
        return now

    def _later_results(self, name: str) -> list[str]:
        return [
            s
            for s in DOWNSTREAM.get(name, ())
            if (self.root / s).is_dir() and any((self.root / s).iterdir())
        ]

    @contextlib.contextmanager
    def step(
        self,
        name: str,
        settings: Mapping[str, Any],
        inputs: Mapping[str, str],
        *,
        force: bool = False,
        config: Any = None,
        compare: Mapping[str, Any] | None = None,
    ) -> Iterator[StepRun]:
        """Run step ``name`` under the run's lock, with its provenance checked and recorded.

        The step's last record (``step.json``) is compared with ``settings`` and
        ``inputs`` (or with ``compare``, the part of the settings that the step's existing
        results depend on). When they differ and later steps have results made from this
        step's, the step refuses (:class:`StaleResultError`, naming the differences and
        the way forward) unless ``force``, which removes those later results first.
        Temporary files of killed writes are removed. On success ``step.json`` is written
        (with the seconds the step took), and ``config.yaml`` when ``config`` is given; on
        failure nothing is recorded.
        """
        with FolderLock(self.root, name):
            clean_temp_files(self.root)
            clean_temp_files(self.root / name, recursive=True)
            prior = self.read_step(name)
            basis = dict(compare if compare is not None else settings)
            status, changed = "new", []
            if prior is not None:
                old = {
                    "settings": prior.get("compare", prior.get("settings")),
                    "inputs": prior.get("inputs"),
                }
                changed = differences(old, {"settings": basis, "inputs": dict(inputs)})
                status = "changed" if changed else "same"
            if status == "changed":
                later = self._later_results(name)
                if later and not force:
                    shown = "; ".join(changed[:6]) + (" …" if len(changed) > 6 else "")
                    raise StaleResultError(
                        f"{self.root}: the {name} step was run with other settings or inputs "
                        f"({shown}) and {', '.join(later)} were made from it; use a new run "
                        f"directory, or --force to redo the {name} step and remove them"
                    )
                for later_step in later:
                    shutil.rmtree(self.root / later_step)
                    logger.warning(
                        "%s: removed %s (made from the old %s)", self.root, later_step, name
                    )
            run = StepRun(name, status, changed, {})
            started = time.perf_counter()
            yield run
            self.write_step(
                name,
                settings,
                inputs,
                compare=basis,
                outputs=run.outputs,
                seconds=round(time.perf_counter() - started, 3),
            )
            if config is not None:
                save_config(self, config)


# -- the settings of a run -------------------------------------------------------------------
ConfigLoader = Callable[..., Any]  # load_config(path, overrides, base=None) -> config


def check_step_overrides(
    overrides: Sequence[str], step: str, sections: Mapping[str, Sequence[str]]
) -> None:
    """Refuse ``--set`` overrides of config sections that another step owns.

    ``sections`` maps each step to the config sections it may change.

    Examples
    --------
    >>> owners = {"teacher": ("teacher",), "distill": ("distill",)}
    >>> check_step_overrides(["teacher.epochs=3"], "distill", owners)
    Traceback (most recent call last):
    ...
    ValueError: --set teacher.epochs=3: the distill step takes settings of ['distill'] only; it belongs to the teacher step
    """  # noqa: E501
    allowed = tuple(sections.get(step, ()))
    for item in overrides:
        section = item.split("=", 1)[0].strip().split(".")[0]
        if section not in allowed:
            owner = next((s for s, secs in sections.items() if section in secs), None)
            hint = f"; it belongs to the {owner} step" if owner else ""
            raise ValueError(
                f"--set {item}: the {step} step takes settings of {list(allowed)} only{hint}"
            )


def save_config(run: RunDir, config: Any) -> Path:
    """Write the run's ``config.yaml``: called by a step once it has run."""
    from shared.config import dump_config

    text = dump_config(config)
    return atomic_write(run.config_path, lambda p: p.write_text(text))


def start_run(
    root: str | os.PathLike,
    domain: str,
    load: ConfigLoader,
    data: str | os.PathLike | None = None,
    config_path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    check_data: Callable[[Path, Any], Any] | None = None,
    seed: Callable[[Any], int | None] = lambda cfg: None,
) -> tuple[RunDir, Any]:
    """Check the settings (and the data), then create or reopen a run directory.

    A new run needs ``data``; an existing run keeps its data and its config, updated by
    ``config_path`` and ``overrides``. ``load(path, overrides, base=...)`` is the domain's
    config loader; ``check_data(data, config)`` may refuse data before the run exists.
    Nothing is written if a setting or the data is wrong.
    """
    root = Path(root)
    if (root / RUN_MARKER).exists():
        run = RunDir.open(root, domain)
        base = load(run.config_path) if run.config_path.exists() else None
        cfg = load(config_path, overrides, base=base)
        if data is not None and Path(data).resolve() != run.data_path:
            raise ValueError(
                f"{run.root}: this run was made on {run.data_path}, not {Path(data).resolve()}; "
                "use a new run directory for other data"
            )
        return run, cfg
    cfg = load(config_path, overrides)
    if data is None:
        raise ValueError(f"{root}: a new run needs its data (--data)")
    if check_data is not None:
        check_data(Path(data), cfg)
    run = RunDir.create(root, domain, data)
    run.write_environment(seed(cfg))
    return run, cfg


def open_run(
    root: str | os.PathLike,
    domain: str,
    load: ConfigLoader,
    overrides: Sequence[str] = (),
    step: str | None = None,
    sections: Mapping[str, Sequence[str]] | None = None,
) -> tuple[RunDir, Any]:
    """Reopen a run and its settings, with ``overrides`` for ``step``'s sections (checked)."""
    run = RunDir.open(root, domain)
    if not run.config_path.exists():
        raise ValueError(f"{run.root}: config.yaml is missing; run the teacher step first")
    if overrides:
        if step is None:
            raise ValueError("this step takes no --set overrides")
        check_step_overrides(overrides, step, sections or {})
    return run, load(run.config_path, overrides)


# -- provenance: what a step ran with, compared with what it is asked to run with ------------
def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Readable differences between two nested records: ``key: old -> new``.

    Examples
    --------
    >>> differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0})
    ['a.c: 2 -> 3', 'd: (none) -> 0']
    """
    old, new = _flat(_jsonable(recorded)), _flat(_jsonable(current))
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "(none)"), new.get(key, "(none)")
        if a != b:
            short = [v if not isinstance(v, str) or len(v) < 30 else v[:20] + "…" for v in (a, b)]
            out.append(f"{key}: {short[0]} -> {short[1]}")
    return out


class StaleResultError(ValueError):
    """Results on disk were made with other settings or inputs than asked for now."""


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value (settings, fingerprints).

    Examples
    --------
    >>> digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    True
    """
    text = json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- one writer per folder --------------------------------------------------------------------
_LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """An exclusive lock on a folder: ``FOLDER/.lock`` holding the writer's pid and host.

    A lock left by a process that no longer runs (on this host) is stale and is taken
    over; a live holder makes :meth:`acquire` raise a ``ValueError`` naming it.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with FolderLock(folder):
    ...     FolderLock(folder).acquire()
    Traceback (most recent call last):
    ...
    ValueError: ...: in use by process ... on this machine since ...; wait for it or stop it
    """

    def __init__(self, folder: str | os.PathLike, what: str = "") -> None:
        self.folder = Path(folder)
        self.path = self.folder / _LOCK
        self.what = what
        self.held = False

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise ``ValueError`` if a live process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": platform.node(), "since": time.time(), "what": self.what}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or (
                    holder.get("host") == platform.node() and not _alive(int(holder["pid"]))
                ):
                    # A dead writer's lock (or one torn mid-write): take it over.
                    self.path.unlink(missing_ok=True)
                    continue
                since = datetime.fromtimestamp(holder.get("since", 0), UTC).isoformat(
                    timespec="seconds"
                )
                where = (
                    "on this machine"
                    if holder.get("host") == platform.node()
                    else (f"on {holder.get('host')}")
                )
                raise ValueError(
                    f"{self.folder}: in use by process {holder['pid']} {where} since {since}; "
                    "wait for it or stop it"
                ) from None
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(me))
            self.held = True
            return self
        raise ValueError(f"{self.folder}: cannot take the lock {self.path}")

    def release(self) -> None:
        """Give the lock back (only if this process holds it)."""
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def clean_temp_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Remove the temporary files that killed writes left (``.NAME.*.tmp*``); return them.

    Call it while holding the folder's lock: a live writer's temporary file would go too.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / ".a.json.x1.tmp").write_text("half")
    >>> [p.name for p in clean_temp_files(d)]
    ['.a.json.x1.tmp']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = "**/.*.tmp*" if recursive else ".*.tmp*"
    removed = []
    for path in folder.glob(pattern):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
