"""``run_demo`` of the cosmology domain (``awd demo``): outputs and returned summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmology.cli import run_demo


def _check(result: dict, out: Path) -> None:
    assert sorted(result) == ["metrics", "report", "seconds", "table"]
    report = Path(result["report"])
    assert report.is_file() and report.is_relative_to(out)
    assert result["table"].startswith("| method |")
    methods = {row["method"] for row in result["metrics"]}
    assert {"awd", "awd_multiscale_ridge", "teacher", "trivial"} <= methods
    assert (out / "run" / "evaluate" / "metrics.csv").is_file()


def test_quick_demo(tmp_path):
    _check(run_demo(tmp_path, quick=True), tmp_path)


@pytest.mark.slow
def test_full_demo(tmp_path):
    result = run_demo(tmp_path)
    _check(result, tmp_path)
    assert result["seconds"] < 600
