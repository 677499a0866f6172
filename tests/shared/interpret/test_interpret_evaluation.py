"""The documents an evaluation writes: CD per scale, ACD examples, reality checks."""

import torch
from torch import nn

from shared import DWT2d
from shared.attributions import FourierBands2d
from shared.interpret import (
    acd_examples,
    band_mass,
    cd_attribution,
    cd_scale_scores,
    fourier_groups,
    fourier_scales,
    level_groups,
    reality_checks,
    trim_attribution,
    wavelet_scales,
)

D = torch.float64


def _cnn():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 2),
    )
    return net.double().eval()


def test_cd_per_scale_rows_are_conserved_and_carry_their_scales():
    net, x = _cnn(), torch.randn(6, 1, 16, 16, dtype=D)
    dwt = DWT2d("db2", levels=2)
    out = cd_scale_scores(
        net, x, dwt, level_groups(dwt(x[:1])), wavelet_scales(2, 2.0), {"a": 0, "b": 1}
    )
    assert [g["name"] for g in out["groups"]] == ["cA2", "level2", "level1"]
    assert out["conservation_max_abs_error"] < 1e-10
    full = net(x).detach()
    for row in out["groups"]:
        assert row["ell_max"] > row["ell_min"] >= 0 and "arcmin_min" in row
        for name, k in (("a", 0), ("b", 1)):
            # Per group: its CD score and the rest sum to the output, on every map.
            total = row[name]["mean"] + row[name]["rest_mean"]
            assert abs(total - float(full[:, k].mean())) < 1e-10
            assert row[name]["sd"] >= 0 and row[name]["mean_abs"] >= abs(row[name]["mean"])
    bands = FourierBands2d(3)
    four = cd_scale_scores(
        net, x, bands, fourier_groups(bands), fourier_scales(bands, 2.0), {"a": 0}
    )
    assert len(four["groups"]) == 3 and four["conservation_max_abs_error"] < 1e-10
    assert abs(four["output"]["a"]["mean"] - float(full[:, 0].mean())) < 1e-12


def test_acd_examples_give_one_hierarchy_per_target():
    net, x = _cnn(), torch.randn(3, 1, 16, 16, dtype=D)
    out = acd_examples(
        net, x, DWT2d("haar", levels=2), [0, 2], {"a": 0, "b": 1}, tile=4,
        describe=lambda i: {"label": i * 10}, num_iters=2,
    )  # fmt: skip
    assert [e["index"] for e in out] == [0, 2] and out[1]["label"] == 20
    for e in out:
        for h in e["hierarchies"].values():
            root = h["nodes"][h["root"]]
            assert root["parent"] is None and h["absolute"] is True


def test_reality_checks_flag_an_attribution_that_ignores_the_model():
    net, x = _cnn(), torch.randn(8, 1, 16, 16, dtype=D)
    dwt = DWT2d("haar", levels=2)
    trained = []

    def retrain(labels):
        # A stand-in for training on the shuffled labels: other weights.
        trained.append(labels.clone())
        model = _cnn()
        torch.manual_seed(123)
        for p in model.parameters():
            nn.init.normal_(p, std=0.3)
        return model

    def broken(model, x):
        return dwt(x)  # the input's coefficients: the same whatever the model

    attributions = {
        "broken": broken,
        "broken_bands": band_mass(broken),
        "cd_levels": cd_attribution(dwt, level_groups(dwt(x[:1])), 0),
        "saliency": trim_attribution(dwt, "saliency", 0),
    }
    y = torch.arange(20.0)
    out = reality_checks(net, attributions, x, y_train=y, retrain=retrain, seed=0)
    assert "broken" in out["flagged"] and "broken_bands" in out["flagged"]
    for name in ("broken", "broken_bands"):
        entry = out["attributions"][name]
        assert entry["failed"] == ["model_randomisation", "label_randomisation"]
        assert entry["model_randomisation"]["similarity"]["spearman"] > 0.999
    # One retraining, on a permutation of the labels, serves every attribution.
    assert len(trained) == 1
    assert sorted(trained[0].tolist()) == y.tolist() and not torch.equal(trained[0], y)
    steps = out["attributions"]["saliency"]["model_randomisation"]["steps"]
    assert [s["layer"] for s in steps] == ["7", "4", "1", "0"]
    assert out["label_randomisation"] and out["n_items"] == 8


def test_reality_checks_without_retraining_skip_the_label_test():
    net, x = _cnn(), torch.randn(4, 1, 16, 16, dtype=D)
    out = reality_checks(net, {"input": lambda model, x: x}, x)
    entry = out["attributions"]["input"]
    assert "label_randomisation" not in entry and entry["failed"] == ["model_randomisation"]
    assert out["label_randomisation"] is False
