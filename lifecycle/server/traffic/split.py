"""A model's traffic split, its JSON form, the sticky choice, and the table of every model's split.

The JSON form, as the admin path (``PUT /v1/mlc/traffic/models/<m>``) and ``--mlc_traffic_file``
(``{"<model>": <split>}``) take it::

    {"stable": 3, "candidate": 4, "weight": 0.1, "shadow": 0.0,
     "compare": {"kind": "segmentation", "output": "segmentation_map", "signature": "serving_default"}}

``weight`` is the share of default-route requests the candidate answers; ``shadow`` the share of
those stable answers that are also copied to the candidate and compared. ``{}``, or weight 0
and shadow 0, clears the split. A request with routing key K goes to the candidate iff
``sha256(model + "\\0" + K)``'s first 8 bytes, as a fraction of 2**64, are below the weight, so
raising the weight only moves keys from stable to the candidate; a request without a key is
split at random.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import InvalidArgument

ROUTE_KEY = "mlc-route-key"  # the gRPC metadata key and the REST header of a routing key
COMPARE_KINDS = ("segmentation", "classification", "generic")
_SPLIT_KEYS = ("stable", "candidate", "weight", "shadow", "compare")
_COMPARE_KEYS = ("kind", "output", "signature")


@dataclass(frozen=True)
class Compare:
    """What a shadow compares: the task's kind, one output tensor ("" = all) and one signature ("" = any)."""

    kind: str = "generic"
    output: str = ""
    signature: str = ""


@dataclass(frozen=True)
class Split:
    """One model's split between its stable version and a candidate."""

    stable: int
    candidate: int
    weight: float = 0.0
    shadow: float = 0.0
    compare: Compare = field(default_factory=Compare)

    def to_json(self) -> dict[str, Any]:
        """The JSON form the admin path answers with."""
        return {"stable": self.stable, "candidate": self.candidate, "weight": self.weight, "shadow": self.shadow,
                "compare": {"kind": self.compare.kind, "output": self.compare.output,
                            "signature": self.compare.signature}}


def parse_split(document: Any, where: str) -> Split | None:
    """The split a JSON value describes (None: no split); InvalidArgument naming ``where`` if malformed."""
    if document is None or document == {}:
        return None
    if not isinstance(document, dict):
        raise InvalidArgument(f"{where}: a split is a JSON object, got {json.dumps(document)}")
    unknown = sorted(set(document) - set(_SPLIT_KEYS))
    if unknown:
        raise InvalidArgument(f"{where}: unknown key {unknown[0]!r} (a split has {', '.join(_SPLIT_KEYS)})")
    stable = _version(document, "stable", where)
    candidate = _version(document, "candidate", where)
    if stable == candidate:
        raise InvalidArgument(f"{where}: stable and candidate are both version {stable}")
    weight = _share(document, "weight", where)
    shadow = _share(document, "shadow", where)
    if weight == 0 and shadow == 0:
        return None
    return Split(stable, candidate, weight, shadow, _compare(document.get("compare"), where))


def _version(document: dict[str, Any], key: str, where: str) -> int:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{where}: {key!r} must be a version number, got {json.dumps(value)}")
    return value


def _share(document: dict[str, Any], key: str, where: str) -> float:
    value = document.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
        raise InvalidArgument(f"{where}: {key!r} must be a number from 0 to 1, got {json.dumps(value)}")
    return float(value)


def _compare(section: Any, where: str) -> Compare:
    if section is None:
        return Compare()
    if not isinstance(section, dict):
        raise InvalidArgument(f"{where}: 'compare' must be a JSON object, got {json.dumps(section)}")
    unknown = sorted(set(section) - set(_COMPARE_KEYS))
    if unknown:
        raise InvalidArgument(f"{where}: unknown key {unknown[0]!r} in 'compare' (it has {', '.join(_COMPARE_KEYS)})")
    kind = section.get("kind", "generic")
    if kind not in COMPARE_KINDS:
        raise InvalidArgument(f"{where}: compare 'kind' must be one of {', '.join(COMPARE_KINDS)}, got {json.dumps(kind)}")
    for key in ("output", "signature"):
        if not isinstance(section.get(key, ""), str):
            raise InvalidArgument(f"{where}: compare {key!r} must be a string, got {json.dumps(section[key])}")
    return Compare(kind, section.get("output", ""), section.get("signature", ""))


def goes_to_candidate(model: str, key: str | None, weight: float) -> bool:
    """Whether a request with routing ``key`` (None: none) goes to the candidate at ``weight``."""
    if key is None:
        return random.random() < weight
    return key_fraction(model, key) < weight


@functools.lru_cache(maxsize=1 << 14)  # keys recur (they are users): a lookup costs less than the hash
def key_fraction(model: str, key: str) -> float:
    """Where a routing key falls in [0, 1): the first 8 bytes of sha256(model + NUL + key) over 2**64."""
    digest = hashlib.sha256((model + "\0" + key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class TrafficTable:
    """Every model's split, with a generation per model that counts the changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._splits: dict[str, Split] = {}  # copy-on-write: requests read it without the lock
        self._generations: dict[str, int] = {}

    def set(self, model: str, split: Split | None) -> int:
        """Make ``split`` (None: none) the model's split; returns the model's new generation."""
        with self._lock:
            splits = dict(self._splits)
            if split is None:
                splits.pop(model, None)
            else:
                splits[model] = split
            self._splits = splits
            self._generations[model] = self._generations.get(model, 0) + 1
            return self._generations[model]

    def get(self, model: str) -> tuple[Split | None, int]:
        """The model's split (None: none) and its generation (0: never set)."""
        with self._lock:
            return self._splits.get(model), self._generations.get(model, 0)

    def route(self, model: str, key: str | None, available: Collection[int]) -> tuple[int, bool] | None:
        """Where a default-route request goes and whether stable's answer is copied to the candidate;
        None: as without a split (there is none, or S or C is not available)."""
        split = self._splits.get(model)
        if split is None or split.stable not in available or split.candidate not in available:
            return None
        if split.weight and goes_to_candidate(model, key, split.weight):
            return split.candidate, False
        return split.stable, split.shadow > 0 and random.random() < split.shadow

    def split(self, model: str) -> Split | None:
        """The model's split, read without the lock."""
        return self._splits.get(model)


def read_traffic_file(path: str | Path) -> dict[str, Split]:
    """``--mlc_traffic_file``: ``{"<model>": <split>}``; a missing file is no split at all."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InvalidArgument(f"--mlc_traffic_file={file}: cannot read it: {e.strerror or e}") from e
    try:
        document = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise InvalidArgument(f"--mlc_traffic_file={file}: not JSON: {e}") from e
    if not isinstance(document, dict):
        raise InvalidArgument(f"--mlc_traffic_file={file}: expected a JSON object of model name -> split")
    splits: dict[str, Split] = {}
    for model, value in document.items():
        split = parse_split(value, f"--mlc_traffic_file={file}: model {model!r}")
        if split is not None:
            splits[model] = split
    return splits
