"""Wavelet plots shared by the domain reports and the figures.

Every function draws on a given (or new) matplotlib ``Axes`` and returns it; none trains
or loads anything, so figures stay pure functions of saved results.
"""

from __future__ import annotations

import io
from base64 import b64encode
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from shared.wavelet import LearnableWavelet

__all__ = ["figure_to_base64", "plot_attribution_by_band", "plot_grid_heatmap", "plot_wavelet"]


def plot_wavelet(
    wavelet: LearnableWavelet,
    reference: str | None = "db5",
    *,
    level: int = 6,
    axes: Sequence[Axes] | None = None,
    label: str = "learned",
) -> Sequence[Axes]:
    """Scaling function phi and wavelet psi of ``wavelet``, with a pywt reference.

    Parameters
    ----------
    wavelet : LearnableWavelet
        The (learned) wavelet.
    reference : str, optional
        A pywt orthogonal wavelet drawn dashed for comparison; ``None`` for none.
    level : int
        Cascade refinement level.
    axes : pair of Axes, optional
        Where to draw phi and psi; a new 1x2 figure by default.
    label : str
        Legend label of the learned wavelet.

    Examples
    --------
    >>> axes = plot_wavelet(LearnableWavelet("db5", noise=0.05, seed=0))
    >>> [a.get_title() for a in axes]
    ['scaling function φ', 'wavelet ψ']
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 3))
    phi, psi, x = (t.detach().cpu().numpy() for t in wavelet.wavefun(level))
    curves = [(phi, psi, x, label, "-")]
    if reference is not None:
        ref = LearnableWavelet(reference)
        r_phi, r_psi, r_x = (t.detach().numpy() for t in ref.wavefun(level))
        curves.append((r_phi, r_psi, r_x, reference, "--"))
    for ph, ps, grid, name, style in curves:
        axes[0].plot(grid, ph, style, label=name)
        axes[1].plot(grid, ps, style, label=name)
    axes[0].set_title("scaling function φ")
    axes[1].set_title("wavelet ψ")
    for ax in axes:
        ax.set_xlabel("t")
        ax.legend(frameon=False, fontsize="small")
    return axes


def plot_attribution_by_band(
    shares: dict[str, float], *, ax: Axes | None = None, title: str = "attribution share"
) -> Axes:
    """Bar chart of the share of attribution mass per band (e.g. ``{"cA4": 0.1, ...}``).

    Examples
    --------
    >>> ax = plot_attribution_by_band({"cA2": 0.2, "cD2": 0.5, "cD1": 0.3})
    >>> len(ax.patches)
    3
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    names = list(shares)
    ax.bar(range(len(names)), [shares[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=45)
    ax.set_ylabel("share of |attribution|")
    ax.set_ylim(0, max(1e-12, max(shares.values())) * 1.15)
    ax.set_title(title)
    return ax


def plot_grid_heatmap(
    ax: Axes,
    lambdas: Sequence[float],
    gammas: Sequence[float],
    scores: Sequence[float],
    *,
    higher_is_better: bool = True,
    best: tuple[float, float] | None = None,
    label: str = "validation score",
    annotate: bool = True,
):
    """A lambda x gamma heatmap of one score per grid point; returns the colour bar.

    The better end of the scale is always yellow; ``best`` (lambda, gamma) is starred and
    each cell prints its score when ``annotate``.

    Examples
    --------
    >>> fig, ax = plt.subplots()
    >>> bar = plot_grid_heatmap(ax, [0.1, 0.1, 1.0], [0.0, 1.0, 0.0], [0.5, 0.7, 0.6])
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['0.1', '1']
    >>> plt.close(fig)
    """
    import numpy as np

    lams, gams = sorted(set(lambdas)), sorted(set(gammas))
    grid = np.full((len(lams), len(gams)), np.nan)
    for lam, gam, score in zip(lambdas, gammas, scores, strict=True):
        grid[lams.index(lam), gams.index(gam)] = score
    image = ax.imshow(grid, cmap="viridis" if higher_is_better else "viridis_r", aspect="auto")
    if annotate:
        for i, j in zip(*np.nonzero(np.isfinite(grid)), strict=True):
            # White on the dark half of the colour map, black on the light half.
            shade = float(np.asarray(image.norm(grid[i : i + 1, j])).item())
            dark = shade < 0.5 if higher_is_better else shade > 0.5
            ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=6,
                    color="w" if dark else "k")  # fmt: skip
    if best is not None:
        ax.plot(gams.index(best[1]), lams.index(best[0]), "r*", markersize=12)
    ax.set_xticks(range(len(gams)), [f"{g:.3g}" for g in gams], rotation=45)
    ax.set_yticks(range(len(lams)), [f"{v:.3g}" for v in lams])
    ax.set_xlabel("γ (attribution penalty)")
    ax.set_ylabel("λ (sparsity penalty)")
    return ax.figure.colorbar(image, ax=ax, label=label)


def figure_to_base64(fig: Figure, dpi: int = 100) -> str:
    """PNG of a figure as a base64 string, for self-contained HTML reports.

    Examples
    --------
    >>> fig, _ = plt.subplots()
    >>> figure_to_base64(fig)[:8]
    'iVBORw0K'
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return b64encode(buffer.getvalue()).decode("ascii")
