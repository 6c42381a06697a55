"""HTML of the overview, the model page, the diff page and error pages, from the api's plain results.

The api's results (``to_dict()``) go in; every piece of text goes through :func:`~lifecycle.ui.markup.t`
and every URL through :func:`~lifecycle.ui.markup.href`. A page is a set of named *sections*;
the same functions render a section for the first page load and for the JSON the page polls
(:mod:`lifecycle.ui.app`), so live updates cannot drift from the first render. The version and
history pages are in :mod:`lifecycle.ui.reports`.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from lifecycle.ui.chart import Point, metric_chart
from lifecycle.ui.markup import (
    METRIC_NAMES,
    badge,
    crumbs,
    digest,
    health,
    href,
    items,
    label_badges,
    layout,
    score,
    scroll,
    section,
    state,
    t,
    version_link,
    when,
)

__all__ = ["digest", "layout", "model_page", "model_sections", "overview_page", "overview_sections", "t"]

IDLE_STATES = {"-", "unreachable", "unknown", ""}  # a server's state of a version that it does not hold


# --- servers -------------------------------------------------------------------------------------


def held(status: dict[str, Any], server: str) -> str:
    """What ``server`` holds, model by model: each version (a link) with its state."""
    parts = []
    for m in status.get("models") or []:
        versions = sorted(
            (v for v in m.get("versions") or [] if (v.get("servers") or {}).get(server, "-") not in IDLE_STATES),
            key=lambda v: v["version"],
        )
        if versions:
            listed = ", ".join(f'{version_link(m["name"], v["version"])} {state(v["servers"][server])}' for v in versions)
            parts.append(f'<div class="holds"><a href="{href("models", m["name"])}">{t(m["name"])}</a>: {listed}</div>')
    return "".join(parts) or '<span class="empty">nothing loaded</span>'


def no_server(status: dict[str, Any]) -> str | None:
    """Why nothing serves (no server known, or none answers), or None when a server answers."""
    servers = status.get("servers") or {}
    if not servers:
        return "No server running: start one with mlc serve."
    if not any(h == "ok" for h in servers.values()):
        return "No server answers: " + ", ".join(f"{a} is {h.split(':')[0]}" for a, h in sorted(servers.items())) + "."
    return None


def servers_table(status: dict[str, Any], rest: dict[str, str | None] | None = None) -> str:
    """Each server mlc drives: its gRPC and REST addresses, whether it answers, and the versions it holds."""
    servers = status.get("servers") or {}
    if not servers:
        return ('<h2>Servers</h2><p class="no-server">No server running: start one with <code>mlc serve</code>'
                " (or list servers in configs/servers.yaml).</p>")
    rest = rest or {}
    rows = "".join(
        f'<tr class="server" data-server="{t(addr)}"><td class="addr">{t(addr)}</td>'
        f'<td class="addr rest">{t(rest.get(addr) or "–")}</td><td>{health(h)}</td><td>{held(status, addr)}</td></tr>'
        for addr, h in sorted(servers.items())
    )
    source = status.get("servers_source") or ""
    return (
        f"<h2>Servers <small>({t(source)})</small></h2>"
        + scroll('<table class="servers"><thead><tr><th>gRPC</th><th>REST</th><th>health</th><th>holds</th></tr>'
                 f"</thead><tbody>{rows}</tbody></table>")
    )


# --- overview ------------------------------------------------------------------------------------


def notices(status: dict[str, Any]) -> str:
    """Home-wide warnings (a pending rollout, an unreadable servers file or config), and a rollout in progress."""
    rollout = rollout_line(status["rollout"]) if status.get("rollout") else ""
    return rollout + items(status.get("warnings") or [], "warnings")


def _figure(x: Any, fmt: str, unit: str = "") -> str:
    return "–" if x is None else f"{float(x):{fmt}}{unit}"


def rollout_weights(r: dict[str, Any]) -> str:
    """``stable 2 90 % · candidate 3 10 %`` (and the shadow share when the step mirrors traffic)."""
    parts = [f"{role} {version_link(r['model'], r.get(role))} {100 * float(r['weights'].get(str(r.get(role)), 0.0)):g} %"
             for role in ("stable", "candidate")]
    if r.get("shadow"):
        parts.append(f"shadow {100 * float(r['shadow']):g} %")
    return " · ".join(parts)


def rollout_line(r: dict[str, Any]) -> str:
    """One line of a progressive rollout: model, stable -> candidate, its step and weights."""
    state_word = "in progress" if r.get("running") else "interrupted"
    return (f'<p class="rollout-line"><b>rollout {t(state_word)}</b>: <a href="{href("models", r["model"])}">'
            f'{t(r["model"])}</a> {version_link(r["model"], r.get("stable"))} → {version_link(r["model"], r.get("candidate"))}'
            f', step <b class="step">{t(r.get("step"))}</b> ({rollout_weights(r)})</p>')


def rollout_section(status: dict[str, Any], model: str) -> str:
    """The model's progressive rollout in progress (``api.status().rollout``): step, weights, figures per version."""
    r = status.get("rollout")
    if not r or r.get("model") != model:
        return ""
    rows = "".join(
        f'<tr class="rollout-version" data-version="{t(v)}"><td class="num">{version_link(model, int(v)) if str(v).isdigit() else t(v)}</td>'
        f'<td class="num requests">{t(f.get("requests"))}</td><td class="num error-rate">{_figure(f.get("error_rate"), ".3f")}</td>'
        f'<td class="num p99">{_figure(f.get("p99_ms"), ".1f", " ms")}</td>'
        f'<td class="num agreement">{_figure(f.get("agreement"), ".3f")}</td></tr>'
        for v, f in sorted((r.get("versions") or {}).items())
    )
    table = scroll('<table class="rollout"><thead><tr><th>version</th><th>requests</th><th>error rate</th><th>p99</th>'
                   f"<th>agreement</th></tr></thead><tbody>{rows}</tbody></table>") if rows else (
        '<p class="empty">No figures for this step yet.</p>')
    judged = ", ".join(f"{t(j.get('step'))} {t(j.get('verdict'))}" for j in r.get("judged") or [])
    return (f'<h2>Rollout in progress</h2>{rollout_line(r)}' + table
            + (f'<p class="judged">steps judged: {judged}</p>' if judged else ""))


def event_summary(e: dict[str, Any], model: str) -> str:
    """One history event in a line: action, from -> to (links), result."""
    return (
        f'<b class="action">{t(e.get("action"))}</b> {version_link(model, e.get("from_version"))} → '
        f'{version_link(model, e.get("to_version"))} <span class="result {t(e.get("result"))}">{t(e.get("result"))}</span>'
    )


def models_table(status: dict[str, Any]) -> str:
    """Every model: stable, canary, versions, drift and warnings, the last rollout."""
    models = status.get("models") or []
    if not models:
        return '<h2>Models</h2><p class="empty">No model is registered yet: <code>mlc register CHECKPOINT</code>.</p>'
    idle = no_server(status)
    rows = []
    for m in models:
        name = m["name"]
        versions = m.get("versions") or []
        latest = max((v["version"] for v in versions), default=None)
        last = m.get("last_event") or {}
        last_html = f"{event_summary(last, name)} {when(last.get('time'))}" if last else "–"
        problems = items(m.get("drift") or [], "drift") + items(m.get("warnings") or [], "warnings")
        fine = f'<span class="no-server">{t(idle)}</span>' if idle else '<span class="ok">in sync</span>'
        rows.append(
            f'<tr class="model" data-model="{t(name)}">'
            f'<td><a href="{href("models", name)}">{t(name)}</a></td>'
            f'<td class="stable">{version_link(name, m.get("stable"))}</td>'
            f'<td class="canary">{version_link(name, m.get("canary"))}</td>'
            f"<td>{m.get('versions_total', len(versions))} (latest {version_link(name, latest)})</td>"
            f'<td>{last_html} <a class="more" href="{href("models", name, "history")}">history</a></td>'
            f'<td class="problems">{problems or fine}</td></tr>'
        )
    return "<h2>Models</h2>" + scroll(
        '<table class="models"><thead><tr><th>model</th><th>stable</th><th>canary</th>'
        "<th>versions</th><th>last rollout</th><th>drift and warnings</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def overview_sections(status: dict[str, Any], rest: dict[str, str | None] | None = None) -> dict[str, str]:
    """The overview's live sections."""
    return {"notices": notices(status), "models": models_table(status), "servers": servers_table(status, rest)}


def overview_page(sections: dict[str, str], home: str) -> str:
    """The overview: every model, every server."""
    body = "".join(section(name, html) for name, html in sections.items())
    return layout("models", body, poll="/api/status", home=home)


# --- model page ----------------------------------------------------------------------------------


def served(model: dict[str, Any]) -> str:
    """What configs/models.config serves of the model: its versions (links) and label badges."""
    config = model.get("config")
    if not config:
        return "nothing"
    name = model["name"]
    versions = ", ".join(version_link(name, n) for n in sorted(config.get("versions") or [])) or "no version"
    return f"versions {versions} with {label_badges(config.get('labels') or {}, name)}"


def model_summary(model: dict[str, Any], status: dict[str, Any]) -> str:
    """Stable, canary, drift and warnings of one model, and the home's own warnings."""
    name = model["name"]
    problems = items(model.get("drift") or [], "drift") + items(model.get("warnings") or [], "warnings")
    idle = no_server(status)
    fine = f'<p class="no-server">{t(idle)}</p>' if idle else "" if problems else (
        '<p class="ok">Registry, config and servers agree.</p>'
    )
    labels = {k: model[k] for k in ("stable", "canary") if model.get(k) is not None}
    return (
        f'<h1>{t(name)}</h1><p class="labels">{label_badges(labels, name)} · configs/models.config serves '
        f'{served(model)} · <a href="{href("models", name, "history")}">history</a></p>'
        f"{problems}{fine}{notices(status)}"
    )


def versions_table(model: dict[str, Any], servers: list[str]) -> str:
    """Each version: step, created, source, validated, metric, labels, config and state per server."""
    versions = sorted(model.get("versions") or [], key=lambda v: v["version"], reverse=True)
    if not versions:
        return '<h2>Versions</h2><p class="empty">No version yet.</p>'
    name, metric = model["name"], model.get("metric") or "miou"
    head = "".join(f'<th class="server">{t(s)}</th>' for s in servers)
    decided = any(v.get("approval") for v in versions)  # a column only where approvals are required or given
    rows = []
    for v in versions:
        n = v["version"]
        cells = "".join(f"<td>{state((v.get('servers') or {}).get(s, '-'))}</td>" for s in servers)
        labels = " ".join(badge(label) for label in v.get("labels") or [])
        path = str(v.get("checkpoint") or "")
        short = "/".join(PurePath(path).parts[-2:]) or "–"  # run folder and checkpoint, as mlc status shows them
        source = f'<a href="{href("models", name, "versions", n)}#source" title="{t(path)}">{t(short)}</a>'
        rows.append(
            f'<tr class="version" data-version="{t(n)}"><td class="num">{version_link(name, n)}</td>'
            f'<td class="num">{t(v.get("step")) or "–"}</td><td class="time">{when(v.get("created"))}</td>'
            f'<td class="source">{source}</td>'
            f'<td>{"yes" if v.get("validated") else "<b class=bad>no</b>"}</td>'
            f'<td class="num metric">{score(v.get(metric))}</td><td class="labels">{labels}</td>'
            + (f'<td class="approval">{approval(v.get("approval"))}</td>' if decided else "") +
            f'<td>{"yes" if v.get("in_config") else "–"}</td>{cells}</tr>'
        )
    return "<h2>Versions</h2>" + scroll(
        '<table class="versions" id="versions"><thead><tr><th>version</th><th>step</th>'
        f"<th>created</th><th>source</th><th>validated</th><th>{METRIC_NAMES[metric]}</th><th>labels</th>"
        + ("<th>approval</th>" if decided else "") +
        f"<th>in config</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def approval(text: str | None) -> str:
    """A version's approval state (approved by alice, pending (1 of 2), rejected by bob), classed by its first word."""
    if not text:
        return '<span class="empty">–</span>'
    word = text.split()[0].lower()
    return f'<span class="approval {word if word in {"approved", "pending", "rejected"} else "other"}">{t(text)}</span>'


def chart(model: dict[str, Any]) -> str:
    """The model's eval metric (mIoU, or a classifier's accuracy) over versions, stable and canary marked."""
    metric = model.get("metric") or "miou"
    points = [Point(v["version"], v.get(metric)) for v in model.get("versions") or []]
    name = METRIC_NAMES[metric]
    link = href("models", model["name"], "versions") + "/"
    return f"<h2>{name} by version</h2>" + metric_chart(points, model.get("stable"), model.get("canary"), name, link)


def event_item(e: dict[str, Any], model: str) -> str:
    """One history event as a timeline entry: when, who, what, from -> to, result, reason and detail."""
    extra = "".join(
        f'<div class="{cls}">{t(label)}{t(e.get(key))}</div>'
        for key, cls, label in (("reason", "reason", "reason: "), ("detail", "detail", ""))
        if e.get(key)
    )
    forced = " " + badge("forced") if e.get("forced") else ""
    return (
        f'<li class="event {t(e.get("result"))}" data-action="{t(e.get("action"))}">{when(e.get("time"))} '
        f'<span class="who">{t(e.get("user"))}</span> {event_summary(e, model)}{forced}{extra}</li>'
    )


def timeline(history: dict[str, Any], limit: int | None = None) -> str:
    """The promotes and rollbacks, newest first (the ``limit`` newest), and a link to the history page."""
    model = history.get("model") or ""
    events = list(reversed(history.get("events") or []))
    more = f'<p><a href="{href("models", model, "history")}">all {len(events)} events, with filters</a></p>'
    if not events:
        return '<h2>Rollout history</h2><p class="empty">No promote or rollback yet.</p>'
    shown = events[:limit] if limit else events
    entries = "".join(event_item(e, model) for e in shown)
    return f'<h2>Rollout history</h2><ol class="timeline">{entries}</ol>' + more


def version_pictures(model: str, n: int, width: int = 160) -> str:
    """Version ``n``'s mask and overlay of the test image (computed when the browser asks)."""
    return "".join(
        f'<img loading="lazy" src="{href("models", model, "versions", n, kind + ".png")}" '
        f'alt="{kind} of the test image by version {t(n)}" width="{width}">'
        for kind in ("mask", "overlay")
    )


def pictures(model: dict[str, Any], unavailable: str | None) -> str:
    """Each version's mask and overlay of the test image."""
    head = "<h2>Test image, version by version</h2>"
    if unavailable:
        return f'{head}<p class="empty">{t(unavailable)}</p>'
    figures = "".join(
        f'<figure class="version-pictures"><figcaption>version {version_link(model["name"], v["version"])}</figcaption>'
        f'{version_pictures(model["name"], v["version"])}</figure>'
        for v in sorted(model.get("versions") or [], key=lambda v: v["version"], reverse=True)
    )
    return head + f'<div class="gallery">{figures}</div>'


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


TIMELINE_ON_MODEL_PAGE = 30  # the newest events the model page lists; the history page has them all


def model_sections(
    status: dict[str, Any], history: dict[str, Any], no_masks: str | None = None, no_diff: str | None = None,
    rest: dict[str, str | None] | None = None,
) -> dict[str, str]:
    """The model page's live sections, from ``api.status(model)`` and ``api.history(model)``."""
    model = status["models"][0]
    servers = sorted(status.get("servers") or {})
    return {
        "summary": model_summary(model, status),
        "rollout": rollout_section(status, model["name"]),
        "versions": versions_table(model, servers),
        "chart": chart(model),
        "timeline": timeline(history, TIMELINE_ON_MODEL_PAGE),
        "pictures": pictures(model, no_masks),
        "compare": compare_form(model, no_diff),
        "servers": servers_table(status, rest),
    }


def model_page(name: str, sections: dict[str, str], home: str) -> str:
    """The page of one model."""
    body = "".join(section(key, html) for key, html in sections.items())
    return layout(name, body, poll=f"/api/models/{quote(name, safe='')}", home=home, crumbs=crumbs(name), kind="model")


# --- diff and errors -----------------------------------------------------------------------------


def _mask_diff(result: dict[str, Any]) -> str:
    """A segmentation diff: numbers on the evaluation set, then photo | mask A | mask B | disagreement."""
    model, a, b = result["model"], result["a"], result["b"]
    ev = result.get("eval")
    numbers = scroll(
        f'<table class="numbers"><tr><th>evaluation set</th><td>{t(ev["images"])} images of {t(ev["size"])}²</td></tr>'
        f'<tr><th>pixel agreement</th><td>{ev["agreement"]:.4f}</td></tr>'
        f'<tr><th>mIoU of {t(b)} against {t(a)}</th><td>{ev["miou"]:.4f}</td></tr>'
        f'<tr><th>differing pixels</th><td>{t(ev["differing_pixels"])}</td></tr>'
        f'<tr><th>mIoU against ground truth</th><td>{t(a)}: {ev["miou_a"]:.4f} · {t(b)}: {ev["miou_b"]:.4f}</td></tr></table>'
    ) if ev else ""
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
        return ", ".join(f"{t(name)} {float(p):.3f}" for name, p in answer[:3]) or "–"

    photos = "".join(
        f'<tr><td>{t(PurePath(i["image"]).name)}</td><td>{top(i["a"])}</td><td>{top(i["b"])}</td>'
        f'<td>{"yes" if i["agree"] else "<b class=bad>no</b>"}</td></tr>'
        for i in c.get("images") or []
    )
    changed = items(c.get("changed") or [], "changes")
    return (
        "<h2>Numbers</h2>" + scroll(f'<table class="numbers"><tr><th>evaluation set</th><td>{t(c["eval_images"])} images</td></tr>'
        f'<tr><th>top-class agreement</th><td>{c["agreement"]:.4f} ({t(c["changed_count"])} changed)</td></tr>'
        f'<tr><th>accuracy</th><td>{t(a)}: {c["accuracy_a"]:.4f} · {t(b)}: {c["accuracy_b"]:.4f}</td></tr>'
        f'<tr><th>top-5 accuracy</th><td>{t(a)}: {c["top5_a"]:.4f} · {t(b)}: {c["top5_b"]:.4f}</td></tr></table>')
        + "<h2>Photos</h2>" + scroll(f'<table class="classes"><thead><tr><th>photo</th><th>{t(a)}: top classes</th>'
                                     f'<th>{t(b)}: top classes</th><th>same class</th></tr></thead><tbody>{photos}</tbody></table>')
        + (f"<h2>Evaluation images whose class changed</h2>{changed}" if changed else "")
    )


def diff_page(result: dict[str, Any], home: str) -> str:
    """``mlc diff`` of two versions: its numbers, and its pictures side by side (or a classifier's classes)."""
    model, a, b = result["model"], result["a"], result["b"]
    changes = items([c.get("description", c) for c in result.get("signature_changes") or []], "changes")
    verdict = "identical on everything compared" if result.get("identical") else "they differ"
    details = _class_diff(result) if result.get("classification") else _mask_diff(result)
    body = (
        f'<h1>{t(model)}: version {version_link(model, a)} vs {version_link(model, b)}</h1><p class="verdict">{t(verdict)}</p>'
        f'<h2>Signatures</h2>{changes or "<p class=ok>The same signatures.</p>"}{details}'
        f'<p><a href="{href("models", model)}">back to {t(model)}</a></p>'
    )
    return layout(f"{model} {a} vs {b}", body, home=home, crumbs=crumbs(model, "diff"))


def error_page(status: int, title: str, message: str, home: str) -> str:
    """An error page (404 for an unknown model or path) that names what went wrong."""
    body = f'<h1 class="error">{t(status)} {t(title)}</h1><p class="message">{t(message)}</p><p><a href="/">all models</a></p>'
    return layout(title, body, home=home)
