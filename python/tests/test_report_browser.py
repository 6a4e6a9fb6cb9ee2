"""The report and the summary page in a real headless Chromium (Debian ``chromium``,
driven over the DevTools protocol): loads offline without errors or requests, every image
decodes, sorting and searching work, crafted labels stay text. Screenshots are kept under
PERTCONTRAST_TEST_ARTIFACTS (default test-artifacts/)."""

import importlib.util
import json

import pytest
from browser import Browser, artifacts_folder, chromium_path

from pertcontrast.steps.report import build_summary

pytest_plugins = ["report_fixtures"]  # session fixtures shared by the report test modules
# what report_fixtures names one perturbation and one gene
SCRIPT_LABEL = "<script>alert(1)</script>"
IMG_GENE = "<img src=x onerror=alert(1)>"

# Never skipped: scripts/test.sh installs Chromium and websocket-client, and a missing one
# is a broken set-up that must show as a failure.
MISSING = [name for name, present in (("chromium", chromium_path()),
                                      ("websocket-client", importlib.util.find_spec("websocket"))) if not present]
pytestmark = [pytest.mark.slow]


def test_the_browser_and_its_driver_are_installed():
    assert not MISSING, f"not installed: {', '.join(MISSING)} (run scripts/setup-system.sh; requirements.lock)"

SECTIONS = ("guides", "latents", "background-removal", "effects", "calibration", "clustering", "de", "training",
            "settings", "provenance")
COLUMN_VALUES = """(column) => Array.from(document.querySelectorAll('#effect-table tbody tr'))
    .filter(row => !row.hidden).map(row => row.cells[column].textContent)"""


def header_index(browser: Browser, name: str) -> int:
    headers = browser.evaluate("Array.from(document.querySelectorAll('#effect-table thead th'))"
                               ".map(th => th.textContent)")
    return headers.index(name)


def column(browser: Browser, name: str) -> list[str]:
    return browser.evaluate(f"({COLUMN_VALUES})({header_index(browser, name)})")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def assert_clean_load(browser: Browser, url: str) -> None:
    assert browser.console_errors == [] and browser.exceptions == [] and browser.log_errors == []
    assert browser.dialogs == []
    others = [u for u in browser.requests if u != url and not u.startswith("data:")]
    assert others == [], f"the page made network requests: {others}"


def test_report_loads_offline_and_every_image_decodes(full_report):
    with Browser() as browser:
        url = browser.open(full_report.html)
        sizes = browser.evaluate(
            "Promise.all(Array.from(document.images).map(i => i.decode().then(() => [i.naturalWidth, i.naturalHeight])))")
        assert_clean_load(browser, url)
        assert len(sizes) == len(full_report.figures) // 2  # one PNG and one SVG file per embedded figure
        assert all(width > 100 and height > 100 for width, height in sizes)
        present = browser.evaluate("Array.from(document.querySelectorAll('main > section')).map(s => s.id)")
        assert present == list(SECTIONS)
        titles = browser.evaluate("Array.from(document.querySelectorAll('section h2')).map(h => h.textContent)")
        assert titles[:3] == ["Guides and perturbations", "Latent spaces", "Background removal"]
        rows = browser.evaluate("document.querySelectorAll('#effect-table tbody tr').length")
        assert rows == json.loads(full_report.json.read_text())["n_perturbations"]
        folder = artifacts_folder()
        browser.screenshot(folder / "report-top.png")
        browser.evaluate("document.getElementById('background-removal').scrollIntoView()")
        browser.screenshot(folder / "report-background-removal.png", "#background-removal")
        assert (folder / "report-top.png").stat().st_size > 10_000


def test_clicking_a_header_sorts_the_table(full_report):
    with Browser() as browser:
        browser.open(full_report.html)
        assert [number(v) for v in column(browser, "energy_distance")] == sorted(
            (number(v) for v in column(browser, "energy_distance")), reverse=True)  # strongest first as built
        browser.click("#effect-table thead th:nth-child(2)")  # n_cells
        cells = [number(v) for v in column(browser, "n_cells")]
        assert cells == sorted(cells)
        assert browser.evaluate("document.querySelector('#effect-table thead th:nth-child(2)')"
                                ".getAttribute('aria-sort')") == "ascending"
        browser.click("#effect-table thead th:nth-child(2)")
        assert [number(v) for v in column(browser, "n_cells")] == sorted(cells, reverse=True)
        browser.click("#effect-table thead th:nth-child(1)")  # perturbation, as text
        names = column(browser, "perturbation")
        assert names == sorted(names, key=str.lower)
        browser.screenshot(artifacts_folder() / "report-effects-sorted.png", "#effects")
        assert_clean_load(browser, full_report.html.resolve().as_uri())


def test_search_box_filters_rows(full_report, report_inputs):
    target = report_inputs.perturbations[-1]
    with Browser() as browser:
        browser.open(full_report.html)
        total = len(report_inputs.perturbations)
        browser.type_into("#effects input[type=search]", target)
        assert column(browser, "perturbation") == [target]
        assert browser.evaluate("document.getElementById('effect-table-count').textContent") == f"1 of {total} rows"
        browser.type_into("#effects input[type=search]", "no such perturbation")
        assert column(browser, "perturbation") == []
        browser.type_into("#effects input[type=search]", "")
        assert len(column(browser, "perturbation")) == total
        # a gene from the top_up lists finds the perturbations where it is a top gene
        browser.type_into("#effects input[type=search]", "onerror=alert")
        assert len(column(browser, "perturbation")) == total


def test_crafted_labels_show_as_text_and_run_nothing(full_report):
    with Browser() as browser:
        url = browser.open(full_report.html)
        browser.evaluate("document.querySelectorAll('img').forEach(i => i.scrollIntoView())")
        assert browser.dialogs == []
        assert browser.evaluate("document.scripts.length") == 1
        assert browser.evaluate("document.images.length") == len(full_report.figures) // 2
        assert not browser.evaluate("Array.from(document.querySelectorAll('*')).some(e => e.hasAttribute('onerror'))")
        assert SCRIPT_LABEL in browser.evaluate("document.getElementById('effect-table').innerText")
        top_up = browser.evaluate("document.querySelector('#effect-table tbody td.genes').getAttribute('data-value')")
        assert top_up.split(";")[0] == IMG_GENE
        assert IMG_GENE in browser.evaluate("document.body.innerText")
        assert_clean_load(browser, url)


def test_report_without_analysis_outputs_loads(plain_report):
    with Browser() as browser:
        url = browser.open(plain_report.html)
        assert_clean_load(browser, url)
        text = browser.evaluate("document.getElementById('clustering').innerText")
        assert "Not run: no effects folder given" in text


def test_summary_page_links_to_each_report(full_report, plain_report, tmp_path):
    output = build_summary([full_report.json, plain_report.json], tmp_path / "summary" / "index.html")
    with Browser() as browser:
        url = browser.open(output)
        assert_clean_load(browser, url)
        rows = browser.evaluate("Array.from(document.querySelectorAll('#summary-table tbody tr'))"
                                ".map(r => r.cells[0].textContent)")
        assert rows == ["screen1", "screen2"]
        browser.screenshot(artifacts_folder() / "summary.png")
        browser.click("#summary-table tbody tr:nth-child(2) a")
        browser.wait_for("Page.loadEventFired")
        assert browser.evaluate("location.href") == plain_report.html.resolve().as_uri()
        assert browser.evaluate("document.querySelector('h1').textContent") == "screen2"


FITS = """(selector) => Array.from(document.querySelectorAll(selector)).map(t => {
    const wrap = t.closest('.table-wrap');
    return [t.id, t.scrollWidth, wrap.clientWidth];
})"""


def test_tables_fit_a_1400_pixel_window(full_report, plain_report, tmp_path):
    """No sideways scrolling at 1,400 px: neither the page nor any table inside its frame."""
    summary = build_summary([full_report.json, plain_report.json], tmp_path / "summary" / "index.html")
    with Browser() as browser:
        browser.send("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
        for page, selector in ((full_report.html, "table.sortable"), (summary, "#summary-table")):
            browser.open(page)
            widths = browser.evaluate(f"({FITS})('{selector}')")
            assert widths, page
            for table_id, needed, available in widths:
                assert needed <= available, f"{page}: #{table_id} needs {needed} px, has {available}"
            assert browser.evaluate("document.documentElement.scrollWidth") <= 1400, page
        browser.open(full_report.html)
        browser.screenshot(artifacts_folder() / "report-effects-1400px.png", "#effects")
