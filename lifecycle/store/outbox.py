"""The webhook outbox: events waiting to be sent to the receivers of ``configs/hooks.yaml``.

An event is written here first, by conditional create (``outbox/<time>-<id>.json``), by the one
place its action is recorded (the registry's save for history, attempts and approvals; a
register's publish), and only then sent (:mod:`lifecycle.hooks`). Each document holds the event
(id, name, time, model, user, data) and one delivery per receiver that wants it: sent or not,
attempts, when to try next, the last error. A sender updates it by compare-and-swap and deletes
it once every receiver has it, so what is here is what is pending.

``configs/hooks.yaml``::

    receivers:
      - name: chat                       # optional; the URL by default
        url: https://hooks.example.com/mlc
        events: [promote, rollback]      # or ["*"] (the default): every event
        secret_env: MLC_HOOK_SECRET      # the HMAC key is this environment variable's value
        timeout: 2                       # seconds per POST (default 2)

Without that file nothing is written. This module must not import TensorFlow.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lifecycle.errors import ConfigError, LifecycleError, StaleGeneration
from lifecycle.store.config import Paths, load_yaml_file
from lifecycle.store.provenance import current_user, now_iso

PREFIX = "outbox"
HOOKS_FILE = "hooks.yaml"
EVENTS = ("register", "register-failed", "approve", "reject", "promote", "rollback",
          "rollout-step", "rollout-abort", "rollout-finish", "gc", "test")
DEFAULT_TIMEOUT_S = 2.0
#: What a registry record becomes: history actions, and the kinds of the other logs.
HISTORY_EVENTS = {"promote": "promote", "canary": "promote", "rollback": "rollback", "gc": "gc",
                  "rollout": "rollout-finish"}


@dataclass(frozen=True)
class Receiver:
    """One receiver of configs/hooks.yaml."""

    name: str
    url: str
    events: tuple[str, ...] = ("*",)
    secret_env: str = ""
    timeout: float = DEFAULT_TIMEOUT_S

    def wants(self, event: str) -> bool:
        """Whether this receiver asked for ``event`` (a test event goes to every receiver)."""
        return event == "test" or "*" in self.events or event in self.events


def receivers(paths: Paths) -> list[Receiver]:
    """The receivers of configs/hooks.yaml (none without the file); a malformed file is a ConfigError."""
    file = paths.configs / HOOKS_FILE
    if not file.exists():
        return []
    data = load_yaml_file(file, "hooks file") or {}
    listed = data.get("receivers") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        raise ConfigError(f"{file}: expected 'receivers:', a list of receivers with url, events and secret_env")
    out = []
    for i, r in enumerate(listed):
        where = f"{file}: receivers[{i}]"
        if not isinstance(r, dict) or not str(r.get("url", "")).startswith(("http://", "https://")):
            raise ConfigError(f"{where}: needs a url (http:// or https://)")
        events = tuple(str(e) for e in r.get("events") or ["*"])
        unknown = sorted(set(events) - set(EVENTS) - {"*"})
        if unknown:
            raise ConfigError(f"{where}: unknown event(s) {', '.join(unknown)} (known: {', '.join(EVENTS)})")
        out.append(Receiver(str(r.get("name") or r["url"]), str(r["url"]), events, str(r.get("secret_env") or ""),
                            float(r.get("timeout", DEFAULT_TIMEOUT_S))))
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{file}: receiver names repeat: {names}")
    return out


@dataclass
class Entry:
    """One pending event: its document key, the generation it was read at, and its body."""

    key: str
    generation: str
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def event(self) -> dict[str, Any]:
        """The event as receivers get it."""
        return dict(self.body["event"])

    @property
    def deliveries(self) -> dict[str, dict[str, Any]]:
        """Receiver name -> {sent, attempts, next_try, error}."""
        return dict(self.body["deliveries"])


def emit(paths: Paths, event: str, model: str | None, data: dict[str, Any],
         wanted: list[Receiver] | None = None) -> str | None:
    """Write an event to the outbox for every receiver that wants it; its id, or None when none does.

    Never raises for a store or config problem: a command whose action is recorded does not
    fail because its notification could not be queued.
    """
    try:
        targets = [r for r in (receivers(paths) if wanted is None else wanted) if r.wants(event)]
        if not targets:
            return None
        event_id = uuid.uuid4().hex
        body = {"event": {"id": event_id, "event": event, "time": now_iso(), "model": model, "user": current_user(),
                          "data": data},
                "deliveries": {r.name: {"sent": False, "attempts": 0, "next_try": 0.0, "error": ""} for r in targets}}
        key = f"{PREFIX}/{time.time_ns():020d}-{event_id}.json"
        paths.store.write(key, json.dumps(body, sort_keys=True).encode("utf-8"), None)
        return event_id
    except (LifecycleError, OSError):
        return None


def emit_records(paths: Paths, added: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    """Queue the events of records the registry just committed: history events, failed attempts, approvals."""
    if not (paths.configs / HOOKS_FILE).exists() or not any(added.values()):
        return
    try:
        wanted = receivers(paths)
    except LifecycleError:
        return
    for (model, kind), records in sorted(added.items()):
        for r in records:
            if kind == "history" and r.get("action") == "rollout" and r.get("result") != "ok":
                name: str | None = "rollout-abort"  # an aborted (or failed) progressive rollout
            elif kind == "history":
                name = HISTORY_EVENTS.get(str(r.get("action")))
            else:
                name = {"attempts": "register-failed"}.get(kind) or ("approve" if r.get("decision") == "approve"
                                                                      else "reject" if kind == "approvals" else None)
            if name:
                emit(paths, name, model, r, wanted)


def pending(paths: Paths) -> list[Entry]:
    """Every event some receiver has not got yet, oldest first."""
    out = []
    for key in sorted(paths.store.keys(f"{PREFIX}/")):
        doc = paths.store.read(key)
        if doc is None:
            continue  # delivered and removed meanwhile
        try:
            body = json.loads(doc.data)
        except ValueError:
            continue
        out.append(Entry(key, doc.generation, body))
    return out


def update(paths: Paths, entry: Entry) -> bool:
    """Write back an entry's deliveries (delete it once every receiver has it); False when another sender won."""
    try:
        if all(d["sent"] for d in entry.body["deliveries"].values()):
            paths.store.delete(entry.key, entry.generation)
        else:
            entry.generation = paths.store.write(entry.key, json.dumps(entry.body, sort_keys=True).encode("utf-8"),
                                                 entry.generation)
        return True
    except StaleGeneration:
        return False
