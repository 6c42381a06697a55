"""The rollout intent journal: the document ``journal/rollout.json`` of the repository.

A promote or rollback writes its intent before it touches anything, then one entry before
(``begin``) and after (``done`` or ``failed``) every step, each write atomic and conditional
(:func:`lifecycle.store.cas.update`: a rollout only ever replaces its own journal). The journal
is deleted when the rollout has been recorded in the registry. Rollouts hold the registry
lease, so a journal found by a process that holds the lease was left by an mlc that died: the
next mutating command completes it (the stable label had moved everywhere) or reverts it. It
lives in the repository, not on one machine, so that any machine sharing the repository can
recover it. A journal left by an older mlc in ``.mlc/rollout.journal.json`` is still read (and
removed by :func:`clear`), so an upgrade loses nothing.

Format (JSON)::

    {"id": "...", "action": "promote", "model": "deeplab", "version": 4,
     "before": {"stable": 3, "canary": null}, "after": {"stable": 4, "canary": null},
     "reason": "...", "forced": false, "pid": 1234, "user": "...", "started": "...",
     "servers": ["127.0.0.1:8500"],
     "steps": [{"step": "intent", "state": "done", "time": "...", "detail": ""}, ...]}

Steps in order: intent, sandbox, load, available, verify, label, drop, unloaded, commit.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lifecycle.errors import ConfigError, FailedPrecondition
from lifecycle.failpoints import failpoint
from lifecycle.store import cas
from lifecycle.store.config import Paths
from lifecycle.store.provenance import current_user, now_iso

KEY = "journal/rollout.json"

STEPS = ("intent", "sandbox", "load", "available", "verify", "label", "drop", "unloaded", "commit")



@dataclass
class Journal:
    """One rollout in progress."""

    action: str  # promote | canary | rollback
    model: str
    version: int | None
    before: dict[str, int | None]
    after: dict[str, int | None]
    reason: str = ""
    forced: bool = False
    servers: list[str] = field(default_factory=list)
    steps: list[dict[str, str]] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    pid: int = field(default_factory=os.getpid)
    user: str = field(default_factory=current_user)
    started: str = field(default_factory=now_iso)

    def reached(self, step: str, state: str = "done") -> bool:
        """Whether ``step`` was recorded with ``state``."""
        return any(s["step"] == step and s["state"] == state for s in self.steps)

    def last(self) -> str:
        """The last entry as ``step:state`` (``-`` when none)."""
        return f"{self.steps[-1]['step']}:{self.steps[-1]['state']}" if self.steps else "-"

    def describe(self) -> str:
        """One line for people."""
        b, a = self.before, self.after
        move = f"stable {b.get('stable')} -> {a.get('stable')}"
        if a.get("canary") != b.get("canary"):
            move += f", canary {b.get('canary')} -> {a.get('canary')}"
        return f"{self.action} of {self.model} ({move}) by {self.user} pid {self.pid} at {self.started}, last step {self.last()}"


def legacy_path(paths: Paths) -> Path:
    """Where mlc kept the journal before it moved into the repository: .mlc/rollout.journal.json."""
    return paths.state_dir / "rollout.journal.json"


def _parse(data: bytes, where: str) -> Journal:
    try:
        return Journal(**json.loads(data.decode("utf-8")))
    except (ValueError, TypeError) as e:  # bad JSON or UTF-8, missing or unknown fields
        raise ConfigError(f"malformed rollout journal {where}: {e}; inspect it, then delete it to continue") from e


def load(paths: Paths) -> Journal | None:
    """The journal left in the repository (or by an older mlc in .mlc/), or None."""
    doc = paths.store.read(KEY)
    if doc is not None:
        return _parse(doc.data, f"{paths.store.url}/{KEY}")
    legacy = legacy_path(paths)
    try:
        data = legacy.read_bytes()
    except FileNotFoundError:
        return None
    return _parse(data, str(legacy))


def write(paths: Paths, journal: Journal) -> None:
    """Write the whole journal by compare-and-swap; refuse to replace another rollout's journal."""
    where = f"{paths.store.url}/{KEY}"
    new = json.dumps(asdict(journal), indent=1).encode("utf-8")

    def mutate(current: bytes | None) -> bytes:
        if current is not None:
            other = _parse(current, where)
            if other.id != journal.id:
                raise FailedPrecondition(
                    f"another rollout's journal is in {where} ({other.describe()}); "
                    "run `mlc status`, and let the next promote or rollback recover it"
                )
        return new

    cas.update(paths.store, KEY, mutate)


def step(paths: Paths, journal: Journal, name: str, state: str, detail: str = "") -> None:
    """Append one step entry and write the journal; then the failpoint ``journal:<name>:<state>``."""
    assert name in STEPS, name  # a programming error, not a user one
    journal.steps.append({"step": name, "state": state, "time": now_iso(), "detail": detail})
    write(paths, journal)
    failpoint(f"journal:{name}:{state}")


def clear(paths: Paths) -> None:
    """Delete the journal (the rollout is recorded in the registry), and an older mlc's one."""
    paths.store.delete(KEY)
    try:
        legacy_path(paths).unlink()
    except FileNotFoundError:
        pass
