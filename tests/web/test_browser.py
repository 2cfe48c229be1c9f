"""The site as headless Chromium renders it: cells equal the records, sorting works, run pages
load, nothing is fetched from outside the folder, and the page screenshots.

Needs Debian's chromium and chromium-driver (`.ci/run` installs them); skipped without them,
except under CI=true, where their absence fails.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from boards import SUITE, cell_values, write_board

from crlbench.cli import main
from crlbench.report.metrics import format_mean_std
from crlbench.site.browser import find_browser, headless_chromium

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser():
    if find_browser() is None:
        why = "Chromium and chromedriver are not installed (apt-get install chromium " \
              "chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, list[dict]]:
    store = tmp_path_factory.mktemp("board") / "results"
    records = write_board(store)
    assert main(["site", f"results.dir={store}"]) == 0
    return store / "site", records


def _requests(driver) -> list[str]:
    """The URLs the browser requested since the last call (DevTools Network events)."""
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [e["params"]["request"]["url"] for e in events
            if e["method"] == "Network.requestWillBeSent"]


def _open(driver, path: Path) -> None:
    """Load a page and wait until it and its scripts are done (get() may return earlier for
    a file:// page, before sort.js has hooked the headers)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(path.as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def _rows(driver, dataset: str) -> list[str]:
    return [row.get_attribute("data-method") for row in driver.find_elements(
        "css selector", f'table[data-dataset="{dataset}"] tbody tr')]


def _click(driver, dataset: str, label: str) -> None:
    for header in driver.find_elements("css selector",
                                       f'table[data-dataset="{dataset}"] thead th'):
        if header.text.split(" ")[0] == label.split(" ")[0]:
            header.find_element("tag name", "button").click()
            return
    raise AssertionError(f"no column {label}")


def test_cells_equal_the_records(browser, site):
    folder, records = site
    _open(browser, folder / SUITE / "index.html")
    checked = 0
    for table in browser.find_elements("css selector", "table.results"):
        dataset = table.get_attribute("data-dataset")
        metrics = [th.get_attribute("data-metric") for th in
                   table.find_elements("css selector", "thead th[data-metric]")]
        for row in table.find_elements("css selector", "tbody tr"):
            method = row.get_attribute("data-method")
            cells = row.find_elements("css selector", "td.num")
            for metric, cell in zip(metrics, cells, strict=True):
                values = cell_values(records, method, dataset, metric)
                if not values:
                    assert cell.text == "–"
                    continue
                mean, std = np.mean(values), np.std(values, ddof=1)
                assert float(cell.get_attribute("data-mean")) == pytest.approx(mean, abs=1e-12)
                assert int(cell.get_attribute("data-n")) == len(values)
                shown = cell.find_element("css selector", ".value").text
                assert shown == format_mean_std(metric, mean, std)
                assert f"n={len(values)}" in cell.text
                checked += 1
    assert checked == 2 * 4 * 3 + 1  # two datasets x four methods x three metrics, one NMI
    best = browser.find_element(
        "css selector", 'table[data-dataset="digits"] tr[data-method="alpha"] td.best .value')
    assert best.value_of_css_property("font-weight") == "700"
    tied = browser.find_element("css selector",
                                'table[data-dataset="digits"] tr[data-method="beta"] td.tied')
    assert "†" in tied.text


def test_sorting_by_any_column(browser, site):
    folder, records = site
    _open(browser, folder / SUITE / "index.html")
    means = {m: np.mean(cell_values(records, m, "digits", "linear_acc"))
             for m in ("alpha", "beta", "gamma", "raw")}
    _click(browser, "digits", "Linear")
    assert _rows(browser, "digits") == sorted(means, key=means.get, reverse=True)
    _click(browser, "digits", "Linear")
    assert _rows(browser, "digits") == sorted(means, key=means.get)
    # lower is better: the first click puts the smallest first
    _click(browser, "digits", "Align ↓")
    aligns = {m: np.mean(cell_values(records, m, "digits", "align")) for m in means}
    assert _rows(browser, "digits") == sorted(aligns, key=aligns.get)
    linear = browser.find_element("css selector",
                                  'table[data-dataset="digits"] th[data-metric="linear_acc"]')
    # a column with missing cells keeps them last in both directions
    _click(browser, "digits", "KM NMI")
    assert _rows(browser, "digits")[0] == "gamma"
    _click(browser, "digits", "KM NMI")
    assert _rows(browser, "digits")[0] == "gamma"
    _click(browser, "digits", "method")
    assert _rows(browser, "digits") == ["alpha", "beta", "gamma", "raw"]
    assert linear.get_attribute("aria-sort") is None  # only the sorted column says so
    # the other dataset's table did not move
    assert _rows(browser, "fashion_mnist") == ["alpha", "beta", "gamma", "raw"]


def test_run_page_and_no_outside_requests(browser, site):
    folder, records = site
    _open(browser, folder / SUITE / "index.html")
    browser.find_element("css selector",
                         'table[data-dataset="digits"] tr[data-method="alpha"] td.runs a').click()
    record = next(r for r in records if r["method"] == "alpha" and r["dataset"] == "digits"
                  and r["seed"] == 0)
    assert browser.current_url.endswith(f"runs/{record['run_id']}.html")
    for row in browser.find_elements("css selector", "table.metrics tbody tr"):
        metric = row.get_attribute("data-metric")
        value = row.find_element("css selector", "td").get_attribute("data-value")
        assert float(value) == record["metrics"][metric]
    image = browser.find_element("css selector", "#curves + figure img")
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
    requested = _requests(browser)
    assert any(url.endswith("site.css") for url in requested)
    assert any(url.endswith("_training.svg") for url in requested)
    assert all(url.startswith("file://") for url in requested), requested
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe


def test_screenshot(browser, site, tmp_path):
    from PIL import Image

    folder, _ = site
    _open(browser, folder / SUITE / "index.html")
    png = browser.get_screenshot_as_png()
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert image.shape == (900, 1280)
    assert image.std() > 10  # text and rules, not a blank page
    (tmp_path / "site.png").write_bytes(png)


def test_committed_board_renders_with_the_tables_numbers(browser, tmp_path, capsys):
    """The README's screenshot is of this page: every cell is `crlbench table`'s."""
    import pandas as pd

    store = REPO / "results"
    assert main(["table", f"results.dir={store}", "suite=fashion_cpu", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert main(["site", f"results.dir={store}", "suite=fashion_cpu", "--no-figures",
                 "--output", str(tmp_path / "site")]) == 0
    _open(browser, tmp_path / "site" / "fashion_cpu" / "index.html")
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.results td[data-mean]')).map("
        "td => [td.closest('tr').dataset.method, td.closest('table').dataset.dataset,"
        " td.closest('table').tHead.rows[0].cells[td.cellIndex].dataset.metric,"
        " parseFloat(td.dataset.mean)])")
    shown = {(m, d, k): v for m, d, k, v in cells}
    expected = {(r.method, r.dataset, r.metric): r.mean for r in table.itertuples()}
    assert shown.keys() == expected.keys()
    for key, mean in expected.items():
        assert shown[key] == pytest.approx(mean, rel=1e-12)
