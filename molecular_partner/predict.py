"""``awd molecular-partner predict``: apply a run's saved students to the tracks of new cells.

:func:`load_student` returns a :class:`RunStudent`: the students of one method saved by
``evaluate`` (``RUN/students/<method>/regression`` and ``.../binary``) with the cleaning
rules of the run's data set (the lifetime gates fitted on its training cells, the
lifetime threshold, the trace length). Inputs are ``ProcessedTracks.mat`` files
(cmeAnalysis), parquet track tables, and folders of them. Every track goes through the
data set's rules; kept tracks get a predicted auxilin score (the regression outcome,
``Y_sig_mean_normalized``) and a recruitment probability (``y_consec_thresh``); dropped
tracks are listed with the reason.

Examples
--------
>>> student = load_student("runs/mp")  # doctest: +SKIP
>>> predictions, dropped = student.predict_tracks(["cells/cell9"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from molecular_partner.config import DOMAIN
from molecular_partner.data import load_tracks, preparation_rules, prepare_tracks
from molecular_partner.student import STUDENT_CLASSES, TraceStudent
from shared.runs import atomic_write
from shared.students import load_student as _load_saved
from shared.students import saved_student

__all__ = ["RunStudent", "load_student", "predict_files"]

logger = logging.getLogger(__name__)

#: Columns of the predictions table.
COLUMNS = ("cell", "track_id", "auxilin_score", "recruitment_probability", "student")


class RunStudent:
    """The students of one method (one per outcome) with the run's cleaning rules.

    Parameters
    ----------
    students : dict
        ``{"regression": TraceStudent, "binary": TraceStudent}`` (either may be absent).
    rules : dict
        Keyword arguments of :func:`molecular_partner.data.prepare_tracks`.
    method : str
        The method's name.
    """

    def __init__(self, students: dict[str, TraceStudent], rules: dict, method: str) -> None:
        self.students = students
        self.rules = rules
        self.method = method

    def prepare(self, tracks: pd.DataFrame, source: str = "tracks") -> tuple:
        """The run's cleaning rules on ``tracks``: (kept AWD-layout table, dropped table)."""
        prepared = prepare_tracks(tracks, **self.rules, source=source)
        return prepared.table, prepared.dropped

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Predictions for prepared tracks (AWD layout), one row per track."""
        out = pd.DataFrame(
            {
                "cell": table["cell"].astype(str).to_numpy(),
                "track_id": table["track_id"].to_numpy()
                if "track_id" in table
                else range(1, len(table) + 1),
            }
        )
        for kind, column in (
            ("regression", "auxilin_score"),
            ("binary", "recruitment_probability"),
        ):
            student = self.students.get(kind)
            out[column] = student.predict(table) if student is not None else float("nan")
        out["student"] = self.method
        return out

    def predict_tracks(
        self, paths: Sequence[str | os.PathLike]
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Read, clean and predict the tracks under ``paths``: (predictions, dropped)."""
        tracks = load_tracks(list(paths))
        source = ", ".join(str(p) for p in paths)
        kept, dropped = self.prepare(tracks, source)
        return self.predict(kept), dropped


def load_student(run_dir: str | os.PathLike, method: str | None = None) -> RunStudent:
    """The saved students of ``method`` (default: the AWD student selected by grouped CV).

    Examples
    --------
    >>> load_student("not/a/run")
    Traceback (most recent call last):
    ...
    ValueError: ...not/a/run: not a run directory (run.json is missing)
    """
    run, index, name = saved_student(run_dir, DOMAIN, method)
    students = {}
    for kind in index["students"][name]:
        student, _ = _load_saved(run.root / "students" / name / kind, STUDENT_CLASSES)
        students[kind] = student
    return RunStudent(students, preparation_rules(run.data_path), name)


def predict_files(
    run_dir: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    method: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predict the tracks under ``inputs``; write ``out`` and ``<out>_dropped.csv``.

    Returns the predictions (one row per kept track) and the dropped tracks with reasons.
    """
    student = load_student(run_dir, method)
    table, dropped = student.predict_tracks(inputs)
    out = Path(out)
    atomic_write(out, lambda p: table.to_csv(p, index=False))
    atomic_write(_dropped_path(out), lambda p: dropped.to_csv(p, index=False))
    logger.info("%d tracks predicted with %s, %d dropped", len(table), student.method, len(dropped))
    return table, dropped


def _dropped_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_dropped.csv")
