"""The desired serving state: a document with a generation number in the repository.

``serving/desired.json`` in the Store (the local folder or the S3 prefix the registry lives in)
holds what every replica should serve, each model's versions and labels, under an integer
``generation`` that grows by one each time the state changes, plus the last few states::

    {"generation": 7, "models": {"hpt": {"versions": [2], "labels": {"stable": 2}}},
     "previous": [{"generation": 6, "models": {...}}, ...]}

A rollout records the new state when it commits; ``mlc reconcile`` records the registry's state
when the document is missing or behind. It is written only by compare-and-swap
(:func:`lifecycle.store.cas.update`), so two writers never lose a generation. Replicas that
start later converge to it (``mlc reconcile``); ``mlc status`` says which generation each
replica serves by matching what it reports against the recorded states.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from lifecycle.errors import ConfigError
from lifecycle.serving import tfs_config
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import cas
from lifecycle.store.config import Paths

KEY = "serving/desired.json"
KEEP = 20  # earlier states kept, so status can name the generation a lagging replica serves


@dataclass
class Desired:
    """The recorded state and its generation (0: nothing recorded yet)."""

    generation: int = 0
    models: tfs_config.Serving = field(default_factory=dict)
    previous: list[tuple[int, tfs_config.Serving]] = field(default_factory=list)

    def generation_of(self, model: str, serving: ModelServing | None) -> int | None:
        """The newest recorded generation in which ``model`` was served exactly as ``serving``."""
        got = serving or ModelServing(())
        for generation, models in [(self.generation, self.models), *self.previous]:
            if (models.get(model) or ModelServing(())) == got:
                return generation
        return None


def _models(data: object) -> tfs_config.Serving:
    if not isinstance(data, dict):
        raise TypeError("models is not a mapping")
    return {
        str(m): ModelServing(tuple(int(v) for v in s["versions"]), {str(k): int(v) for k, v in s["labels"].items()})
        for m, s in data.items()
    }


def _dump_models(models: tfs_config.Serving) -> dict[str, dict[str, object]]:
    return {m: {"versions": list(s.versions), "labels": dict(s.labels)} for m, s in sorted(models.items()) if s.versions}


def parse(raw: bytes | None, where: str = KEY) -> Desired:
    """The document's bytes as a Desired; ConfigError naming the document when damaged."""
    if raw is None:
        return Desired()
    try:
        data = json.loads(raw)
        return Desired(
            int(data["generation"]), _models(data["models"]),
            [(int(p["generation"]), _models(p["models"])) for p in data.get("previous", [])],
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"malformed desired serving state {where}: {e}; the next promote or `mlc reconcile` rewrites it") from e


def load(paths: Paths) -> Desired:
    """The recorded desired state (generation 0 when none is recorded)."""
    doc = paths.store.read(KEY)
    return parse(None if doc is None else doc.data, f"{paths.store.url}/{KEY}")


def record(paths: Paths, models: tfs_config.Serving) -> int:
    """Record ``models`` as the desired state (a new generation if it changed); return the generation."""
    wanted = {m: s for m, s in models.items() if s.versions}

    def mutate(raw: bytes | None) -> bytes | None:
        current = parse(raw)
        if raw is not None and current.models == wanted:
            return None
        previous = [(current.generation, current.models)] if raw is not None else []
        history = (previous + current.previous)[:KEEP]
        return json.dumps(
            {
                "generation": current.generation + 1, "models": _dump_models(wanted),
                "previous": [{"generation": g, "models": _dump_models(m)} for g, m in history],
            },
            indent=1,
        ).encode()

    after = cas.update(paths.store, KEY, mutate)
    return parse(None if after is None else after.data).generation
