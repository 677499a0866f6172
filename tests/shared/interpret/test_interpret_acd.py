"""ACD over wavelet coefficients: a valid tree, scores against pywt, interactions, merges."""

import ast
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import pywt
import torch
from torch import nn

from shared import DWT2d
from shared.interpret import acd_hierarchy, contextual_decomposition, plot_hierarchy
from shared.interpret.acd import node_group, unit_adjacency
from shared.interpret.trim_cd import block_groups, trim_cd

D = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:Level value of .* is too high")


def _net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 6),
        nn.ReLU(),
        nn.Linear(6, 2),
    ).double().eval()  # fmt: skip


def _setting(percentile: float, num_iters: int):
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 16, dtype=D)
    dwt = DWT2d("haar", levels=2, mode="periodization")
    model = _net()
    kw = {"tile": 2, "target": 1, "percentile": percentile, "num_iters": num_iters}
    return model, x, dwt, acd_hierarchy(model, x, dwt, **kw)


@pytest.fixture(scope="module")
def setting():
    """Growth steps: 64 units (tiles of 2x2 coefficients)."""
    return _setting(90, 2)


@pytest.fixture(scope="module")
def merging():
    """No growth: the few selected units merge pairwise."""
    return _setting(95, 0)


def test_hierarchy_is_a_tree_over_the_selected_units(setting):
    _, _, _, h = setting
    nodes = h["nodes"]
    for node in nodes:
        if node["children"]:
            units = [u for c in node["children"] for u in nodes[c]["units"]]
            assert sorted(units) == node["units"]  # children partition their parent
            assert all(nodes[c]["parent"] == node["id"] for c in node["children"])
        if node["parent"] is not None:
            assert node["id"] in nodes[node["parent"]]["children"]
    root = nodes[h["root"]]
    assert root["parent"] is None
    assert set(h["levels"][-1]["components"]) == {h["root"]}
    grow = [lv for lv in h["levels"] if lv["kind"] == "grow"]
    assert set(root["units"]) == set(grow[-1]["selected"])
    assert json.loads(json.dumps(h)) == h


def _pywt_relevant(x: np.ndarray, units, members) -> np.ndarray:
    """The relevant input of a set of units, by pywt (haar, 2 levels, periodization)."""
    coeffs = pywt.wavedec2(x, "haar", mode="periodization", level=2)
    leaves = [coeffs[0], *coeffs[1], *coeffs[2]]
    masks = [np.zeros_like(c) for c in leaves]
    for m in members:
        info = units[m]
        box = tuple(slice(a, b) for a, b in zip(info["start"], info["stop"], strict=True))
        masks[info["leaf"]][box] = 1
    kept = [leaf * mask for leaf, mask in zip(leaves, masks, strict=True)]
    return pywt.waverec2([kept[0], tuple(kept[1:4]), tuple(kept[4:7])], "haar", "periodization")


@pytest.mark.parametrize("name", ["setting", "merging"])
def test_node_scores_are_cd_scores_of_the_node_groups(name, request):
    model, x, _, h = request.getfixturevalue(name)
    for node in h["nodes"][-4:] + h["nodes"][:2]:
        rel_in = torch.from_numpy(_pywt_relevant(x[0, 0].numpy(), h["units"], node["units"]))
        rel_in = rel_in[None, None]
        with torch.no_grad():
            rel, _ = contextual_decomposition(model, rel_in, x - rel_in)
        assert node["score"] == pytest.approx(float(rel[0, 1]), abs=1e-10)
    with torch.no_grad():
        assert h["full_score"] == pytest.approx(float(model(x)[0, 1]), abs=1e-10)


def test_merges_take_the_pair_with_the_largest_interaction(merging):
    model, x, dwt, h = merging
    units = block_groups(dwt(x), 2)
    levels = h["levels"]
    merges = [k for k, lv in enumerate(levels) if lv["kind"] == "merge"]
    assert len(merges) >= 2, "the setting should end with pairwise merges"
    for k in merges:
        before = levels[k - 1]["components"]
        pairs = list(itertools.combinations(before, 2))
        groups = [
            node_group(units, set(h["nodes"][a]["units"]) | set(h["nodes"][b]["units"]))
            for a, b in pairs
        ]
        with torch.no_grad():
            union = trim_cd(model, x, dwt, groups).rel[:, 0, 1]
        gains = [
            float(s) - h["nodes"][a]["score"] - h["nodes"][b]["score"]
            for (a, b), s in zip(pairs, union, strict=True)
        ]
        assert sorted(levels[k]["merged"]) == sorted(pairs[int(np.argmax(gains))])
        merged = h["nodes"][levels[k]["components"][-1]]
        assert merged["interaction"] == pytest.approx(max(gains), abs=1e-10)


def test_a_linear_model_has_no_interactions():
    torch.manual_seed(1)
    x = torch.randn(2, 1, 8, 8, dtype=D)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1, bias=False)).double().eval()
    h = acd_hierarchy(model, x, DWT2d("haar", levels=2), tile=2, percentile=70, num_iters=2)
    assert max(abs(n["interaction"]) for n in h["nodes"]) < 1e-10
    assert any(n["children"] for n in h["nodes"])
    assert h["n_inputs"] == 2


def test_adjacency_follows_bands_levels_and_the_wavelet_tree():
    coeffs = DWT2d("haar", levels=2)(torch.zeros(1, 1, 8, 8))
    units = [g.info for g in block_groups(coeffs, 1)]
    neighbours = unit_adjacency(units, [1, 1])
    for i, j in itertools.product(range(len(units)), repeat=2):
        u, v = units[i], units[j]
        (ru, cu), (rv, cv) = u["start"], v["start"]
        if i == j:
            expected = False
        elif u["leaf"] == v["leaf"]:
            expected = max(abs(ru - rv), abs(cu - cv)) == 1  # 8-connectivity
        elif u["level"] == v["level"]:
            expected = (ru, cu) == (rv, cv)  # the same position in another band
        else:  # level 1 (fine) and level 2 (coarse): parent and child
            fine, coarse = (u, v) if u["level"] == 1 else (v, u)
            expected = [s // 2 for s in fine["start"]] == coarse["start"]
        assert (j in neighbours[i]) == expected, (u, v)


def test_plot_returns_the_axes_and_draws_every_step(setting):
    import matplotlib.pyplot as plt

    h = setting[3]
    fig, ax = plt.subplots()
    out = plot_hierarchy(h, ax=ax, colorbar=False)
    assert out is ax
    image = ax.get_images()[0].get_array()
    assert image.shape == (len(h["levels"]), len(h["units"]))
    plt.close(fig)


def test_no_module_imports_matplotlib_or_sets_a_backend_at_import():
    import shared.interpret

    package = Path(shared.interpret.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: imports inside functions are fine
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith("matplotlib") for n in names), path.name
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        assert not any(ast.unparse(c.func) == "matplotlib.use" for c in calls), path.name
