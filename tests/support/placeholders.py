"""Registry records without models, for tests of the rollout's bookkeeping that need no server.

A placeholder version is a folder with a file named ``saved_model.pb`` and a registry record
(validated, a golden digest, optionally metrics): enough for plans, gates, history and refusals,
never loadable by a server.
"""

from __future__ import annotations

from typing import Any

from lifecycle.serving import tfs_config
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent, VersionRecord


def add_placeholder_versions(
    paths: Paths,
    model: str,
    versions: list[int],
    validated: bool = True,
    stable: int | None = None,
    metrics: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Record ``versions`` of ``model`` (created if new) with placeholder folders; set ``stable``."""
    with registry.transaction(paths) as reg:
        rec = reg.model(model, create=True)
        for v in versions:
            d = paths.version_dir(model, v)
            d.mkdir(parents=True, exist_ok=True)
            (d / "saved_model.pb").write_bytes(b"placeholder")
            report: dict[str, Any] = {"golden": {"digest": f"sha256:{v:064d}"}}
            if metrics and v in metrics:
                report["metrics"] = metrics[v]
            rec.versions.append(VersionRecord(v, f"sha256:d{v}", f"ckpt/run/ckpt-{v}", v * 100, validated, report))
        rec.stable = stable


def history(*spec: tuple[str, int | None, int, str]) -> list[HistoryEvent]:
    """History events from ``(action, from_version, to_version, result)`` tuples."""
    return [HistoryEvent(action=a, from_version=f, to_version=t, result=r) for a, f, t, r in spec]


def serve_placeholders(paths: Paths) -> Paths:
    """Model m with versions 1, 2 (stable 1, promoted once), model n with unvalidated version 1,
    and configs/models.config serving m's stable version, as ``mlc promote m 1`` leaves it."""
    add_placeholder_versions(paths, "m", [1, 2])
    add_placeholder_versions(paths, "n", [1], validated=False)
    with registry.transaction(paths) as reg:
        reg.model("m").stable = 1
        reg.model("m").history = history(("promote", None, 1, "ok"))
        config = tfs_config.build(paths, tfs_config.served_from_registry(reg))
    tfs_config.write(paths, config)
    return paths
