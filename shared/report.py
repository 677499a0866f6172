"""The HTML report shell of both domains: one self-contained page, escaped, figures embedded.

A domain report is an ordered list of sections (:class:`Section`); each holds paragraphs,
tables (rows in groups, highlighted rows, a legend), figures, lists, warnings and
collapsible details. :func:`render` turns them into one HTML page (figures as base64 PNG,
drawn in the package's one figure style, so the page can be mailed or archived alone) and
:func:`write_report` writes it, with every figure also saved as a PNG beside it.

A :class:`Headline` is what a run found, in words and numbers: the report opens with it,
``evaluate`` ends by printing it and ``awd demo`` summarises it (``report/headline.json``).
:func:`format_estimate`, :func:`format_difference` and :func:`comparison_phrase` write
numbers the same way everywhere: a value with its SD, and a paired difference that counts
only beyond two paired SD (:func:`shared.evaluation.verdict`).

All text goes through :func:`html.escape`; only the shell itself writes markup.

Examples
--------
>>> import pandas as pd
>>> page = Section("Results").paragraph("The student <beats> the mean.").table(
...     pd.DataFrame({"method": ["awd"], "R²": [0.3]}))
>>> html_text = render("A report", [page])
>>> "&lt;beats&gt;" in html_text, "<table" in html_text
(True, True)
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shared.evaluation import verdict
from shared.runs import atomic_write

__all__ = [
    "GENERATOR",
    "GROUPS",
    "MIN_SELECTION_ITEMS",
    "Headline",
    "Section",
    "comparison_phrase",
    "figure_png",
    "format_difference",
    "format_estimate",
    "method_group",
    "paired_words",
    "render",
    "write_report",
]

#: Written into every page's ``<meta name="generator">``: which shell made a report.
GENERATOR = "awd report shell 2"
#: Fewer validation items than this make a selection among many candidates a coin toss
#: (a score's bootstrap SD is then comparable to the differences between candidates).
MIN_SELECTION_ITEMS = 100
#: The groups of a results table, in the order they are shown.
GROUPS = (
    "Teacher",
    "AWD students (learned wavelet)",
    "Fixed-wavelet students (db5)",
    "Baselines",
    "Trivial",
)


def method_group(method: str, trivial: str = "trivial") -> str:
    """The group of a method in a results table (one of :data:`GROUPS`), by its name:
    ``teacher``, the trivial predictor ``trivial``, ``awd…`` and ``db5…``; the rest are
    baselines.

    Examples
    --------
    >>> [method_group(m) for m in ("teacher", "awd_l1", "db5_pooled", "minkowski", "trivial")]
    ['Teacher', 'AWD students (learned wavelet)', 'Fixed-wavelet students (db5)', 'Baselines', 'Trivial']
    >>> method_group("train_mean", trivial="train_mean")
    'Trivial'
    """  # noqa: E501
    if method == "teacher":
        return GROUPS[0]
    if method == trivial:
        return GROUPS[4]
    if method.startswith("awd"):
        return GROUPS[1]
    if method.startswith("db5"):
        return GROUPS[2]
    return GROUPS[3]


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1080px;margin:auto;
padding:1em 1.5em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:92%;max-width:100%;display:block;
overflow-x:auto}
caption{caption-side:bottom;text-align:left;color:#444;font-size:90%;padding-top:.3em}
th,td{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{background:#f4f4f4}
tr.group th{background:#fff;text-align:left;color:#3a6ee8;font-size:90%;padding-top:.7em;
border-bottom:1px solid #c8d4f0}
tr.highlight td{font-weight:600;background:#f5f8ff}
dl.legend{font-size:88%;color:#444;display:grid;grid-template-columns:max-content auto;
gap:.1em 1em;margin:.3em 0 1em}
dl.legend dt{font-weight:600}dl.legend dd{margin:0}
figure{margin:1em 0}img{max-width:100%;height:auto}
figure.half{display:inline-block;width:49%;vertical-align:top;margin:1em 0}
td.text{text-align:left;white-space:normal;min-width:16em}
figcaption{color:#444;font-size:90%}
.answer{font-size:108%;background:#f5f8ff;border-left:4px solid #3a6ee8;padding:.6em 1em}
.warning{background:#fff6e0;border-left:4px solid #e8a33a;padding:.4em 1em;margin:.4em 0}
details{margin:.8em 0}summary{cursor:pointer;font-weight:600}
"""


# -- numbers in words ---------------------------------------------------------------------------
def _decimals(sd: float) -> int:
    """Decimals that show an SD to two significant digits (1 to 6)."""
    if not math.isfinite(sd) or sd <= 0:
        return 4
    return int(min(6, max(1, 1 - math.floor(math.log10(sd)))))


def format_estimate(value: float, sd: float | None = None) -> str:
    """``value ± sd``, both to the decimals that show the SD to two significant digits.

    Without an SD (or a zero one), the value alone to three significant digits.

    Examples
    --------
    >>> format_estimate(0.0270181, 0.000599), format_estimate(0.2869, 0.0389)
    ('0.02702 ± 0.00060', '0.287 ± 0.039')
    >>> format_estimate(0.0586), format_estimate(float("nan"), 0.1)
    ('0.0586', 'n/a')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    if sd is None or not math.isfinite(sd) or sd <= 0:
        return f"{value:.3g}".replace("-", "−") if abs(value) >= 1e-12 else "0"
    d = _decimals(sd)
    return f"{value:.{d}f} ± {sd:.{d}f}".replace("-", "−")


def format_difference(diff: float, sd: float) -> str:
    """A signed paired difference with its SD, e.g. ``+0.0017 ± 0.0003``.

    Examples
    --------
    >>> format_difference(-0.00042, 0.00031), format_difference(0.0, 0.0)
    ('−0.00042 ± 0.00031', '0 (identical predictions)')
    """
    if not (math.isfinite(diff) and math.isfinite(sd)):
        return "n/a"
    if sd == 0 and diff == 0:
        return "0 (identical predictions)"
    d = _decimals(sd)
    # A typographic minus: "−0.0004" reads as negative at a glance, "-0.0004" less so.
    return f"{diff:+.{d}f} ± {sd:.{d}f}".replace("-", "−")


def paired_words(diff: float, sd: float, greater_is_better: bool, k: float = 2.0) -> str:
    """A paired difference in a few words: ``worse (+0.0017 ± 0.0003, 5.7 paired SD)``.

    ``better``/``worse`` only beyond ``k`` paired SD (:func:`shared.evaluation.verdict`),
    else ``a tie``; ``identical`` when the predictions are the same on every item.

    Examples
    --------
    >>> paired_words(0.0006, 0.0029, True)
    'a tie (+0.0006 ± 0.0029, within 2 paired SD)'
    >>> paired_words(0.0017, 0.0003, False)
    'worse (+0.00170 ± 0.00030, 5.7 paired SD)'
    """
    if not (math.isfinite(diff) and math.isfinite(sd)):
        return "not compared"
    if diff == 0 and sd == 0:
        return "identical (the same predictions on every test item)"
    word = verdict(diff, sd, greater_is_better, k)
    text = format_difference(diff, sd)
    if word == "tie":
        return f"a tie ({text}, within {k:g} paired SD)"
    n_sd = abs(diff) / sd if sd > 0 else math.inf
    return f"{word} ({text}, {n_sd:.1f} paired SD)"


def comparison_phrase(
    diff: float, sd: float, greater_is_better: bool, other: str, k: float = 2.0
) -> str:
    """``diff`` (this minus ``other``, paired) in words: better, worse, a tie, identical.

    A difference counts only beyond ``k`` paired SD (:func:`shared.evaluation.verdict`).

    Examples
    --------
    >>> comparison_phrase(0.0006, 0.0029, True, "db5")
    'a tie with db5 (+0.0006 ± 0.0029, within 2 paired SD)'
    >>> comparison_phrase(0.0017, 0.0003, False, "the teacher")
    'worse than the teacher (+0.00170 ± 0.00030, 5.7 paired SD)'
    """
    words = paired_words(diff, sd, greater_is_better, k)
    head, _, rest = words.partition(" (")
    joint = {"a tie": "with", "identical": "to", "not compared": "with"}.get(head, "than")
    return f"{head} {joint} {other}" + (f" ({rest}" if rest else "")


@dataclass
class Headline:
    """What a run found: a verdict line, the opening paragraph, scales, warnings, a table.

    The report opens with it, the domain's ``evaluate`` command ends by printing it and
    ``awd demo`` summarises it, so all three say the same thing with the same numbers.

    Examples
    --------
    >>> h = Headline("demo", "AWD ties its teacher.", "On 10 test items ...",
    ...              warnings=["only 6 validation items"],
    ...              table=[{"method": "teacher", "R²": "0.30 ± 0.02"}])
    >>> print(h.markdown())
    | method | R² |
    | --- | --- |
    | teacher | 0.30 ± 0.02 |
    """

    domain: str
    verdict: str
    answer: str
    scales: str = ""
    warnings: list[str] = field(default_factory=list)
    table: list[dict[str, str]] = field(default_factory=list)

    def markdown(self) -> str:
        """The headline table as Markdown (empty without rows)."""
        if not self.table:
            return ""
        cols = list(self.table[0])
        lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in self.table]
        return "\n".join(lines)

    def text(self) -> str:
        """The headline table aligned for a terminal."""
        if not self.table:
            return ""
        cols = list(self.table[0])
        cells = [cols] + [[str(r.get(c, "")) for c in cols] for r in self.table]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(line.rstrip() for line in lines)

    def terminal(self) -> str:
        """What ``evaluate`` prints: the headline table, then the verdict line."""
        return f"{self.text()}\n\n{self.verdict}" if self.table else self.verdict

    def save(self, path: str | os.PathLike) -> Path:
        """Write the headline as JSON (``report/headline.json``)."""
        text = json.dumps(asdict(self), indent=2, ensure_ascii=False)
        return atomic_write(path, lambda p: p.write_text(text + "\n"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Headline:
        """Read a headline written by :meth:`save`."""
        return cls(**json.loads(Path(path).read_text()))


@dataclass
class _Block:
    kind: str
    content: Any
    caption: str = ""


@dataclass
class Section:
    """One section of a report: a heading and its blocks, in order.

    Every method returns the section, so blocks chain.
    """

    title: str
    blocks: list[_Block] = field(default_factory=list)

    def paragraph(self, text: str, css: str = "") -> Section:
        """A paragraph of plain text (escaped); ``css`` a class such as ``answer``."""
        self.blocks.append(_Block("p", text, css))
        return self

    def warning(self, text: str) -> Section:
        """A highlighted warning."""
        self.blocks.append(_Block("p", text, "warning"))
        return self

    def bullets(self, items: Sequence[str]) -> Section:
        """A bulleted list of plain-text items."""
        self.blocks.append(_Block("ul", list(items)))
        return self

    def table(
        self,
        frame: pd.DataFrame,
        caption: str = "",
        digits: int = 4,
        *,
        group: str | None = None,
        highlight: str | None = None,
        legend: Mapping[str, str] | None = None,
    ) -> Section:
        """A table (index not shown); floats to ``digits`` significant digits.

        ``group`` names a column whose value heads each run of rows (the column itself is
        not shown); ``highlight`` a boolean column (not shown) marking rows to stand out;
        ``legend`` explains names used in the table, below it.
        """
        self.blocks.append(_Block("table", (frame, digits, group, highlight, legend), caption))
        return self

    def figure(
        self, name: str, make: Callable[[], Any], caption: str = "", *, half: bool = False
    ) -> Section:
        """A figure made by ``make()`` (a matplotlib Figure), saved as ``name.png``.

        ``half``: half the page wide, so two such figures in a row sit side by side.
        """
        self.blocks.append(_Block("figure", (name, make, half), caption))
        return self

    def details(self, summary: str, inner: Section) -> Section:
        """A collapsible part holding another section's blocks."""
        self.blocks.append(_Block("details", inner, summary))
        return self


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> figure_png(plt.figure(figsize=(1, 1)))[:4]
    b'\\x89PNG'
    """
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def _is_text(values: Sequence[Any]) -> bool:
    """A column of words (left-aligned, may wrap) rather than of numbers."""
    return any(isinstance(v, str) and v != "n/a" and any(ch.isalpha() for ch in v) for v in values)


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _table_html(
    frame: pd.DataFrame,
    digits: int,
    caption: str,
    group: str | None = None,
    highlight: str | None = None,
    legend: Mapping[str, str] | None = None,
) -> str:
    shown = frame.drop(columns=[c for c in (group, highlight) if c is not None])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    text = [_is_text(shown[c].tolist()) for c in shown.columns]
    rows = []
    previous = None
    for i, row in enumerate(shown.itertuples(index=False)):
        if group is not None and frame[group].iloc[i] != previous:
            previous = frame[group].iloc[i]
            rows.append(
                f"<tr class='group'><th colspan='{len(shown.columns)}'>"
                f"{html.escape(str(previous))}</th></tr>"
            )
        css = " class='highlight'" if highlight is not None and frame[highlight].iloc[i] else ""
        cells = "".join(
            f"<td class='text'>{_cell(v, digits)}</td>" if t else f"<td>{_cell(v, digits)}</td>"
            for v, t in zip(row, text, strict=True)
        )
        rows.append(f"<tr{css}>{cells}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    table = f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    if legend:
        items = "".join(
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in legend.items()
        )
        table += f"<dl class='legend'>{items}</dl>"
    return table


def _draw(make: Callable[[], Any]) -> bytes:
    """PNG of ``make()``, drawn and saved in the package's one figure style."""
    from shared.figures import style

    with style():
        return figure_png(make())


def _blocks_html(blocks: list[_Block], images: dict[str, bytes]) -> list[str]:
    parts = []
    for block in blocks:
        if block.kind == "p":
            css = f" class='{block.caption}'" if block.caption else ""
            parts.append(f"<p{css}>{html.escape(block.content)}</p>")
        elif block.kind == "ul":
            items = "".join(f"<li>{html.escape(i)}</li>" for i in block.content)
            parts.append(f"<ul>{items}</ul>")
        elif block.kind == "table":
            frame, digits, group, highlight, legend = block.content
            parts.append(_table_html(frame, digits, block.caption, group, highlight, legend))
        elif block.kind == "figure":
            name, make, half = block.content
            if name not in images:
                images[name] = _draw(make)
            b64 = base64.b64encode(images[name]).decode("ascii")
            alt = html.escape(block.caption or name)
            cap = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
            css = " class='half'" if half else ""
            parts.append(
                f"<figure{css}><img src='data:image/png;base64,{b64}' alt='{alt}'>{cap}</figure>"
            )
        elif block.kind == "details":
            inner = "".join(_blocks_html(block.content.blocks, images))
            parts.append(
                f"<details><summary>{html.escape(block.caption)}</summary>{inner}</details>"
            )
    return parts


def render(title: str, sections: Sequence[Section], images: dict[str, bytes] | None = None) -> str:
    """The HTML page of ``sections``; figure PNGs are collected into ``images``."""
    images = {} if images is None else images
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        if section.title:
            body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += _blocks_html(section.blocks, images)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<meta name='generator' content='{GENERATOR}'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def write_report(
    out: str | os.PathLike,
    title: str,
    sections: Sequence[Section],
    name: str = "report.html",
    headline: Headline | None = None,
) -> Path:
    """Write ``out/report.html`` and every figure as ``out/<figure>.png``; return the page.

    With a ``headline``, also ``out/headline.json`` (what ``awd demo`` summarises).

    Examples
    --------
    >>> import tempfile
    >>> page = write_report(tempfile.mkdtemp(), "A report", [Section("Results").paragraph("…")])
    >>> page.name
    'report.html'
    """
    out = Path(out)
    images: dict[str, bytes] = {}
    text = render(title, sections, images)
    for fig_name, png in images.items():
        _write_bytes(out / f"{fig_name}.png", png)
    if headline is not None:
        headline.save(out / "headline.json")
    return atomic_write(out / name, lambda p: p.write_text(text))
