"""Saved students: fitted features and predictors as safetensors + JSON, never pickle.

A student (or any fitted object of a domain: a feature extractor, a predictor, a pair of
them) is saved in a folder:

- ``student.json``: what it is, as a JSON tree: plain settings, and nodes
  ``{"$": "array", "key": ...}`` (an array of ``arrays.safetensors``),
  ``{"$": "object", "class": ..., "state": {...}}`` (a domain class),
  ``{"$": "sklearn", ...}`` (a scikit-learn estimator: parameters and fitted arrays),
  ``{"$": "xgboost", "file": ...}`` (xgboost's own JSON model file),
  ``{"$": "transform", "file": ...}`` (a wavelet, saved with :func:`shared.runs.save_transform`),
  ``{"$": "tuple", ...}`` and ``{"$": "list", ...}``;
- ``arrays.safetensors``: every array, in its own dtype, so predictions after loading are
  bit-identical to those before saving;
- the wavelets and xgboost models beside them.

A domain class takes part by defining ``get_state() -> dict`` (its constructor settings
and fitted attributes; values may be arrays, other savable objects, or plain JSON) and a
classmethod ``from_state(state) -> instance``. Loading only builds classes named in the
``classes`` mapping the caller passes (plus a fixed list of scikit-learn and xgboost
estimators), so a ``student.json`` cannot make the loader import or run anything else.

Examples
--------
>>> import tempfile, pathlib
>>> from sklearn.linear_model import Ridge
>>> X = np.arange(12.0).reshape(6, 2); y = X @ [1.0, -2.0]
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "ridge"
>>> _ = save_student(folder, {"model": Ridge(alpha=0.1).fit(X, y)}, {"method": "demo"})
>>> loaded, meta = load_student(folder)
>>> bool(np.array_equal(loaded["model"].predict(X), Ridge(alpha=0.1).fit(X, y).predict(X)))
True
>>> meta["method"]
'demo'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from shared.runs import atomic_write, load_transform, save_transform, write_json
from shared.transform import DWT1d, DWT2d

__all__ = [
    "STUDENT_FORMAT",
    "Savable",
    "choose_student",
    "class_map",
    "load_student",
    "read_student_index",
    "save_student",
    "saved_student",
]

STUDENT_FORMAT = "awd-student"
STUDENT_FORMAT_VERSION = 1

_STUDENT_JSON = "student.json"
_ARRAYS = "arrays.safetensors"


class Savable:
    """Mixin: an object saved as its instance attributes (see :func:`save_student`).

    ``get_state`` returns the attributes (minus the names in ``_state_exclude``, which come
    back as ``None``); ``from_state`` rebuilds the object without calling ``__init__``, so
    a fitted object comes back exactly as it was. Override both for attributes that are
    not arrays, numbers, strings, transforms, estimators or other savable objects.

    Examples
    --------
    >>> class Mean(Savable):
    ...     def fit(self, y):
    ...         self.mean_ = np.mean(y, axis=0)
    ...         return self
    >>> m = Mean.from_state(Mean().fit(np.ones((3, 2))).get_state())
    >>> m.mean_.tolist()
    [1.0, 1.0]
    """

    _state_exclude: tuple[str, ...] = ()

    def get_state(self) -> dict[str, Any]:
        """The attributes that make this object what it is."""
        return {k: v for k, v in vars(self).items() if k not in self._state_exclude}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Any:
        """Rebuild an object saved by :meth:`get_state`."""
        obj = cls.__new__(cls)
        obj.__dict__.update({k: None for k in cls._state_exclude})
        obj.__dict__.update(state)
        return obj


def _sklearn_classes() -> dict[str, type]:
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        c.__name__: c for c in (LinearRegression, LogisticRegression, Ridge, StandardScaler)
    } | {"Pipeline": Pipeline}


def _xgboost_classes() -> dict[str, type]:
    import xgboost

    return {"XGBRegressor": xgboost.XGBRegressor, "XGBClassifier": xgboost.XGBClassifier}


class _Writer:
    """Collects the arrays and side files of one student while its tree is encoded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrays: dict[str, np.ndarray] = {}
        self.counter = 0

    def array(self, value: np.ndarray) -> dict[str, Any]:
        key = f"a{len(self.arrays)}"
        arr = np.ascontiguousarray(value)
        if arr.dtype == object or arr.dtype.kind in "USO":
            raise TypeError("only numeric arrays can be saved; strings go in the JSON")
        self.arrays[key] = arr
        return {"$": "array", "key": key}

    def file_name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "US":
                return {"$": "strings", "items": value.tolist()}
            return self.array(value)
        if isinstance(value, torch.Tensor):
            return {"$": "tensor", "array": self.array(value.detach().cpu().numpy())}
        if isinstance(value, (DWT1d, DWT2d)):
            name = self.file_name("wavelet")
            save_transform(value, self.folder / name)
            return {"$": "transform", "file": name}
        if isinstance(value, tuple):
            return {"$": "tuple", "items": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return {"$": "list", "items": [self.encode(v) for v in value]}
        if isinstance(value, Mapping):
            if any(not isinstance(k, str) or k == "$" for k in value):
                raise TypeError("mapping keys must be strings other than '$'")
            return {k: self.encode(v) for k, v in value.items()}
        return self.encode_object(value)

    def encode_object(self, value: Any) -> dict[str, Any]:
        cls = type(value)
        if cls.__name__ in ("XGBRegressor", "XGBClassifier") and cls.__module__.startswith(
            "xgboost"
        ):
            name = self.file_name("xgboost") + ".json"
            path = self.folder / name
            atomic_write(path, lambda p: value.save_model(str(p)), suffix=".json")
            return {"$": "xgboost", "class": cls.__name__, "file": name}
        if cls.__module__.startswith("sklearn."):
            return self.encode_sklearn(value)
        if hasattr(value, "get_state") and hasattr(cls, "from_state"):
            return {
                "$": "object",
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "state": self.encode(value.get_state()),
            }
        raise TypeError(f"cannot save an object of type {cls.__module__}.{cls.__qualname__}")

    def encode_sklearn(self, value: Any) -> dict[str, Any]:
        from sklearn.pipeline import Pipeline

        name = type(value).__name__
        if name not in _sklearn_classes():
            raise TypeError(f"cannot save the scikit-learn estimator {name}")
        if isinstance(value, Pipeline):
            return {
                "$": "sklearn",
                "class": "Pipeline",
                "steps": [[step, self.encode_sklearn(est)] for step, est in value.steps],
            }
        # Fitted attributes end in "_" (scikit-learn's contract); they are all a model is.
        fitted = {k: v for k, v in vars(value).items() if k.endswith("_") and not k.startswith("_")}
        return {
            "$": "sklearn",
            "class": name,
            "params": self.encode(value.get_params(deep=False)),
            "fitted": self.encode(fitted),
        }


class _Reader:
    def __init__(self, folder: Path, arrays: Mapping[str, np.ndarray], classes: Mapping[str, type]):
        self.folder = folder
        self.arrays = arrays
        self.classes = dict(classes)

    def decode(self, node: Any) -> Any:
        if isinstance(node, list):
            raise ValueError("a bare list in student.json; lists are encoded as {'$': 'list'}")
        if not isinstance(node, dict):
            return node
        kind = node.get("$")
        if kind is None:
            return {k: self.decode(v) for k, v in node.items()}
        handler = getattr(self, f"_decode_{kind}", None)
        if handler is None:
            raise ValueError(f"unknown node type {kind!r} in student.json")
        return handler(node)

    def _decode_array(self, node: dict) -> np.ndarray:
        key = node["key"]
        if key not in self.arrays:
            raise ValueError(f"array {key!r} is missing from {_ARRAYS}")
        return self.arrays[key]

    def _decode_tensor(self, node: dict) -> torch.Tensor:
        return torch.from_numpy(self._decode_array(node["array"]).copy())

    def _decode_strings(self, node: dict) -> np.ndarray:
        return np.asarray(node["items"])

    def _decode_tuple(self, node: dict) -> tuple:
        return tuple(self.decode(v) for v in node["items"])

    def _decode_list(self, node: dict) -> list:
        return [self.decode(v) for v in node["items"]]

    def _decode_transform(self, node: dict) -> Any:
        return load_transform(self.folder / _safe_name(node["file"]))

    def _decode_xgboost(self, node: dict) -> Any:
        classes = _xgboost_classes()
        if node.get("class") not in classes:
            raise ValueError(f"unknown xgboost model class {node.get('class')!r}")
        model = classes[node["class"]]()
        path = self.folder / _safe_name(node["file"])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the xgboost model file is missing")
        model.load_model(str(path))
        return model

    def _decode_sklearn(self, node: dict) -> Any:
        classes = _sklearn_classes()
        if node.get("class") not in classes:
            raise ValueError(f"unknown scikit-learn class {node.get('class')!r}")
        cls = classes[node["class"]]
        if node["class"] == "Pipeline":
            return cls([(step, self._decode_sklearn(est)) for step, est in node["steps"]])
        model = cls(**self.decode(node["params"]))
        for key, value in self.decode(node["fitted"]).items():
            setattr(model, key, value)
        return model

    def _decode_object(self, node: dict) -> Any:
        name = node.get("class")
        if name not in self.classes:
            raise ValueError(
                f"student.json names the class {name!r}, which this loader does not know; "
                f"known: {sorted(self.classes)}"
            )
        cls: Any = self.classes[name]
        return cls.from_state(self.decode(node["state"]))


def _safe_name(name: str) -> str:
    # Side files live in the student's folder: no path may lead out of it.
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"bad file name {name!r} in student.json")
    return name


def class_map(*classes: type) -> dict[str, type]:
    """The ``classes`` argument of :func:`load_student` for these classes.

    Examples
    --------
    >>> list(class_map(np.random.Generator))
    ['numpy.random._generator.Generator']
    """
    return {f"{c.__module__}.{c.__qualname__}": c for c in classes}


def save_student(
    folder: str | os.PathLike, student: Any, meta: Mapping[str, Any] | None = None
) -> Path:
    """Save a fitted student (any tree of savable objects) into ``folder``.

    ``folder`` is replaced as a whole: its files are written into a new sibling folder,
    which is renamed into place once complete, so a reader never sees half a student.

    Parameters
    ----------
    folder : path
        Where the student goes (``student.json``, ``arrays.safetensors``, side files).
    student : object
        What to save: a savable object, or a dict / list / tuple of them.
    meta : mapping, optional
        JSON-able description kept in ``student.json`` (method, targets, inputs it accepts).

    Returns
    -------
    Path
        ``folder``.
    """
    import shutil
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        writer = _Writer(tmp)
        tree = writer.encode(student)
        save_file(writer.arrays, str(tmp / _ARRAYS), metadata={"format": STUDENT_FORMAT})
        write_json(
            tmp / _STUDENT_JSON,
            {
                "format": STUDENT_FORMAT,
                "format_version": STUDENT_FORMAT_VERSION,
                "meta": dict(meta or {}),
                "student": tree,
            },
        )
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_student_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` a student was saved with (no arrays are read)."""
    path = Path(folder) / _STUDENT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved student here")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if doc.get("format") != STUDENT_FORMAT:
        raise ValueError(f"{path}: not a saved awd student (format={doc.get('format')!r})")
    if doc.get("format_version") != STUDENT_FORMAT_VERSION:
        raise ValueError(
            f"{path}: student format version {doc.get('format_version')} is not supported "
            f"(this awd reads version {STUDENT_FORMAT_VERSION})"
        )
    return doc


def load_student(
    folder: str | os.PathLike, classes: Mapping[str, type] | None = None
) -> tuple[Any, dict[str, Any]]:
    """Load a student saved by :func:`save_student`: ``(student, meta)``.

    ``classes`` maps the names of the domain classes the student may contain to the
    classes (see :func:`class_map`); any other name is refused.

    Raises
    ------
    FileNotFoundError
        The folder holds no student, or a side file is missing.
    ValueError
        A file is corrupt, of another format version, or names an unknown class.
    """
    folder = Path(folder)
    doc = read_student_meta(folder)
    try:
        arrays = load_file(str(folder / _ARRAYS))
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder / _ARRAYS}: the student's arrays are missing") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{folder / _ARRAYS}: cannot read the arrays ({err})") from None
    reader = _Reader(folder, arrays, classes or {})
    return reader.decode(doc["student"]), doc["meta"]


def read_student_index(root: str | os.PathLike, command: str) -> dict[str, Any]:
    """``RUN/students/index.json``: the ``default`` student and every saved ``students``.

    ``command`` is named in the error when the run has no saved students yet.
    """
    path = Path(root) / "students" / "index.json"
    if not path.is_file():
        raise ValueError(f"{root}: no saved students; run '{command}' first")
    return json.loads(path.read_text())


def saved_student(
    run_dir: str | os.PathLike, domain: str, method: str | None = None
) -> tuple[Any, dict[str, Any], str]:
    """The run (opened as ``domain``), its students' index and the student to use.

    ``method`` names a saved student; without it, the run's default (the AWD student
    its evaluation selected). Errors name the run and the way forward.

    Examples
    --------
    >>> saved_student("not/a/run", "cosmology")
    Traceback (most recent call last):
    ...
    ValueError: ...not/a/run: not a run directory (run.json is missing)
    """
    from shared.runs import RunDir

    run = RunDir.open(run_dir, domain)
    index = read_student_index(run.root, f"awd {domain} evaluate")
    return run, index, choose_student(index, method, run.root)


def choose_student(index: Mapping[str, Any], method: str | None, root: Any) -> str:
    """The student to use: ``method``, or the run's default; a clear error otherwise.

    Examples
    --------
    >>> choose_student({"default": "awd", "students": {"awd": {}, "db5": {}}}, None, "RUN")
    'awd'
    >>> choose_student({"default": "awd", "students": {"awd": {}}}, "x", "RUN")
    Traceback (most recent call last):
    ...
    ValueError: RUN: no student 'x'; saved: awd
    """
    name = method or index.get("default")
    if name is None:
        raise ValueError(f"{root}: no AWD student was selected; pass --method")
    if name not in index["students"]:
        raise ValueError(
            f"{root}: no student {name!r}; saved: {', '.join(sorted(index['students']))}"
        )
    return str(name)
