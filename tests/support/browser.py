"""Headless Chromium driven by selenium, for the tests of ``mlc ui``.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) are used by path, so
selenium never downloads a driver. Where either is missing, or selenium is not installed, the
fixture skips the test and says why.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1700",
)
WAIT = 10.0  # seconds a page may take to show what a test waits for


def chromium_paths() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or why they cannot be used."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
        return f"{missing} not on PATH: install Debian's chromium and chromium-driver (.ci/run does, as root)"
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (selenium WebDriver) with a fresh profile; skips the test where there is none."""
    found = chromium_paths()
    if isinstance(found, str):
        pytest.skip(f"no headless Chromium: {found}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # selenium must not phone home
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="mlc-ui-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(driver: Any, condition: Callable[[Any], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Wait for ``condition(driver)`` to be truthy (selenium's WebDriverWait); fail naming ``what``.

    The open page swaps a live section whenever its fingerprint changes, so an element found one
    moment may be gone the next: a stale element means "look again", as WebDriverWait documents.
    """
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        wait = WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
        return wait.until(condition)
    except TimeoutException:
        pytest.fail(f"the page did not show {what or condition} within {timeout} s")


PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}  # an iPhone 12-14's viewport


@contextmanager
def emulated(driver: Any, phone: bool = False, dark: bool = False, timezone: str | None = None) -> Iterator[None]:
    """Chromium as a phone (390 px, viewport meta honoured), in dark mode, or in a time zone, through CDP."""
    if phone:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    scheme = [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": scheme})
    if timezone:
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": timezone})
    try:
        yield
    finally:
        if phone:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": ""}]})
        if timezone:
            driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})
