"""The HTML report shell of both domains: one self-contained page, escaped, figures embedded.

A domain report is an ordered list of sections (:class:`Section`); each holds paragraphs,
tables, figures, lists, warnings and collapsible details. :func:`render` turns them into
one HTML page (figures as base64 PNG, so the page can be mailed or archived alone) and
:func:`write_report` writes it, with every figure also saved as a PNG beside it.

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
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shared.runs import atomic_write

__all__ = ["Section", "figure_png", "render", "write_report"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1080px;margin:auto;
padding:1em 1.5em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:92%;max-width:100%;display:block;
overflow-x:auto}
th,td{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{background:#f4f4f4}
figure{margin:1em 0}img{max-width:100%;height:auto}
figcaption{color:#444;font-size:90%}
.answer{font-size:108%;background:#f5f8ff;border-left:4px solid #3a6ee8;padding:.6em 1em}
.warning{background:#fff6e0;border-left:4px solid #e8a33a;padding:.4em 1em;margin:.4em 0}
details{margin:.8em 0}summary{cursor:pointer;font-weight:600}
"""


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

    def table(self, frame: pd.DataFrame, caption: str = "", digits: int = 4) -> Section:
        """A table (index not shown); floats to ``digits`` significant digits."""
        self.blocks.append(_Block("table", (frame, digits), caption))
        return self

    def figure(self, name: str, make: Callable[[], Any], caption: str = "") -> Section:
        """A figure made by ``make()`` (a matplotlib Figure), saved as ``name.png``."""
        self.blocks.append(_Block("figure", (name, make), caption))
        return self

    def details(self, summary: str, inner: Section) -> Section:
        """A collapsible part holding another section's blocks."""
        self.blocks.append(_Block("details", inner, summary))
        return self


def figure_png(fig: Any, dpi: int = 100) -> bytes:
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


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _table_html(frame: pd.DataFrame, digits: int, caption: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        rows.append("<tr>" + "".join(f"<td>{_cell(v, digits)}</td>" for v in row) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


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
            frame, digits = block.content
            parts.append(_table_html(frame, digits, block.caption))
        elif block.kind == "figure":
            name, make = block.content
            if name not in images:
                images[name] = figure_png(make())
            b64 = base64.b64encode(images[name]).decode("ascii")
            alt = html.escape(block.caption or name)
            cap = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
            parts.append(
                f"<figure><img src='data:image/png;base64,{b64}' alt='{alt}'>{cap}</figure>"
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
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def write_report(
    out: str | os.PathLike, title: str, sections: Sequence[Section], name: str = "report.html"
) -> Path:
    """Write ``out/report.html`` and every figure as ``out/<figure>.png``; return the page."""
    out = Path(out)
    images: dict[str, bytes] = {}
    text = render(title, sections, images)
    for fig_name, png in images.items():
        _write_bytes(out / f"{fig_name}.png", png)
    return atomic_write(out / name, lambda p: p.write_text(text))
