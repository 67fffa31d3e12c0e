"""The console in a real browser: Playwright from PyPI drives Debian's `chromium` (no
browser is downloaded). The servers are the conformance suite's (`tests/conformance`)."""

import importlib.util
import os
import pathlib

import pytest

_spec = importlib.util.spec_from_file_location(
    "conformance_harness", pathlib.Path(__file__).parent.parent / "conformance" / "conftest.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

Missive = harness.Missive
API_KEY = harness.API_KEY
ADMIN_KEY = harness.ADMIN_KEY
CHROMIUM = os.environ.get("MISSIVE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no chromium at {CHROMIUM} (scripts/test installs Debian's package)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()
