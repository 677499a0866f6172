"""Settings are checked against their annotations and ranges before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from shared.config import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    setting,
    settings_to_overrides,
    validate_config,
)
from shared.sweep import SweepConfig


@dataclass(frozen=True)
class Inner:
    rate: float = setting(0.1, gt=0, le=1)
    steps: int = setting(3, ge=1)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    values: tuple[float, ...] = setting((1.0,), ge=0, nonempty=True)
    pair: tuple[str, str] = ("p", "q")
    inner: Inner = field(default_factory=Inner)
    extra: dict = field(default_factory=dict)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("flag=1", r"config\.flag: expected true or false, got 1"),
        ("name=3", r"config\.name: expected a string, got 3"),
        ("mode=c", r"config\.mode: must be one of 'a', 'b', got 'c'"),
        ("limit=1.5", r"config\.limit: expected an integer, got 1\.5"),
        ("limit=many", r"config\.limit: expected an integer, got 'many'"),
        ("values=[]", r"config\.values: must not be empty"),
        ("values=[1, -2]", r"config\.values: values must be >= 0, got \[1\.0, -2\.0\]"),
        ("values=[1, nan]", r"config\.values\[1\]: expected a finite number"),
        ("pair=[a]", r"config\.pair: expected 2 values, got 1"),
        ("inner.rate=0", r"config\.inner\.rate: must be > 0, got 0\.0"),
        ("inner.rate=2", r"config\.inner\.rate: must be <= 1, got 2\.0"),
        ("inner.steps=0", r"config\.inner\.steps: must be >= 1, got 0"),
        ("inner.stepz=0", r"no setting 'inner\.stepz'"),
        ("inner=3", r"config\.inner: expected a mapping, got 3"),
        ("values=[1, 2", r"not a valid value"),
    ],
)
def test_type_and_range_errors_name_the_setting(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(Outer, overrides=[override])


def test_values_are_coerced_where_the_meaning_is_plain(tmp_path):
    cfg = load_config(Outer, overrides=["values=0,2.5", "limit=null", "inner.rate=1e-2"])
    assert cfg.values == (0.0, 2.5) and cfg.limit is None and cfg.inner.rate == 0.01
    assert load_config(Outer, overrides=["values=3"]).values == (3.0,)
    assert isinstance(load_config(Outer, overrides=["inner.rate=1"]).inner.rate, float)
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(Outer, path) == cfg  # the YAML of a config reads back as the same
    assert config_from_dict(Outer, config_to_dict(cfg)) == cfg


def test_open_mappings_take_new_keys_other_settings_do_not():
    cfg = load_config(Outer, overrides=["extra.seed=3", "extra.deep.a=[1]"])
    assert cfg.extra == {"seed": 3, "deep": {"a": [1]}}
    sweep = load_config(SweepConfig, overrides=["base.distill.epochs=2", "workers=2"])
    assert sweep.base == {"distill": {"epochs": 2}} and sweep.workers == 2
    with pytest.raises(ValueError, match="no setting 'wokers'"):
        load_config(SweepConfig, overrides=["wokers=2"])
    with pytest.raises(ValueError, match=r"config\.workers: must be >= 1, got 0"):
        load_config(SweepConfig, overrides=["workers=0"])


def test_files_and_overrides_errors(tmp_path):
    with pytest.raises(ValueError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner: [1, 2\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: cannot read the config"):
        load_config(Outer, bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping at the top level"):
        load_config(Outer, bad)
    with pytest.raises(ValueError, match=r"key\.path=value"):
        apply_overrides({}, ["flag"])
    with pytest.raises(ValueError, match="must map sections"):
        settings_to_overrides([1, 2])
    validate_config(Outer())
    with pytest.raises(ValueError, match="must be >= 1"):
        validate_config(Outer(inner=Inner(steps=0)))
