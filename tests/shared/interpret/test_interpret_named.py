"""Groups named in settings: parsing, the parts they select, CD and the penalty on them."""

import pytest
import torch
from torch import nn

from shared.attributions import FourierBands2d
from shared.config import record_settings
from shared.distill import DistillConfig
from shared.interpret import NamedGroups, cdep_penalty, check_group_names, trim_cd
from shared.interpret.named import parse_group_name

D = torch.float64


def _checkerboard(n):
    i = torch.arange(n)
    return ((-1.0) ** (i[:, None] + i[None, :])).to(D)


@pytest.mark.parametrize(
    ("names", "dims", "message"),
    [
        (["level0"], 2, "unknown name"),
        (["wavelet1"], 2, "unknown name"),
        (["f0.5-0.2"], 2, "lo < hi"),
        (["t8-8"], 1, "empty"),
        (["t0-8"], 2, "does not apply to maps"),
        (["f0-0.2"], 1, "does not apply to traces"),
        (["cH1"], 1, "cA<j> and cD<j>"),
        (["level1", "level1"], 2, "named twice"),
    ],
)
def test_bad_names_are_refused_naming_them(names, dims, message):
    with pytest.raises(ValueError, match=message):
        check_group_names(names, dims)


def test_names_parse_to_their_numbers():
    assert parse_group_name("level3", 2).level == 3
    spec = parse_group_name("f.25-0.5", 2)
    assert (spec.kind, spec.lo, spec.hi) == ("fourier", 0.25, 0.5)
    spec = parse_group_name("t30-38", 1)
    assert (spec.kind, spec.lo, spec.hi) == ("window", 30, 38)


def test_parts_are_the_selected_content_and_sum_to_the_input():
    x = torch.randn(3, 1, 16, 16, dtype=D)
    board = _checkerboard(16)[None, None].expand(3, 1, 16, 16)
    named = NamedGroups(["level1", "cD1", "cA2", "f0.4-0.71"], dims=2, wavelet="haar")
    parts = named(board)
    # A pixel-scale checkerboard is all in Haar level 1 (its diagonal band) and in the
    # outer Fourier annulus, and none of it is in the approximation.
    torch.testing.assert_close(parts[0], board)
    torch.testing.assert_close(parts[1], board)
    torch.testing.assert_close(parts[2], torch.zeros_like(board), atol=1e-12, rtol=0)
    torch.testing.assert_close(parts[3], board)
    parts = named(x)
    torch.testing.assert_close(named.inverse(parts), x)
    bands = FourierBands2d(3, [0.0, 0.4, 0.71, 0.75])
    torch.testing.assert_close(parts[3], bands(x)[1])


def test_time_window_part_is_the_masked_trace():
    x = torch.randn(4, 1, 40, dtype=D)
    part = NamedGroups(["t30-38"], dims=1)(x)[0]
    expected = torch.zeros_like(x)
    expected[..., 30:38] = x[..., 30:38]
    torch.testing.assert_close(part, expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match="40 samples"):
        NamedGroups(["t30-48"], dims=1)(x)


def test_cd_of_named_groups_is_conserved_and_the_penalty_trains():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2))
    net = net.double().eval()
    x = torch.randn(5, 1, 40, dtype=D)
    named = NamedGroups(["t0-10", "cD1", "cA3"], dims=1, wavelet="db2")
    res = trim_cd(net, x, named, named.groups)
    assert res.names == ["t0-10", "cD1", "cA3"]
    out = net(x).detach()
    for g in range(3):
        torch.testing.assert_close(res.rel[g] + res.irrel[g], out, atol=1e-10, rtol=0)
    value = cdep_penalty(net, x, named.groups, transform=named)
    torch.testing.assert_close(value.detach(), res.rel.detach().abs().mean())
    value.backward()
    assert float(net[0].weight.grad.abs().sum()) > 0


def test_record_settings_leaves_out_inert_fields():
    rec = record_settings(DistillConfig(), {"seed": lambda c: c.seed == 0})
    assert "seed" not in rec and rec["epochs"] == DistillConfig().epochs
    assert "seed" in record_settings(DistillConfig(seed=3), {"seed": lambda c: c.seed == 0})
