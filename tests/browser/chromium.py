"""How the browser tests run Chromium: Debian's /usr/bin/chromium driven by Playwright
(Playwright's own browser download is not used), headless, with these switches."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
STEP_TIMEOUT_MS = 45_000
# Screenshots taken in this run, listed in pytest's terminal summary.
SCREENSHOTS: list[Path] = []
