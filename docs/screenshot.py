"""Take the README's screenshot of the web UI (docs/ui.png) from a running stack.

    make run            # in one terminal: the stack with the sample replayed
    .venv/bin/python docs/screenshot.py [--url http://127.0.0.1:8000] [-o docs/ui.png]

Drives Debian's chromium (`apt-get install chromium`) with playwright: sets "as of" to
the newest event, looks up a customer, plots a feature's history and a distribution.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="API base URL (default: stores/stack.json)")
    parser.add_argument("--entity", default="c001")
    parser.add_argument("--feature", default="customer_txn:amount_sum_1d")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/ui.png"))
    args = parser.parse_args()
    url = args.url or json.loads(Path("stores/stack.json").read_text())["api_url"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_selector("#pipeline tbody tr")
        page.click("#as-of-newest")
        page.fill("#lookup-id", args.entity)
        page.click("#lookup-form button")
        page.wait_for_selector("#lookup-result td.value")
        page.select_option("#history-feature", args.feature)
        page.click("#history-form button")
        page.wait_for_selector(
            f'#history-chart[data-feature="{args.feature}"] svg, #history-note:has-text("no POST")'
        )
        page.select_option("#distribution-feature", args.feature)
        page.click("#distribution-form button")
        page.wait_for_selector(f'#distribution-chart[data-feature="{args.feature}"] svg')
        page.wait_for_timeout(2500)  # one more status refresh, so events/s is filled in
        page.screenshot(path=str(args.output), full_page=True)
        browser.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
