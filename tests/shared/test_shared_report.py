"""The report shell writes every piece of data as text (audit rows 193-194: names and
values read from a run's files once reached the page as markup)."""

from __future__ import annotations

from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from shared.report import Section, render

INJECTED = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "<b>cell4</b>"]


class _Tags(HTMLParser):
    """Every element and attribute name the browser would build from a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)


def _figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    return fig


def test_every_block_escapes_what_it_is_given():
    bad = " ".join(INJECTED)
    frame = pd.DataFrame(
        {"method": INJECTED, "group": [bad] * 3, "R²": [0.1, 0.2, 0.3], "hi": [True, 0, 0]}
    )
    inner = Section(bad).paragraph(bad)
    section = (
        Section(bad)
        .paragraph(bad)
        .warning(bad)
        .bullets(INJECTED)
        .table(frame, caption=bad, group="group", highlight="hi", legend={bad: bad})
        .figure("fig", _figure, caption=bad)
        .details(bad, inner)
    )
    page = render(bad, [section])
    parsed = _Tags()
    parsed.feed(page)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert not {a for a in parsed.attributes if a.startswith("on")}
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 9
    # The shell's own markup is intact: one embedded figure, one table.
    assert parsed.tags.count("img") == 1 and parsed.tags.count("table") == 1
