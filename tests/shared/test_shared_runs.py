"""Saving and loading trained transforms; atomic writes."""

import json

import numpy as np
import pytest
import torch

from shared import DWT1d, DWT2d, LearnableWavelet, PenaltyWeights, load_transform, save_transform
from shared.runs import atomic_write, write_json


@pytest.mark.parametrize("cls,shape", [(DWT1d, (3, 1, 40)), (DWT2d, (2, 1, 33, 30))])
def test_round_trip_gives_identical_coefficients(tmp_path, cls, shape):
    dwt = cls(LearnableWavelet("sym4", noise=0.05, seed=0), levels=3, mode="symmetric")
    history = [{"epoch": 0, "train_total": 1.5}]
    path = save_transform(
        dwt, tmp_path / "wavelet", weights=PenaltyWeights(l1_attr=0.1), history=history, seed=7
    )
    assert path.name == "wavelet.safetensors" and (tmp_path / "wavelet.json").exists()
    loaded = load_transform(tmp_path / "wavelet.json")
    assert type(loaded) is cls and loaded.levels == 3 and loaded.mode == "symmetric"
    x = torch.randn(*shape)
    for a, b in zip(_leaves(dwt(x)), _leaves(loaded(x)), strict=True):
        assert torch.equal(a, b)
    meta = json.loads((tmp_path / "wavelet.json").read_text())
    assert meta["weights"]["l1_attr"] == 0.1 and meta["history"] == history
    assert meta["seed"] == 7 and meta["init"] == "sym4"
    assert meta["environment"]["packages"]["torch"].startswith(torch.__version__.split("+")[0])


def _leaves(coeffs):
    out = []
    for c in coeffs:
        out.extend(c if isinstance(c, tuple) else [c])
    return out


def test_names_with_dots_do_not_collide(tmp_path):
    a = save_transform(DWT1d("db2", levels=2), tmp_path / "lam0.001_gam0.01")
    b = save_transform(DWT1d("db4", levels=3), tmp_path / "lam0.001_gam0.02")
    assert a.name == "lam0.001_gam0.01.safetensors" and a != b
    assert load_transform(a).levels == 2 and load_transform(b.with_suffix(".json")).levels == 3


def test_truncated_and_mismatched_files(tmp_path):
    path = save_transform(DWT1d("db5", levels=4), tmp_path / "w")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"w\.safetensors: cannot read"):
        load_transform(path)
    save_transform(DWT1d("db5", levels=4), tmp_path / "w")
    meta = json.loads((tmp_path / "w.json").read_text())
    meta["filter_length"] = 8
    (tmp_path / "w.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="metadata says length 8"):
        load_transform(path)
    meta["filter_length"], meta["format_version"] = 10, 99
    (tmp_path / "w.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 99"):
        load_transform(path)
    (tmp_path / "w.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_transform(path)
    (tmp_path / "w.json").unlink()
    with pytest.raises(FileNotFoundError, match="metadata"):
        load_transform(path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken(p):
        p.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    data = {
        "x": torch.tensor([1.0, float("nan")]),
        "inf": float("inf"),
        "n": np.float32("nan"),
        "a": np.array([[np.inf, 1.0]]),
    }
    write_json(tmp_path / "m.json", data)
    # Strict JSON (no NaN or Infinity tokens): a non-finite number is null.
    text = (tmp_path / "m.json").read_text()
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert loaded == {"x": [1.0, None], "inf": None, "n": None, "a": [[None, 1.0]]}
