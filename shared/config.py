"""Configuration: frozen dataclasses, read from YAML, overridden with ``a.b=value``.

Examples
--------
>>> from shared.simulation import SimulationConfig
>>> cfg = load_config(SimulationConfig, overrides=["weights.l1_attr=0.5", "n_train=100"])
>>> cfg.weights.l1_attr, cfg.n_train
(0.5, 100)
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "settings_to_overrides",
]

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a dataclass config, ready for YAML."""

    def plain(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def config_from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested mapping; unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = config_from_dict(hint, value, f"{where}.{key}")
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def apply_overrides(
    data: dict[str, Any], overrides: Iterable[str], *, strict: bool = False
) -> dict[str, Any]:
    """Set ``a.b=value`` entries in a nested dict (values parsed as YAML scalars).

    With ``strict`` every path must name an existing setting (a typo is an error instead
    of a new key).

    Examples
    --------
    >>> apply_overrides({"a": {"b": 1}}, ["a.b=[1, 2]"])
    {'a': {'b': [1, 2]}}
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key.path=value")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        node = data
        for key in keys[:-1]:
            if strict and not isinstance(node.get(key), dict):
                raise ValueError(f"override {item!r}: no setting {path.strip()!r}")
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section")
        if strict and keys[-1] not in node:
            raise ValueError(f"override {item!r}: no setting {path.strip()!r}")
        node[keys[-1]] = yaml.safe_load(raw)
    return data


def settings_to_overrides(settings: Any, where: str = "base.settings") -> list[str]:
    """``{section: {field: value}}`` as ``section.field=value`` overrides (values as JSON,
    which YAML reads back unchanged).

    Examples
    --------
    >>> settings_to_overrides({"distill": {"gammas": [0, 0.1], "patience": None}})
    ['distill.gammas=[0, 0.1]', 'distill.patience=null']
    """
    if settings is None:
        return []
    if not isinstance(settings, Mapping):
        raise ValueError(f"{where} must map sections to fields, got {settings!r}")
    items = []
    for section, values in settings.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}.{section} must be a mapping, got {values!r}")
        items += [f"{section}.{name}={json.dumps(value)}" for name, value in values.items()]
    return items


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    strict: bool = False,
) -> T:
    """Defaults of ``cls``, updated from a YAML file, then from ``key.path=value`` overrides.

    ``strict`` is passed to :func:`apply_overrides`.
    """
    data = config_to_dict(cls())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"{path}: cannot read the config ({err})") from None
        _merge(data, loaded, str(path))
    apply_overrides(data, overrides, strict=strict)
    return config_from_dict(cls, data, str(path) if path is not None else "config")


def _merge(base: dict, update: Mapping, where: str) -> None:
    if not isinstance(update, Mapping):
        raise ValueError(f"{where}: expected a mapping at the top level")
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, where)
        else:
            base[key] = value
