"""``mlc card``: a version's model card, as Markdown and as one self-contained HTML page.

The card holds the signature contract (read without TensorFlow), the metrics with per-class IoU
(or accuracy) as an inline SVG bar chart, the test image's mask and overlay (the version loaded
in this process, as ``mlc diff`` loads it) embedded as ``data:`` URIs, the lineage register
recorded, the approvals and the version's history. Nothing outside the page is referenced.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import LifecycleError
from lifecycle.rollout import compatibility
from lifecycle.store import approvals, registry
from lifecycle.store.config import SEGMENTATION, Paths, load_definition, validation_settings

BAR_W, BAR_H, LABEL_W = 360, 16, 140


@dataclass
class CardResult:
    """The card's two files."""

    model: str
    version: int
    markdown: str
    html: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def bar_chart(values: dict[str, float], title: str) -> str:
    """An inline SVG of one horizontal bar per class (values in [0, 1])."""
    height = BAR_H * len(values) + 30
    rows = []
    for i, (name, value) in enumerate(values.items()):
        y = 24 + i * BAR_H
        rows.append(f'<text x="{LABEL_W - 6}" y="{y + 12}" text-anchor="end">{html.escape(name)}</text>'
                    f'<rect class="bar" x="{LABEL_W}" y="{y + 2}" width="{max(0.0, min(1.0, value)) * BAR_W:.1f}" '
                    f'height="{BAR_H - 4}" fill="#4a7bd0" data-class="{html.escape(name)}" data-value="{value:.4f}">'
                    f'<title>{html.escape(name)}: {value:.4f}</title></rect>'
                    f'<text x="{LABEL_W + max(0.0, min(1.0, value)) * BAR_W + 4:.1f}" y="{y + 12}">{value:.3f}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{LABEL_W + BAR_W + 60}" height="{height}" '
            f'font-family="sans-serif" font-size="11"><title>{html.escape(title)}</title>'
            f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>{"".join(rows)}</svg>')


def _png_uri(picture: Any) -> str:
    from PIL import Image

    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pictures(paths: Paths, model: str, version: int) -> tuple[dict[str, str], str]:
    """The test image's mask and overlay as data: URIs, or why there are none."""
    try:
        definition = load_definition(paths, model)
        if definition.task != SEGMENTATION:
            return {}, f"a {definition.task} model answers classes, not masks"
        import numpy as np

        from lifecycle.predictions import pictures
        from lifecycle.predictions.diff import loaded

        photo = pictures.read_photo(validation_settings(definition).test_image)
        signature, output = definition.signature.key, definition.signature.outputs[0].name
        with loaded(model, version, paths.store.version_path(model, version), signature, output) as v:
            mask = v.segment(photo[None].astype(np.float32))[0]
        return {"mask": _png_uri(pictures.mask_image(mask)), "overlay": _png_uri(pictures.overlay(photo, mask))}, ""
    except LifecycleError as e:
        return {}, e.message


def collect(paths: Paths, model: str, version: int) -> dict[str, Any]:
    """Everything the card shows, as plain data."""
    rec = registry.load(paths).model(model)
    vrec = rec.version(version)
    report = registry.full_report(paths, model, vrec)
    try:
        sigs = compatibility.read(paths, model, vrec)
    except LifecycleError as e:
        sigs = {"unreadable": {"error": e.message}}
    state = approvals.state_of(rec, version, approvals.policy(paths, model), vrec.user)
    events = [asdict(e) for e in rec.history if version in (e.from_version, e.to_version)]
    return {"model": model, "version": version, "created": vrec.created, "user": vrec.user,
            "checkpoint": vrec.checkpoint, "step": vrec.step, "validated": vrec.validated,
            "labels": [n for n, v in (("stable", rec.stable), ("canary", rec.canary)) if v == version],
            "signatures": sigs, "metrics": report.get("metrics") or {}, "lineage": report.get("lineage") or {},
            "approvals": state.to_dict(), "history": events}


def _per_class(metrics: dict[str, Any]) -> tuple[dict[str, float], str]:
    if metrics.get("per_class_iou"):
        return {str(k): float(v) for k, v in metrics["per_class_iou"].items()}, "IoU per class"
    if metrics.get("per_class_accuracy"):
        return {str(k): float(v) for k, v in metrics["per_class_accuracy"].items()}, "accuracy per class"
    return {}, ""


def _spec(t: dict[str, Any]) -> str:
    return f"{t['dtype']} {'unknown rank' if t.get('shape') is None else list(t['shape'])}"


def markdown(card: dict[str, Any], chart: str, images: dict[str, str], why: str) -> str:
    """The card as Markdown (the chart and pictures inline as data: URIs)."""
    m = card["metrics"]
    out = [f"# Model card: {card['model']} version {card['version']}", "",
           f"Registered {card['created']} by {card['user']} from `{card['checkpoint']}` (step {card['step']}); "
           f"labels: {', '.join(card['labels']) or 'none'}; approval: {card['approvals']['summary']}.", "",
           "## Signature contract", "", "| signature | method | side | tensor | dtype and shape |", "|---|---|---|---|---|"]
    for key, sig in sorted(card["signatures"].items()):
        for side in ("inputs", "outputs"):
            for name, t in sorted((sig.get(side) or {}).items()):
                out.append(f"| {key} | {sig.get('method', '')} | {side[:-1]} | {name} | {_spec(t)} |")
    out += ["", "## Metrics", ""]
    out += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in sorted(m.items())
            if not isinstance(v, dict | list)]
    if chart:
        out += ["", f"![per-class chart](data:image/svg+xml;base64,{base64.b64encode(chart.encode()).decode()})"]
    out += ["", "## Test image", ""]
    out += [f"![{k}]({uri})" for k, uri in images.items()] or [f"No pictures: {why}"]
    out += ["", "## Lineage", "", "```json", json.dumps(card["lineage"], indent=1, sort_keys=True), "```", "",
            "## Approvals", ""]
    out += [f"- {d['time']} {d['user']} {d['decision']}: {d['reason']} ({d['digest']})"
            for d in card["approvals"]["decisions"]] or ["- none"]
    out += ["", "## History", ""]
    out += [f"- {e['time']} {e['user']} {e['action']} {e['from_version']} -> {e['to_version']}: {e['result']}"
            + (f" ({e['reason']})" if e["reason"] else "") for e in card["history"]] or ["- none"]
    return "\n".join(out) + "\n"


def page(card: dict[str, Any], chart: str, images: dict[str, str], why: str, md: str) -> str:
    """The card as one HTML page: the same content, the chart as inline SVG, no external references."""
    import re

    body = html.escape(md)
    body = re.sub(r"!\[per-class chart\]\([^)]*\)", lambda _: chart, body)
    body = re.sub(r"!\[(mask|overlay)\]\(([^)]*)\)",
                  lambda g: f'<figure><img alt="{g.group(1)}" src="{g.group(2)}"><figcaption>{g.group(1)}</figcaption></figure>',
                  body)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(card['model'])} {card['version']}: model card</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{white-space:pre-wrap}"
            "figure{display:inline-block;margin:0 1em 0 0}</style></head>"
            f"<body><pre class=\"card\">{body}</pre></body></html>\n")


def write(paths: Paths, model: str, version: int, out: Path) -> CardResult:
    """Write ``<model>-<N>.card.md`` and ``.card.html`` into ``out``."""
    card = collect(paths, model, version)
    values, title = _per_class(card["metrics"])
    chart = bar_chart(values, title) if values else ""
    images, why = _pictures(paths, model, version)
    md = markdown(card, chart, images, why)
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / f"{model}-{version}.card.md", out / f"{model}-{version}.card.html"
    md_path.write_text(md, encoding="utf-8")
    html_path.write_text(page(card, chart, images, why, md), encoding="utf-8")
    return CardResult(model, version, str(md_path), str(html_path))
