"""Students: small predictors on features of the (learned) wavelet coefficients.

* the paper's: the top 6 coefficient values (signed, descending) of each of the J+1
  scales, 30 features for J=4, into ordinary least squares;
* beyond: the top-k values *and their positions* per scale into xgboost; a logistic or
  xgboost classifier for the binary outcome;
* baselines: the same features of plain db5, hand features (lifetime, peak amplitude,
  rise time) and the training mean.

Feature extraction is written in torch so that the end-to-end prediction time (transform,
features, predictor) can be measured against the teacher's forward pass on equal terms.
The wavelet transform is linear, so its coefficients are ``x @ M`` with ``M`` the transform
of the unit traces, computed once when the student is built.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from shared import DWT1d
from shared.coeffs import band_names as _band_names
from shared.students import Savable, class_map
from shared.taylornet.student import TaylorNetPredictor

__all__ = [
    "HAND_FEATURES",
    "SHAPE_FEATURES",
    "STUDENT_CLASSES",
    "HandFeatures",
    "LinearHead",
    "TopCoefficients",
    "TraceStudent",
    "band_names",
    "grouped_cv_score",
    "hand_features",
    "make_linear",
    "make_xgboost",
    "shape_ratios",
    "xgboost_grid",
]

logger = logging.getLogger(__name__)

HAND_FEATURES = ("lifetime_s", "peak_amplitude", "rise_time_s")
#: The columns of :func:`shape_ratios`.
SHAPE_FEATURES = ("start_over_peak", "late_over_peak", "end_over_peak", "mean_over_peak")


def band_names(levels: int) -> list[str]:
    """Names of the scales in pywt order.

    Examples
    --------
    >>> band_names(4)
    ['cA4', 'cD4', 'cD3', 'cD2', 'cD1']
    """
    return _band_names(levels, ndim=1)


class TopCoefficients(Savable):
    """Top-k coefficient values (optionally their positions) per scale of a 1D transform.

    Parameters
    ----------
    transform : DWT1d
        The wavelet transform (learned or not); it is not changed.
    k : int, default 6
        Values kept per scale (the paper's 6).
    positions : bool, default False
        Also return where each value sits in its band, as a fraction of the band length.
    length : int, default 40
        Trace length.

    Examples
    --------
    >>> feats = TopCoefficients(DWT1d("db5", 4, "zero"), k=6)
    >>> feats(np.zeros((3, 40))).shape, feats.feature_names[:2]
    ((3, 30), ['cA4_top1', 'cA4_top2'])
    """

    def __init__(
        self, transform: DWT1d, k: int = 6, positions: bool = False, length: int = 40
    ) -> None:
        with torch.no_grad():
            eye = torch.eye(length, dtype=torch.float64)[:, None, :]
            coeffs = _coefficients(transform, eye)
        self.sizes = [int(c.shape[-1]) for c in coeffs]
        self.matrix = torch.cat([c[:, 0, :] for c in coeffs], dim=1).to(torch.float32)
        # The bands side by side, each padded to the longest with -inf, so that one topk
        # call serves all scales (per-call overhead dominates at this size).
        width = max(self.sizes)
        padded = torch.zeros(length, len(self.sizes), width, dtype=torch.float32)
        fill = torch.full((len(self.sizes), width), -torch.inf)
        for j, band in enumerate(self.matrix.split(self.sizes, dim=1)):
            padded[:, j, : band.shape[1]] = band
            fill[j, : band.shape[1]] = 0.0
        self._padded = padded.reshape(length, -1)
        self._fill = fill.reshape(-1)
        self._width = width
        self._padded_np = self._padded.numpy()
        self._fill_np = self._fill.numpy()
        self._sizes_np = np.asarray(self.sizes, dtype=np.float32)[:, None]
        if k > min(self.sizes):
            raise ValueError(
                f"top_k={k} is more than the shortest band holds ({min(self.sizes)} "
                f"coefficients of {self.sizes})"
            )
        self.k = k
        self.positions = positions
        self.length = length
        self.levels = len(coeffs) - 1
        self.bands = band_names(self.levels)
        self.transform = transform

    def get_state(self) -> dict:
        """The constructor's arguments: the rest is computed from the wavelet."""
        return {
            "transform": self.transform,
            "k": self.k,
            "positions": self.positions,
            "length": self.length,
        }

    @classmethod
    def from_state(cls, state: dict) -> TopCoefficients:
        return cls(**state)

    @property
    def feature_names(self) -> list[str]:
        """Names saying scale and rank (``cD2_top3``) or position (``cD2_pos3``)."""
        names = [f"{b}_top{i + 1}" for b in self.bands for i in range(self.k)]
        if self.positions:
            names += [f"{b}_pos{i + 1}" for b in self.bands for i in range(self.k)]
        return names

    @property
    def feature_bands(self) -> list[str]:
        """The scale of every feature."""
        return [n.split("_")[0] for n in self.feature_names]

    def coefficients(self, x: Tensor) -> list[Tensor]:
        """Coefficients ``[cA_J, cD_J, ..., cD_1]`` of traces ``(N, L)``."""
        if x.shape[-1] != self.length:
            raise ValueError(f"traces must have length {self.length}, got {x.shape[-1]}")
        return list((x @ self.matrix).split(self.sizes, dim=1))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Features of traces ``(N, L)``, ``(N, n_features)``.

        Plain numpy on purpose: at this size torch's per-call overhead and its CPU
        ``topk`` cost more than the arithmetic, and this is the timed prediction path.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[-1] != self.length:
            raise ValueError(f"traces must be (N, {self.length}), got {x.shape}")
        n, k = x.shape[0], self.k
        bands = (x @ self._padded_np + self._fill_np).reshape(n, -1, self._width)
        if not self.positions:
            bands.sort(axis=-1)
            return bands[..., : -k - 1 : -1].reshape(n, -1)
        order = np.argsort(bands, axis=-1)[..., : -k - 1 : -1]
        values = np.take_along_axis(bands, order, axis=-1).reshape(n, -1)
        return np.concatenate([values, (order / self._sizes_np).reshape(n, -1)], axis=1)


def _coefficients(transform: DWT1d, eye: Tensor) -> list[Tensor]:
    h0 = transform.wavelet.h0.detach().to(torch.float64)
    plain = DWT1d(h0, levels=transform.levels, mode=transform.mode)
    return [c.to(torch.float64) for c in plain(eye.to(plain.wavelet.h0.dtype))]


@dataclass
class LinearHead(Savable):
    """A fitted linear predictor as plain numbers: ``link(features @ weight + bias)``.

    Built from scikit-learn's ``LinearRegression``, ``LogisticRegression`` or a
    ``StandardScaler`` + ``LogisticRegression`` pipeline (the scaler is folded in).

    Examples
    --------
    >>> X = np.arange(10.0)[:, None]; ols = LinearRegression().fit(X, 2 * X[:, 0] + 1)
    >>> head = LinearHead.from_sklearn(ols)
    >>> float(head.predict(np.array([[3.0]]))[0])
    7.0
    """

    weight: np.ndarray
    bias: float
    link: str = "identity"

    @classmethod
    def from_sklearn(cls, model) -> LinearHead:
        mean, scale = None, None
        if isinstance(model, Pipeline):
            scaler, model = model.steps[0][1], model.steps[-1][1]
            mean, scale = scaler.mean_, scaler.scale_
        w = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
        b = float(np.asarray(model.intercept_).reshape(-1)[0])
        if mean is not None:
            b -= float(np.sum(w * mean / scale))
            w = w / scale
        link = "logistic" if isinstance(model, LogisticRegression) else "identity"
        return cls(w, b, link)

    @property
    def n_parameters(self) -> int:
        """Weights plus the intercept."""
        return int(self.weight.size + 1)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions (probabilities for a logistic head), in float64."""
        out = np.asarray(features, dtype=np.float64) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-out)) if self.link == "logistic" else out


def make_linear(kind: str) -> LinearRegression | Pipeline:
    """OLS for ``regression`` (the paper's), standardised logistic regression for ``binary``.

    Examples
    --------
    >>> type(make_linear("regression")).__name__
    'LinearRegression'
    """
    if kind == "regression":
        return LinearRegression()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def make_xgboost(kind: str, n_estimators: int, max_depth: int, lr: float, seed: int):
    """An xgboost regressor or classifier (single-threaded, seeded).

    Examples
    --------
    >>> make_xgboost("binary", 10, 2, 0.1, 0).n_estimators
    10
    """
    import xgboost as xgb

    cls = xgb.XGBRegressor if kind == "regression" else xgb.XGBClassifier
    return cls(
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=lr,
        subsample=0.8,
        colsample_bytree=0.8,
        n_jobs=1,
        random_state=seed,
        tree_method="hist",
    )


def grouped_cv_score(
    make_model: Callable[[], object],
    features: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    kind: str,
    folds: int = 5,
) -> float:
    """Mean R^2 (regression) or AUC (binary) over folds grouped by cell.

    Folds never split a cell, so the score is what a new cell would see. Folds whose
    held-out part has one class only (AUC undefined) are skipped.

    Examples
    --------
    >>> rng = np.random.default_rng(0); X = rng.standard_normal((60, 2))
    >>> y = X[:, 0] + 0.1 * rng.standard_normal(60); g = np.repeat(np.arange(6), 10)
    >>> grouped_cv_score(LinearRegression, X, y, g, "regression") > 0.9
    True
    """
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(
            f"cross-validation grouped by cell needs at least 2 training cells, got {n_groups}"
        )
    scores = []
    for train, test in GroupKFold(n_splits=min(folds, n_groups)).split(features, y, groups):
        model = make_model()
        model.fit(features[train], y[train])
        if kind == "regression":
            scores.append(r2_score(y[test], model.predict(features[test])))
        elif len(np.unique(y[test])) == 2 and len(np.unique(y[train])) == 2:
            scores.append(roc_auc_score(y[test], model.predict_proba(features[test])[:, 1]))
    if not scores:
        warnings.warn("no cross-validation fold had both classes; score is NaN", stacklevel=2)
        return float("nan")
    return float(np.mean(scores))


def xgboost_grid(
    features: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    kind: str,
    *,
    estimators: tuple[int, ...],
    depths: tuple[int, ...],
    learning_rate: float,
    seed: int,
    folds: int = 5,
) -> tuple[dict, list[dict]]:
    """Choose xgboost's size and depth by cross-validation grouped by cell.

    Every ``(n_estimators, max_depth)`` of the grid is scored with
    :func:`grouped_cv_score`; the first best finite score wins (grid order), and without
    any finite score the first size at depth 2 is returned.

    Returns
    -------
    best : dict
        ``n_estimators``, ``max_depth`` and ``cv_score`` of the choice.
    scores : list of dict
        The same three keys for every grid point, in grid order.

    Examples
    --------
    >>> rng = np.random.default_rng(0); X = rng.standard_normal((60, 2))
    >>> y = np.abs(X[:, 0]); g = np.repeat(np.arange(6), 10)
    >>> best, scores = xgboost_grid(X, y, g, "regression", estimators=(20,), depths=(2, 3),
    ...                             learning_rate=0.1, seed=0, folds=3)
    >>> len(scores), best["max_depth"] in (2, 3)
    (2, True)
    """
    scores = []
    best: dict = {"n_estimators": estimators[0], "max_depth": 2, "cv_score": -np.inf}
    for n_est in estimators:
        for depth in depths:

            def mk(n_est=n_est, depth=depth):
                return make_xgboost(kind, n_est, depth, learning_rate, seed)

            score = grouped_cv_score(mk, features, y, groups, kind, folds)
            scores.append({"n_estimators": n_est, "max_depth": depth, "cv_score": score})
            if np.isfinite(score) and score > best["cv_score"]:
                best = scores[-1]
    return dict(best), scores


def hand_features(table: pd.DataFrame) -> pd.DataFrame:
    """Lifetime, peak clathrin amplitude and rise time (start to peak) of each track.

    Needs the columns ``lifetime_s`` and ``X`` (the raw clathrin amplitudes).

    Examples
    --------
    >>> t = pd.DataFrame({"lifetime_s": [4.0], "X": [np.array([1.0, 5.0, 3.0, 0.0])]})
    >>> hand_features(t).iloc[0].tolist()
    [4.0, 5.0, 1.0]
    """
    missing = [c for c in ("lifetime_s", "X") if c not in table.columns]
    if missing:
        raise ValueError(f"hand features need the column(s) {missing} (raw tracks)")
    peak, rise = [], []
    for x, life in zip(table["X"], table["lifetime_s"], strict=True):
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0 or not np.isfinite(x).any():
            peak.append(np.nan)
            rise.append(np.nan)
            continue
        i = int(np.nanargmax(x))
        peak.append(float(x[i]))
        rise.append(i * float(life) / len(x))  # frames -> seconds
    return pd.DataFrame(
        {
            "lifetime_s": table["lifetime_s"].to_numpy(dtype=np.float64),
            "peak_amplitude": peak,
            "rise_time_s": rise,
        },
        index=table.index,
    )


def shape_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """How each raw clathrin track begins and ends, relative to its peak.

    The mean of the first 3 frames, of frames -6 to -4, of the last 3 frames and of the
    whole track, each divided by the track's peak: an abrupt end at scission (productive
    pits) against a fade (most stalled and abortive pits). Tracks too short for a window
    use what they have; a track without a positive finite peak gives NaN.

    Examples
    --------
    >>> t = pd.DataFrame({"X": [np.array([1.0, 2.0, 4.0, 4.0, 2.0, 1.0, 0.0])]})
    >>> [round(v, 3) for v in shape_ratios(t).iloc[0]]
    [0.583, 0.833, 0.25, 0.5]
    """
    if "X" not in table.columns:
        raise ValueError("shape ratios need the column 'X' (raw tracks)")
    rows = []
    for x in table["X"]:
        x = np.asarray(x, dtype=np.float64)
        peak = np.nanmax(x) if x.size and np.isfinite(x).any() else np.nan
        if not np.isfinite(peak) or peak <= 0:
            rows.append([np.nan] * 4)
            continue
        late = x[-6:-3] if x.size >= 6 else x[: max(1, x.size - 3)]
        rows.append([np.nanmean(w) / peak for w in (x[:3], late, x[-3:], x)])
    return pd.DataFrame(rows, columns=list(SHAPE_FEATURES), index=table.index)


class HandFeatures(Savable):
    """Lifetime, peak amplitude and rise time of the raw tracks, missing values filled
    with the training medians (the hand-feature baseline); with ``shape=True`` also the
    four :func:`shape_ratios` (how each track begins and ends against its peak).

    Examples
    --------
    >>> t = pd.DataFrame({"lifetime_s": [4.0, 6.0], "X": [np.array([1.0, 5.0]), np.ones(3)]})
    >>> HandFeatures().fit(t)(t).shape
    (2, 3)
    >>> HandFeatures(shape=True).fit(t)(t).shape
    (2, 7)
    """

    def __init__(self, shape: bool = False) -> None:
        self.shape = shape

    @property
    def feature_names(self) -> tuple[str, ...]:
        return HAND_FEATURES + (SHAPE_FEATURES if getattr(self, "shape", False) else ())

    def _table(self, table: pd.DataFrame) -> np.ndarray:
        parts = [hand_features(table)]
        # Students saved before the shape option have no such attribute: three features.
        if getattr(self, "shape", False):
            parts.append(shape_ratios(table))
        return pd.concat(parts, axis=1).to_numpy(dtype=np.float64)

    def fit(self, table: pd.DataFrame) -> HandFeatures:
        self.medians_ = np.nanmedian(self._table(table), axis=0)
        return self

    def __call__(self, table: pd.DataFrame) -> np.ndarray:
        values = self._table(table)
        return np.where(np.isnan(values), self.medians_, values)


class ConstantPredictor(Savable):
    """The trivial student: the training mean whatever the trace.

    Examples
    --------
    >>> ConstantPredictor().fit(None, np.array([1.0, 3.0])).predict(np.zeros((2, 1)))
    array([2., 2.])
    """

    def fit(self, X, y: np.ndarray) -> ConstantPredictor:
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X) -> np.ndarray:
        return np.full(len(X), self.mean_)

    def predict_proba(self, X) -> np.ndarray:
        p = self.predict(X)
        return np.stack([1 - p, p], axis=1)


class TraceStudent(Savable):
    """A fitted student of one outcome: features of the tracks and a predictor.

    ``predict(table)`` takes tracks in the AWD layout (a data set, or
    :func:`molecular_partner.data.prepare_tracks` output) and returns the predicted
    outcome: a value for ``regression``, a probability for ``binary``.

    Parameters
    ----------
    features : TopCoefficients or HandFeatures
        Trace features (``TopCoefficients`` reads ``X_same_length_normalized``;
        ``HandFeatures`` the raw ``X`` and ``lifetime_s``).
    model : estimator
        Fitted scikit-learn or xgboost model (``predict`` / ``predict_proba``).
    method, outcome : str
        The method's name in ``metrics.csv`` and the outcome it predicts.
    n_parameters : int
        Numbers the student stores to predict (filter taps + predictor).

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal((30, 40)).astype(np.float32)
    >>> t = pd.DataFrame({"X_same_length_normalized": list(x)})
    >>> feats = TopCoefficients(DWT1d("db5", 4, "zero"), k=6)
    >>> model = make_linear("regression").fit(feats(x), x[:, 0])
    >>> TraceStudent(feats, model, "db5", "regression", 31).predict(t).shape
    (30,)
    """

    def __init__(self, features, model, method: str, outcome: str, n_parameters: int) -> None:
        self.features = features
        self.model = model
        self.method = method
        self.outcome = outcome
        self.n_parameters_ = int(n_parameters)

    def feature_matrix(self, table: pd.DataFrame) -> np.ndarray:
        """The features of the tracks in ``table``."""
        if self.features is None:
            return np.zeros((len(table), 0))
        if isinstance(self.features, TopCoefficients):
            x = np.stack(table["X_same_length_normalized"].to_list()).astype(np.float32)
            return self.features(x)
        return self.features(table)

    def predict_features(self, f: np.ndarray) -> np.ndarray:
        """Predictions from precomputed features."""
        if isinstance(self.model, LinearHead):
            return self.model.predict(f)
        if self.outcome == "regression":
            return np.asarray(self.model.predict(f), dtype=np.float64)
        return np.asarray(self.model.predict_proba(f)[:, 1], dtype=np.float64)

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Predicted outcome of every track of ``table`` (AWD layout)."""
        return self.predict_features(self.feature_matrix(table))

    def n_parameters(self) -> int:
        """Numbers the student stores to predict."""
        return self.n_parameters_


#: The classes a saved molecular-partner student may contain.
STUDENT_CLASSES = class_map(
    TopCoefficients, HandFeatures, ConstantPredictor, LinearHead, TraceStudent, TaylorNetPredictor
)
