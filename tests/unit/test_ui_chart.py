"""mlc ui on plain data: round chart ticks, the history filters, label badges and times."""

from __future__ import annotations

import re

import pytest

from lifecycle.ui import markup, reports
from lifecycle.ui.chart import Point, bar_chart, metric_chart, nice_ticks, tick_label


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (0.113, 0.202, [0.1, 0.125, 0.15, 0.175, 0.2, 0.225]),
        (0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]),
        (0.55, 0.79, [0.5, 0.6, 0.7, 0.8]),
        (3, 97, [0, 25, 50, 75, 100]),
    ],
)
def test_ticks_are_round_steps_that_cover_the_range(lo: float, hi: float, ticks: list[float]) -> None:
    assert nice_ticks(lo, hi) == pytest.approx(ticks)


def test_every_tick_of_a_chart_is_a_multiple_of_1_2_2_5_or_5_times_a_power_of_ten() -> None:
    svg = metric_chart([Point(1, 0.113), Point(2, 0.202), Point(3, 0.16)], stable=2, canary=None)
    labels = [float(x) for x in re.findall(r'<text class="tick" x="[\d.]+" y="[\d.]+" text-anchor="end">([\d.]+)</text>', svg)]
    assert labels == pytest.approx([0.1, 0.15, 0.2, 0.25])  # the padded range 0.104-0.211, on steps of 0.05
    assert "0.113" not in svg.split("<polyline")[0]  # no tick at the data's own odd values
    assert tick_label(0.5, 0.25) == "0.50" and tick_label(50, 25) == "50"


def test_bar_chart_has_a_bar_per_class_on_a_0_to_1_axis() -> None:
    svg = bar_chart({"background": 0.9, "cat": 0.0, "<dog>": 0.5}, "IoU per class")
    assert re.findall(r'data-name="([^"]+)"', svg) == ["background", "cat", "&lt;dog&gt;"]
    assert re.findall(r'text-anchor="middle">([\d.]+)</text>', svg) == ["0.00", "0.25", "0.50", "0.75", "1.00"]


def test_labels_are_badges_not_a_python_dict() -> None:
    html = markup.label_badges({"canary": 3, "stable": 2}, "m")
    assert "{" not in html and html.index("stable") < html.index("canary")
    assert 'class="badge stable">stable <a class="version-link" href="/models/m/versions/2">2</a>' in html


def test_times_are_readable_utc_with_an_iso_datetime_for_the_script() -> None:
    html = markup.when("2026-12-06T20:57:26+01:00")
    assert 'datetime="2026-12-06T19:57:26+00:00"' in html and ">2026-12-06 19:57:26 UTC</time>" in html
    assert markup.when("not a time") == "<time>not a time</time>"


EVENTS = [
    {"action": "promote", "from_version": None, "to_version": 1, "result": "ok"},
    {"action": "promote", "from_version": 1, "to_version": 2, "result": "reverted"},
    {"action": "rollback", "from_version": 2, "to_version": 1, "result": "ok"},
    {"action": "gc", "from_version": 3, "to_version": None, "result": "deleted"},
]


@pytest.mark.parametrize(
    ("kind", "version", "expected"),
    [(None, None, [0, 1, 2, 3]), ("promote", None, [0, 1]), ("failed", None, [1]), ("rollback", 2, [2]),
     (None, 3, [3]), ("gc", 1, [])],
)
def test_history_filters_by_kind_and_version(kind: str | None, version: int | None, expected: list[int]) -> None:
    assert [i for i, e in enumerate(EVENTS) if reports.matches(e, kind, version)] == expected
    assert reports.kinds(EVENTS) == ["gc", "promote", "rollback", "rollout", "failed"]  # rollout offered before one ran
