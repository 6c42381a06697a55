"""HTML of the UI's pages, built from the api's plain results (``to_dict()``), escaped in one place.

Every piece of text that reaches the page goes through :func:`t` (credentials masked, then
``html.escape``), and every model name in a URL through :func:`href`. A page is a set of named
*sections*; the same functions render a section for the first page load and for the JSON the
page polls (:mod:`lifecycle.ui.app`), so live updates cannot drift from the first render.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from html import escape
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from lifecycle.ui.chart import Point, metric_chart
from lifecycle.ui.redact import redact

POLL_MS = 1500  # how often an open page asks for live state


def t(value: Any) -> str:
    """Text for the page: credentials masked, HTML escaped (quotes too, so it is safe in attributes)."""
    return escape(redact("" if value is None else str(value)), quote=True)


def href(*parts: Any) -> str:
    """An escaped absolute URL path from segments (a model name is one segment)."""
    return escape("/" + "/".join(quote(str(p), safe="") for p in parts), quote=True)


def digest(html: str) -> str:
    """A short fingerprint of a section, so the page swaps only the sections that changed."""
    return hashlib.sha256(html.encode()).hexdigest()[:16]


def section(name: str, html: str, tag: str = "section") -> str:
    """A live section: replaced by the page's script when the polled HTML differs."""
    return f'<{tag} data-live="{escape(name)}" data-digest="{digest(html)}">{html}</{tag}>'


def layout(title: str, body: str, poll: str | None = None, home: str = "", crumbs: str = "", kind: str = "") -> str:
    """A whole page: header, body, the stylesheet and the polling script (both shipped in the package)."""
    poll_attrs = f' data-poll="{escape(poll)}" data-interval="{POLL_MS}"' if poll else ""
    live = '<span id="live-state" class="live">live</span>' if poll else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{t(title)} · mlc</title>"
        '<link rel="stylesheet" href="/static/ui.css">'
        '<script src="/static/ui.js" defer></script>'
        f"</head><body{poll_attrs}>"
        f'<header><a class="brand" href="/">mlc</a>{crumbs}<span class="home" title="mlc home">{t(home)}</span>{live}</header>'
        f'<main class="{escape(kind)}">{body}</main></body></html>\n'
    )


def _list(items: Iterable[Any], cls: str) -> str:
    rows = "".join(f"<li>{t(i)}</li>" for i in items)
    return f'<ul class="{cls}">{rows}</ul>' if rows else ""


def _badge(label: str) -> str:
    return f'<span class="badge {escape(label)}">{t(label)}</span>'


def _state(state: str) -> str:
    """A server's state of a version, classed by its first word (available, loading, end, unreachable)."""
    word = (state or "-").split(":")[0].strip().lower()
    cls = word if word in {"available", "loading", "start", "unloading", "unreachable", "unknown"} else "none"
    if word == "end" and ":" in state:  # END with an error: the version failed to load
        cls = "failed"
    return f'<span class="state {cls}">{t(state)}</span>'


def _health(state: str) -> str:
    word = state.split(":")[0].strip().lower()
    cls = "ok" if word == "ok" else "unreachable" if word == "unreachable" else "unknown"
    return f'<span class="health {cls}">{t(state)}</span>'


def _v(n: int | None) -> str:
    return "–" if n is None else t(n)


METRIC_NAMES = {"miou": "mIoU", "accuracy": "accuracy"}  # ModelStatus.metric as the pages name it


def _score(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


# --- overview ------------------------------------------------------------------------------------


def notices(status: dict[str, Any]) -> str:
    """Home-wide warnings: a pending rollout, an unreadable servers file or config."""
    return _list(status.get("warnings") or [], "warnings")


def servers_table(status: dict[str, Any]) -> str:
    """Each server mlc drives and whether it answers."""
    servers = status.get("servers") or {}
    if not servers:
        return "<h2>Servers</h2><p class=\"empty\">No server is known: start one with <code>mlc serve</code>.</p>"
    rows = "".join(
        f'<tr><td class="addr">{t(addr)}</td><td>{_health(state)}</td></tr>' for addr, state in sorted(servers.items())
    )
    source = status.get("servers_source") or ""
    return (
        f'<h2>Servers <small>({t(source)})</small></h2>'
        f'<table class="servers"><thead><tr><th>server (gRPC)</th><th>health</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def models_table(status: dict[str, Any]) -> str:
    """Every model: stable, canary, versions, drift and warnings, the last rollout."""
    models = status.get("models") or []
    if not models:
        return "<h2>Models</h2><p class=\"empty\">No model is registered yet: <code>mlc register CHECKPOINT</code>.</p>"
    rows = []
    for m in models:
        versions = m.get("versions") or []
        latest = max((v["version"] for v in versions), default=None)
        last = m.get("last_event") or {}
        last_html = (
            f"{t(last.get('action'))} {_v(last.get('from_version'))} → {_v(last.get('to_version'))}: "
            f"{t(last.get('result'))}" if last else "–"
        )
        problems = _list(m.get("drift") or [], "drift") + _list(m.get("warnings") or [], "warnings")
        rows.append(
            f'<tr class="model" data-model="{t(m["name"])}">'
            f'<td><a href="{href("models", m["name"])}">{t(m["name"])}</a></td>'
            f'<td class="stable">{_v(m.get("stable"))}</td><td class="canary">{_v(m.get("canary"))}</td>'
            f"<td>{m.get('versions_total', len(versions))} (latest {_v(latest)})</td><td>{last_html}</td>"
            f'<td class="problems">{problems or "<span class=ok>in sync</span>"}</td></tr>'
        )
    return (
        "<h2>Models</h2><table class=\"models\"><thead><tr><th>model</th><th>stable</th><th>canary</th>"
        "<th>versions</th><th>last rollout</th><th>drift and warnings</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def overview_sections(status: dict[str, Any]) -> dict[str, str]:
    """The overview's live sections."""
    return {"notices": notices(status), "models": models_table(status), "servers": servers_table(status)}


def overview_page(sections: dict[str, str], home: str) -> str:
    """The overview: every model, every server."""
    body = "".join(section(name, html) for name, html in sections.items())
    return layout("models", body, poll="/api/status", home=home)


# --- model page ----------------------------------------------------------------------------------


def model_summary(model: dict[str, Any], status: dict[str, Any]) -> str:
    """Stable, canary, drift and warnings of one model, and the home's own warnings."""
    problems = _list(model.get("drift") or [], "drift") + _list(model.get("warnings") or [], "warnings")
    config = model.get("config")
    served = (
        f"versions {t(sorted(config.get('versions') or []))}, labels {t(dict(sorted((config.get('labels') or {}).items())))}"
        if config else "nothing"
    )
    return (
        f'<h1>{t(model["name"])}</h1><p class="labels">stable <b class="stable">{_v(model.get("stable"))}</b> · '
        f'canary <b class="canary">{_v(model.get("canary"))}</b> · configs/models.config serves {served}</p>'
        f"{problems or '<p class=ok>Registry, config and servers agree.</p>'}{notices(status)}"
    )


def versions_table(model: dict[str, Any], servers: list[str]) -> str:
    """Each version: step, created, source, validated, metric, labels, config and state per server."""
    versions = sorted(model.get("versions") or [], key=lambda v: v["version"], reverse=True)
    if not versions:
        return "<h2>Versions</h2><p class=\"empty\">No version yet.</p>"
    metric = model.get("metric") or "miou"
    head = "".join(f'<th class="server">{t(s)}</th>' for s in servers)
    rows = []
    for v in versions:
        cells = "".join(f"<td>{_state((v.get('servers') or {}).get(s, '-'))}</td>" for s in servers)
        labels = " ".join(_badge(label) for label in v.get("labels") or [])
        rows.append(
            f'<tr class="version" data-version="{t(v["version"])}"><td class="num">{t(v["version"])}</td>'
            f'<td class="num">{_v(v.get("step"))}</td><td class="time">{t(v.get("created"))}</td>'
            f'<td class="source">{t(v.get("checkpoint"))}</td>'
            f'<td>{"yes" if v.get("validated") else "<b class=bad>no</b>"}</td>'
            f'<td class="num metric">{_score(v.get(metric))}</td><td class="labels">{labels}</td>'
            f'<td>{"yes" if v.get("in_config") else "–"}</td>{cells}</tr>'
        )
    return (
        '<h2>Versions</h2><table class="versions" id="versions"><thead><tr><th>version</th><th>step</th>'
        f"<th>created</th><th>source</th><th>validated</th><th>{METRIC_NAMES[metric]}</th><th>labels</th><th>in config</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def chart(model: dict[str, Any]) -> str:
    """The model's eval metric (mIoU, or a classifier's accuracy) over versions, stable and canary marked."""
    metric = model.get("metric") or "miou"
    points = [Point(v["version"], v.get(metric)) for v in model.get("versions") or []]
    name = METRIC_NAMES[metric]
    return f"<h2>{name} by version</h2>" + metric_chart(points, model.get("stable"), model.get("canary"), name)


def timeline(history: dict[str, Any]) -> str:
    """Every promote and rollback, newest first: who, when, from → to, result, reason."""
    events = list(reversed(history.get("events") or []))
    if not events:
        return "<h2>Rollout history</h2><p class=\"empty\">No promote or rollback yet.</p>"
    items = []
    for e in events:
        extra = "".join(
            f'<div class="{cls}">{t(label)}{t(e.get(key))}</div>'
            for key, cls, label in (("reason", "reason", "reason: "), ("detail", "detail", ""))
            if e.get(key)
        )
        forced = ' <span class="badge forced">forced</span>' if e.get("forced") else ""
        items.append(
            f'<li class="event {t(e.get("result"))}"><time>{t(e.get("time"))}</time> '
            f'<span class="who">{t(e.get("user"))}</span> <b>{t(e.get("action"))}</b> '
            f'{_v(e.get("from_version"))} → {_v(e.get("to_version"))} '
            f'<span class="result {t(e.get("result"))}">{t(e.get("result"))}</span>{forced}{extra}</li>'
        )
    return f'<h2>Rollout history</h2><ol class="timeline">{"".join(items)}</ol>'


def pictures(model: dict[str, Any], unavailable: str | None) -> str:
    """Each version's mask and overlay of the test image (computed when the browser asks)."""
    head = "<h2>Test image, version by version</h2>"
    if unavailable:
        return f'{head}<p class="empty">{t(unavailable)}</p>'
    figures = []
    for v in sorted(model.get("versions") or [], key=lambda v: v["version"], reverse=True):
        n = v["version"]
        imgs = "".join(
            f'<img loading="lazy" src="{href("models", model["name"], "versions", n, kind + ".png")}" '
            f'alt="{kind} of the test image by version {t(n)}" width="160">'
            for kind in ("mask", "overlay")
        )
        figures.append(f'<figure class="version-pictures"><figcaption>version {t(n)}</figcaption>{imgs}</figure>')
    return head + f'<div class="gallery">{"".join(figures)}</div>'


def compare_form(model: dict[str, Any], unavailable: str | None) -> str:
    """Pick any two versions for the side-by-side diff (``mlc diff`` needs the model's test image)."""
    numbers = sorted(v["version"] for v in model.get("versions") or [])
    if unavailable or len(numbers) < 2:
        why = unavailable or "Needs two versions."
        return f'<h2>Compare two versions</h2><p class="empty">{t(why)}</p>'
    a_default = model.get("stable") or numbers[-2]
    b_default = model.get("canary") or (numbers[-1] if numbers[-1] != a_default else numbers[-2])

    def select(name: str, chosen: int) -> str:
        options = "".join(f'<option value="{n}"{" selected" if n == chosen else ""}>{n}</option>' for n in numbers)
        return f'<label>{name.upper()} <select name="{name}">{options}</select></label>'

    return (
        f'<h2>Compare two versions</h2><form class="compare" method="get" action="{href("models", model["name"], "diff")}">'
        f'{select("a", a_default)} {select("b", b_default)} <button type="submit">mlc diff</button>'
        ' <small class="empty">the first diff of a pair loads both versions and may take a while</small></form>'
    )


def model_sections(
    status: dict[str, Any], history: dict[str, Any], no_masks: str | None = None, no_diff: str | None = None
) -> dict[str, str]:
    """The model page's live sections, from ``api.status(model)`` and ``api.history(model)``."""
    model = status["models"][0]
    servers = sorted(status.get("servers") or {})
    return {
        "summary": model_summary(model, status),
        "versions": versions_table(model, servers),
        "chart": chart(model),
        "timeline": timeline(history),
        "pictures": pictures(model, no_masks),
        "compare": compare_form(model, no_diff),
        "servers": servers_table(status),
    }


def model_page(name: str, sections: dict[str, str], home: str) -> str:
    """The page of one model."""
    body = "".join(section(key, html) for key, html in sections.items())
    crumbs = f' <span class="crumb">/ {t(name)}</span>'
    return layout(name, body, poll=f"/api/models/{quote(name, safe='')}", home=home, crumbs=crumbs, kind="model")


# --- diff and errors -----------------------------------------------------------------------------


def _mask_diff(result: dict[str, Any]) -> str:
    """A segmentation diff: numbers on the evaluation set, then photo | mask A | mask B | disagreement."""
    model, a, b = result["model"], result["a"], result["b"]
    ev = result.get("eval")
    numbers = (
        f'<table class="numbers"><tr><th>evaluation set</th><td>{t(ev["images"])} images of {t(ev["size"])}²</td></tr>'
        f'<tr><th>pixel agreement</th><td>{ev["agreement"]:.4f}</td></tr>'
        f'<tr><th>mIoU of {t(b)} against {t(a)}</th><td>{ev["miou"]:.4f}</td></tr>'
        f'<tr><th>differing pixels</th><td>{t(ev["differing_pixels"])}</td></tr>'
        f'<tr><th>mIoU against ground truth</th><td>{t(a)}: {ev["miou_a"]:.4f} · {t(b)}: {ev["miou_b"]:.4f}</td></tr></table>'
        if ev else ""
    )
    figures = "".join(
        f'<figure class="diff"><figcaption>{t(PurePath(image["image"]).name)} ({t(image["width"])}×{t(image["height"])}): '
        f'agreement {image["agreement"]:.4f}, mIoU of {t(b)} against {t(a)} {image["miou"]:.4f}, '
        f'{t(image["differing_pixels"])} differing pixels</figcaption>'
        f'<div class="strip-head"><span>photo</span><span>mask {t(a)}</span><span>mask {t(b)}</span>'
        f'<span>disagreement</span></div>'
        f'<img src="{href("models", model, "diff", f"{a}-vs-{b}", f"{i}.png")}" alt="diff strip of {t(image["image"])}"></figure>'
        for i, image in enumerate(result.get("images") or [])
    )
    return f"<h2>Numbers</h2>{numbers}<h2>Pictures</h2>{figures}"


def _class_diff(result: dict[str, Any]) -> str:
    """A classifier diff: top classes on each photo, agreement and accuracy on the evaluation set."""
    c, a, b = result["classification"], result["a"], result["b"]

    def top(answer: list[Any]) -> str:
        return ", ".join(f"{t(name)} {float(score):.3f}" for name, score in answer[:3]) or "–"

    photos = "".join(
        f'<tr><td>{t(PurePath(i["image"]).name)}</td><td>{top(i["a"])}</td><td>{top(i["b"])}</td>'
        f'<td>{"yes" if i["agree"] else "<b class=bad>no</b>"}</td></tr>'
        for i in c.get("images") or []
    )
    changed = _list(c.get("changed") or [], "changes")
    return (
        f'<h2>Numbers</h2><table class="numbers"><tr><th>evaluation set</th><td>{t(c["eval_images"])} images</td></tr>'
        f'<tr><th>top-class agreement</th><td>{c["agreement"]:.4f} ({t(c["changed_count"])} changed)</td></tr>'
        f'<tr><th>accuracy</th><td>{t(a)}: {c["accuracy_a"]:.4f} · {t(b)}: {c["accuracy_b"]:.4f}</td></tr>'
        f'<tr><th>top-5 accuracy</th><td>{t(a)}: {c["top5_a"]:.4f} · {t(b)}: {c["top5_b"]:.4f}</td></tr></table>'
        f'<h2>Photos</h2><table class="classes"><thead><tr><th>photo</th><th>{t(a)}: top classes</th>'
        f'<th>{t(b)}: top classes</th><th>same class</th></tr></thead><tbody>{photos}</tbody></table>'
        + (f"<h2>Evaluation images whose class changed</h2>{changed}" if changed else "")
    )


def diff_page(result: dict[str, Any], home: str) -> str:
    """``mlc diff`` of two versions: its numbers, and its pictures side by side (or a classifier's classes)."""
    model, a, b = result["model"], result["a"], result["b"]
    changes = _list([c.get("description", c) for c in result.get("signature_changes") or []], "changes")
    verdict = "identical on everything compared" if result.get("identical") else "they differ"
    details = _class_diff(result) if result.get("classification") else _mask_diff(result)
    body = (
        f'<h1>{t(model)}: version {t(a)} vs {t(b)}</h1><p class="verdict">{t(verdict)}</p>'
        f'<h2>Signatures</h2>{changes or "<p class=ok>The same signatures.</p>"}{details}'
        f'<p><a href="{href("models", model)}">back to {t(model)}</a></p>'
    )
    crumbs = f' <span class="crumb">/ <a href="{href("models", model)}">{t(model)}</a> / diff</span>'
    return layout(f"{model} {a} vs {b}", body, home=home, crumbs=crumbs)


def error_page(status: int, title: str, message: str, home: str) -> str:
    """An error page (404 for an unknown model or path) that names what went wrong."""
    body = f'<h1 class="error">{t(status)} {t(title)}</h1><p class="message">{t(message)}</p><p><a href="/">all models</a></p>'
    return layout(title, body, home=home)
