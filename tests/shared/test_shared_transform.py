"""DWT1d / DWT2d against pywt, and their algebraic and differential properties."""

import warnings

import numpy as np
import pytest
import pywt
import torch

from shared import DWT1d, DWT2d, LearnableWavelet
from shared.transform import MODES, analysis_matrix, coeff_len, max_levels

PARITY_WAVELETS = (
    ["haar"]
    + [f"db{k}" for k in range(2, 11)]
    + [f"sym{k}" for k in range(4, 9)]
    + [f"coif{k}" for k in range(1, 4)]
)


@pytest.fixture(params=["default", "blocked"])
def engine(request, monkeypatch):
    """Run a test on the default plan and with block-banded products forced on small sizes."""
    import shared.transform as transform_module

    if request.param == "blocked":
        monkeypatch.setattr(transform_module, "_BLOCK_ROWS", 4)
        monkeypatch.setattr(transform_module, "_BLOCKED_MIN_COLS", 8)
        monkeypatch.setattr(transform_module, "_PLAN_CACHE", {})
    return request.param


def _pywt_levels(n: int, name: str) -> range:
    """1 .. the largest level pywt takes without a boundary warning (at least 1)."""
    return range(1, max(pywt.dwt_max_level(n, pywt.Wavelet(name).dec_len), 1) + 1)


def _f64(name, levels, mode, cls):
    return cls(LearnableWavelet(name, dtype=torch.float64), levels=levels, mode=mode)


def _max_err(ours, ref) -> float:
    if isinstance(ref, (list, tuple)):
        return max(_max_err(o, r) for o, r in zip(ours, ref, strict=True))
    return float(np.abs(ours.detach().numpy() - ref).max())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", PARITY_WAVELETS)
def test_1d_matches_pywt(name, mode):
    rng = np.random.default_rng(1)
    for n in (64, 67, 130):
        x = rng.standard_normal((2, 3, n))
        for levels in _pywt_levels(n, name):
            dwt = _f64(name, levels, mode, DWT1d)
            coeffs = dwt(torch.from_numpy(x))
            ref = pywt.wavedec(x, name, mode=mode, level=levels, axis=-1)
            assert [c.shape[-1] for c in coeffs] == [r.shape[-1] for r in ref]
            assert _max_err(coeffs, ref) < 1e-10, (n, levels)
            rec = dwt.inverse(coeffs, size=n)
            assert rec.shape == x.shape
            assert _max_err(rec, x) < 1e-10
            ref_rec = pywt.waverec(ref, name, mode=mode, axis=-1)[..., :n]
            assert _max_err(rec, ref_rec) < 1e-10


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", PARITY_WAVELETS)
def test_2d_matches_pywt(name, mode, engine):
    rng = np.random.default_rng(2)
    for shape in ((48, 48), (45, 51)):
        x = rng.standard_normal((2, 2, *shape))
        for levels in _pywt_levels(min(shape), name):
            dwt = _f64(name, levels, mode, DWT2d)
            coeffs = dwt(torch.from_numpy(x))
            ref = pywt.wavedec2(x, name, mode=mode, level=levels, axes=(-2, -1))
            assert coeffs[0].shape == ref[0].shape
            assert _max_err(coeffs[0], ref[0]) < 1e-10
            for ours, theirs in zip(coeffs[1:], ref[1:], strict=True):
                assert _max_err(list(ours), list(theirs)) < 1e-10, (shape, levels)
            rec = dwt.inverse(coeffs, size=shape)
            assert rec.shape == x.shape
            assert _max_err(rec, x) < 1e-10


def test_paper_setting_beyond_pywt_max_level():
    """db5, J=4 on length-40 traces (the AWD biology setting) still equals pywt."""
    x = np.random.default_rng(3).standard_normal((5, 1, 40))
    dwt = _f64("db5", 4, "zero", DWT1d)
    coeffs = dwt(torch.from_numpy(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pywt.wavedec(x, "db5", mode="zero", level=4, axis=-1)
    assert [c.shape[-1] for c in coeffs] == [10, 10, 12, 16, 24]
    assert _max_err(coeffs, ref) < 1e-10
    assert _max_err(dwt.inverse(coeffs), x) < 1e-10


@pytest.mark.parametrize("mode", MODES)
def test_perfect_reconstruction_long_signal(mode):
    x2 = torch.randn(2, 1, 203, 190, dtype=torch.float64)
    dwt2 = _f64("db4", 3, mode, DWT2d)
    assert torch.allclose(dwt2.inverse(dwt2(x2), size=x2.shape[-2:]), x2, atol=1e-10)
    """Long 1D signals use per-level products rather than one composed matrix."""
    x = torch.randn(3, 1, 1031, dtype=torch.float64)
    dwt = _f64("sym6", 5, mode, DWT1d)
    assert torch.allclose(dwt.inverse(dwt(x), size=x.shape[2:]), x, atol=1e-10)


def test_inverse_is_stateless():
    """The same coefficients reconstruct to the same size whatever the transform saw before."""
    dwt = _f64("db4", 3, "zero", DWT1d)
    coeffs = dwt(torch.randn(1, 1, 40, dtype=torch.float64))
    fresh = dwt.inverse(coeffs).shape[-1]
    dwt(torch.randn(1, 1, 39, dtype=torch.float64))  # an odd input with the same layout
    assert dwt.inverse(coeffs).shape[-1] == fresh == 40
    odd = dwt(torch.randn(1, 1, 39, dtype=torch.float64))
    assert dwt.inverse(odd).shape[-1] == 40  # pywt's even length, as pywt.waverec gives
    assert dwt.inverse(odd, size=39).shape[-1] == 39
    dwt2 = _f64("db2", 2, "periodization", DWT2d)
    c2 = dwt2(torch.randn(1, 1, 39, 40, dtype=torch.float64))
    assert tuple(dwt2.inverse(c2).shape[-2:]) == (40, 40)
    assert tuple(dwt2.inverse(c2, size=(39, 40)).shape[-2:]) == (39, 40)


def _random_filter(length=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(length, dtype=torch.float64, generator=g)


def _inner(a, b) -> torch.Tensor:
    return sum((u * v).sum() for u, v in zip(_flat(a), _flat(b), strict=True))


def _flat(coeffs):
    out = []
    for c in coeffs:
        out.extend(c if isinstance(c, tuple) else [c])
    return out


@pytest.mark.parametrize("mode", ["zero", "periodization"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inverse_is_adjoint_for_any_filter_1d(mode, seed):
    # Every level of 48 = 16 * 3 has even length, as periodization adjointness needs.
    n = 48 if mode == "periodization" else 47
    dwt = DWT1d(_random_filter(8, seed), levels=3, mode=mode)
    assert abs(dwt.h0.sum().item() - 2**0.5) > 1e-3  # not a wavelet filter
    x = torch.randn(2, 1, n, dtype=torch.float64)
    y = [torch.randn_like(c) for c in dwt(x)]
    lhs = _inner(dwt(x), y)
    rhs = (x * dwt.inverse(y, size=n)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("mode", ["zero", "periodization"])
def test_inverse_is_adjoint_for_any_filter_2d(mode, engine):
    shape = (32, 48) if mode == "periodization" else (31, 36)
    dwt = DWT2d(_random_filter(6, 5), levels=2, mode=mode)
    x = torch.randn(2, 1, *shape, dtype=torch.float64)
    coeffs = dwt(x)
    y = [torch.randn_like(coeffs[0])] + [tuple(torch.randn_like(c) for c in b) for b in coeffs[1:]]
    lhs = _inner(coeffs, y)
    rhs = (x * dwt.inverse(y, size=shape)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-10)


def test_symmetric_inverse_is_not_the_adjoint():
    """The adjoint property is specific to zero/periodization (the test can tell)."""
    dwt = DWT1d(_random_filter(8, 0), levels=2, mode="symmetric")
    x = torch.randn(2, 1, 40, dtype=torch.float64)
    y = [torch.randn_like(c) for c in dwt(x)]
    assert not torch.allclose(_inner(dwt(x), y), (x * dwt.inverse(y, size=40)).sum())


class _RoundTrip(torch.nn.Module):
    def __init__(self, dwt):
        super().__init__()
        self.dwt = dwt

    def forward(self, x):
        return self.dwt.inverse(self.dwt(x))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls,shape", [(DWT1d, (2, 1, 13)), (DWT2d, (1, 1, 9, 10))])
def test_gradcheck_filter_and_input(cls, shape, mode, engine):
    """First and second derivatives w.r.t. h0 and x, through forward and inverse."""
    if cls is DWT1d and engine == "blocked":
        pytest.skip("block-banded products are a 2D path")
    dwt = cls("db2", levels=2, mode=mode)
    round_trip = _RoundTrip(dwt)
    # Off the orthogonal manifold, so no identity hides a wrong derivative.
    h0 = (dwt.h0.detach() + 0.05).requires_grad_()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    def of_coefficients(h, inp):
        coeffs = torch.func.functional_call(dwt, {"wavelet.h0": h}, (inp,))
        return sum((c**2 + c.sin()).sum() for c in _flat(coeffs))

    def of_reconstruction(h, inp):
        rec = torch.func.functional_call(round_trip, {"dwt.wavelet.h0": h}, (inp,))
        return (rec**3).sum()

    for fn in (of_coefficients, of_reconstruction):
        assert torch.autograd.gradcheck(fn, (h0, x))
        # Second derivatives through random projections keep this check fast.
        assert torch.autograd.gradgradcheck(fn, (h0, x), fast_mode=True)


def test_gradients_reach_the_parameter():
    dwt = DWT2d("db3", levels=2, mode="zero")
    x = torch.randn(2, 1, 20, 20)
    coeffs = dwt(x)
    loss = ((dwt.inverse(coeffs) - x) ** 2).sum() + sum(c.abs().sum() for c in _flat(coeffs))
    loss.backward()
    assert dwt.h0.grad is not None and torch.isfinite(dwt.h0.grad).all()
    assert dwt.h0.grad.abs().sum() > 0


def test_float32_input_gives_float32_coefficients():
    dwt = DWT1d("db4", levels=3)
    x = torch.randn(4, 2, 50)
    coeffs = dwt(x)
    assert all(c.dtype == torch.float32 for c in coeffs)
    assert torch.allclose(dwt.inverse(coeffs), x, atol=1e-5)


def test_analysis_matrix_rows_are_orthonormal_in_periodization():
    h0 = torch.tensor(pywt.Wavelet("sym5").rec_lo, dtype=torch.float64)
    a = analysis_matrix(h0, 32, "periodization")
    assert torch.allclose(a @ a.T, torch.eye(32, dtype=torch.float64), atol=1e-12)


def test_coeff_len_and_max_levels_agree_with_pywt():
    for n in (7, 40, 41, 256):
        for name in ("haar", "db5", "coif2"):
            length = pywt.Wavelet(name).dec_len
            for mode in MODES:
                assert coeff_len(n, length, mode) == pywt.dwt_coeff_len(n, length, mode)
        assert max_levels(n) >= pywt.dwt_max_level(n, 2)


def test_transform_shares_a_given_wavelet():
    wavelet = LearnableWavelet("db2")
    one, two = DWT1d(wavelet, levels=2), DWT2d(wavelet, levels=2)
    assert one.h0 is two.h0 is wavelet.h0
    assert [name for name, _ in one.named_parameters()] == ["wavelet.h0"]


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_cuda_matches_cpu(mode, engine):
    x = torch.randn(3, 1, 37, 42, dtype=torch.float64)
    dwt = _f64("db4", 3, mode, DWT2d)
    cpu = dwt(x)
    gpu = dwt.to("cuda")(x.to("cuda"))
    assert _max_err(_flat(gpu)[0].cpu(), _flat(cpu)[0].numpy()) < 1e-12
    for a, b in zip(_flat(cpu), _flat(gpu), strict=True):
        assert torch.allclose(a, b.cpu(), atol=1e-12)
    assert torch.allclose(dwt.inverse(gpu).cpu(), x, atol=1e-10)
    one = _f64("db4", 3, mode, DWT1d)
    x1 = torch.randn(4, 2, 53, dtype=torch.float64)
    for a, b in zip(one(x1), one.to("cuda")(x1.cuda()), strict=True):
        assert torch.allclose(a, b.cpu(), atol=1e-12)


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"wavelet": "nope"}, "unknown wavelet"),
        ({"wavelet": "bior2.2"}, "not orthogonal"),
        ({"wavelet": [0.5, 0.5, 0.1]}, "even"),
        ({"wavelet": "db2", "mode": "smooth"}, "accepted modes are zero, periodization"),
        ({"wavelet": "db2", "levels": 0}, "positive integer"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DWT1d(**kwargs)


def test_bad_inputs():
    dwt = DWT1d("db2", levels=3)
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        dwt(torch.randn(4, 40))
    with pytest.raises(ValueError, match="NaN or inf"):
        x = torch.randn(1, 1, 40)
        x[0, 0, 3] = float("nan")
        dwt(x)
    with pytest.raises(ValueError, match="NaN or inf"):
        dwt(torch.full((1, 1, 40), float("inf")))
    with pytest.raises(ValueError, match=r"levels=3 is too many .* at most 2"):
        dwt(torch.randn(1, 1, 7))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        DWT2d("db2", levels=1)(torch.randn(1, 8, 8))
    with pytest.raises(ValueError, match="height"):
        DWT2d("db2", levels=4)(torch.randn(1, 1, 8, 64))
    with pytest.raises(ValueError, match="expected 4 coefficient arrays"):
        dwt.inverse([torch.randn(1, 1, 5)])
