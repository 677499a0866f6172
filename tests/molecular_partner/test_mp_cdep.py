"""The CD explanation penalty as an option of the LSTM teacher, and the decoy it removes."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import molecular_partner.teacher as teacher_module
from molecular_partner.config import TeacherSettings, load_config, recorded
from molecular_partner.teacher import predict, train_teacher

ROOT = Path(__file__).resolve().parents[2]
BASE = TeacherSettings(epochs=3, batch_size=32)


pytestmark = pytest.mark.usefixtures("one_thread")


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 40)).astype(np.float32)
    return x, x[:, -5:].mean(1)


def _train(settings):
    x, y = _data()
    return train_teacher(x, y, settings, x_val=x[:16], y_val=y[:16], progress=False)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_weight_zero_trains_exactly_the_teacher_without_the_option():
    plain, h_plain = _train(BASE)
    zero, h_zero = _train(replace(BASE, cdep_groups=("t30-38",)))
    assert _same_weights(plain, zero)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in h_plain]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in h_zero]
    # Records of runs made before the option stay as they were.
    assert recorded(BASE) == recorded(replace(BASE, cdep_groups=("t30-38",)))
    assert not any(k.startswith("cdep") for k in recorded(BASE))


def test_the_option_changes_training_only_through_the_penalty(monkeypatch):
    plain, _ = _train(BASE)
    on = replace(BASE, cdep_weight=3.0, cdep_groups=("t30-38", "cD1"))
    monkeypatch.setattr(
        teacher_module, "cdep_penalty", lambda *a, **k: torch.zeros((), requires_grad=True)
    )
    nulled, history = _train(on)
    assert _same_weights(plain, nulled) and all(h["cdep_penalty"] == 0.0 for h in history)
    monkeypatch.undo()
    penalised, history = _train(on)
    assert not _same_weights(plain, penalised)
    assert all(h["cdep_penalty"] > 0 for h in history)


def test_cdep_settings_are_checked():
    with pytest.raises(ValueError, match="needs cdep_groups"):
        load_config(None, ["teacher.cdep_weight=1"])
    with pytest.raises(ValueError, match="does not apply to traces"):
        load_config(None, ["teacher.cdep_groups=[f0-0.2]"])
    cfg = load_config(None, ["teacher.cdep_weight=1", "teacher.cdep_groups=[t30-38]"])
    assert cfg.teacher.cdep_groups == ("t30-38",)


@pytest.mark.slow
def test_penalised_teacher_ignores_a_decoy_step_the_plain_one_reads():
    """A tiny decoy case: the outcome is read from the start of the trace, and a step late
    in the trace marks the positive outcomes, in training only."""
    spec = importlib.util.spec_from_file_location(
        "interpret_decoy", ROOT / "scripts" / "interpret_decoy.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 40)).astype(np.float32)
    y = (x[:, :10].mean(1) * 3 + 0.3 * rng.standard_normal(300)).astype(np.float32)
    positive = y > 0
    trained = script.add_trace_decoy(x, positive, (30, 38), 2.0)
    effect = {}
    for weight in (0.0, 3.0):
        s = TeacherSettings(
            epochs=40, patience=40, cdep_weight=weight, cdep_groups=("t30-38",) if weight else ()
        )
        model, _ = train_teacher(
            trained[:240], y[:240], s, x_val=trained[240:], y_val=y[240:], progress=False
        )
        with_decoy = predict(model, trained[240:])
        removed = predict(model, x[240:])
        flipped = predict(model, script.add_trace_decoy(x[240:], ~positive[240:], (30, 38), 2.0))
        effect[weight] = (
            float(np.abs(with_decoy - removed).mean()),
            float(np.abs(with_decoy - flipped).mean()),
        )
    plain, penalised = effect[0.0], effect[3.0]
    assert plain[0] > 0.3 and plain[1] > 0.3  # the plain teacher reads the step
    assert penalised[0] < 0.25 * plain[0] and penalised[1] < 0.25 * plain[1]
