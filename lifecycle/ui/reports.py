"""The page of one version (its registry report) and a model's history page with filters.

- ``/models/<m>/versions/<n>``: the version's record and whole validation report (metrics with
  the IoU of each class as a bar chart, signature, digests, checks, timings, TensorFlow
  version), its checkpoint's provenance, its pictures of the test image, its state on each
  server, and the history events that moved it.
- ``/models/<m>/history?kind=K&version=N``: every event, newest first, filtered by kind
  (an action such as promote, rollback or rollout, or ``failed`` for any event that did not succeed)
  and by version. The filters are a plain GET form and links, so they work without JavaScript.
"""

from __future__ import annotations

from typing import Any

from lifecycle.ui.chart import bar_chart
from lifecycle.ui.markup import (
    METRIC_NAMES,
    badge,
    crumbs,
    href,
    layout,
    score,
    scroll,
    section,
    state,
    t,
    version_link,
    when,
)
from lifecycle.ui.pages import approval, event_item, version_pictures

FAILED = "failed"  # the history filter for events whose result is not a success
ALWAYS = ("promote", "rollback", "rollout")  # kinds offered even before the history holds one
SUCCESS = {"ok", "recovered", "deleted"}  # results that are not failures (see HistoryEvent.result)


def _rows(pairs: list[tuple[str, str]], cls: str = "facts") -> str:
    """A two-column table of (already escaped) label and value, in a sideways-scrolling wrapper."""
    body = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in pairs if value not in ("", None))
    return scroll(f'<table class="{cls}">{body}</table>') if body else '<p class="empty">Not recorded.</p>'


def _code(value: Any) -> str:
    return f"<code>{t(value)}</code>" if value not in (None, "") else ""


def record_section(model: str, detail: dict[str, Any], listed: dict[str, Any] | None) -> str:
    """Heading, labels, neighbours and the record: created, user, validated, step, config, servers, TF version."""
    n, numbers = detail["version"], detail.get("numbers") or []
    listed = listed or {}
    labels = " ".join(badge(label) for label in listed.get("labels") or [])
    older = [x for x in numbers if x < n]
    newer = [x for x in numbers if x > n]
    nav = " · ".join(
        part for part in (
            f'<a rel="prev" href="{href("models", model, "versions", older[-1])}">← version {older[-1]}</a>' if older else "",
            f'<a href="{href("models", model, "history", query={"version": n})}">its history</a>',
            f'<a class="card-link" href="{href("models", model, "versions", n, "card")}">model card</a>',
            f'<a rel="next" href="{href("models", model, "versions", newer[0])}">version {newer[0]} →</a>' if newer else "",
        ) if part
    )
    report = detail.get("report") or {}
    servers = "".join(
        f'<div><span class="addr">{t(addr)}</span> {state(s)}</div>' for addr, s in sorted((listed.get("servers") or {}).items())
    )
    facts = [
        ("created", when(detail.get("created"))),
        ("by", t(detail.get("user"))),
        ("validated", "yes" if detail.get("validated") else '<b class="bad">no</b>'),
        ("step", t(detail.get("step"))),
        ("task", t(report.get("task"))),
        ("TensorFlow", t(report.get("tf_version"))),
        ("approval", approval(listed["approval"]) if listed.get("approval") else ""),
        ("in configs/models.config", "yes" if listed.get("in_config") else "no"),
        ("on the servers", servers or '<span class="empty">no server</span>'),
    ]
    return f'<h1>{t(model)} version {t(n)} {labels}</h1><p class="nav">{nav}</p>' + _rows(facts)


def source_section(detail: dict[str, Any]) -> str:
    """Where the version came from: the checkpoint (or SavedModel) and its provenance."""
    src = detail.get("source") or {}
    facts = [
        ("path", _code(detail.get("checkpoint"))),
        ("kind", t(src.get("kind"))),
        ("step", t(src.get("step") if src.get("step") is not None else detail.get("step"))),
        ("TensorFlow", t(src.get("tf_version"))),
        ("seen", when(src.get("created")) if src.get("created") else ""),
        ("by", t(src.get("user"))),
        ("digest", _code(detail.get("checkpoint_digest"))),
    ]
    return '<h2 id="source">Source</h2>' + _rows(facts)


def metrics_section(detail: dict[str, Any]) -> str:
    """The eval metrics: mIoU or accuracy, pixel accuracy, the evaluation set, and IoU per class as bars."""
    metrics = (detail.get("report") or {}).get("metrics") or {}
    if not metrics:
        return '<h2>Metrics</h2><p class="empty">No metrics recorded.</p>'
    scalars = [(t(METRIC_NAMES.get(k, k.replace("_", " "))), score(float(v)))
               for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    ev = metrics.get("eval") or {}
    if ev:
        scalars.append(("evaluation set", t(", ".join(f"{k} {v}" for k, v in ev.items()))))
    per_class = {str(k): float(v) for k, v in (metrics.get("per_class_iou") or {}).items()}
    bars = "<h3>IoU per class</h3>" + bar_chart(per_class, "IoU per class") if per_class else ""
    return "<h2>Metrics</h2>" + _rows(scalars) + bars


def _tensors(tensors: dict[str, Any]) -> str:
    return "".join(
        f"<tr><td><code>{t(name)}</code></td><td>{t((spec or {}).get('dtype'))}</td>"
        f"<td><code>{t((spec or {}).get('shape'))}</code></td></tr>"
        for name, spec in sorted(tensors.items())
    )


def signature_section(detail: dict[str, Any]) -> str:
    """The signature clients call (key, method, inputs and outputs with dtype and shape), and the others'."""
    report = detail.get("report") or {}
    sig = report.get("signature") or {}
    if not sig:
        return '<h2>Signature</h2><p class="empty">No signature recorded.</p>'
    rows = (
        f'<tr class="group"><th colspan="3">inputs</th></tr>{_tensors(sig.get("inputs") or {})}'
        f'<tr class="group"><th colspan="3">outputs</th></tr>{_tensors(sig.get("outputs") or {})}'
    )
    others = sorted(k for k in (report.get("signatures") or {}) if k != sig.get("key"))
    return (
        f'<h2>Signature</h2><p><code>{t(sig.get("key"))}</code> · {t(sig.get("method"))}'
        + (f" · also {', '.join(f'<code>{t(k)}</code>' for k in others)}" if others else "") + "</p>"
        + scroll(f'<table class="signature"><thead><tr><th>tensor</th><th>dtype</th><th>shape</th></tr></thead>'
                 f"<tbody>{rows}</tbody></table>")
    )


def digests_section(detail: dict[str, Any]) -> str:
    """The digests that identify the version: its source's content and its recorded answer to the test image."""
    golden = (detail.get("report") or {}).get("golden") or {}
    facts = [
        ("source content", _code(detail.get("checkpoint_digest"))),
        ("answer to the test image", _code(golden.get("digest"))),
        ("of output", t(f"{golden['output']} {golden.get('shape', '')}") if golden.get("output") else ""),
        ("test image", _code(f"{golden.get('image', '')} {golden.get('image_digest', '')}".strip())),
    ]
    return "<h2>Digests</h2>" + _rows(facts, "facts digests")


def checks_section(detail: dict[str, Any]) -> str:
    """What validation checked, one line each, and how long each step took."""
    report = detail.get("report") or {}
    checks = _rows([(t(k.replace("_", " ")), t(v)) for k, v in (report.get("checks") or {}).items()])
    timings = report.get("timings") or {}
    times = _rows([(t(k.removesuffix("_s")), f"{float(v):.3f} s") for k, v in timings.items()], "facts timings")
    network = report.get("network") or {}
    net = _rows([(t(k), _code(v)) for k, v in network.items()]) if network else ""
    return (f"<h2>Checks</h2>{checks}<h2>Timings</h2>{times}" + (f"<h2>Network</h2>{net}" if net else ""))


def touches(e: dict[str, Any], version: int) -> bool:
    """Whether history event ``e`` moved ``version`` (from or to it)."""
    return version in (e.get("from_version"), e.get("to_version"))


def events_list(events: list[dict[str, Any]], model: str, empty: str) -> str:
    """Events newest first as a timeline."""
    if not events:
        return f'<p class="empty">{t(empty)}</p>'
    return f'<ol class="timeline">{"".join(event_item(e, model) for e in reversed(events))}</ol>'


def version_page(model: str, detail: dict[str, Any], listed: dict[str, Any] | None, history: dict[str, Any],
                 no_masks: str | None, home: str) -> str:
    """The page of one version: record, source, metrics, signature, digests, checks, pictures and history."""
    n = detail["version"]
    mine = [e for e in history.get("events") or [] if touches(e, n)]
    pics = f'<p class="empty">{t(no_masks)}</p>' if no_masks else (
        f'<figure class="pair">{version_pictures(model, n, 320)}</figure>'
    )
    parts = {  # in pairs on a wide screen: source | digests, metrics | signature (see ui.css)
        "record": record_section(model, detail, listed),
        "source": source_section(detail),
        "digests": digests_section(detail),
        "metrics": metrics_section(detail),
        "signature": signature_section(detail),
        "pictures": "<h2>Test image: mask and overlay</h2>" + pics,
        "history": "<h2>History of this version</h2>" + events_list(mine, model, f"No event has moved version {n}."),
        "checks": checks_section(detail),
    }
    body = "".join(section(k, v) for k, v in parts.items())
    return layout(f"{model} {n}", body, home=home, crumbs=crumbs(model, f"version {n}"), kind="version")


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """The kinds a history can be filtered by: promote, rollback, rollout and each other action it holds, then ``failed``."""
    return sorted({str(e.get("action")) for e in events if e.get("action")} | set(ALWAYS)) + [FAILED]


def matches(e: dict[str, Any], kind: str | None, version: int | None) -> bool:
    """Whether event ``e`` is of ``kind`` (an action, or ``failed``) and moved ``version`` (None: any)."""
    if kind == FAILED and e.get("result") in SUCCESS:
        return False
    if kind not in (None, FAILED) and e.get("action") != kind:
        return False
    return version is None or touches(e, version)


def history_page(model: str, history: dict[str, Any], numbers: list[int], kind: str | None, version: int | None,
                 home: str) -> str:
    """Every event of the model, newest first, filtered by kind and version (GET parameters, no script needed)."""
    events = history.get("events") or []
    shown = [e for e in events if matches(e, kind, version)]

    def chip(label: str, value: str | None) -> str:
        cls = "chip on" if value == kind else "chip"
        return f'<a class="{cls}" href="{href("models", model, "history", query={"kind": value, "version": version})}">{t(label)}</a>'

    chips = chip("all", None) + "".join(chip(k, k) for k in kinds(events))

    def options(values: list[str], chosen: str | None) -> str:
        return "".join(f'<option value="{t(v)}"{" selected" if v == chosen else ""}>{t(v or "any")}</option>' for v in values)

    form = (
        f'<form class="filters" method="get" action="{href("models", model, "history")}">'
        f'<label>kind <select name="kind">{options(["", *kinds(events)], kind or "")}</select></label> '
        f'<label>version <select name="version">{options(["", *map(str, numbers)], str(version) if version else "")}'
        '</select></label> <button type="submit">filter</button></form>'
    )
    what = "".join(x for x in (f" · kind {t(kind)}" if kind else "", f" · version {version_link(model, version)}" if version else ""))
    heading = f'<h1>{t(model)}: history</h1><p class="count">{len(shown)} of {len(events)} events{what}</p>'
    body = section("filters", heading + f'<nav class="chips">{chips}</nav>' + form) + section(
        "events", events_list(shown, model, "No event matches these filters." if events else "No promote or rollback yet.")
    )
    return layout(f"{model} history", body, home=home, crumbs=crumbs(model, "history"), kind="history")
