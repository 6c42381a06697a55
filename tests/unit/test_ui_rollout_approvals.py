"""The model page, overview, version page and history page show a rollout in progress, aborted rollouts and approvals."""

from __future__ import annotations

from typing import Any

from lifecycle.ui import pages, reports

HOSTILE = '<script>alert(1)</script>'


def version(n: int, approval: str = "") -> dict[str, Any]:
    return {"version": n, "checkpoint": f"runs/r/ckpt-{n}", "step": n, "created": "2026-12-06T20:00:00+00:00",
            "validated": True, "miou": 0.5, "labels": [], "in_config": True, "servers": {}, "approval": approval}


def status(rollout: dict[str, Any] | None = None, approvals: tuple[str, str, str] = ("", "", "")) -> dict[str, Any]:
    model = {"name": "m", "stable": 2, "canary": None, "config": None, "drift": [], "warnings": [],
             "versions": [version(n, a) for n, a in zip((1, 2, 3), approvals, strict=True)]}
    return {"models": [model], "servers": {}, "servers_source": "none", "warnings": [], "rollout": rollout}


ROLLOUT = {
    "model": "m", "stable": 2, "candidate": 3, "step": "canary-10", "state": "traffic", "running": True,
    "weights": {"2": 0.9, "3": 0.1}, "shadow": 0.0, "judged": [{"step": "shadow", "verdict": "passed"}],
    "versions": {"2": {"requests": 180, "error_rate": 0.0, "p99_ms": 12.25, "agreement": None},
                 "3": {"requests": 20, "error_rate": 0.05, "p99_ms": 31.0, "agreement": 0.987}},
}
HISTORY = {"model": "m", "stable": 2, "canary": None, "events": [
    {"action": "promote", "from_version": 1, "to_version": 2, "result": "ok", "reason": "", "detail": "",
     "user": "alice", "time": "2026-12-06T20:00:00+00:00", "forced": False},
    {"action": "rollout", "from_version": 2, "to_version": 3, "result": "aborted", "reason": f"p99 too high {HOSTILE}",
     "detail": "step canary-10: p99 31.0 ms > 20 ms", "user": "bob", "time": "2026-12-06T21:00:00+00:00", "forced": False},
]}


def test_the_model_page_and_overview_show_a_rollout_in_progress() -> None:
    sections = pages.model_sections(status(ROLLOUT), HISTORY)
    html = sections["rollout"]
    assert "Rollout in progress" in html and "rollout in progress" in html
    assert '<b class="step">canary-10</b>' in html
    assert "stable <a" in html and ">2</a> 90 %" in html and "candidate <a" in html and ">3</a> 10 %" in html
    row3 = html.split('data-version="3"')[1].split("</tr>")[0]
    assert ">20<" in row3 and ">0.050<" in row3 and ">31.0 ms<" in row3 and ">0.987<" in row3
    row2 = html.split('data-version="2"')[1].split("</tr>")[0]
    assert ">180<" in row2 and ">12.2 ms<" in row2 and ">–<" in row2  # no agreement measured for the stable version
    assert "shadow passed" in html
    overview = pages.overview_sections(status(ROLLOUT))["notices"]
    assert "rollout in progress" in overview and "canary-10" in overview and "90 %" in overview


def test_no_rollout_or_another_models_rollout_leaves_the_section_empty() -> None:
    assert pages.model_sections(status(None), HISTORY)["rollout"] == ""
    assert pages.model_sections(status({**ROLLOUT, "model": "other"}), HISTORY)["rollout"] == ""
    assert "rollout" not in pages.overview_sections(status(None))["notices"]
    interrupted = pages.model_sections(status({**ROLLOUT, "running": False}), HISTORY)["rollout"]
    assert "rollout interrupted" in interrupted


def test_an_aborted_rollout_shows_its_reason_and_rollout_is_a_history_filter() -> None:
    page = reports.history_page("m", HISTORY, [1, 2, 3], "rollout", None, "home")
    assert "1 of 2 events" in page
    assert 'data-action="rollout"' in page and '<span class="result aborted">aborted</span>' in page
    assert "reason: p99 too high &lt;script&gt;" in page and "<script>alert" not in page
    assert "p99 31.0 ms &gt; 20 ms" in page
    assert 'href="/models/m/history?kind=rollout"' in page
    # The filter is offered even before any rollout happened.
    empty = reports.history_page("m", {**HISTORY, "events": HISTORY["events"][:1]}, [1, 2], None, None, "home")
    assert 'href="/models/m/history?kind=rollout"' in empty
    assert reports.history_page("m", HISTORY, [1, 2, 3], "failed", None, "home").count('class="event aborted"') == 1
    timeline = pages.model_sections(status(None), HISTORY)["timeline"]
    assert "aborted" in timeline and "p99 too high" in timeline


def test_approval_states_appear_in_the_versions_table_and_on_the_version_page() -> None:
    states = ("approved by alice", "rejected by bob", f"pending (1 of 2) {HOSTILE}")
    table = pages.model_sections(status(None, states), HISTORY)["versions"]
    assert "<th>approval</th>" in table
    assert '<span class="approval approved">approved by alice</span>' in table
    assert '<span class="approval rejected">rejected by bob</span>' in table
    assert '<span class="approval pending">pending (1 of 2) &lt;script&gt;' in table and "<script>" not in table
    # No approval required nor given: no column.
    assert "approval" not in pages.model_sections(status(None), HISTORY)["versions"]

    detail = {"version": 2, "numbers": [1, 2, 3], "created": "2026-12-06T20:00:00+00:00", "user": "alice",
              "validated": True, "step": 2, "report": {}, "source": {}}
    listed = version(2, "rejected by bob")
    page = reports.version_page("m", detail, listed, HISTORY, None, "home")
    assert "<th>approval</th><td><span class=\"approval rejected\">rejected by bob</span></td>" in page
    assert 'href="/models/m/versions/2/card"' in page  # the version's model card
    assert "<th>approval</th>" not in reports.version_page("m", detail, version(2), HISTORY, None, "home")
