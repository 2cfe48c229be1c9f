"""Make the README's screenshot of the HTML leaderboard: `crlbench site` of the committed CPU
board (results/fashion_cpu), opened in headless Chromium, its results table in view.

    python scripts/site_screenshot.py [--output docs/figures/site_fashion_cpu.png]

Needs the test extras (selenium) and Debian's chromium + chromium-driver.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from crlbench.cli import main
from crlbench.site.browser import headless_chromium

REPO = Path(__file__).resolve().parents[1]


def screenshot(output: Path, suite: str = "fashion_cpu") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        code = main(["site", f"results.dir={REPO / 'results'}", f"suite={suite}",
                     "--output", str(site)])
        if code:
            raise SystemExit(code)
        with headless_chromium(width=1400, height=1000) as driver:
            driver.get((site / suite / "index.html").as_uri())
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(driver.get_screenshot_as_png())
    print(output)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path,
                        default=REPO / "docs" / "figures" / "site_fashion_cpu.png")
    screenshot(parser.parse_args().output)
