"""The TaylorNet predictor of the domains' students: fit, save and load, terms, references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shared.students import class_map, load_student, save_student
from shared.taylornet.student import (
    TaylorNetPredictor,
    band_terms,
    distil_classes,
    terms_rows,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three bands of four features: y0 reads band B linearly, y1 the product of A and C."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12)) * 3 + 5
    z = (X - 5) / 3
    y = np.stack([z[:, 4:8].sum(1), z[:, 0] * z[:, 9]], axis=1)
    return X, y


def test_regression_fits_and_round_trips_bit_identically(tmp_path):
    X, y = _planted(200, 0)
    model = TaylorNetPredictor((3, 4), 2, channels=8, epochs=60, lr=0.02).fit(X, y)
    pred = model.predict(X)
    assert pred.shape == (200, 2) and model.history_[-1] < 0.5 * model.history_[0]
    resid = ((pred - y) ** 2).mean(0) / y.var(0)
    assert (resid < 0.5).all(), resid
    save_student(tmp_path / "s", {"model": model}, {"method": "m"})
    loaded, _ = load_student(tmp_path / "s", class_map(TaylorNetPredictor))
    again = loaded["model"]
    assert np.array_equal(again.predict(X), pred)
    assert again.n_parameters() == model.n_parameters()
    for k, v in model.net.state_dict().items():
        assert torch.equal(again.net.state_dict()[k], v), k
    doc = json.loads((tmp_path / "s" / "student.json").read_text())
    assert doc["student"]["model"]["state"]["channels"] == 8  # rebuilt from its settings


def test_training_is_reproducible_and_leaves_the_global_generator_alone():
    X, y = _planted(60, 1)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = TaylorNetPredictor((3, 4), 2, epochs=3).fit(X, y).predict(X)
    after = torch.rand(1)
    b = TaylorNetPredictor((3, 4), 2, epochs=3).fit(X, y).predict(X)
    assert np.array_equal(a, b) and torch.equal(before, after)


def test_binary_uses_a_logistic_link_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(160, 6))
    y = (X[:, 0] * X[:, 5] > 0).astype(int)  # an interaction no linear model separates
    model = TaylorNetPredictor((3, 2), task="binary", channels=4, epochs=80, lr=0.05).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (160, 2) and np.allclose(proba.sum(1), 1)
    assert np.array_equal(model.predict(X), (proba[:, 1] > 0.5).astype(int))
    assert np.mean(model.predict(X) == y) > 0.85
    save_student(tmp_path / "b", model)
    loaded, _ = load_student(tmp_path / "b", class_map(TaylorNetPredictor))
    assert np.array_equal(loaded.predict_proba(X), proba)


def test_bad_inputs_are_refused():
    X, y = _planted(20, 3)
    with pytest.raises(ValueError, match="layout"):
        TaylorNetPredictor((3,))
    with pytest.raises(ValueError, match="0/1 labels"):
        TaylorNetPredictor((3, 4), task="binary").fit(X, y[:, 0])
    model = TaylorNetPredictor((3, 4), 2, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"expects \(N, 12\) features"):
        model.predict(X[:, :6])
    with pytest.raises(AttributeError, match="binary"):
        model.predict_proba(X)
    with pytest.raises(RuntimeError, match="not fitted"):
        TaylorNetPredictor((3, 4)).predict(X)


def test_band_terms_find_the_planted_main_effect_and_interaction():
    X, y = _planted(300, 4)
    model = TaylorNetPredictor((3, 4), 2, channels=8, epochs=60, lr=0.02).fit(X, y)
    terms = band_terms(model, X, ["cA2", "cD2", "cD1"], ["linear", "product"], n_points=16)
    linear, product = terms["linear"], terms["product"]
    assert linear["main_effects"][0]["band"] == "cD2"
    assert {"band", "effect", "n_terms", "per_term"} <= set(linear["main_effects"][0])
    top = product["interactions"][0]
    assert (top["band_a"], top["band_b"]) == ("cA2", "cD1"), product["interactions"][:3]
    assert product["largest_terms"][0]["inputs"] == "cA2[0]*cD1[1]"
    orders = {t["order"] for t in product["largest_terms"]}
    assert orders == {1, 2}
    rows = terms_rows(product, method="m", target="product")
    assert len(rows) == 3 + 6 and rows[3]["kind"] == "interaction"


def test_references_classify_well_separated_classes():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(3, 8)) * 4

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(["a", "b", "c"], n)
        return centres[np.repeat([0, 1, 2], n)] + rng.normal(size=(3 * n, 8)), labels

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = draw(30), draw(10), draw(20)
    # a regression net whose outputs separate the classes, as the cosmology student's do
    t = np.repeat([[0.2, 0.8], [0.3, 0.9], [0.4, 0.7]], 30, axis=0)
    model = TaylorNetPredictor((2, 4), 2, channels=4, epochs=30).fit(x_tr, t)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    draws = np.random.default_rng(0).integers(0, 60, size=(50, 60))
    record, arrays = distil_classes(
        model, (x_tr, y_tr), (x_va, y_va), (x_te, y_te), draws=draws, steps=60
    )
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, before[k]), k  # the net stayed frozen
    assert record["classes"] == ["a", "b", "c"] and record["levels"] == [1, 2, 3]
    assert record["test"]["accuracy"] > 0.95 and record["test"]["sd"] < 0.05
    assert record["trivial"]["accuracy"] == pytest.approx(1 / 3)
    select = [record["accuracy_per_level"][f"level{k}"]["select"] for k in record["levels"]]
    assert record["chosen_level"] == record["levels"][int(np.argmax(select))]
    assert arrays["level1"].shape == (3, 2, 4) and arrays["class_mean"].shape == (3, 2, 4)
    json.dumps(record)  # written as it is
