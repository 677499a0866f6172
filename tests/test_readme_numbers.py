"""Every number README.md's Results section cites comes from the committed file it names.

Each bullet of the Results section names its sources in backticks (``results/...`` folders
or files). Every number in the bullet must be found in those sources at the precision the
README prints it: a value of a CSV, JSON, YAML or Markdown file there, that value as a
percentage, a ratio of two prediction times of one file (speed-ups), or a paired
difference in units of its SD (``comparisons.csv``). A number with no source fails the
test: then the README sentence is wrong (or cites the wrong file), not the test.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# A number in prose: not part of a name such as db5, σ_8, ResNet-18 or l1-norm.
NUMBER = re.compile(r"(?<![\w.\-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w])")
# A number with a time unit, in a Markdown table or text (µs, ms, s).
TIMED = re.compile(r"(\d+(?:\.\d+)?)\s*(ns|µs|us|ms|s)\b")
UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
SOURCE_SUFFIXES = {".csv", ".json", ".yaml", ".yml", ".md"}
# Not results: prose about them (README.md), and per-item tables too large to be a cited
# summary (predictions, histories).
SKIP_NAMES = {"README.md", "predictions.csv", "history.csv", "peak_histograms.csv"}


def results_bullets(text: str) -> list[str]:
    """The bullets of the README's Results section (continuation lines joined)."""
    match = re.search(r"^## Results.*?$(.*?)^## ", text, flags=re.S | re.M)
    assert match, "README.md has no '## Results' section"
    bullets: list[str] = []
    for line in match.group(1).splitlines():
        if line.startswith("- "):
            bullets.append(line[2:])
        elif bullets and line.startswith("  ") and line.strip():
            bullets[-1] += " " + line.strip()
        elif not line.strip() and bullets and not bullets[-1].endswith("\n"):
            bullets[-1] += "\n"
    return [b.strip() for b in bullets]


def cited_numbers(bullet: str) -> list[str]:
    """The numbers a bullet cites, as printed (backticked paths and names left out)."""
    prose = re.sub(r"`[^`]*`", " ", bullet).replace("²", " ")
    return [m.group(0) for m in NUMBER.finditer(prose)]


def cited_sources(bullet: str) -> list[Path]:
    return [ROOT / p for p in re.findall(r"`(results/[^`]*)`", bullet)]


def _leaves(obj, key: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, str(k))
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v, key)
    else:
        yield key, obj


def _numbers_in_string(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", text)]


def _file_values(path: Path) -> tuple[list[float], list[tuple[str, float]], list[float]]:
    """(values, labelled prediction times in seconds, paired differences in SD) of a file."""
    values: list[float] = []
    times: list[tuple[str, float]] = []
    n_sd: list[float] = []
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        labels = frame.iloc[:, 0].astype(str)
        for column in frame.columns:
            numeric = pd.to_numeric(frame[column], errors="coerce")
            values += [float(v) for v in numeric.dropna()]
            for text in frame[column][numeric.isna()].dropna().astype(str):
                values += _numbers_in_string(text)
            if "second" in column:
                times += [(lab, float(v)) for lab, v in zip(labels, numeric, strict=True) if v > 0]
        if {"diff", "sd"} <= set(frame.columns):
            n_sd += [abs(d) / s for d, s in zip(frame["diff"], frame["sd"], strict=True) if s > 0]
    elif path.suffix in (".json", ".yaml", ".yml"):
        text = path.read_text()
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        for key, leaf in _leaves(doc):
            if isinstance(leaf, bool) or leaf is None:
                continue
            if isinstance(leaf, (int, float)):
                values.append(float(leaf))
                if "second" in key and leaf > 0:
                    times.append((key, float(leaf)))
            elif isinstance(leaf, str):
                values += _numbers_in_string(leaf)
    elif path.suffix == ".md":
        text = path.read_text()
        values += _numbers_in_string(text)
        for line in text.splitlines():
            times += [(line, float(v) * UNITS[u]) for v, u in TIMED.findall(line)]
    return values, times, n_sd


def source_values(sources: list[Path]) -> list[float]:
    """Every value the sources hold, as percentages too, with speed-ups and SD multiples."""
    files: list[Path] = []
    for source in sources:
        assert source.exists(), f"the README cites {source.relative_to(ROOT)}, which is missing"
        if source.is_file():
            files.append(source)
        else:
            files += sorted(
                p
                for p in source.rglob("*")
                if p.suffix in SOURCE_SUFFIXES and p.name not in SKIP_NAMES
            )
    out: list[float] = []
    for path in files:
        values, times, n_sd = _file_values(path)
        out += values + [100 * v for v in values if 0 < v <= 1] + n_sd
        # Speed-ups: a teacher's prediction time over another method's, in one file.
        teachers = {t for label, t in times if re.search(r"teacher|resnet", label, re.I)}
        others = {t for _, t in times}
        out += [a / b for a, b in itertools.product(teachers, others) if a > b]
    return out


def _matches(printed: str, values: list[float]) -> bool:
    number = float(printed.replace(",", ""))
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    tolerance = 0.5 * 10**-decimals + 1e-9 * max(1.0, abs(number))
    return any(math.isfinite(v) and abs(abs(v) - number) <= tolerance for v in values)


BULLETS = results_bullets(README.read_text())


def test_the_results_section_has_bullets():
    assert BULLETS, "README.md's Results section lists no results"


@pytest.mark.parametrize("bullet", BULLETS, ids=lambda b: re.sub(r"\W+", "_", b[:40]))
def test_every_number_has_its_source(bullet):
    sources = cited_sources(bullet)
    assert sources, f"this Results bullet cites no file under results/: {bullet[:80]}..."
    values = source_values(sources)
    unsourced = [n for n in cited_numbers(bullet) if not _matches(n, values)]
    cited = ", ".join(str(s.relative_to(ROOT)) for s in sources)
    assert not unsourced, f"numbers with no source in {cited}: {unsourced}"


def test_the_parser_reads_numbers_as_printed():
    bullet = "db5 0.287 (SD 0.039), ResNet-18, σ_8, 10.9× faster, 1,000 maps of 128², `results/x2`"
    assert cited_numbers(bullet) == ["0.287", "0.039", "10.9", "1,000", "128"]
    assert _matches("0.287", [0.28688]) and not _matches("0.287", [0.2856])
    assert _matches("59", [59.2]) and _matches("1,000", [1000.0])
