"""Multi-level data distillation: per-class reference inputs, one set per level.

PROVISIONAL design (``reference/seed_systems.md`` §4.4; the paper's objective is unknown):

1. the trained network is frozen;
2. for each level ``k`` and class ``c`` the centroid ``m_kc`` of the class's level-k
   embeddings is computed on the training data;
3. a reference input ``r_kc`` is optimised (Adam) so that its level-k embedding is as close
   as possible to the class's embeddings: minimising the mean squared distance
   ``mean_i ||e_k(r) - e_k(x_i)||^2`` is minimising ``||e_k(r) - m_kc||^2`` (the two differ
   by a constant), plus ``prior * ||r - mean_c(x)||^2`` that keeps it near the data;
   level 1 starts from the class-mean input, level ``k`` from the level ``k - 1`` reference,
   so the data set is abstracted level by level;
4. a new input is classified by the reference whose level-k embedding is nearest, by cosine
   similarity (default) or Euclidean distance. After ``norm="layer"`` every embedding has
   the same norm, and the two rank the references identically.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from shared.taylornet.net import TaylorNet

__all__ = ["TaylorReferences", "plot_references"]

logger = logging.getLogger(__name__)


class TaylorReferences:
    """Per-class, per-level reference inputs of a frozen :class:`TaylorNet`.

    Parameters
    ----------
    net : TaylorNet
        A trained network; it is not modified (its parameters are not optimised).
    levels : sequence of int, optional
        Levels to distil, ``1..K`` (coarse-graining levels) or ``K + 1`` (the output);
        default ``1..K`` (or ``[1]`` for a net without coarse-graining).
    metric : {"cosine", "l2"}, default "cosine"
        Similarity used to classify.
    steps : int, default 300
        Adam steps per level.
    lr : float, default 0.05
        Adam learning rate.
    prior : float, default 1e-3
        Weight of ``||r - class mean input||^2`` (per element) against the embedding
        distance (per element).
    batch_size : int, default 512
        Batch size for the embeddings of the data.

    Attributes
    ----------
    classes_ : ndarray
        Sorted class labels.

    Examples
    --------
    >>> import torch
    >>> from shared.taylornet import TaylorNet
    >>> _ = torch.manual_seed(0)
    >>> patterns = torch.tensor([[1.0, 1, 1, 1, -1, -1, -1, -1], [1.0, -1, 1, -1, 1, -1, 1, -1]])
    >>> y = torch.arange(40) % 2
    >>> x = patterns[y][:, None] + 0.3 * torch.randn(40, 1, 8)
    >>> refs = TaylorReferences(TaylorNet(1, 8, 2, channels=4), levels=[1], steps=20)
    >>> refs.fit(x, y).references(1).shape, refs.score(x, y)
    ((2, 1, 8), 1.0)
    """

    def __init__(
        self,
        net: TaylorNet,
        *,
        levels: Sequence[int] | None = None,
        metric: Literal["cosine", "l2"] = "cosine",
        steps: int = 300,
        lr: float = 0.05,
        prior: float = 1e-3,
        batch_size: int = 512,
    ) -> None:
        if metric not in ("cosine", "l2"):
            raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")
        self.net = net
        default = list(range(1, net.n_levels + 1)) or [1]
        self.levels = list(default if levels is None else levels)
        for level in self.levels:
            if not 1 <= level <= net.n_levels + 1:
                raise ValueError(f"levels must be in 1..{net.n_levels + 1}, got {level}")
        self.metric, self.steps, self.lr, self.prior = metric, steps, lr, prior
        self.batch_size = batch_size
        self.classes_: np.ndarray = np.array([])
        self._refs: dict[int, Tensor] = {}
        self._ref_emb: dict[int, Tensor] = {}
        self.history: dict[int, list[float]] = {}

    @torch.no_grad()
    def _embed(self, x: Tensor, level: int) -> Tensor:
        parts = [
            self.net.embed(x[i : i + self.batch_size], level).flatten(1)
            for i in range(0, len(x), self.batch_size)
        ]
        return torch.cat(parts)

    def _optimise(self, start: Tensor, target: Tensor, anchor: Tensor, level: int) -> Tensor:
        ref = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([ref], lr=self.lr)
        losses = []
        for _ in range(self.steps):
            emb = self.net.embed(ref, level).flatten(1)
            loss = ((emb - target) ** 2).mean(1).sum() + self.prior * ((ref - anchor) ** 2).flatten(
                1
            ).mean(1).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        self.history[level] = losses
        logger.debug("level %d: reference loss %.4g -> %.4g", level, losses[0], losses[-1])
        return ref.detach()

    def fit(self, x: Tensor, y: Tensor | np.ndarray) -> TaylorReferences:
        """Learn the references of every level from inputs ``x`` and labels ``y``."""
        labels = np.asarray(y)
        self.classes_ = np.unique(labels)
        members = [torch.as_tensor(labels == c) for c in self.classes_]
        anchor = torch.stack([x[m].mean(0) for m in members])
        was_training = self.net.training
        flags = [p.requires_grad for p in self.net.parameters()]
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        try:
            start = anchor
            for level in sorted(self.levels):
                emb = self._embed(x, level)
                target = torch.stack([emb[m].mean(0) for m in members])
                start = self._optimise(start, target, anchor, level)
                self._refs[level] = start
                self._ref_emb[level] = self._embed(start, level)
        finally:
            for p, flag in zip(self.net.parameters(), flags, strict=True):
                p.requires_grad_(flag)
            self.net.train(was_training)
        return self

    def _check(self, level: int | None) -> int:
        if not self._refs:
            raise RuntimeError("call fit() first")
        level = max(self._refs) if level is None else level
        if level not in self._refs:
            raise ValueError(f"level {level} was not distilled; levels: {sorted(self._refs)}")
        return level

    def references(self, level: int) -> np.ndarray:
        """Reference inputs of ``level``, ``(n_classes, C, *S)``, in ``classes_`` order."""
        return self._refs[self._check(level)].cpu().numpy()

    def reference_embeddings(self, level: int) -> np.ndarray:
        """The level's embeddings of its references, flattened: ``(n_classes, C_k * prod(S_k))``."""
        return self._ref_emb[self._check(level)].cpu().numpy()

    def similarity(self, x: Tensor, level: int | None = None) -> Tensor:
        """``(N, n_classes)`` cosine similarity, or minus the Euclidean distance (``l2``)."""
        level = self._check(level)
        emb, ref = self._embed(x, level), self._ref_emb[level].to(x)
        if self.metric == "cosine":
            return F.normalize(emb, dim=1) @ F.normalize(ref, dim=1).T
        return -torch.cdist(emb, ref)

    def predict(self, x: Tensor, level: int | None = None) -> np.ndarray:
        """Label of the most similar reference (default level: the highest distilled)."""
        return self.classes_[self.similarity(x, level).argmax(1).cpu().numpy()]

    def score(self, x: Tensor, y: Tensor | np.ndarray, level: int | None = None) -> float:
        """Accuracy of :meth:`predict`."""
        return float(np.mean(self.predict(x, level) == np.asarray(y)))


def plot_references(
    refs: TaylorReferences,
    *,
    levels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    fig: Figure | None = None,
    title: str = "Class references per coarse-graining level",
) -> Figure:
    """Draw the reference inputs: one row per level, one column per class.

    2D inputs are drawn as images (first channel; one colour scale per row), 1D inputs as
    one line per channel. Works without pyplot (``matplotlib.figure.Figure``).

    Examples
    --------
    >>> import torch
    >>> from shared.taylornet import TaylorNet
    >>> x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2] * 2)
    >>> refs = TaylorReferences(TaylorNet(1, (4, 4), 3, channels=2), steps=2).fit(x, y)
    >>> fig = plot_references(refs)  # 2 levels x 3 classes, a colour bar per level
    >>> len(fig.axes)
    8
    """
    from matplotlib.figure import Figure

    levels = sorted(refs._refs) if levels is None else list(levels)
    names = [str(c) for c in refs.classes_] if class_names is None else list(class_names)
    n_cls = len(names)
    if fig is None:
        fig = Figure(figsize=(1.1 * n_cls + 1.2, 1.2 * len(levels) + 0.6), layout="constrained")
    axes = fig.subplots(len(levels), n_cls, squeeze=False)
    for row, level in zip(axes, levels, strict=True):
        data = refs.references(level)
        for j, (ax, ref) in enumerate(zip(row, data, strict=True)):
            if ref.ndim == 3:
                lim = float(np.abs(data[:, 0]).max()) or 1.0
                image = ax.imshow(ref[0], cmap="RdBu_r", vmin=-lim, vmax=lim)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                ax.plot(ref.T, lw=1)
                ax.set_xticks([])
                ax.tick_params(labelsize=6)
            if level == levels[0]:
                ax.set_title(names[j])
            if j == 0:
                ax.set_ylabel(f"level {level}")
        if data.ndim == 4:
            fig.colorbar(image, ax=list(row), shrink=0.8, label="input value")
    fig.suptitle(title)
    return fig
