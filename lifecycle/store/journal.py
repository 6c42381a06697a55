"""The rollout intent journal: ``.mlc/rollout.journal.json``.

A promote or rollback writes its intent before it touches anything, then one entry before
(``begin``) and after (``done`` or ``failed``) every step, each write atomic. The journal is
deleted when the rollout has been recorded in the registry. Rollouts run under the registry
lock, so a journal found by a process that holds the lock was left by an mlc that died: the
next mutating command completes it (the stable label had moved everywhere) or reverts it.

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
from typing import Any

from lifecycle.errors import ConfigError
from lifecycle.failpoints import failpoint
from lifecycle.store.config import Paths
from lifecycle.store.files import atomic_write_text
from lifecycle.store.registry import current_user, now_iso

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


def path(paths: Paths):  # noqa: ANN201 - a pathlib.Path
    """.mlc/rollout.journal.json."""
    return paths.state_dir / "rollout.journal.json"


def load(paths: Paths) -> Journal | None:
    """The journal left on disk, or None."""
    file = path(paths)
    try:
        data: Any = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ConfigError(f"malformed rollout journal {file}: {e}; inspect it, then delete it to continue") from e
    try:
        return Journal(**data)
    except TypeError as e:
        raise ConfigError(f"malformed rollout journal {file}: {e}; inspect it, then delete it to continue") from e


def write(paths: Paths, journal: Journal) -> None:
    """Write the whole journal atomically."""
    atomic_write_text(path(paths), json.dumps(asdict(journal), indent=1))


def step(paths: Paths, journal: Journal, name: str, state: str, detail: str = "") -> None:
    """Append one step entry and write the journal; then the failpoint ``journal:<name>:<state>``."""
    assert name in STEPS, name  # a programming error, not a user one
    journal.steps.append({"step": name, "state": state, "time": now_iso(), "detail": detail})
    write(paths, journal)
    failpoint(f"journal:{name}:{state}")


def clear(paths: Paths) -> None:
    """Delete the journal (the rollout is recorded in the registry)."""
    try:
        path(paths).unlink()
    except FileNotFoundError:
        pass
