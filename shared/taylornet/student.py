"""A TaylorNet predictor on feature vectors: the students of both domains, and their terms.

PROVISIONAL design (``reference/seed_systems.md`` §4.4; see the package docstring).

:class:`TaylorNetPredictor` reads a feature vector laid out as ``(channels, positions)``,
in the layout of the wavelet students' features: one channel per wavelet band (``cA4``,
``cD4``, ... in pywt's order) and, along the positions, that band's statistic (the bins of
a histogram, the ranked top-k values). The first coarse-graining level therefore mixes
every band at two neighbouring positions, the next ones widen the positions, and the
readout sees the whole vector. Inputs are standardised with training means and SDs
(targets too, for a regression); a binary outcome is one logit trained with the logistic
loss. It follows scikit-learn's ``fit`` / ``predict`` / ``predict_proba`` and
:class:`shared.students.Savable`: the net is saved as its constructor settings and its
state-dict tensors, and rebuilt from them.

:func:`band_terms` expands the whole fitted net to second order around training items
(:func:`shared.taylornet.local_taylor_table`, coefficients per training SD of each input)
and sums the terms by band: the main effects of the scales and the interactions between
pairs of scales.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(64, 6))
>>> y = X[:, 0] * X[:, 4] + X[:, 1]
>>> model = TaylorNetPredictor((3, 2), channels=4, epochs=40, lr=0.02).fit(X, y)
>>> model.predict(X).shape, model.n_parameters() > 0
((64,), True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import torch
import torch.nn.functional as F
from torch import Tensor

from shared.evaluation import bootstrap_sd
from shared.students import Savable
from shared.taylornet.net import NormMode, QuadraticForm, TaylorNet
from shared.taylornet.references import TaylorReferences
from shared.taylornet.terms import group_interactions, group_main_effects, local_taylor_table

__all__ = [
    "PROVISIONAL",
    "Task",
    "TaylorNetPredictor",
    "band_terms",
    "distil_classes",
    "terms_rows",
    "write_taylornet_files",
]

#: What every file written from these students says about the design.
PROVISIONAL = (
    "PROVISIONAL design after the abstract of arXiv 2211.01779 (the paper's full text was "
    "not available): the layers, normalisation and distillation objective are this "
    "package's design (shared.taylornet), not the paper's."
)

Task = Literal["regression", "binary"]

# Settings that rebuild the predictor (the constructor's keyword arguments).
_SETTINGS = (
    "layout",
    "n_outputs",
    "task",
    "channels",
    "order",
    "quadratic",
    "rank",
    "shared",
    "norm",
    "readout_order",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "seed",
)
_FITTED = ("x_mean_", "x_scale_", "y_mean_", "y_scale_", "y_ndim_", "history_")


class TaylorNetPredictor(Savable):
    """A :class:`~shared.taylornet.TaylorNet` over features laid out as ``(C, L)``.

    Parameters
    ----------
    layout : (int, int)
        ``(channels, positions)`` of the feature vector, in C order (``C * L`` features:
        channel 0's ``L`` values, then channel 1's ...). Positions are zero-padded at the
        end to the next power of two; the net coarse-grains them down to one.
    n_outputs : int, default 1
        Regression outputs (``binary``: 1, the logit).
    task : {"regression", "binary"}
        Mean squared error on standardised targets, or the logistic loss on 0/1 labels.
    channels : int, default 4
        Channels of every coarse-graining level.
    order, quadratic, rank, shared, norm, readout_order
        Of the :class:`~shared.taylornet.TaylorNet`.
    epochs, batch_size, lr, weight_decay, seed
        Adam with a cosine decay of the learning rate; the seed fixes the initial
        coefficients and the shuffles (the global torch generator is left untouched).

    Examples
    --------
    >>> X = np.random.default_rng(1).normal(size=(80, 4))
    >>> y = (X[:, 0] * X[:, 3] > 0).astype(int)
    >>> clf = TaylorNetPredictor((2, 2), task="binary", epochs=60, lr=0.05).fit(X, y)
    >>> clf.predict_proba(X).shape, float(np.mean(clf.predict(X) == y)) > 0.8
    ((80, 2), True)
    """

    def __init__(
        self,
        layout: Sequence[int],
        n_outputs: int = 1,
        *,
        task: Task = "regression",
        channels: int = 4,
        order: int = 2,
        quadratic: QuadraticForm = "lowrank",
        rank: int | None = None,
        shared: bool = True,
        norm: NormMode = "layer",
        readout_order: int = 2,
        epochs: int = 60,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        if task not in ("regression", "binary"):
            raise ValueError(f"task must be 'regression' or 'binary', got {task!r}")
        if len(layout) != 2 or min(layout) < 1:
            raise ValueError(f"layout must be (channels, positions) >= 1, got {tuple(layout)}")
        if task == "binary" and n_outputs != 1:
            raise ValueError("a binary predictor has one output, the logit")
        self.layout = (int(layout[0]), int(layout[1]))
        self.n_outputs = int(n_outputs)
        self.task: Task = task
        self.channels = int(channels)
        self.order = int(order)
        self.quadratic: QuadraticForm = quadratic
        self.rank = rank
        self.shared = bool(shared)
        self.norm: NormMode = norm
        self.readout_order = int(readout_order)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.seed = int(seed)
        self.net_: TaylorNet | None = None

    # -- the network --------------------------------------------------------------------
    def build(self) -> TaylorNet:
        """A fresh, float64 net of these settings (initial coefficients from ``seed``)."""
        n_levels = max(1, math.ceil(math.log2(self.layout[1])))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = TaylorNet(
                self.layout[0],
                self.layout[1],
                self.n_outputs,
                channels=[self.channels] * n_levels,
                order=self.order,
                quadratic=self.quadratic,
                rank=self.rank,
                shared=self.shared,
                norm=self.norm,
                readout_order=self.readout_order,
                pad=True,
            )
        return net.double()

    @property
    def net(self) -> TaylorNet:
        """The fitted net (eval mode)."""
        if self.net_ is None:
            raise RuntimeError("the TaylorNet predictor is not fitted; call fit() first")
        return self.net_

    def inputs(self, X: np.ndarray) -> Tensor:
        """Standardised features ``(N, C, L)`` float64, the net's input."""
        X = np.asarray(X, dtype=np.float64)
        n_feat = self.layout[0] * self.layout[1]
        if X.ndim != 2 or X.shape[1] != n_feat:
            raise ValueError(
                f"the TaylorNet predictor expects (N, {n_feat}) features "
                f"({self.layout[0]} x {self.layout[1]}), got {X.shape}"
            )
        z = (X - self.x_mean_) / self.x_scale_
        return torch.from_numpy(z).reshape(len(z), *self.layout)

    # -- fit / predict ------------------------------------------------------------------
    def _targets(self, y: np.ndarray) -> Tensor:
        y = np.asarray(y, dtype=np.float64)
        self.y_ndim_ = int(y.ndim)
        y2 = y.reshape(len(y), -1)
        if y2.shape[1] != self.n_outputs:
            raise ValueError(f"{y2.shape[1]} targets for a net of {self.n_outputs} outputs")
        if self.task == "binary":
            if not np.isin(y2, (0.0, 1.0)).all():
                raise ValueError("a binary TaylorNet needs 0/1 labels")
            self.y_mean_, self.y_scale_ = np.zeros(1), np.ones(1)
        else:
            self.y_mean_ = y2.mean(0)
            sd = y2.std(0)
            self.y_scale_ = np.where(sd > 0, sd, 1.0)
        return torch.from_numpy((y2 - self.y_mean_) / self.y_scale_)

    def fit(self, X: np.ndarray, y: np.ndarray) -> TaylorNetPredictor:
        """Standardise, build the net and train it on features ``X`` ``(N, C * L)``."""
        X = np.asarray(X, dtype=np.float64)
        if not np.all(np.isfinite(X)):
            raise ValueError("the TaylorNet predictor's features contain NaN or infinity")
        self.x_mean_ = X.mean(0)
        sd = X.std(0)
        self.x_scale_ = np.where(sd > 0, sd, 1.0)
        x, t = self.inputs(X), self._targets(y)
        net = self.build()
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = self.epochs * math.ceil(len(x) / self.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
        gen = torch.Generator().manual_seed(self.seed)
        history: list[float] = []
        net.train()
        for _ in range(self.epochs):
            order, total = torch.randperm(len(x), generator=gen), 0.0
            for start in range(0, len(x), self.batch_size):
                idx = order[start : start + self.batch_size]
                out = net(x[idx])
                if self.task == "binary":
                    loss = F.binary_cross_entropy_with_logits(out, t[idx])
                else:
                    loss = F.mse_loss(out, t[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(x))
            if not math.isfinite(history[-1]):
                raise ValueError("the TaylorNet's training loss is not finite; lower the lr")
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.net_ = net
        self.history_ = np.asarray(history)
        return self

    @torch.no_grad()
    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The net's outputs in target units (the logit for ``binary``), ``(N, n_outputs)``."""
        out = self.net(self.inputs(X)).numpy()
        return out * self.y_scale_ + self.y_mean_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Regression: predictions shaped like the training targets; binary: 0/1 labels."""
        out = self.decision_function(X)
        if self.task == "binary":
            return (out[:, 0] > 0).astype(int)
        return out[:, 0] if self.y_ndim_ == 1 else out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(N, 2)`` probabilities of classes 0 and 1 (binary only)."""
        if self.task != "binary":
            raise AttributeError("predict_proba is for a binary TaylorNet")
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)[:, 0]))
        return np.stack([1.0 - p, p], axis=1)

    def n_parameters(self) -> int:
        """Coefficients of the net plus the stored means and SDs of inputs and targets."""
        scales = 2 * (self.layout[0] * self.layout[1]) + 2 * self.n_outputs
        return int(self.net.n_parameters + scales)

    # -- saving -------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Constructor settings, the standardisation and the net's state-dict tensors."""
        state: dict[str, Any] = {k: getattr(self, k) for k in _SETTINGS}
        state["layout"] = list(self.layout)
        state.update({k: getattr(self, k) for k in _FITTED})
        state["net_state"] = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TaylorNetPredictor:
        """Rebuild the predictor: the net from its settings, then its saved tensors."""
        obj = cls(**{k: state[k] for k in _SETTINGS})
        for k in _FITTED:
            setattr(obj, k, state[k])
        net = obj.build()
        net.load_state_dict({k: torch.as_tensor(v) for k, v in state["net_state"].items()})
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        obj.net_ = net
        return obj


def band_terms(
    model: TaylorNetPredictor,
    X: np.ndarray,
    bands: Sequence[str],
    outputs: Sequence[str],
    *,
    n_points: int = 32,
    n_largest: int = 10,
    feature_names: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Main effects of the bands and interactions between pairs of bands, per output.

    The fitted net is expanded to second order around ``n_points`` items of ``X`` (drawn
    with ``seed``) and the coefficients averaged
    (:func:`~shared.taylornet.local_taylor_table`); they are per training SD of each input
    feature and in standardised target units (the logit for a binary net). First-order
    terms are summed by the band (channel) of their feature (``|coefficient|``), second-
    order terms by the unordered pair of bands of their two features.

    Parameters
    ----------
    model : TaylorNetPredictor
        Fitted; its layout's channels are the bands.
    X : ndarray
        Features ``(N, C * L)`` to expand around (training items).
    bands : sequence of str
        The name of every channel (pywt vocabulary, ``cA4``, ``cD4`` ...).
    outputs : sequence of str
        The name of every output.
    n_points, n_largest : int
        Items to expand around; single terms listed per order and output.
    feature_names : sequence of str, optional
        Names of the ``C * L`` features for the single terms (default ``band[position]``).

    Returns
    -------
    dict
        ``{output: {"main_effects": [...], "interactions": [...], "largest_terms": [...]}}``
        with records ``{"band", "effect", "n_terms", "per_term"}`` (largest ``effect``
        first), ``{"band_a", "band_b", "strength", "n_terms", "per_term"}`` (strongest
        first; a pair of distinct bands has more terms than a band with itself, so
        ``per_term`` compares pairs evenly) and ``{"order", "inputs", "coefficient"}``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 4))
    >>> y = 2 * X[:, 2] + X[:, 0] * X[:, 3]
    >>> model = TaylorNetPredictor((2, 2), epochs=60, lr=0.02).fit(X, y)
    >>> terms = band_terms(model, X, ["cA1", "cD1"], ["y"], n_points=8)
    >>> terms["y"]["main_effects"][0]["band"]
    'cD1'
    """
    n_ch, n_pos = model.layout
    if len(bands) != n_ch:
        raise ValueError(f"{len(bands)} band names for {n_ch} channels")
    if len(outputs) != model.n_outputs:
        raise ValueError(f"{len(outputs)} output names for {model.n_outputs} outputs")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(X), size=min(n_points, len(X)), replace=False))
    groups = [b for b in bands for _ in range(n_pos)]
    names = (
        list(feature_names)
        if feature_names is not None
        else [f"{b}[{i}]" for b in bands for i in range(n_pos)]
    )
    with torch.enable_grad():
        table = local_taylor_table(model.net, model.inputs(np.asarray(X)[pick]))
    out: dict[str, Any] = {}
    for j, name in enumerate(outputs):
        main = group_main_effects(table, groups, output=j)
        inter = group_interactions(table, groups, output=j)
        rows = table[(table["output"] == j) & (table["order"] > 0)]
        largest = rows.loc[rows["coefficient"].abs().sort_values(ascending=False).index]
        single = [
            {
                "order": int(r.order),
                "inputs": "*".join(names[i] for i in r.input_index),
                "coefficient": float(r.coefficient),
            }
            for r in largest.groupby("order", sort=True).head(n_largest).itertuples()
        ]
        main = main.rename(columns={"group": "band"})
        main["per_term"] = main["effect"] / main["n_terms"]
        inter = inter.rename(columns={"group_a": "band_a", "group_b": "band_b"})
        inter["per_term"] = inter["strength"] / inter["n_terms"]
        out[name] = {
            "main_effects": _records(main),
            "interactions": _records(inter),
            "largest_terms": single,
        }
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def terms_rows(record: Mapping[str, Any], **keys: Any) -> list[dict[str, Any]]:
    """One output's :func:`band_terms` as flat rows (``kind``: ``main`` or ``interaction``).

    Columns: ``keys`` (e.g. method and target), then ``kind``, ``band_a``, ``band_b``
    (empty for a main effect), ``value`` (the sum), ``n_terms`` and ``per_term``.

    Examples
    --------
    >>> rec = {"main_effects": [{"band": "cD1", "effect": 2.0, "n_terms": 3}],
    ...        "interactions": [{"band_a": "cA1", "band_b": "cD1", "strength": 1.0,
    ...                          "n_terms": 9}]}
    >>> [r["kind"] for r in terms_rows(rec, method="m")]
    ['main', 'interaction']
    """
    rows = [
        {**keys, "kind": "main", "band_a": r["band"], "band_b": "", "value": r["effect"],
         "n_terms": r["n_terms"], "per_term": r["effect"] / r["n_terms"]}
        for r in record["main_effects"]
    ]  # fmt: skip
    rows += [
        {**keys, "kind": "interaction", "band_a": r["band_a"], "band_b": r["band_b"],
         "value": r["strength"], "n_terms": r["n_terms"],
         "per_term": r["strength"] / r["n_terms"]}
        for r in record["interactions"]
    ]  # fmt: skip
    return rows


def write_taylornet_files(
    out: Any,
    terms: Sequence[Mapping[str, Any]],
    refs: Sequence[Mapping[str, Any]],
    arrays: Mapping[str, np.ndarray],
    *,
    expansion: str,
    layout: str,
    keys: Sequence[str],
) -> None:
    """Write an evaluation's TaylorNet terms and class references.

    ``taylornet_terms.json`` (the records, with ``expansion`` saying what the numbers
    are) and ``.csv`` (:func:`terms_rows`, keyed by the record fields ``keys``);
    ``taylornet_references.json`` (with ``layout`` saying how the arrays are laid out) and
    ``.npz`` (``arrays``) when there are references.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> rec = {"method": "m", "main_effects": [], "interactions": []}
    >>> write_taylornet_files(out, [rec], [], {}, expansion="e", layout="l", keys=["method"])
    >>> sorted(p.name for p in out.iterdir())
    ['taylornet_terms.csv', 'taylornet_terms.json']
    """
    from pathlib import Path

    from shared.runs import atomic_write, write_json, write_npz

    out = Path(out)
    write_json(
        out / "taylornet_terms.json",
        {"provisional": PROVISIONAL, "expansion": expansion, "students": list(terms)},
    )
    rows = [r for t in terms for r in terms_rows(t, **{k: t[k] for k in keys})]
    frame = pd.DataFrame(rows)
    atomic_write(
        out / "taylornet_terms.csv", lambda p: frame.to_csv(p, index=False, float_format="%.6g")
    )
    if not refs:
        return
    write_json(
        out / "taylornet_references.json",
        {"provisional": PROVISIONAL, "arrays": layout, "students": list(refs)},
    )
    write_npz(out / "taylornet_references.npz", arrays)


def _hits(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(p)))


def _scored(y: np.ndarray, pred: np.ndarray, draws: np.ndarray | None) -> dict[str, float]:
    sd = bootstrap_sd(_hits, y, pred, draws) if draws is not None and len(draws) else None
    return {"accuracy": _hits(y, pred), "sd": float("nan") if sd is None else sd}


def distil_classes(
    model: TaylorNetPredictor,
    train: tuple[np.ndarray, np.ndarray],
    select: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    draws: np.ndarray | None = None,
    steps: int = 200,
    lr: float = 0.05,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Class references of a fitted TaylorNet student, scored by nearest reference.

    With the net frozen, one reference input per class and level (``1..K`` and the output,
    ``K + 1``) is learned from the training items (:class:`TaylorReferences`); an item
    takes the class of the reference nearest to it (cosine) in that level's embedding.
    The level is chosen on ``select`` (a validation split, or the training items where
    there is none), and scored once on ``test``, beside two classifiers without the net:
    the most frequent training class (trivial) and the nearest class-mean input.

    Parameters
    ----------
    model : TaylorNetPredictor
        Fitted; its net is not changed.
    train, select, test : (features, labels)
        Features ``(N, C * L)`` as the model reads them, and class labels (any values);
        test items of classes unseen in training count as errors.
    draws : ndarray, optional
        Bootstrap draws of the test items (:func:`shared.evaluation.bootstrap_draws`) for
        the accuracies' SDs.
    steps, lr : int, float
        Adam steps and rate per level.

    Returns
    -------
    record : dict
        ``classes``, ``levels``, per-level ``select`` and ``test`` accuracies,
        ``chosen_level``, ``test`` (accuracy and SD at that level), ``trivial`` and
        ``nearest_class_mean`` (accuracy and SD), ``n_test``, ``input_shape``.
    arrays : dict
        ``level<k>``: the references ``(n_classes, C, L)`` in standardised input units
        (training SDs); ``class_mean``: the class means of the inputs.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 40); X = rng.normal(size=(80, 4)) + 3 * y[:, None]
    >>> model = TaylorNetPredictor((2, 2), task="binary", epochs=20).fit(X, y)
    >>> record, arrays = distil_classes(model, (X, y), (X, y), (X, y), steps=20)
    >>> record["test"]["accuracy"] > 0.9, sorted(arrays)
    (True, ['class_mean', 'level1', 'level2'])
    """
    (x_tr, y_tr), (x_se, y_se), (x_te, y_te) = train, select, test
    net = model.net
    levels = list(range(1, net.n_levels + 2))
    refs = TaylorReferences(net, levels=levels, steps=steps, lr=lr).fit(
        model.inputs(x_tr), np.asarray(y_tr)
    )
    inputs_se, inputs_te = model.inputs(x_se), model.inputs(x_te)
    per_level: dict[str, dict[str, float]] = {}
    for level in levels:
        per_level[f"level{level}"] = {
            "select": _hits(y_se, refs.predict(inputs_se, level)),
            "test": _hits(y_te, refs.predict(inputs_te, level)),
        }
    # Ties go to the lower (less abstract) level: the first maximum.
    chosen = levels[int(np.argmax([per_level[f"level{k}"]["select"] for k in levels]))]
    classes = refs.classes_
    counts = [int(np.sum(np.asarray(y_tr) == c)) for c in classes]
    majority = classes[int(np.argmax(counts))]
    x_mean = torch.stack([model.inputs(x_tr)[np.asarray(y_tr) == c].mean(0) for c in classes])
    sim = F.normalize(inputs_te.flatten(1), dim=1) @ F.normalize(x_mean.flatten(1), dim=1).T
    nearest_mean = classes[sim.argmax(1).numpy()]
    record = {
        "classes": classes.tolist(),
        "n_train_per_class": counts,
        "levels": levels,
        "accuracy_per_level": per_level,
        "chosen_level": chosen,
        "test": _scored(y_te, refs.predict(inputs_te, chosen), draws),
        "trivial": _scored(y_te, np.full(len(y_te), majority), draws),
        "nearest_class_mean": _scored(y_te, nearest_mean, draws),
        "n_test": len(y_te),
        "input_shape": list(refs.references(levels[0]).shape[1:]),
        "steps": steps,
    }
    arrays = {f"level{k}": refs.references(k) for k in levels}
    arrays["class_mean"] = x_mean.numpy()
    return record, arrays
