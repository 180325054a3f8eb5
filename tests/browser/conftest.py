"""Headless Chromium for the browser tests, one per session; each launch gets a fresh profile."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[object]:
    """Skipped only when Chromium (or the playwright package) is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium): browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the playwright package (dev extra) is not installed")
    with sync_api.sync_playwright() as playwright:
        # launch() gives the browser a new temporary profile (user-data-dir) and removes it on
        # close; Playwright refuses a --user-data-dir argument here.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter) -> None:
    for path in SCREENSHOTS:
        terminalreporter.write_line(f"browser screenshot: {path}")
