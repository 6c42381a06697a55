"""What a published version keeps beside its files: its own record, and the summary the registry keeps.

A version's whole validation report (signature, histograms, per-class IoU, checks, timings)
lives in :data:`VERSION_RECORD_FILE` inside the version (TF Serving ignores ``assets.extra/``
files other than the warmup records); the registry keeps only :func:`report_summary`. The
record also lets the registry adopt a version renamed into place just before a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lifecycle.errors import LifecycleError
from lifecycle.store.config import Paths
from lifecycle.store.records import VersionRecord

# Published versions carry their own record here (TF Serving ignores assets.extra/ files other
# than the warmup records), so a version renamed into place just before a crash is not lost.
VERSION_RECORD_FILE = Path("assets.extra") / "mlc_report.json"


def version_record_file(version_dir: Path) -> Path:
    """Where a published version keeps the record mlc adopts it from after a crash."""
    return Path(version_dir) / VERSION_RECORD_FILE


def report_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the registry keeps of a version's validation report.

    Only what ``status``, ``register``'s result, the quality gate and the live check read: the
    golden digest and the output it is of, the mIoU (or accuracy) and the evaluation set it was
    scored on, and the kind of source. The full report (signature, histograms, per-class IoU,
    checks, timings) stays beside the version in
    :data:`VERSION_RECORD_FILE` (:func:`full_report`), so registry.yaml, which every command
    reads, stays small however many versions there are.
    """
    golden, metrics = report.get("golden") or {}, report.get("metrics") or {}
    summary: dict[str, Any] = {}
    if golden:
        summary["golden"] = {k: golden[k] for k in ("digest", "output") if k in golden}
    if metrics:
        summary["metrics"] = {k: metrics[k] for k in ("miou", "accuracy", "eval") if k in metrics}
    if "kind" in (report.get("source") or {}):
        summary["source"] = {"kind": report["source"]["kind"]}
    summary["full"] = str(VERSION_RECORD_FILE)
    return summary


def full_report(paths: Paths, model: str, version: VersionRecord) -> dict[str, Any]:
    """A version's whole validation report: from beside the version, else the registry's copy.

    Registries written before reports moved out hold the whole report themselves.
    """
    if "full" not in version.report:
        return version.report
    try:
        path = version_record_file(paths.store.version_path(model, version.version))
        return json.loads(path.read_text(encoding="utf-8"))["version"]["report"]
    except (LifecycleError, OSError, ValueError, KeyError, TypeError):
        return version.report
