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

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from shared.transform import DWT1d, DWT2d
from shared.wavelet import LearnableWavelet

__all__ = [
    "FORMAT_VERSION",
    "RunDir",
    "atomic_write",
    "check_step_overrides",
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
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
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


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Atomically write dict rows as CSV (columns in order of first appearance).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_csv(pathlib.Path(tempfile.mkdtemp()) / "h.csv", [{"epoch": 0, "loss": 1.5}])
    >>> p.read_text().splitlines()
    ['epoch,loss', '0,1.5']
    """
    import csv
    import io

    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _jsonable(v) for k, v in row.items()})
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
    file_meta = {"format": "awd-transform", "format_version": str(FORMAT_VERSION)}
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
    file_meta = {"format": MODEL_FORMAT, "format_version": str(MODEL_FORMAT_VERSION)}
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

    def write_environment(self, seed: int | None = None) -> Path:
        """``RUN/env.json``: versions, device, seed."""
        return write_json(self.root / "env.json", environment_info(seed))


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
