"""Unit: the history and the failed attempts live in append-only pages beside registry.yaml.

A registry with its history inline (schema 2, written by hand here) reads as it is and moves to
pages on its next write; a promote's commit reads only the last history page and writes one
page and the head; the last event (``mlc status``) comes from the head alone; an event edited
in place rewrites only its page; a reader whose page was replaced reads the new head; two
processes appending at once lose no event.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lifecycle.errors import RegistryError
from lifecycle.store import registry
from lifecycle.store import registry_log as log
from lifecycle.store.config import Paths
from lifecycle.store.registry import Attempt, HistoryEvent

REPO = Path(__file__).resolve().parents[2]
P = log.LOG_PAGE_SIZE


def event(n: int) -> HistoryEvent:
    return HistoryEvent("promote", n - 1 or None, n, "ok", reason=f"r{n}", time="2026-01-01T00:00:00+00:00", user="u")


def head(paths: Paths) -> dict:
    return json.loads(paths.registry_file.read_text())


def log_files(paths: Paths, kind: str = "history") -> set[str]:
    return {p.name for p in (paths.model_repo / "registry" / "m" / kind).glob("*.json")}


def add_events(paths: Paths, numbers: range) -> None:
    with registry.transaction(paths) as reg:
        reg.model("m", create=True).history.extend(event(n) for n in numbers)


def test_a_registry_with_its_history_inline_reads_as_it_is_and_moves_to_pages_on_the_next_write(bare_home: Paths) -> None:
    old = {"schema": 2, "models": {"m": {
        "stable": 2, "canary": None, "checkpoints": [], "pages": [],
        "attempts": [{"checkpoint": "run/ckpt-9", "checkpoint_digest": "sha256:9", "check": "parity", "error": "no",
                      "time": "2026-01-01T00:00:00+00:00", "user": "u"}],
        "history": [{"action": "promote", "from_version": None, "to_version": n, "result": "ok",
                     "time": "2026-01-01T00:00:00+00:00", "user": "u"} for n in range(1, P + 3)],
    }}}
    bare_home.registry_file.parent.mkdir(parents=True)
    bare_home.registry_file.write_text(json.dumps(old, indent=1))
    before = registry.load(bare_home)
    rec = before.model("m")
    assert [e.to_version for e in rec.history] == list(range(1, P + 3)) and rec.history.last.to_version == P + 2
    assert [a.check for a in rec.attempts] == ["parity"]

    with registry.transaction(bare_home) as reg:
        reg.model("m").history.append(HistoryEvent("rollback", P + 2, P + 1, "ok", time="2026-01-02T00:00:00+00:00"))
    new = head(bare_home)["models"]["m"]
    assert head(bare_home)["schema"] == registry.SCHEMA == 3
    assert new["history"]["count"] == P + 3 and len(new["history"]["pages"]) == 2 and len(log_files(bare_home)) == 2
    assert new["history"]["last"]["action"] == "rollback" and new["attempts"]["count"] == 1
    after = registry.load(bare_home)
    assert after.model("m").history[:-1] == list(before.model("m").history)
    assert after.model("m").attempts == before.model("m").attempts


def test_a_commit_reads_only_the_last_page_and_writes_one_page_and_the_head(
        bare_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    add_events(bare_home, range(1, 3 * P + 6))
    full_pages = set(head(bare_home)["models"]["m"]["history"]["pages"][:3])
    store_type = type(bare_home.store)
    reads: list[str] = []
    writes: list[str] = []
    read, write = store_type.read, store_type.write
    writing: list[bool] = []

    def counted_read(self: object, key: str) -> object:
        if not writing:  # a local folder's compare-and-swap reads the document it replaces
            reads.append(key)
        return read(self, key)

    def counted_write(self: object, key: str, data: bytes, generation: str | None) -> str:
        writes.append(key)
        writing.append(True)
        try:
            return write(self, key, data, generation)
        finally:
            writing.pop()

    monkeypatch.setattr(store_type, "read", counted_read)
    monkeypatch.setattr(store_type, "write", counted_write)
    with registry.lease(bare_home):  # what a promote's commit does (complete_forward)
        reg = registry.load(bare_home)
        reg.model("m").stable = 7
        reg.model("m").history.append(event(3 * P + 6))
        registry.save(bare_home, reg)
    assert len(reads) == 2 and reads[0] == registry.KEY and "/history/3-" in reads[1]
    assert len(writes) == 2 and writes[-1] == registry.KEY and "/history/3-" in writes[0]
    assert full_pages <= set(head(bare_home)["models"]["m"]["history"]["pages"])  # the full pages are untouched
    assert [e.to_version for e in registry.load(bare_home).model("m").history] == list(range(1, 3 * P + 7))
    assert len(log_files(bare_home)) == 4  # the replaced last page is gone


def test_the_last_event_comes_from_the_head_without_reading_a_page(bare_home: Paths) -> None:
    add_events(bare_home, range(1, P + 4))
    for page in (bare_home.model_repo / "registry" / "m" / "history").glob("*.json"):
        page.write_text("{not json")
    rec = registry.load(bare_home, versions=False).model("m")
    assert rec.history.last == event(P + 3) and len(rec.history) == P + 3
    with pytest.raises(RegistryError, match="malformed registry page"):
        list(rec.history)


def test_an_event_edited_in_place_rewrites_only_its_page(bare_home: Paths) -> None:
    add_events(bare_home, range(1, 2 * P + 2))
    pages_before = head(bare_home)["models"]["m"]["history"]["pages"]
    with registry.transaction(bare_home) as reg:
        reg.model("m").history[1].reason = "edited"
    pages_after = head(bare_home)["models"]["m"]["history"]["pages"]
    assert pages_after[1:] == pages_before[1:] and pages_after[0] != pages_before[0]
    assert registry.load(bare_home).model("m").history[1].reason == "edited" and len(log_files(bare_home)) == 3
    with registry.transaction(bare_home) as reg:  # replaced whole by a plain list
        reg.model("m").history = [event(1)]
    assert [e.to_version for e in registry.load(bare_home).model("m").history] == [1] and len(log_files(bare_home)) == 1


def test_a_reader_whose_page_was_replaced_reads_the_new_head(bare_home: Paths) -> None:
    add_events(bare_home, range(1, 4))
    rec = registry.load(bare_home, versions=False).model("m")
    add_events(bare_home, range(4, 5))  # replaces the last page and removes the old one
    assert [e.to_version for e in rec.history] == [1, 2, 3, 4]


def test_attempts_are_appended_without_reading_them(bare_home: Paths) -> None:
    for n in range(P + 1):
        with registry.transaction(bare_home) as reg:
            reg.model("m", create=True).attempts.append(Attempt(f"c{n}", f"sha256:{n}", "metrics", "low"))
    rec = registry.load(bare_home).model("m")
    assert [a.checkpoint for a in rec.attempts] == [f"c{n}" for n in range(P + 1)]
    assert len(log_files(bare_home, "attempts")) == 2 and rec.history == []


def test_two_processes_appending_at_once_lose_no_event(
        bare_home: Paths, python: str, subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from lifecycle.store import registry\n"
        "from lifecycle.store.config import Paths\n"
        "paths = Paths.from_env()\n"
        "for n in range(15):\n"
        "    with registry.transaction(paths) as reg:\n"
        "        reg.model('m', create=True).history.append(registry.HistoryEvent('promote', None, n, 'ok',\n"
        "                                                                        reason=sys.argv[1]))\n"
    )
    env = dict(subprocess_env, MLC_HOME=str(bare_home.home))
    procs = [subprocess.Popen([python, "-c", code, tag], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    events = registry.load(bare_home).model("m").history
    assert sorted((e.reason, e.to_version) for e in events) == [(t, n) for t in "ab" for n in range(15)]
    assert len(log_files(bare_home)) == 1
