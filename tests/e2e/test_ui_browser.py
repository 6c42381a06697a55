"""``mlc ui`` in a real browser: headless Chromium (selenium) on a home served by a real mlc-model-server.

The home has half_plus_two versions 1, 2, 3 of model ``hpt`` (stable 1) with mIoU figures (and
IoU per class) in their reports; a promote is made with the CLI in a child process while the
page is open. Chromium is also driven as a phone (390 px), in dark mode and in another time
zone through its DevTools protocol (tests/support/browser.py ``emulated``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lifecycle import api
from lifecycle.operations.status import state_words
from lifecycle.serving import fleet
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.ui import UiServer, create_server, records
from tests.support.browser import PHONE, emulated, wait_until
from tests.support.homes import REPO_ROOT, tree_state
from tests.support.ports import free_ports
from tests.support.rollout_support import MODEL, build_versions, make_home, start_server
from tests.support.ui_homes import registry_home

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
            v.report["metrics"] = {"miou": MIOU[v.version], "pixel_accuracy": 0.9,
                                   "per_class_iou": {"background": 0.95, "cat": MIOU[v.version], "dog": 0.0}}
            v.report["signature"] = {"key": "serving_default", "method": "tensorflow/serving/predict",
                                     "inputs": {"x": {"dtype": "float32", "shape": [-1, 1]}},
                                     "outputs": {"y": {"dtype": "float32", "shape": [-1, 1]}}}
            v.report["tf_version"] = "2.99.0"
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
    assert row.find_element("css selector", "td.stable a").get_attribute("href") == live.url(f"models/{MODEL}/versions/1")
    servers = css(browser, "table.servers tr.server")[0].text
    rest = records.rest_addresses(live.paths)
    grpc_address, rest_address = next(iter(rest.items()))
    assert grpc_address in servers and str(rest_address) in servers and "ok" in servers
    assert "hpt: 1 AVAILABLE" in servers  # the versions the server holds, with their states
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


def no_page_scroll(driver: Any) -> tuple[int, int]:
    """(the page's scroll width, the window's inner width); the first must not exceed the second."""
    return tuple(driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]"))


PAGES = {  # page -> what shows it has rendered
    "": "table.models", f"models/{MODEL}": "table#versions", f"models/{MODEL}/versions/1": "svg.bars",
    f"models/{MODEL}/history": "ol.timeline",
}


def test_every_page_fits_a_phone_and_its_tables_scroll_inside_their_cards(browser: Any, live: Live) -> None:
    with emulated(browser, phone=True):
        for path, marker in PAGES.items():
            browser.get(live.url(path))
            wait_until(browser, lambda d, m=marker: css(d, m), what=f"{marker} on /{path}")
            width, inner = no_page_scroll(browser)
            assert inner == PHONE["width"] and width <= inner, f"/{path} is {width} px wide on a {inner} px phone"
            wrappers = browser.execute_script(
                "return Array.from(document.querySelectorAll('table'))"
                ".map(t => getComputedStyle(t.parentElement).overflowX)"
            )
            assert set(wrappers) <= {"auto"}, f"/{path}: a table outside a scrolling wrapper"
        browser.get(live.url(f"models/{MODEL}"))
        wrapper = wait_until(browser, lambda d: css(d, '[data-live="versions"] .scroll'), what="the versions table")[0]
        assert int(wrapper.get_attribute("scrollWidth")) > int(wrapper.get_attribute("clientWidth"))  # it scrolls, not the page


def test_the_version_page_shows_its_report_pictures_digests_and_history(browser: Any, live: Live) -> None:
    browser.get(live.url(f"models/{MODEL}"))
    wait_until(browser, lambda d: css(d, 'tr.version[data-version="1"] td.num a'), what="version links")[0].click()
    wait_until(browser, lambda d: css(d, "svg.bars"), what="the version page")
    assert browser.current_url == live.url(f"models/{MODEL}/versions/1")
    bars = {b.get_attribute("data-name"): float(b.get_attribute("data-value")) for b in css(browser, "svg.bars rect.bar")}
    assert bars == {"background": 0.95, "cat": MIOU[1], "dog": 0.0}
    assert [x.text for x in css(browser, "svg.bars text.tick")] == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    record = css(browser, '[data-live="record"]')[0].text
    [listed] = [v for v in api.status(MODEL, paths=live.paths, all_versions=True).models[0].versions if v.version == 1]
    [(server, state)] = listed.servers.items()  # AVAILABLE, or END once a promote has moved stable on
    assert "2.99.0" in record and f"{server} {state_words(state)}" in record  # END reads unloaded
    assert "0.9000" in css(browser, '[data-live="metrics"]')[0].text  # pixel accuracy
    assert "serving_default" in css(browser, '[data-live="signature"]')[0].text
    digests = css(browser, '[data-live="digests"]')[0].text
    assert "digest1" in digests and registry.load(live.paths).model(MODEL).version(1).report["golden"]["digest"] in digests
    assert "ckpt/run/ckpt-1" in css(browser, "#source")[0].find_element("xpath", "..").text
    # hpt has no test image: the section says so (test_ui_pictures.py shows a DeepLab version's pictures).
    assert "No test image" in css(browser, '[data-live="pictures"]')[0].text
    events = css(browser, '[data-live="history"] li.event')
    assert events and all(" 1" in e.text or "→ 1" in e.text for e in events)
    assert get(live.url(f"models/{MODEL}/versions/9"))[0] == 404


def test_the_history_page_filters_by_kind_and_version_without_javascript(browser: Any, live: Live) -> None:
    events = api.history(MODEL, paths=live.paths).events
    status, body = get(live.url(f"models/{MODEL}/history?kind=rollback"))
    assert status == 200 and "0 of" in body and "No event matches" in body
    status, body = get(live.url(f"models/{MODEL}/history?kind=promote&version=1"))
    touching = [e for e in events if e.action == "promote" and 1 in (e.from_version, e.to_version)]
    assert f"{len(touching)} of {len(events)} events" in body
    assert get(live.url(f"models/{MODEL}/history?version=x"))[0] == 400
    browser.get(live.url(f"models/{MODEL}/history"))
    wait_until(browser, lambda d: css(d, "nav.chips a.chip"), what="the filter chips")
    [chip] = [c for c in css(browser, "nav.chips a.chip") if c.text == "promote"]
    chip.click()
    wait_until(browser, lambda d: "kind=promote" in d.current_url, what="the promote filter")
    assert all(e.get_attribute("data-action") == "promote" for e in css(browser, "ol.timeline li.event"))
    link = css(browser, "ol.timeline li.event a.version-link")[0]
    number = link.text
    link.click()
    wait_until(browser, lambda d: d.current_url.endswith(f"/versions/{number}"), what="the version page")


def test_labels_are_badges_and_times_are_local_with_a_relative_hint(browser: Any, live: Live) -> None:
    _, html = get(live.url(f"models/{MODEL}"))
    assert "{'" not in html and "UTC</time>" in html  # no Python dict; readable UTC without JavaScript
    when = registry.load(live.paths).model(MODEL).history[0].time
    local = (datetime.fromisoformat(when).astimezone(UTC) + timedelta(hours=5, minutes=30)).strftime(
        "%Y-%m-%d %H:%M:%S")
    with emulated(browser, timezone="Asia/Kolkata"):  # UTC+05:30, no summer time
        browser.get(live.url(f"models/{MODEL}/history"))
        shown = wait_until(browser, lambda d: [x.text for x in css(d, "ol.timeline time") if "ago" in x.text or "now" in x.text],
                           what="localised times")
    assert any(text.startswith(local) for text in shown), (local, shown)
    browser.get(live.url(f"models/{MODEL}"))
    badges = wait_until(browser, lambda d: css(d, '[data-live="summary"] .badge.stable'), what="the stable badge")
    assert badges[0].text.startswith("stable ")


def background(driver: Any, selector: str) -> str:
    return driver.execute_script("return getComputedStyle(document.querySelector(arguments[0])).backgroundColor", selector)


def test_the_page_follows_the_system_dark_preference(browser: Any, live: Live) -> None:
    browser.get(live.url(f"models/{MODEL}"))
    wait_until(browser, lambda d: css(d, "svg.chart circle.point"), what="the chart")
    assert background(browser, "body") == "rgb(247, 248, 250)"
    with emulated(browser, dark=True):
        browser.get(live.url(f"models/{MODEL}"))
        wait_until(browser, lambda d: css(d, "svg.chart circle.point"), what="the chart")
        assert background(browser, "body") == "rgb(13, 17, 23)"
        assert background(browser, "svg.chart") == "rgb(22, 27, 34)"  # the chart's colours follow too
        fill = browser.execute_script("return getComputedStyle(document.querySelector('svg.chart .point')).fill")
        assert fill == "rgb(230, 237, 243)"


def test_no_server_running_is_said_and_never_shown_as_agreement(browser: Any, tmp_path: Path) -> None:
    paths = registry_home(tmp_path / "home")  # as `mlc stop` leaves a home: no servers file, no live server record
    ui = create_server(paths)
    try:
        browser.get(ui.url)
        wait_until(browser, lambda d: css(d, '[data-live="servers"] .no-server'), what="no server running")
        assert "No server running" in css(browser, 'tr.model[data-model="hpt"] td.problems')[0].text
        assert "in sync" not in css(browser, 'tr.model[data-model="hpt"]')[0].text
        browser.get(ui.url + f"models/{MODEL}")
        summary = wait_until(browser, lambda d: css(d, '[data-live="summary"]'), what="the summary")[0].text
        assert "No server running" in summary and "agree" not in summary
        assert not css(browser, "p.ok")
    finally:
        ui.stop()


def test_approval_states_show_in_the_versions_table_and_on_the_version_page_on_a_phone(browser: Any, live: Live) -> None:
    # Last in the module: it records decisions in the shared home's registry.
    api.decide(MODEL, 1, "approve", "checked the failure cases", paths=live.paths)
    api.decide(MODEL, 2, "reject", "worse on cats", paths=live.paths)
    with emulated(browser, phone=True):
        browser.get(live.url(f"models/{MODEL}"))
        cell = wait_until(browser, lambda d: css(d, 'tr.version[data-version="2"] td.approval'), what="the approval column")
        assert cell[0].text.startswith("rejected by ")
        states = {v.version: v.approval for v in api.status(MODEL, paths=live.paths, all_versions=True).models[0].versions}
        for n, text in states.items():  # no approval required here: an approved version reads "not required"
            assert css(browser, f'tr.version[data-version="{n}"] td.approval')[0].text == (text or "–")
        width, inner = no_page_scroll(browser)
        assert width <= inner, f"the model page is {width} px wide on a {inner} px phone"
        browser.get(live.url(f"models/{MODEL}/versions/2"))
        record = wait_until(browser, lambda d: css(d, '[data-live="record"] .approval.rejected'), what="the approval")
        assert record[0].text.startswith("rejected by ")
        assert css(browser, "a.card-link")[0].get_attribute("href") == live.url(f"models/{MODEL}/versions/2/card")
