"""The molecular-partner hook of ``awd demo`` (quick size; slow: about a minute)."""

import json

import pandas as pd
import pytest

from molecular_partner.cli import _metrics_table, run_demo


@pytest.mark.slow
def test_run_demo_quick(tmp_path):
    result = run_demo(tmp_path / "mp", quick=True)
    assert result["report"].endswith("report.html")
    page = open(result["report"]).read()
    assert page.count("data:image/png;base64,") == 6
    methods = {r["method"] for r in result["metrics"]}
    assert {"awd", "awd_gamma0", "db5", "teacher", "awd_xgboost", "hand_features"} <= methods
    assert result["table"].splitlines()[0].startswith("| method | R²")
    assert "| awd |" in result["table"] and "| teacher |" in result["table"]
    json.dumps(result)  # awd demo writes it into summary.json


def test_metrics_table_rows_and_missing_metrics():
    metrics = pd.DataFrame(
        [
            ("awd", "r2", 0.25, 0.01, 10, 3e-7),
            ("awd", "auc", 0.8, 0.02, 10, 3e-7),
            ("teacher", "r2", 0.2, 0.03, 10, 4e-6),
        ],
        columns=["method", "metric", "value", "sd", "n_test", "seconds_per_item"],
    )
    lines = _metrics_table(metrics).splitlines()
    assert lines[2] == "| awd | 0.250 (0.010) | 0.800 (0.020) | 3.00e-07 |"
    assert lines[3] == "| teacher | 0.200 (0.030) | – | 4.00e-06 |"
    assert len(lines) == 4
