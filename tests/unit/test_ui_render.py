"""mlc ui's rendering on plain data: the SVG chart, escaping and credential redaction."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from lifecycle.ui import pages
from lifecycle.ui.chart import Point, metric_chart
from lifecycle.ui.redact import redact, redact_data

SVG = "{http://www.w3.org/2000/svg}"


def points_of(svg: str) -> dict[int, dict[str, str]]:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    return {
        int(c.get("data-version", "0")): dict(c.attrib)
        for c in root.iter(f"{SVG}circle") if "point" in c.get("class", "").split()
    }


def test_chart_has_one_point_per_measured_version_with_stable_and_canary_marked() -> None:
    svg = metric_chart([Point(1, 0.5), Point(2, None), Point(3, 0.7), Point(4, 0.6)], stable=3, canary=4)
    points = points_of(svg)
    assert sorted(points) == [1, 3, 4]  # version 2 has no value: no point
    assert points[3]["class"] == "point stable" and points[4]["class"] == "point canary"
    assert points[1]["class"] == "point"
    assert float(points[3]["data-value"]) == pytest.approx(0.7)
    # Higher values are drawn higher (smaller y).
    assert float(points[3]["cy"]) < float(points[4]["cy"]) < float(points[1]["cy"])
    assert ">stable</text>" in svg and ">canary</text>" in svg


def test_chart_of_one_version_and_of_none() -> None:
    assert sorted(points_of(metric_chart([Point(7, 0.3)], stable=7, canary=None))) == [7]
    assert "No version has a recorded" in metric_chart([Point(1, None)], None, None)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@minio:9000/bucket/prefix", "wJalrXUtnFEMI"),
        ("https://s3.example/b/k?X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=deadbeef&v=1", "deadbeef"),
        ("aws_secret_access_key = abc123xyz", "abc123xyz"),
        ("password: hunter22", "hunter22"),
    ],
)
def test_redact_masks_credentials(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "***" in redact(text)


def test_redact_masks_secret_environment_values_and_keeps_ordinary_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Zm9vYmFyc2VjcmV0")
    assert redact("failed with key Zm9vYmFyc2VjcmV0 today") == "failed with key *** today"
    assert redact("version 3 of deeplab at http://127.0.0.1:8501/v1") == "version 3 of deeplab at http://127.0.0.1:8501/v1"
    assert redact_data({"a": ["s3://k:Zm9vYmFyc2VjcmV0@h/b", 3]}) == {"a": ["s3://***@h/b", 3]}


HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def hostile_status() -> tuple[dict, dict]:
    version = {
        "version": 1, "checkpoint": HOSTILE, "step": 5, "created": HOSTILE, "validated": True,
        "golden_digest": None, "miou": 0.5, "labels": ["stable"], "in_config": True,
        "servers": {HOSTILE: "END: " + HOSTILE},
    }
    model = {
        "name": "m", "stable": 1, "canary": None, "versions": [version], "config": None,
        "drift": [HOSTILE], "warnings": [HOSTILE], "last_event": {"action": HOSTILE, "result": HOSTILE},
    }
    status = {"models": [model], "servers": {HOSTILE: "unreachable: " + HOSTILE}, "servers_source": HOSTILE,
              "pending_rollout": None, "warnings": [HOSTILE]}
    history = {"model": "m", "stable": 1, "canary": None, "events": [
        {"action": "promote", "from_version": None, "to_version": 1, "result": "ok", "reason": HOSTILE,
         "detail": HOSTILE, "user": HOSTILE, "time": HOSTILE, "forced": False}]}
    return status, history


def test_every_section_escapes_what_it_shows() -> None:
    status, history = hostile_status()
    html = "".join(pages.model_sections(status, history, None).values()) + "".join(
        pages.overview_sections(status).values()
    )
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img" in html
    # Every tag in the output is one the renderer writes itself.
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {"h1", "h2", "p", "b", "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "span", "a",
                    "small", "svg", "title", "line", "text", "polyline", "circle", "ol", "time", "div", "img",
                    "figure", "figcaption", "form", "label", "select", "option", "button"}
    imgs = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert imgs and all(src.startswith("/models/m/versions/") for src in imgs)


def test_page_layout_loads_only_its_own_script_and_stylesheet() -> None:
    html = pages.layout("t", "<p>x</p>", poll="/api/status", home="/h")
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == ["/static/ui.css", "/static/ui.js", "/"]
    assert "<script>" not in html  # no inline script (the Content-Security-Policy forbids it)


def test_a_classifier_is_charted_and_listed_by_its_accuracy() -> None:
    versions = [
        {"version": n, "checkpoint": f"ckpt-{n}", "step": n, "created": "2026-11-29T18:00:00Z", "validated": True,
         "golden_digest": None, "miou": None, "accuracy": acc, "labels": [], "in_config": False, "servers": {}}
        for n, acc in ((1, 0.81), (2, 0.86))
    ]
    model = {"name": "shapes", "stable": 2, "canary": None, "versions": versions, "config": None, "drift": [],
             "warnings": [], "last_event": None, "metric": "accuracy"}
    status = {"models": [model], "servers": {}, "servers_source": "none", "pending_rollout": None, "warnings": []}
    sections = pages.model_sections(status, {"model": "shapes", "events": []}, None)
    html = "".join(sections.values())
    assert "<h2>accuracy by version</h2>" in html and "<th>accuracy</th>" in html and "mIoU" not in html
    chart = html[html.index("<svg"):html.index("</svg>") + 6]
    assert {v: float(p["data-value"]) for v, p in points_of(chart).items()} == {1: 0.81, 2: 0.86}
    assert '<td class="num metric">0.8600</td>' in html
