"""``mlc ui`` in a real browser: headless Chromium (selenium) on a home served by a real mlc-model-server.

The home has half_plus_two versions 1, 2, 3 of model ``hpt`` (stable 1) with mIoU figures in
their reports; a promote is made with the CLI in a child process while the page is open.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifecycle.serving import fleet
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.ui import UiServer, create_server
from tests.support.browser import wait_until
from tests.support.homes import REPO_ROOT, tree_state
from tests.support.ports import free_ports
from tests.support.rollout_support import MODEL, build_versions, make_home, start_server

pytestmark = pytest.mark.e2e

MIOU = {1: 0.61, 2: 0.68, 3: 0.72}
SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRET"
REASON = (
    "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\"> "
    f"weights from s3://AKIAIOSFODNN7EXAMPLE:{SECRET}@127.0.0.1:9/bucket"
)
LIVE_WITHIN = 6.0  # seconds from the CLI's exit to the open page showing the promote
SCREENSHOT = REPO_ROOT / "out" / "ui-screenshot.png"


@dataclass
class Live:
    """A home, the model server serving it, and mlc ui on it."""

    paths: Paths
    ui: UiServer

    def url(self, path: str = "") -> str:
        return self.ui.url + path.lstrip("/")


def with_metrics(paths: Paths) -> Paths:
    with registry.transaction(paths) as reg:
        for v in reg.model(MODEL).versions:
            v.report["metrics"] = {"miou": MIOU[v.version]}
    return paths


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_versions(tmp_path_factory.mktemp("hpt-ui"), [1, 2, 3])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Iterator[Live]:
    paths = with_metrics(make_home(tmp_path_factory.mktemp("ui") / "home", built, [1, 2, 3], stable=1))
    server = start_server(paths)
    fleet.write_servers_file(paths, [fleet.ServerSpec(server.grpc_address, f"127.0.0.1:{server.rest_port}")])
    ui = create_server(paths)
    try:
        yield Live(paths, ui)
    finally:
        ui.stop()
        server.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def stable_point(driver: Any) -> str | None:
    """The stable point's version, read in one script: the chart may be swapped between two reads."""
    return driver.execute_script(
        "const p = document.querySelector('svg.chart circle.point.stable');"
        "return p ? p.getAttribute('data-version') : null;"
    )


def first_entry(driver: Any) -> tuple[str, str] | None:
    """(text, reason text) of the newest timeline entry, read in one script (see stable_point)."""
    found = driver.execute_script(
        "const li = document.querySelector('ol.timeline li'); if (!li) return null;"
        "const r = li.querySelector('.reason'); return [li.innerText, r ? r.innerText : ''];"
    )
    return tuple(found) if found else None


def test_overview_lists_the_model_and_links_to_its_page(browser: Any, live: Live) -> None:
    browser.get(live.url())
    row = wait_until(browser, lambda d: css(d, 'tr.model[data-model="hpt"]'), what="the hpt row")[0]
    assert row.find_element("css selector", "td.stable").text == "1"
    assert "ok" in css(browser, "table.servers")[0].text
    row.find_element("link text", "hpt").click()
    wait_until(browser, lambda d: css(d, "table#versions"), what="the versions table")
    assert [r.get_attribute("data-version") for r in css(browser, "table#versions tr.version")] == ["3", "2", "1"]
    points = css(browser, "svg.chart circle.point")
    assert {int(p.get_attribute("data-version")): round(float(p.get_attribute("data-value")), 4) for p in points} == MIOU
    assert stable_point(browser) == "1"
    assert css(browser, 'tr.version[data-version="1"] .badge.stable')
    assert "AVAILABLE" in css(browser, 'tr.version[data-version="1"]')[0].text


def test_a_cli_promote_appears_on_the_open_page_escaped_and_without_credentials(
    browser: Any, live: Live, python: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    browser.get(live.url(f"models/{MODEL}"))
    wait_until(browser, lambda d: stable_point(d) == "1", what="stable 1 in the chart")
    wait_until(browser, lambda d: "live ·" in css(d, "#live-state")[0].text, what="the live badge")
    done = subprocess.run(
        [python, "-m", "lifecycle", "promote", MODEL, "2", "--reason", REASON],
        env=dict(subprocess_env, MLC_HOME=str(live.paths.home)), capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    exited = time.monotonic()
    wait_until(browser, lambda d: stable_point(d) == "2", timeout=LIVE_WITHIN, what="stable 2 in the chart")
    assert time.monotonic() - exited < LIVE_WITHIN
    wait_until(browser, lambda d: css(d, 'tr.version[data-version="2"] .badge.stable'), what="the stable badge on 2")
    for reloaded in (False, True):  # the live update and the first render of the page
        if reloaded:
            browser.refresh()
        text, reason = wait_until(browser, first_entry, what="the timeline")
        assert "promote" in text and "1 → 2" in text and "ok" in text
        assert "<script>window.__xss = 1</script>" in reason  # shown as text, not run
        assert '<img src=x onerror="window.__xss = 2">' in reason
        assert browser.execute_script("return window.__xss") is None
        assert not css(browser, "ol.timeline img")
        assert "s3://***@127.0.0.1:9/bucket" in reason
        assert SECRET not in browser.page_source and "AKIAIOSFODNN7EXAMPLE" not in browser.page_source
    _, data = get(live.url(f"api/models/{MODEL}"))
    assert SECRET not in data and '"stable": 2' in data
    shot = tmp_path / "ui-screenshot.png"
    assert browser.save_screenshot(str(shot))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)


def test_unknown_model_is_a_404_page_and_names_are_escaped(browser: Any, live: Live) -> None:
    status, body = get(live.url("models/nope"))
    assert status == 404 and "nope" in body
    browser.get(live.url("models/nope"))
    assert css(browser, "h1.error")[0].text.startswith("404")
    hostile = "<script>window.__xss=3</script>"
    browser.get(live.url("models/" + urllib.request.quote(hostile, safe="")))
    assert css(browser, "h1.error")[0].text.startswith("404")
    assert hostile in css(browser, "p.message")[0].text
    assert browser.execute_script("return window.__xss") is None


def test_unreachable_server_is_shown_and_the_pages_still_render(
    browser: Any, tmp_path: Path, built: Path
) -> None:
    paths = with_metrics(make_home(tmp_path / "home", built, [1, 2], stable=1))
    grpc_port, rest_port = free_ports(2)
    dead = f"127.0.0.1:{grpc_port}"
    fleet.write_servers_file(paths, [fleet.ServerSpec(dead, f"127.0.0.1:{rest_port}")])
    before = tree_state(paths.home)
    ui = create_server(paths)
    try:
        browser.get(ui.url)
        health = wait_until(browser, lambda d: css(d, "table.servers .health.unreachable"), what="an unreachable server")
        assert dead in css(browser, "table.servers")[0].text and "unreachable" in health[0].text
        browser.get(ui.url + f"models/{MODEL}")
        cells = wait_until(browser, lambda d: css(d, "table#versions .state.unreachable"), what="unreachable states")
        assert len(cells) == 2
        assert "unreachable" in css(browser, '[data-live="summary"]')[0].text
        assert len(css(browser, "svg.chart circle.point")) == 2
    finally:
        ui.stop()
    assert tree_state(paths.home) == before  # read-only: nothing of the home changed
