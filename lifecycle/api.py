"""The mlc library: one function per command. Functions return data and never print.

TensorFlow is imported lazily inside the functions that need it, so that ``status``,
``history`` and ``--help`` stay fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle import registry
from lifecycle.config import Paths, check_model_name


# --- status --------------------------------------------------------------------------------


@dataclass
class VersionStatus:
    """One version as ``mlc status`` shows it."""

    version: int
    checkpoint: str
    step: int | None
    created: str
    validated: bool
    golden_digest: str | None
    miou: float | None
    labels: list[str] = field(default_factory=list)
    in_config: bool = False
    servers: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelStatus:
    """One model as ``mlc status`` shows it."""

    name: str
    stable: int | None
    canary: int | None
    versions: list[VersionStatus]
    warnings: list[str] = field(default_factory=list)


@dataclass
class StatusReport:
    """The result of ``mlc status``."""

    models: list[ModelStatus]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def status(model: str | None = None, paths: Paths | None = None) -> StatusReport:
    """The registry (and, where servers are known, their live state) for one or all models."""
    paths = paths or Paths.from_env()
    reg = registry.load(paths)
    names = [check_model_name(model)] if model else sorted(reg.models)
    if model:
        reg.model(model)  # ModelNotFound for an unknown model
    models = []
    for name in names:
        rec = reg.models[name]
        versions = []
        for v in sorted(rec.versions, key=lambda v: v.version):
            labels = [label for label, n in (("stable", rec.stable), ("canary", rec.canary)) if n == v.version]
            versions.append(
                VersionStatus(
                    version=v.version,
                    checkpoint=v.checkpoint,
                    step=v.step,
                    created=v.created,
                    validated=v.validated,
                    golden_digest=(v.report.get("golden") or {}).get("digest"),
                    miou=(v.report.get("metrics") or {}).get("miou"),
                    labels=labels,
                )
            )
        models.append(ModelStatus(name=name, stable=rec.stable, canary=rec.canary, versions=versions))
    return StatusReport(models=models)
