"""Headless Chromium (Debian's package) driven by Playwright, for tests of what a browser does."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

# Flags that keep Chromium from reaching for a network this machine does not have.
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


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None and os.environ.get("CI"):
        pytest.fail("CI must run the browser tests, but chromium is not installed")
    if path is None:
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    return path


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# The fixtures every browser test module shares (tests/conftest.py offers them): one Chromium per
# module, and a tab per test, in a context of its own (options by indirect parametrization).
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


class Tab:
    """A page in its own browser context, with every dialog and script error it meets recorded."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog) -> None:  # type: ignore[no-untyped-def]
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def tab(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Tab]:
    options = getattr(request, "param", {})
    opened = Tab(browser.new_context(**options))
    yield opened
    opened.context.close()
    assert opened.errors == [], "the page raised script errors"
