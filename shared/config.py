"""Configuration: frozen dataclasses, read from YAML, overridden with ``a.b=value``.

One path for every settings object of the package: defaults of the dataclass, then a YAML
file, then ``--set a.b=value`` overrides (values parsed as YAML), then
:func:`config_from_dict`, which checks **every value** against the dataclass annotations
(``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, tuples, nested
dataclasses) and against the ranges declared with :func:`setting`, naming the setting
(``teacher.epochs``) and the problem. Nothing runs and nothing is written before that.

Examples
--------
>>> from shared.simulation import SimulationConfig
>>> cfg = load_config(SimulationConfig, overrides=["weights.l1_attr=0.5", "n_train=100"])
>>> cfg.weights.l1_attr, cfg.n_train
(0.5, 100)
>>> load_config(SimulationConfig, overrides=["n_train=0"])
Traceback (most recent call last):
...
ValueError: config.n_train: must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "INERT_WHEN_NO_CDEP",
    "INERT_WHEN_NO_REALITY_CHECKS",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "record_settings",
    "setting",
    "settings_to_overrides",
    "validate_config",
]

T = TypeVar("T")

_BOUNDS = {
    "ge": (lambda v, b: v >= b, ">="),
    "gt": (lambda v, b: v > b, ">"),
    "le": (lambda v, b: v <= b, "<="),
    "lt": (lambda v, b: v < b, "<"),
}


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    nonempty: bool = False,
) -> Any:
    """A dataclass field with a declared range, checked by :func:`config_from_dict`.

    Bounds apply to a number, or to every element of a tuple; ``nonempty`` refuses an
    empty tuple or string.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Fit:
    ...     epochs: int = setting(10, ge=1)
    >>> config_from_dict(Fit, {"epochs": 0}, "fit")
    Traceback (most recent call last):
    ...
    ValueError: fit.epochs: must be >= 1, got 0
    """
    bounds = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if v is not None}
    metadata = {"bounds": bounds, "nonempty": nonempty}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a dataclass config, ready for YAML."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def dump_config(config: Any) -> str:
    """The YAML text of a config (the form of ``config.yaml`` and ``configs/default.yaml``)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


# -- checking values against annotations --------------------------------------------------------
def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true or false, got {_describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{where}: expected an integer, got {_describe(value)}")
    if hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" as a string; a number written that way is still a number.
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{where}: expected a number, got {_describe(value)}") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{where}: expected a finite number, got {value}")
            return value
        raise ValueError(f"{where}: expected a number, got {_describe(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected a string, got {_describe(value)}")
    if hint is Any or hint is object:
        return value
    raise TypeError(f"{where}: unsupported setting type {hint!r}")


def _split_list(value: Any) -> Any:
    # "0,0.1" and "[0, 0.1]" on a command line both mean a list.
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
        return [yaml.safe_load(p) for p in parts]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ValueError(f"{where}: must be one of {choices}, got {_describe(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ValueError as err:
                errors.append(str(err))
        if len(errors) == 1:
            raise ValueError(errors[0])
        raise ValueError(f"{where}: {_describe(value)} is none of {list(args)}")
    if origin is tuple:
        value = _split_list(value)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {_describe(value)}")
        return dict(value)
    return _coerce_scalar(hint, value, where)


def _check_bounds(field: dataclasses.Field, value: Any, where: str) -> None:
    meta = field.metadata
    if meta.get("nonempty") and isinstance(value, (tuple, str)) and len(value) == 0:
        raise ValueError(f"{where}: must not be empty")
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        for name, bound in meta.get("bounds", {}).items():
            ok, sign = _BOUNDS[name]
            if not ok(item, bound):
                shown = value if isinstance(value, tuple) and len(value) > 1 else item
                what = "values" if isinstance(value, tuple) else ""
                got = list(shown) if isinstance(shown, tuple) else shown
                raise ValueError(
                    f"{where}: {what + ' ' if what else ''}must be {sign} {bound}, got {got}"
                )


def config_from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested mapping, checking every value.

    Unknown keys, values of the wrong type and values outside the ranges declared with
    :func:`setting` are errors that name the setting (``where.key``). Integers are
    accepted for floats, comma lists and single numbers for tuples.

    Examples
    --------
    >>> from shared.distill import DistillConfig
    >>> config_from_dict(DistillConfig, {"lr": "1e-2", "epochs": 3}).lr
    0.01
    >>> config_from_dict(DistillConfig, {"epochs": "many"}, "distill.train")
    Traceback (most recent call last):
    ...
    ValueError: distill.train.epochs: expected an integer, got 'many'
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}"
        kwargs[key] = _coerce(hints[key], value, name)
        _check_bounds(fields[key], kwargs[key], name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def validate_config(config: Any, where: str = "config") -> None:
    """Check an existing config object as :func:`config_from_dict` would (raise ``ValueError``).

    Examples
    --------
    >>> from shared.distill import DistillConfig
    >>> validate_config(DistillConfig())
    """
    config_from_dict(type(config), config_to_dict(config), where)


#: A teacher's CDEP penalty settings change nothing while its weight is 0 (both domains'
#: teacher settings carry these fields; see :func:`record_settings`).
INERT_WHEN_NO_CDEP: dict[str, Callable[[Any], bool]] = {
    name: (lambda t: t.cdep_weight == 0) for name in ("cdep_weight", "cdep_groups", "cdep_wavelet")
}
#: An evaluation's reality-check settings change nothing while the checks are off.
INERT_WHEN_NO_REALITY_CHECKS: dict[str, Callable[[Any], bool]] = {
    name: (lambda e: not e.reality_checks)
    for name in ("reality_checks", "reality_check_items", "reality_check_epochs")
}


def record_settings(
    settings: Any, inert: Mapping[str, Callable[[Any], bool]] | None = None
) -> dict[str, Any]:
    """A settings object as a run step records it: fields that leave its results as they
    were left out.

    ``inert`` maps a field name to a test of the whole object that says when the field
    changes nothing (an option that is off). Fields added after runs were recorded are
    listed there, so the records of those runs, which lack them, still match.

    Examples
    --------
    >>> from shared.distill import DistillConfig
    >>> rec = record_settings(DistillConfig(), {"seed": lambda c: c.epochs == 50})
    >>> "seed" in rec, rec["epochs"]
    (False, 50)
    """
    out = dataclasses.asdict(settings)
    for name, is_inert in (inert or {}).items():
        if is_inert(settings):
            out.pop(name, None)
    return out


def apply_overrides(
    data: dict[str, Any],
    overrides: Iterable[str],
    *,
    strict: bool = False,
    free: Iterable[str] = (),
) -> dict[str, Any]:
    """Set ``a.b=value`` entries in a nested dict (values parsed as YAML scalars).

    With ``strict`` every path must name an existing setting (a typo is an error instead
    of a new key), except below the dotted paths in ``free`` (settings that are open
    mappings, such as a sweep's ``base``).

    Examples
    --------
    >>> apply_overrides({"a": {"b": 1}}, ["a.b=[1, 2]"])
    {'a': {'b': [1, 2]}}
    """
    open_paths = {tuple(p.split(".")) for p in free}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key.path=value")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        node = data
        for depth, key in enumerate(keys[:-1]):
            if (
                strict
                and not _below_open(keys, depth, open_paths)
                and not isinstance(node.get(key), dict)
            ):
                raise ValueError(f"override {item!r}: no setting {path.strip()!r}")
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section")
        if strict and not _below_open(keys, len(keys) - 1, open_paths) and keys[-1] not in node:
            raise ValueError(f"override {item!r}: no setting {path.strip()!r}")
        try:
            node[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            reason = str(err).splitlines()[0]
            raise ValueError(f"override {item!r}: not a valid value ({reason})") from None
    return data


def _below_open(keys: list[str], depth: int, open_paths: set[tuple[str, ...]]) -> bool:
    # keys[depth] lies inside an open mapping when one of its parents is one.
    return any(tuple(keys[: d + 1]) in open_paths for d in range(depth))


def settings_to_overrides(settings: Any, where: str = "base.settings") -> list[str]:
    """``{section: {field: value}}`` as ``section.field=value`` overrides (values as JSON,
    which YAML reads back unchanged); nested sections give dotted paths.

    Examples
    --------
    >>> settings_to_overrides({"distill": {"gammas": [0, 0.1], "train": {"patience": None}}})
    ['distill.gammas=[0, 0.1]', 'distill.train.patience=null']
    """
    if settings is None:
        return []
    if not isinstance(settings, Mapping):
        raise ValueError(f"{where} must map sections to fields, got {settings!r}")
    items = []
    for section, values in settings.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}.{section} must be a mapping, got {values!r}")
        for name, value in values.items():
            if isinstance(value, Mapping):
                nested = settings_to_overrides({name: value}, f"{where}.{section}")
                items += [f"{section}.{item}" for item in nested]
            else:
                items.append(f"{section}.{name}={json.dumps(value)}")
    return items


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        reason = str(err).splitlines()[0]
        raise ValueError(f"{path}: cannot read the config ({reason})") from None
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return dict(loaded)


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    strict: bool = True,
    base: T | None = None,
) -> T:
    """Defaults of ``cls`` (or ``base``), updated from a YAML file, then from overrides.

    ``strict`` (the default) refuses an override path that names no setting. Every value
    is checked (:func:`config_from_dict`) before the config is returned.
    """
    data = config_to_dict(base if base is not None else cls())
    where = "config"
    if path is not None:
        _merge(data, read_yaml(path), str(path))
        where = str(path)
    apply_overrides(data, overrides, strict=strict, free=_open_paths(cls))
    return config_from_dict(cls, data, where)


def _open_paths(cls: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the settings of ``cls`` that are open mappings (``dict``)."""
    out = []
    for name, hint in typing.get_type_hints(cls).items():
        path = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            out += _open_paths(hint, path + ".")
        elif hint is dict or typing.get_origin(hint) in (dict, Mapping):
            out.append(path)
    return out


def merge_dicts(base: dict, update: Mapping, where: str = "config") -> dict:
    """``base`` updated in place by ``update``, section by section (nested mappings merge).

    Examples
    --------
    >>> merge_dicts({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}})
    {'a': {'b': 1, 'c': 3}}
    """
    _merge(base, update, where)
    return base


def _merge(base: dict, update: Mapping, where: str) -> None:
    if not isinstance(update, Mapping):
        raise ValueError(f"{where}: expected a mapping at the top level")
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, where)
        elif isinstance(base.get(key), dict) and base[key] and not isinstance(value, Mapping):
            # A section given a plain value: say so here, not at a later override of it.
            raise ValueError(f"{where}: {key} is a section of settings, got {value!r}")
        else:
            base[key] = value
