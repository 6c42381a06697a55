"""A small mlc home for the mlc ui tests: model ``hpt`` in the registry alone (no SavedModel needed to show it)."""

from __future__ import annotations

from pathlib import Path

from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent, VersionRecord

MODEL = "hpt"


def registry_home(root: Path, reason: str = "first") -> Paths:
    """A home whose registry lists versions 1-3 of ``hpt`` (stable 2, promoted for ``reason``).

    The registry goes through the home's store: a local folder, or the repository $MLC_REPOSITORY names.
    """
    paths = Paths(root.resolve())
    paths.configs.mkdir(parents=True)
    (paths.configs / f"{MODEL}.yaml").write_text(
        f"name: {MODEL}\nnetwork: {{}}\nsignature: {{key: serving_default, inputs: {{x: {{dtype: float32, shape: [-1, 1]}}}}, "
        "outputs: {y: {dtype: float32, shape: [-1, 1]}}}\n"
    )
    with registry.transaction(paths) as reg:
        rec = reg.model(MODEL, create=True)
        for v in (1, 2, 3):
            rec.versions.append(VersionRecord(v, f"d{v}", f"ckpt/run/ckpt-{v}", v * 10, True, {"metrics": {"miou": v / 10}}))
        rec.stable = 2
        rec.history.append(HistoryEvent("promote", None, 2, "ok", reason=reason))
    return paths
