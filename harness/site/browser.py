"""A headless Chromium driven through selenium and chromedriver, for checking the site as a
browser renders it (the site tests) and for its screenshot (scripts/site_screenshot.py).

It uses the system's Chromium and chromedriver (Debian: `apt-get install chromium
chromium-driver`), found on PATH or named by CRLBENCH_CHROMIUM / CRLBENCH_CHROMEDRIVER, never
a downloaded one, and starts the browser without network services, so a page that reached for
the network would fail to load what it asked for. selenium is a test dependency
(`pip install -e ".[test]"`), not one of crlbench's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # containers and CI runners as root have no user namespace for it
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> tuple[str, str] | None:
    """The paths of Chromium and its chromedriver, or None when either is missing."""
    browser = os.environ.get("CRLBENCH_CHROMIUM") or next(
        (path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = os.environ.get("CRLBENCH_CHROMEDRIVER") or shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium(width: int = 1280, height: int = 900) -> Iterator:
    """A selenium WebDriver of a headless Chromium with a `width` x `height` viewport, quit
    on exit; RuntimeError when Chromium or chromedriver is not installed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError("Chromium and chromedriver are needed (Debian: apt-get install "
                           "chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    # the console (get_log("browser")) and the DevTools network events
    # (get_log("performance")), so a caller can check what a page logged and requested
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        # the viewport itself `width` x `height` (the window's size includes its frame)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()
