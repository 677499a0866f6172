"""The cosmology report's words: which scales a student reads, and the opening answer."""

from __future__ import annotations

import pandas as pd

from cosmology.evaluate import _pairs
from cosmology.report import _answer, _student_scales

PARAMS = ("omega_m", "sigma_8")


def _metrics(values: dict[str, float]) -> pd.DataFrame:
    rows = [
        {
            "method": m,
            "target": p,
            "metric": "rmse",
            "value": v * (1 + j),
            "sd": 0.001,
            "n_test": 100,
            "seconds_per_item": 1e-4,
            "n_parameters": 10,
        }
        for m, v in values.items()
        for j, p in enumerate(PARAMS)
    ]
    return pd.DataFrame(rows)


def _data(with_baseline_row: bool) -> dict:
    methods = {
        "teacher": 0.015,
        "awd_taylornet": 0.016,
        "db5_taylornet": 0.017,
        "scattering_xgboost": 0.014,
        "raw_peaks": 0.023,
        "trivial": 0.058,
    }
    pairs = _pairs(list(methods), "awd_taylornet" if with_baseline_row else None)
    comparisons = pd.DataFrame(
        [
            {"a": a, "b": b, "target": p, "metric": "rmse", "diff": -0.01, "sd": 0.001}
            for a, b in pairs
            for p in PARAMS
        ]
    )
    selection = {"n_test": 100, "default_student": "awd_taylornet"}
    return {
        "metrics": _metrics(methods),
        "comparisons": comparisons,
        "selection": selection,
        "interp": {},
    }


def test_the_taylornet_student_reads_every_level():
    words = _student_scales("awd_taylornet", 1.64, 4)
    assert "reads every level" in words
    assert "finest scale" in _student_scales("awd", 1.64, 4)
    assert "no wavelet scale" in _student_scales("scattering_xgboost", 1.64, 4)


def test_the_answer_compares_the_student_with_the_best_baseline_when_the_row_exists():
    with_row = _answer(_data(True))
    assert "The best baseline, scattering transform (kymatio) · xgboost" in with_row
    assert "AWD against it" in with_row.split("The best baseline")[1]
    without = _answer(_data(False))
    assert "The best baseline" in without
    assert "AWD against it" not in without.split("The best baseline")[1]
