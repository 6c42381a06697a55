"""The pieces every page is built from: escaping, URLs, the page frame, badges, times and links.

Every piece of text that reaches the page goes through :func:`t` (credentials masked, then
``html.escape``), and every URL path through :func:`href`. Times are rendered as
``<time datetime="ISO">YYYY-MM-DD HH:MM:SS UTC</time>``: readable without JavaScript, and the
page's own script (``static/ui.js``) rewrites them in the browser's local time with a relative
hint ("3 min ago").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from lifecycle.operations.status import state_words
from lifecycle.ui.redact import redact

POLL_MS = 1500  # how often an open page asks for live state
METRIC_NAMES = {"miou": "mIoU", "accuracy": "accuracy"}  # ModelStatus.metric as the pages name it
LABELS = ("stable", "canary")  # the labels mlc sets, each with its own badge colour


def t(value: Any) -> str:
    """Text for the page: credentials masked, HTML escaped (quotes too, so it is safe in attributes)."""
    return escape(redact("" if value is None else str(value)), quote=True)


def href(*parts: Any, query: dict[str, Any] | None = None) -> str:
    """An escaped absolute URL path from segments (a model name is one segment), with an optional query."""
    path = "/" + "/".join(quote(str(p), safe="") for p in parts)
    wanted = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    return escape(path + (f"?{urlencode(wanted)}" if wanted else ""), quote=True)


def digest(html: str) -> str:
    """A short fingerprint of a section, so the page swaps only the sections that changed."""
    return hashlib.sha256(html.encode()).hexdigest()[:16]


def section(name: str, html: str, tag: str = "section") -> str:
    """A live section: replaced by the page's script when the polled HTML differs."""
    return f'<{tag} data-live="{escape(name)}" data-digest="{digest(html)}">{html}</{tag}>'


def layout(title: str, body: str, poll: str | None = None, home: str = "", crumbs: str = "", kind: str = "") -> str:
    """A whole page: header, body, the stylesheet and the page's script (both shipped in the package)."""
    poll_attrs = f' data-poll="{escape(poll)}" data-interval="{POLL_MS}"' if poll else ""
    live = '<span id="live-state" class="live">live</span>' if poll else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{t(title)} · mlc</title>"
        '<link rel="stylesheet" href="/static/ui.css">'
        '<script src="/static/ui.js" defer></script>'
        f"</head><body{poll_attrs}>"
        f'<header><a class="brand" href="/">mlc</a>{crumbs}{live}<span class="home" title="mlc home">{t(home)}</span></header>'
        f'<main class="{escape(kind)}">{body}</main></body></html>\n'
    )


def crumbs(model: str, *tail: str) -> str:
    """The header's trail: ``/ model / tail...``, the model a link unless it is the page itself."""
    name = f'<a href="{href("models", model)}">{t(model)}</a>' if tail else t(model)
    return f' <span class="crumb">/ {name}{"".join(f" / {t(x)}" for x in tail)}</span>'


def scroll(table: str) -> str:
    """A table inside a wrapper that scrolls sideways, so a wide table never widens the page."""
    return f'<div class="scroll">{table}</div>'


def items(values: Iterable[Any], cls: str) -> str:
    """A ``<ul>`` of escaped items ("" when there are none)."""
    rows = "".join(f"<li>{t(i)}</li>" for i in values)
    return f'<ul class="{cls}">{rows}</ul>' if rows else ""


def badge(label: str, cls: str | None = None) -> str:
    """A label as a coloured pill (stable, canary, forced...)."""
    return f'<span class="badge {escape(cls or label)}">{t(label)}</span>'


def label_badges(labels: dict[str, int], model: str | None = None) -> str:
    """``{'canary': 3, 'stable': 2}`` as badges ``stable 2`` ``canary 3``, versions linked when a model is given."""
    order = sorted(labels, key=lambda k: (LABELS.index(k) if k in LABELS else len(LABELS), k))
    return " ".join(
        f'<span class="badge {escape(k if k in LABELS else "other")}">{t(k)} '
        f"{version_link(model, labels[k]) if model else t(labels[k])}</span>"
        for k in order
    ) or '<span class="empty">no labels</span>'


def state(text: str) -> str:
    """A server's state of a version, in words (``unloaded``, ``failed: ...`` for TF Serving's END), classed by
    its first word (available, loading, failed, unreachable)."""
    text = state_words(text) if text else text
    word = (text or "-").split(":")[0].strip().lower()
    cls = word if word in {"available", "loading", "start", "unloading", "unreachable", "unknown", "unloaded"} else "none"
    if word in {"end", "failed"} and ":" in text:  # END with an error: the version failed to load
        cls = "failed"
    return f'<span class="state {cls}">{t(text)}</span>'


def health(text: str) -> str:
    """A server's health: ok, unreachable, or unknown."""
    word = text.split(":")[0].strip().lower()
    cls = "ok" if word == "ok" else "unreachable" if word == "unreachable" else "unknown"
    return f'<span class="health {cls}">{t(text)}</span>'


def version_link(model: str | None, n: int | None) -> str:
    """Version ``n`` as a link to its page ("–" for none)."""
    if n is None:
        return "–"
    if model is None:
        return t(n)
    return f'<a class="version-link" href="{href("models", model, "versions", n)}">{t(n)}</a>'


def score(x: float | None, digits: int = 4) -> str:
    """A metric value, or "–" when it was not measured."""
    return "–" if x is None else f"{x:.{digits}f}"


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time as an aware datetime (naive ones taken as UTC); None when it is not one."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: Any) -> str:
    """A ``<time>``: UTC text for readers without JavaScript, the ISO value for the page's script."""
    parsed = parse_time(value)
    if parsed is None:
        return f"<time>{t(value) or '–'}</time>"
    utc = parsed.astimezone(UTC)
    return f'<time datetime="{utc.isoformat()}" title="{utc:%Y-%m-%d %H:%M:%S} UTC">{utc:%Y-%m-%d %H:%M:%S} UTC</time>'
