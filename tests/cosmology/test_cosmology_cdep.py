"""The CD explanation penalty as a teacher-training option, and the decoy it removes."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import cosmology.teacher as teacher_module
from cosmology.config import TeacherConfig, load_config, recorded
from cosmology.teacher import predict, train_teacher

ROOT = Path(__file__).resolve().parents[2]
BASE = TeacherConfig(width=4, epochs=2, batch_size=8, lr=3e-3, threads=1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _data():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(24, 16, 16, generator=gen), torch.rand(24, 2, generator=gen)


def _train(cfg, out):
    x, y = _data()
    return train_teacher(x, y, x[:8], y[:8], cfg, out, progress=False)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _without_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_weight_zero_trains_exactly_the_teacher_without_the_option(tmp_path):
    plain, h_plain = _train(BASE, tmp_path / "a")
    named = replace(BASE, cdep_groups=("level1",), cdep_wavelet="haar")
    zero, h_zero = _train(named, tmp_path / "b")
    assert _same_weights(plain, zero)
    assert _without_time(h_plain) == _without_time(h_zero)
    assert all("cdep_penalty" not in h for h in h_zero)
    # Records and resume fingerprints of runs made before the option stay as they were.
    assert recorded(BASE) == recorded(named)
    assert not any(k.startswith("cdep") for k in recorded(named))


def test_the_option_changes_training_only_through_the_penalty(tmp_path, monkeypatch):
    plain, _ = _train(BASE, tmp_path / "a")
    on = replace(BASE, cdep_weight=5.0, cdep_groups=("level1", "f0.3-0.71"))

    def zero_penalty(model, x, groups, **kwargs):
        assert not model.training  # CD sees batch norm on its running statistics
        return torch.zeros((), requires_grad=True)

    monkeypatch.setattr(teacher_module, "cdep_penalty", zero_penalty)
    nulled, history = _train(on, tmp_path / "b")
    assert _same_weights(plain, nulled)
    assert all(h["cdep_penalty"] == 0.0 for h in history)
    monkeypatch.undo()
    penalised, history = _train(on, tmp_path / "c")
    assert not _same_weights(plain, penalised)
    assert all(h["cdep_penalty"] > 0 for h in history)
    assert "cdep_groups" in recorded(on)


def test_cdep_settings_are_checked():
    with pytest.raises(ValueError, match="needs cdep_groups"):
        load_config(None, ["teacher.cdep_weight=1"])
    with pytest.raises(ValueError, match="does not apply to maps"):
        load_config(None, ["teacher.cdep_groups=[t0-8]"])
    cfg = load_config(None, ["teacher.cdep_weight=2", "teacher.cdep_groups=[level1,f0.3-0.71]"])
    assert cfg.teacher.cdep_groups == ("level1", "f0.3-0.71")


def _decoy_script():
    spec = importlib.util.spec_from_file_location(
        "interpret_decoy", ROOT / "scripts" / "interpret_decoy.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_penalised_teacher_ignores_a_decoy_the_plain_one_reads(tmp_path):
    """A tiny decoy case: a smooth map whose mean follows the target, and a checkerboard
    (Haar level 1) whose amplitude follows it too, in training only."""
    script = _decoy_script()
    gen = torch.Generator().manual_seed(1)
    n = 160
    y = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(n, 1, 20, 20, generator=gen), 5, 1)[:, 0]
    maps = smooth + (y[:, :1, None].float() - 0.5)
    level = y[:, 0].numpy()
    trained = script.add_map_decoy(maps, level, 1.0)
    cfg = replace(BASE, epochs=25, batch_size=16, augment=False, patience=25)
    effect = {}
    for weight in (0.0, 10.0):
        conf = replace(cfg, cdep_weight=weight, cdep_groups=("level1",) if weight else ())
        conf = replace(conf, cdep_wavelet="haar")
        model, _ = train_teacher(trained[:128], y[:128], trained[128:], y[128:], conf,
                                 tmp_path / str(weight), progress=False)  # fmt: skip
        test = maps[128:]
        with_decoy = predict(model, script.add_map_decoy(test, level[128:], 1.0))[:, 0]
        flipped = predict(model, script.add_map_decoy(test, 1.0 - level[128:], 1.0))[:, 0]
        removed = predict(model, test)[:, 0]
        effect[weight] = (
            float(np.abs(with_decoy - removed).mean()),
            float(np.abs(with_decoy - flipped).mean()),
        )
    plain, penalised = effect[0.0], effect[10.0]
    assert plain[0] > 0.1 and plain[1] > 0.1  # the plain teacher reads the decoy
    assert penalised[0] < 0.4 * plain[0] and penalised[1] < 0.4 * plain[1]
