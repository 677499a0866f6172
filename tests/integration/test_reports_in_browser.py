"""The HTML reports, opened in headless Chromium at 1280 px: every committed report under
``results/`` and freshly generated demo-size reports of both domains.

Each page must open with its answer (a paragraph with numbers, right under the title),
fit the window (no horizontal overflow), load every image, show no raw JSON and log no
console error. Committed reports made by an older report shell (no ``generator`` meta)
are expected to miss the opening answer, may overflow and may show raw JSON: those checks
are marked xfail for them until the reports are regenerated.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from shared.report import GENERATOR

ROOT = Path(__file__).resolve().parents[2]
REPORTS = sorted((ROOT / "results").glob("**/report.html"))
WIDTH = 1280

webdriver = pytest.importorskip("selenium.webdriver")


def _driver():
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("Chromium and ChromeDriver are not installed (make test installs them)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--window-size={WIDTH},1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_window_size(WIDTH, 1000)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = _driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo_reports(tmp_path_factory) -> dict[str, Path]:
    """Demo-size reports of both domains, generated now (quick sizes: seconds each)."""
    from cosmology.cli import run_demo as cosmology_demo
    from molecular_partner.cli import run_demo as mp_demo

    out = tmp_path_factory.mktemp("demo")
    return {
        "cosmology": Path(cosmology_demo(out / "cosmology", quick=True)["report"]),
        "molecular_partner": Path(mp_demo(out / "molecular_partner", quick=True)["report"]),
    }


def _open(browser, report: Path) -> dict:
    """Load a report; what the page shows, measured in the browser."""
    browser.get(report.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    return browser.execute_script(
        """
        const first = document.querySelector('h1 + *');
        return {
          title: document.title,
          generator: (document.querySelector("meta[name='generator']") || {}).content || '',
          opening: first ? {tag: first.tagName, cls: first.className,
                            text: first.textContent} : null,
          scrollWidth: document.documentElement.scrollWidth,
          innerWidth: window.innerWidth,
          images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]),
          text: document.body.innerText,
        };
        """
    )


def _check_loads(page: dict, browser) -> None:
    assert page["title"].strip(), "the page has no title"
    assert page["images"], "the report shows no images"
    broken = [alt for complete, width, alt in page["images"] if not complete or width == 0]
    assert not broken, f"images that did not load: {broken}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def _check_answer_and_width(page: dict) -> None:
    assert not re.search(r'\{\s*"', page["text"]), "the page shows raw JSON"
    opening = page["opening"]
    assert opening is not None and opening["tag"] == "P" and "answer" in opening["cls"], (
        f"the page does not open with its answer paragraph: {opening}"
    )
    assert len(re.findall(r"\d+\.\d+", opening["text"])) >= 3, (
        f"the opening paragraph gives no numbers: {opening['text'][:200]}"
    )
    assert page["scrollWidth"] <= page["innerWidth"], (
        f"horizontal overflow: the page is {page['scrollWidth']} px wide in a "
        f"{page['innerWidth']} px window"
    )


def test_there_are_reports_to_check():
    assert REPORTS, "no committed report.html under results/"


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_report(browser, report):
    page = _open(browser, report)
    _check_loads(page, browser)
    if page["generator"] != GENERATOR:
        pytest.xfail(f"made by an older report shell ({page['generator'] or 'no generator'})")
    _check_answer_and_width(page)


@pytest.mark.parametrize("domain", ["cosmology", "molecular_partner"])
def test_demo_report(browser, demo_reports, domain):
    page = _open(browser, demo_reports[domain])
    _check_loads(page, browser)
    assert page["generator"] == GENERATOR
    _check_answer_and_width(page)
    assert "Warning:" in page["text"], "toy-sized runs should warn (too few items to select on)"


@pytest.mark.parametrize("domain", ["cosmology", "molecular_partner"])
def test_demo_headline_is_written_beside_the_report(demo_reports, domain):
    from shared.report import Headline

    head = Headline.load(demo_reports[domain].with_name("headline.json"))
    assert head.verdict.split(":")[0] in ("cosmology", "molecular partner")
    assert head.table and head.answer.startswith("On ")
    assert "teacher" in head.text().lower()
    for figure in ("results.png",):
        assert (demo_reports[domain].parent / figure).is_file()
