"""TaylorNet (provisional design): planted polynomials, block layout, names, CD, references."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from shared.taylornet import (
    Standardize,
    TaylorLayer,
    TaylorNet,
    TaylorReferences,
    fit_taylornet,
    group_interactions,
    group_main_effects,
    layer_terms_table,
    local_taylor_table,
    plot_references,
    read_terms_table,
    terms_table,
)

D64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _fit_lbfgs(model, x, y, steps=200):
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1,
        max_iter=steps,
        tolerance_grad=1e-14,
        tolerance_change=1e-20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = ((model(x).reshape(y.shape) - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return float(closure().detach())


def _key(inputs: str) -> tuple[str, ...]:
    return () if inputs == "1" else tuple(sorted(inputs.split("*")))


# Planted degree-2 polynomial of a (C=2, L=2) input, keyed by the documented names x{c}[t].
PLANTED = {
    (): 0.3,
    ("x0[0]",): 1.5,
    ("x1[1]",): -0.8,
    ("x0[0]", "x1[1]"): -2.0,
    ("x1[0]", "x1[0]"): 0.7,
    ("x0[1]", "x1[0]"): 1.1,
}


def _planted_y(x):
    # The oracle reads the input array directly, not through any name the package makes.
    v = {f"x{c}[{t}]": x[:, c, t] for c in range(2) for t in range(2)}
    y = torch.zeros(len(x), dtype=x.dtype)
    for names, coef in PLANTED.items():
        y = y + coef * math.prod((v[n] for n in names), start=torch.ones_like(y))
    return y


@pytest.mark.parametrize("quadratic", ["full", "lowrank"])
def test_recovers_planted_quadratic(quadratic):
    x = torch.randn(200, 2, 2, dtype=D64)
    y = _planted_y(x)[:, None]
    net = TaylorNet(2, 2, n_outputs=1, channels=[], quadratic=quadratic, norm="none").double()
    assert _fit_lbfgs(net, x, y) < 1e-16
    table = net.terms_table()
    assert set(table["order"]) == {0, 1, 2} and (table["level"] == 1).all()
    got = {_key(s): c for s, c in zip(table["inputs"], table["coefficient"], strict=True)}
    assert set(PLANTED) <= set(got)
    for key, coef in got.items():
        assert coef == pytest.approx(PLANTED.get(key, 0.0), abs=1e-6), key


def test_per_position_layer_recovers_a_polynomial_per_block():
    # Block 0 (x0[0], x0[1]) and block 1 (x0[2], x0[3]) follow different planted polynomials.
    x = torch.randn(300, 1, 4, dtype=D64)
    y0 = 1.0 - 2.0 * x[:, 0, 1] + 0.5 * x[:, 0, 0] * x[:, 0, 1]
    y1 = 3.0 * x[:, 0, 2] ** 2 - x[:, 0, 3]
    planted = {
        "0": {(): 1.0, ("x0[1]",): -2.0, ("x0[0]", "x0[1]"): 0.5},
        "1": {("x0[2]", "x0[2]"): 3.0, ("x0[3]",): -1.0},
    }
    layer = TaylorLayer(1, 1, spatial=4, quadratic="full", shared=False).double()
    assert _fit_lbfgs(layer, x, torch.stack([y0, y1], 1)[:, None]) < 1e-16
    table = layer_terms_table(layer)
    assert sorted(set(table["position"])) == ["0", "1"]
    for row in table.itertuples():
        want = planted[row.position].get(_key(row.inputs), 0.0)
        assert row.coefficient == pytest.approx(want, abs=1e-6), row


def test_shared_linear_layer_is_a_strided_convolution():
    # Oracle for the block layout: torch's conv with stride = kernel = block.
    for spatial, conv in (((8,), F.conv1d), ((4, 6), F.conv2d)):
        layer = TaylorLayer(3, 5, spatial=spatial, order=1).double()
        with torch.no_grad():
            layer.bias.normal_()
        x = torch.randn(2, 3, *spatial, dtype=D64)
        weight = layer.linear[0].reshape(5, 3, *(2,) * len(spatial))
        want = conv(x, weight, layer.bias[0], stride=2)
        torch.testing.assert_close(layer(x), want)


@pytest.mark.parametrize(
    ("size", "kwargs"),
    [
        (16, {}),
        (16, {"order": 3, "quadratic": "full", "shared": False}),
        ((8, 8), {"norm": "position", "readout_order": 1}),
        ((8, 4), {"channels": [3, 2], "order": 1}),
        ((4, 4), {"order": 3, "rank": 2, "shared": False}),
    ],
)
def test_shapes_1d_and_2d(size, kwargs):
    size_t = (size,) if isinstance(size, int) else size
    net = TaylorNet(2, size, n_outputs=3, **{"channels": 4, **kwargs})
    x = torch.randn(5, 2, *size_t)
    assert net(x).shape == (5, 3)
    emb = net.embeddings(x)
    assert len(emb) == net.n_levels + 2
    for k, ((layer, _), e) in enumerate(zip(net.stages(), emb[1:-1], strict=True), 1):
        assert e.shape == (5, layer.out_channels, *(s // 2**k for s in size_t))
    assert emb[-1].shape == (5, 3)
    torch.testing.assert_close(net.embed(x, net.n_levels + 1), net(x))
    assert not torch.isnan(net(x)).any()


def test_full_depth_and_parameter_count():
    net = TaylorNet(1, (8, 8), n_outputs=10, channels=4, quadratic="full")
    assert net.n_levels == 3 and net.readout.spatial == (1, 1)
    d1, d2 = 4, 16
    # bias + linear + one coefficient per monomial a <= b, per output channel
    want = 4 * (1 + d1 + d1 * (d1 + 1) // 2) + 2 * 4 * (1 + d2 + d2 * (d2 + 1) // 2)
    want += 10 * (1 + 4 + 4 * 5 // 2)
    assert net.n_parameters == want


def test_sizes_not_divisible_are_refused_or_padded():
    with pytest.raises(ValueError, match=r"not divisible by 2\*\*3 = 8.*pad=True"):
        TaylorNet(1, 6, n_outputs=1, channels=2)
    padded = TaylorNet(1, 6, n_outputs=1, channels=2, pad=True).double()
    plain = TaylorNet(1, 8, n_outputs=1, channels=2).double()
    plain.load_state_dict(padded.state_dict())
    x = torch.randn(3, 1, 6, dtype=D64)
    torch.testing.assert_close(padded(x), plain(F.pad(x, (0, 2))))
    with pytest.raises(ValueError, match="expects"):
        padded(torch.randn(3, 1, 8))


def _evaluate_table(table, x, n_out, out_grid):
    """Independent evaluator: parse every absolute term name and sum coefficient * inputs."""
    out = torch.zeros(len(x), n_out, *out_grid, dtype=x.dtype)
    pattern = re.compile(r"^[a-z][0-9.]*?(\d+)\[([\d,]+)\]$")
    for row in table.itertuples():
        value = torch.ones(len(x), dtype=x.dtype)
        for name in () if row.inputs == "1" else row.inputs.split("*"):
            c, pos = pattern.match(name).groups()
            value = value * x[(slice(None), int(c), *map(int, pos.split(",")))]
        where = () if row.position == "all" else tuple(map(int, row.position.split(",")))
        out[(slice(None), row.output, *where)] += row.coefficient * value
    return out


@pytest.mark.parametrize("shared", [False, True])
def test_terms_table_reproduces_the_layer(shared):
    layer = TaylorLayer(2, 3, spatial=(4, 4), order=3, rank=3, shared=shared).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 2, 4, 4, dtype=D64)
    table = layer_terms_table(layer, expand_shared=True)
    torch.testing.assert_close(_evaluate_table(table, x, 3, (2, 2)), layer(x))
    if shared:
        compact = layer_terms_table(layer)
        assert set(compact["position"]) == {"shared"}
        assert "x1[+1,+0]*x1[+1,+0]" in set(compact["inputs"])
        assert len(table) == 4 * len(compact)


def test_readout_table_reproduces_the_readout_and_csv_round_trip(tmp_path):
    net = TaylorNet(1, 8, n_outputs=2, channels=[3, 2], quadratic="full").double()
    with torch.no_grad():
        net.readout.bias.normal_()
    h = torch.randn(5, 2, 2, dtype=D64)
    table = net.terms_table(levels=[3])
    assert table["inputs"].str.startswith("1").sum() == 2
    assert "h2.1[1]" in set(table["inputs"])
    torch.testing.assert_close(_evaluate_table(table, h, 2, ()), net.readout(h).flatten(1))
    full = terms_table(net)
    assert list(full["level"].unique()) == [1, 2, 3]
    full.to_csv(tmp_path / "terms.csv", index=False)
    back = read_terms_table(tmp_path / "terms.csv")
    assert back.equals(full)


def test_local_taylor_table_equals_the_readout_terms_of_a_quadratic_net():
    # Two computations: autograd Hessian of the whole net vs the stored coefficients.
    net = TaylorNet(2, (2, 2), n_outputs=2, channels=[], quadratic="lowrank", norm="none").double()
    with torch.no_grad():
        net.readout.bias.normal_()
    local = local_taylor_table(net, torch.randn(3, 2, 2, 2, dtype=D64))
    # A degree-2 polynomial's expansion around the origin from any point is the polynomial.
    at_zero = local_taylor_table(net)
    stored = net.terms_table()
    key = ["order", "inputs", "output"]
    merged = at_zero.merge(stored, on=key, suffixes=("_net", "_layer"))
    assert len(merged) == len(stored) == len(at_zero)
    np.testing.assert_allclose(merged["coefficient_net"], merged["coefficient_layer"], atol=1e-10)
    assert (local["order"] <= 2).all() and len(local) == len(at_zero)


def test_group_effects_of_a_planted_polynomial():
    x = torch.randn(200, 2, 2, dtype=D64)
    net = TaylorNet(2, 2, n_outputs=1, channels=[], quadratic="full", norm="none").double()
    _fit_lbfgs(net, x, _planted_y(x)[:, None])
    groups = {0: "coarse", 1: "coarse", 2: "fine", 3: "fine"}  # flat (c, t) -> channel
    main = group_main_effects(net.terms_table(), groups)
    # planted first-order terms: x0[0] (1.5) in channel 0, x1[1] (-0.8) in channel 1
    assert main["group"].tolist() == ["coarse", "fine"]
    np.testing.assert_allclose(main["effect"], [1.5, 0.8], atol=1e-6)
    inter = group_interactions(net.terms_table(), groups, absolute=False)
    got = {(a, b): s for a, b, s in inter[["group_a", "group_b", "strength"]].values}
    assert got[("coarse", "fine")] == pytest.approx(-2.0 + 1.1, abs=1e-6)
    assert got[("fine", "fine")] == pytest.approx(0.7, abs=1e-6)
    assert got[("coarse", "coarse")] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="no group"):
        group_main_effects(net.terms_table(), {0: "a"})
    shared = TaylorNet(1, 4, n_outputs=1, channels=[2]).terms_table(levels=[1])
    with pytest.raises(ValueError, match="expand_shared"):
        group_main_effects(shared, ["a"] * 4)


# -- contextual decomposition ---------------------------------------------------------------
def test_cd_product_rule_hand_computed():
    layer = TaylorLayer(1, 1, spatial=2, quadratic="full").double()
    with torch.no_grad():
        layer.bias.fill_(0.5)
        layer.linear.copy_(torch.tensor([[[2.0, -1.0]]]))
        layer.quad.copy_(torch.tensor([[[1.0, 3.0, -2.0]]]))  # p0^2, p0 p1, p1^2
    rel = torch.tensor([[[1.0, 2.0]]], dtype=D64)
    irrel = torch.tensor([[[0.5, -1.0]]], dtype=D64)
    with torch.no_grad():
        r, i = layer.contextual_decomposition(rel, irrel)
    # rel' = 2*1 - 1*2 + 1*1 + 3*1*2 - 2*2*2 = -1 (terms of rel alone, no bias)
    # irrel' = 0.5 + (2*0.5 - 1*(-1)) + 1*(1.5^2 - 1) + 3*(1.5*1 - 2) - 2*(1 - 4) = 8.25
    assert float(r) == pytest.approx(-1.0, abs=1e-12)
    assert float(i) == pytest.approx(8.25, abs=1e-12)

    lowrank = TaylorLayer(1, 1, spatial=2, rank=1).double()
    with torch.no_grad():
        lowrank.linear.zero_()
        lowrank.factors[0].copy_(torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]]))  # u = e0, v = e1
        lowrank.mixing[0].fill_(1.0)
    with torch.no_grad():
        r, i = lowrank.contextual_decomposition(
            torch.tensor([[[2.0, 3.0]]], dtype=D64), torch.tensor([[[1.0, 1.0]]], dtype=D64)
        )
    # (a0 + c0)(a1 + c1): rel' = a0 a1 = 6; irrel' = a0 c1 + c0 a1 + c0 c1 = 2 + 3 + 1 = 6
    assert (float(r), float(i)) == pytest.approx((6.0, 6.0), abs=1e-12)


def test_cd_bias_split_by_magnitude_hand_computed():
    layer = TaylorLayer(1, 1, spatial=2, order=1, cd_bias="magnitude").double()
    with torch.no_grad():
        layer.bias.fill_(4.0)
        layer.linear.copy_(torch.tensor([[[1.0, 1.0]]]))
    x_rel = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[2.0, 0.0]]], dtype=D64)
    x_irrel = torch.tensor([[[0.0, 3.0]], [[0.0, 0.0]], [[0.0, 0.0]]], dtype=D64)
    with torch.no_grad():
        r, i = layer.contextual_decomposition(x_rel, x_irrel)
    # sample 0: terms 1 | 3, bias 4 split 1:3; sample 1: a tie, bias irrelevant;
    # sample 2: nothing irrelevant, bias relevant
    assert r.flatten().tolist() == [2.0, 0.0, 6.0]
    assert i.flatten().tolist() == [6.0, 4.0, 0.0]


def test_cd_standardisation_hand_computed():
    norm = Standardize("layer", eps=0.0).double()
    r, i = norm.contextual_decomposition(
        torch.tensor([[1.0, 3.0]], dtype=D64), torch.tensor([[0.0, 2.0]], dtype=D64)
    )
    # x = (1, 5): mean 3, sd 2 frozen; centring split by linearity (means 2 and 1)
    torch.testing.assert_close(r, torch.tensor([[-0.5, 0.5]], dtype=D64))
    torch.testing.assert_close(i, torch.tensor([[-0.5, 0.5]], dtype=D64))


@pytest.mark.parametrize(
    ("size", "kwargs"),
    [
        (16, {"order": 3}),
        (12, {"quadratic": "full", "shared": False, "pad": True}),
        ((8, 8), {"norm": "position", "channels": 3}),
        ((4, 8), {"channels": [3, 3], "order": 3, "quadratic": "full", "readout_order": 3}),
        ((8, 8), {"cd_bias": "magnitude", "shared": False}),
    ],
)
def test_cd_conserves_the_output(size, kwargs):
    size_t = (size,) if isinstance(size, int) else size
    net = TaylorNet(2, size, n_outputs=3, **{"channels": 4, **kwargs}).double()
    for p in net.parameters():
        if p.dim() == 2:  # biases: make them matter
            torch.nn.init.normal_(p)
    x = torch.randn(6, 2, *size_t, dtype=D64)
    mask = (torch.rand_like(x) < 0.4).to(D64)
    rel, irrel = net.contextual_decomposition(mask * x, (1 - mask) * x)
    assert (rel + irrel - net(x)).abs().max() < 1e-10
    assert rel.abs().max() > 1e-3 and irrel.abs().max() > 1e-3
    empty_rel, rest = net.contextual_decomposition(torch.zeros_like(x), x)
    assert empty_rel.abs().max() == 0
    torch.testing.assert_close(rest, net(x), atol=1e-10, rtol=0)
    if kwargs.get("cd_bias") == "magnitude":
        everything, nothing = net.contextual_decomposition(x, torch.zeros_like(x))
        assert nothing.abs().max() == 0
        torch.testing.assert_close(everything, net(x), atol=1e-10, rtol=0)


def test_cd_without_biases_or_norm_gives_everything_to_rel():
    net = TaylorNet(1, 8, n_outputs=2, channels=3, norm="none", order=3).double()
    x = torch.randn(4, 1, 8, dtype=D64)
    rel, irrel = net.contextual_decomposition(x, torch.zeros_like(x))
    assert irrel.abs().max() < 1e-12
    torch.testing.assert_close(rel, net(x))


@pytest.mark.parametrize("cd_bias", ["irrelevant", "magnitude"])
def test_cd_engine_uses_the_taylornet_rules(cd_bias):
    interpret = pytest.importorskip("shared.interpret")
    net = TaylorNet(1, (4, 4), n_outputs=2, channels=3, order=3, cd_bias=cd_bias)
    net = net.double().eval()
    for p in net.parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p)
    model = torch.nn.Sequential(net, torch.nn.ReLU(), torch.nn.Linear(2, 1)).double().eval()
    x = torch.randn(3, 1, 4, 4, dtype=D64)
    mask = (torch.rand_like(x) < 0.5).to(D64)
    with torch.no_grad():
        rel, irrel = interpret.contextual_decomposition(net, mask * x, (1 - mask) * x)
        own = net.contextual_decomposition(mask * x, (1 - mask) * x)
        torch.testing.assert_close((rel, irrel), own)
        rel, irrel = interpret.contextual_decomposition(model, mask * x, (1 - mask) * x)
        assert (rel + irrel - model(x)).abs().max() < 1e-10


def test_cd_is_differentiable():
    net = TaylorNet(1, 8, n_outputs=1, channels=2)
    x = torch.randn(3, 1, 8)
    rel, _ = net.contextual_decomposition(x * (torch.arange(8) < 4), x * (torch.arange(8) >= 4))
    rel.sum().backward()
    assert net.readout.linear.grad is not None


# -- training and data distillation ---------------------------------------------------------
def _bars(n, seed):
    """Three well-separated 8x8 classes: a horizontal, a vertical and a diagonal bar."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.zeros(3, 8, 8)
    base[0, 3:5, :] = 1
    base[1, :, 3:5] = 1
    base[2] = torch.eye(8) + torch.eye(8).roll(1, 0)
    y = torch.arange(n) % 3
    x = base[y][:, None] + 0.2 * torch.randn(n, 1, 8, 8, generator=gen)
    return x, y


def test_fit_is_reproducible():
    x, y = _bars(30, 0)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        net = TaylorNet(1, (8, 8), n_outputs=3, channels=2)
        runs.append(fit_taylornet(net, x, y, epochs=3, batch_size=8, seed=5))
    assert runs[0] == runs[1] and runs[0][-1] < runs[0][0]


def test_references_classify_well_separated_classes():
    x, y = _bars(60, 0)
    x_test, y_test = _bars(60, 1)
    net = TaylorNet(1, (8, 8), n_outputs=3, channels=4)
    fit_taylornet(net, x, y, epochs=15, batch_size=16, lr=0.02)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    refs = TaylorReferences(net, steps=60).fit(x, y)
    for k, v in net.state_dict().items():  # the network stayed frozen
        torch.testing.assert_close(v, before[k])
    assert all(p.requires_grad for p in net.parameters())
    assert refs.levels == [1, 2, 3]
    for level in refs.levels:
        assert refs.references(level).shape == (3, 1, 8, 8)
        assert refs.score(x_test, y_test, level) == 1.0, level
    # the level-1 reference of each class is nearest to its own class-mean input
    means = torch.stack([x[y == c].mean(0) for c in range(3)]).flatten(1)
    dist = torch.cdist(torch.as_tensor(refs.references(1)).flatten(1), means)
    assert dist.argmin(1).tolist() == [0, 1, 2]
    # labels of any kind, returned in the caller's vocabulary
    names = np.array(["vertical", "horizontal", "diagonal"])
    named = TaylorReferences(net, levels=[2], steps=20).fit(x, names[y.numpy()])
    assert named.classes_.tolist() == ["diagonal", "horizontal", "vertical"]
    assert (named.predict(x_test) == names[y_test.numpy()]).all()


def test_plot_references_1d_and_2d():
    x, y = _bars(12, 0)
    refs = TaylorReferences(TaylorNet(1, (8, 8), 3, channels=2), steps=2).fit(x, y)
    fig = plot_references(refs, class_names=["h", "v", "d"])
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["h", "v", "d"] and fig.axes[0].get_ylabel() == "level 1"
    x1 = torch.randn(8, 2, 8)
    refs1 = TaylorReferences(TaylorNet(2, 8, 2, channels=2), levels=[2], steps=2).fit(
        x1, np.arange(8) % 2
    )
    fig1 = plot_references(refs1)
    assert len(fig1.axes) == 2 and len(fig1.axes[0].lines) == 2
    with pytest.raises(ValueError, match="not distilled"):
        refs1.references(1)
