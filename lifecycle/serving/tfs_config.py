"""Registry state -> TF Serving's ``ModelServerConfig`` (``configs/models.config``).

The config is built as the protobuf message from tensorflow-serving-api and printed with
``text_format``; it is never assembled as strings. Each model that has something to serve
(a ``stable`` or ``canary`` version) gets ``model_platform: "tensorflow"``, an absolute
``base_path``, a ``specific`` version policy and its ``version_labels``. A reload replaces
the whole config on the server, so every write lists every served model, not only the one
being promoted. Models with nothing to serve yet are left out: TF Serving would wait for a
model without versions to become available.

Only ``tensorflow_serving.config.model_server_config_pb2`` is used here; it does not pull in
TensorFlow. It and ``text_format`` are imported when a config is built or parsed: the protobuf
runtime alone costs ``mlc status`` about 35 ms. Each write also records what the config serves,
with the digest of its text, in ``.mlc/models.config.json``; :func:`read` uses that record
while the file still has that digest, and parses the file otherwise (an edit by hand, a config
written by another tool).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.errors import ConfigError
from lifecycle.store.config import Paths, check_model_name
from lifecycle.store.files import atomic_write_text
from lifecycle.store.registry import Registry

if TYPE_CHECKING:
    from tensorflow_serving.config import model_server_config_pb2

PLATFORM = "tensorflow"
LABELS = ("stable", "canary")


@dataclass(frozen=True)
class ModelServing:
    """What one model should serve: a set of versions and labels pointing into it."""

    versions: tuple[int, ...]
    labels: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, stable: int | None, canary: int | None) -> ModelServing:
        """The steady state for a model whose registry says ``stable``/``canary``."""
        labels = {k: v for k, v in (("stable", stable), ("canary", canary)) if v is not None}
        return cls(tuple(sorted(set(labels.values()))), labels)

    def union(self, other: ModelServing, labels: Mapping[str, int]) -> ModelServing:
        """Both version sets loaded at once, with ``labels``."""
        return ModelServing(tuple(sorted(set(self.versions) | set(other.versions))), dict(labels))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ModelServing)
            and tuple(self.versions) == tuple(other.versions)
            and dict(self.labels) == dict(other.labels)
        )

    def __hash__(self) -> int:
        return hash((tuple(self.versions), tuple(sorted(self.labels.items()))))


Serving = dict[str, ModelServing]


def served_from_registry(reg: Registry) -> Serving:
    """The steady serving state the registry asks for: each model's stable and canary."""
    out: Serving = {}
    for name, rec in sorted(reg.models.items()):
        serving = ModelServing.of(rec.stable, rec.canary)
        if serving.versions:
            out[name] = serving
    return out


def build(
    paths: Paths, serving: Mapping[str, ModelServing], base: Path | None = None,
) -> model_server_config_pb2.ModelServerConfig:
    """The ModelServerConfig message for ``serving`` (models in name order).

    Base paths are ``model_repo/<model>``, or ``<base>/<model>`` for a folder ``mlc sync`` fills.
    With a remote repository the versions are copied to ``model_repo/`` first, so a config never
    names a version this machine does not hold.
    """
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config_list = config.model_config_list
    config_list.SetInParent()  # an empty list still prints as ``model_config_list {}``
    for name in sorted(serving):
        s = serving[name]
        if not s.versions:
            continue
        unknown = {label: v for label, v in s.labels.items() if v not in s.versions}
        if unknown:
            raise ConfigError(f"model {name!r}: labels {unknown} point outside served versions {list(s.versions)}")
        m = config_list.config.add()
        m.name = name
        if base is None:
            paths.store.fetch_versions(name, s.versions)  # a remote repository's copies, made first
        m.base_path = str(base / check_model_name(name) if base is not None else paths.model_dir(name))
        m.model_platform = PLATFORM
        m.model_version_policy.specific.versions.extend(sorted(s.versions))
        for label in sorted(s.labels):
            m.version_labels[label] = s.labels[label]
    return config


def render(config: model_server_config_pb2.ModelServerConfig) -> str:
    """The config in TF Serving's text format."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse(text: str, source: str = "models.config") -> model_server_config_pb2.ModelServerConfig:
    """Parse text-format ModelServerConfig; errors become ConfigError naming ``source``."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ConfigError(f"malformed serving config {source}: {e}; rewrite it with `mlc serve` or a promote") from e
    return config


def serving_of(config: model_server_config_pb2.ModelServerConfig) -> Serving:
    """Versions and labels per model, read back from a config message."""
    out: Serving = {}
    for m in config.model_config_list.config:
        policy = m.model_version_policy
        which = policy.WhichOneof("policy_choice")
        versions = tuple(sorted(policy.specific.versions)) if which == "specific" else ()
        out[m.name] = ModelServing(versions, dict(m.version_labels))
    return out


def read_text(paths: Paths) -> str | None:
    """The current configs/models.config text, or None when it does not exist."""
    try:
        return paths.serving_config.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def read(paths: Paths) -> Serving | None:
    """The serving state configs/models.config describes, or None when it does not exist."""
    text = read_text(paths)
    if text is None:
        return None
    return _remembered(paths, text) or serving_of(parse(text, str(paths.serving_config)))


def write(paths: Paths, config: model_server_config_pb2.ModelServerConfig) -> str:
    """Write configs/models.config atomically (caller holds the registry lock); return the text."""
    text = render(config)
    if read_text(paths) != text:
        atomic_write_text(paths.serving_config, text)
    if _remembered(paths, text) is None:
        _remember(paths, text, serving_of(config))
    return text


def _record_file(paths: Paths) -> Path:
    return paths.state_dir / "models.config.json"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _remember(paths: Paths, text: str, serving: Serving) -> None:
    """Record what the config with ``text`` serves, for :func:`read` (after the config itself is written)."""
    record = {"sha256": _digest(text),
              "models": {name: {"versions": list(s.versions), "labels": dict(s.labels)} for name, s in serving.items()}}
    try:
        atomic_write_text(_record_file(paths), json.dumps(record, indent=1))
    except OSError:
        pass  # only a shortcut: read() parses the config without it


def _remembered(paths: Paths, text: str) -> Serving | None:
    """What the record says the config serves, if it was written for exactly ``text``; else None."""
    try:
        record: Any = json.loads(_record_file(paths).read_text(encoding="utf-8"))
        if record.get("sha256") != _digest(text):
            return None
        return {str(name): ModelServing(tuple(int(v) for v in m["versions"]),
                                        {str(k): int(v) for k, v in m["labels"].items()})
                for name, m in record["models"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def diff(old: str | None, new: str, name: str = "configs/models.config") -> str:
    """A unified diff from ``old`` (None: no file) to ``new``; empty when identical."""
    import difflib

    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{name} (current)" if old is not None else "/dev/null",
            tofile=f"{name} (after)",
        )
    )
