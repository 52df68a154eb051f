"""Remakes docs/screenshot-{desktop,phone}.png from a live run: `python -m tests.screenshots [--dark]`."""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium
from tests.live import assert_images_loaded, run_to_completion
from tests.server_process import PROJECT, ServerProcess

DOCS = PROJECT / "docs"
# Finished sessions first, so the recent list looks like a page someone has used.
EARLIER_TOPICS = ("binary search", "the French Revolution", "how vaccines work")
TOPIC = "photosynthesis"
SIZES = {"desktop": (1280, 1300), "phone": (390, 1700)}


def generate_lesson(page: Page, base_url: str, topic: str) -> None:
    """Run a topic in the page as a person would and wait until its lesson and images are shown."""
    page.goto(base_url + "/")
    page.fill("#topic", topic)
    page.click("#generate")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=30_000)
    assert_images_loaded(page, 2)


def shoot(browser: Browser, base_url: str, name: str, color_scheme: str = "light") -> Path:
    width, height = SIZES[name]
    context = browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=1, color_scheme=color_scheme
    )
    try:
        page = context.new_page()
        generate_lesson(page, base_url, TOPIC)
        page.locator("#topic").fill("")
        page.locator("#topic").blur()
        page.mouse.move(0, 0)
        suffix = "" if color_scheme == "light" else f"-{color_scheme}"
        path = DOCS / f"screenshot-{name}{suffix}.png"
        page.screenshot(path=str(path))
        return path
    finally:
        context.close()


def main(argv: list[str]) -> int:
    schemes = ["dark"] if "--dark" in argv else ["light"]
    server = ServerProcess("--pace=0")
    try:
        for topic in EARLIER_TOPICS:
            run_to_completion(server.url, topic)
        with chromium() as browser:
            for scheme in schemes:
                for name in SIZES:
                    print(shoot(browser, server.url, name, scheme))
    finally:
        server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
