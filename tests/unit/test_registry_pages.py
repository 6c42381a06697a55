"""Unit: the registry's versions live in immutable pages beside registry.yaml (the head).

An old home (schema 1, every version inline) still reads and moves to pages on its next write;
status-style reads touch only the pages they need, and a full load reads its pages at once; a
writer killed between its pages and its head leaves a registry the next command reads
unchanged, and the next write removes the leftovers; a reader holding a head whose page was
replaced reads the new head; two processes writing at once lose nothing.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from lifecycle.errors import RegistryError
from lifecycle.store import registry
from lifecycle.store import registry_log as log
from lifecycle.store import registry_pages as pages
from lifecycle.store.config import Paths

REPO = Path(__file__).resolve().parents[2]


def add_versions(paths: Paths, numbers: range, model: str = "m") -> None:
    """Record versions ``numbers`` (each with its own checkpoint) in one transaction."""
    with registry.transaction(paths) as reg:
        rec = reg.model(model, create=True)
        for n in numbers:
            rec.checkpoints.append(registry.CheckpointRecord(digest=f"sha256:{n}", path=f"run/ckpt-{n}", step=n,
                                                             tf_version="2.x"))
            rec.versions.append(registry.VersionRecord(version=n, checkpoint_digest=f"sha256:{n}",
                                                       checkpoint=f"run/ckpt-{n}", step=n, validated=True,
                                                       report={"metrics": {"miou": n / 1000}}))


def page_files(paths: Paths) -> set[str]:
    return {str(p.relative_to(paths.model_repo)) for p in (paths.model_repo / "registry").rglob("*.json")}


def referenced(paths: Paths) -> set[str]:
    """Every page the head names: version pages, and the pages of the history and attempts logs."""
    head = yaml.safe_load(paths.registry_file.read_text())
    keys = {p["key"] for m in head["models"].values() for p in m.get("pages") or []}
    for name, m in head["models"].items():
        for kind in log.KINDS:
            keys |= {log.page_key(name, kind, n, i) for n, i in enumerate((m.get(kind) or {}).get("pages") or [])}
    return keys


def test_an_old_registry_reads_as_it_is_and_moves_to_pages_on_the_next_write(bare_home: Paths) -> None:
    old = {"schema": 1, "models": {"m": {
        "stable": 2, "canary": None,
        "checkpoints": [{"digest": f"sha256:{n}", "path": f"run/ckpt-{n}", "step": n, "tf_version": "2.x",
                         "created": "2026-01-01T00:00:00+00:00", "user": "u", "kind": "checkpoint"} for n in (1, 2, 9)],
        "versions": [{"version": n, "checkpoint_digest": f"sha256:{n}", "checkpoint": f"run/ckpt-{n}", "step": n,
                      "validated": True, "report": {"metrics": {"miou": 0.5}},
                      "created": "2026-01-01T00:00:00+00:00", "user": "u"} for n in (1, 2)],
        "attempts": [{"checkpoint": "run/ckpt-9", "checkpoint_digest": "sha256:9", "check": "parity", "error": "no",
                      "time": "2026-01-01T00:00:00+00:00", "user": "u"}],
        "history": [{"action": "promote", "from_version": None, "to_version": 2, "result": "ok",
                     "time": "2026-01-01T00:00:00+00:00", "user": "u"}],
    }}}
    bare_home.registry_file.parent.mkdir(parents=True)
    bare_home.registry_file.write_text(yaml.safe_dump(old))
    before = registry.load(bare_home)
    assert [v.version for v in before.model("m").versions] == [1, 2] and before.model("m").stable == 2
    assert registry.load(bare_home, versions=False).model("m").version_count() == 2

    with registry.transaction(bare_home) as reg:
        reg.model("m").pinned.append(1)
    head = yaml.safe_load(bare_home.registry_file.read_text())
    assert head["schema"] == registry.SCHEMA and "versions" not in head["models"]["m"]
    assert [c["digest"] for c in head["models"]["m"]["checkpoints"]] == ["sha256:9"]  # the failed attempt's
    assert page_files(bare_home) == referenced(bare_home) and len(referenced(bare_home)) == 3  # versions, history, attempts
    assert [h["pages"] for h in (head["models"]["m"]["history"], head["models"]["m"]["attempts"])] != [[], []]
    after = registry.load(bare_home)
    expected = before.to_dict()
    expected["models"]["m"]["pinned"] = [1]
    assert after.to_dict() == expected


def test_status_reads_only_the_pages_of_the_versions_it_shows(bare_home: Paths) -> None:
    add_versions(bare_home, range(1, 3 * pages.PAGE_SIZE + 1))
    with registry.transaction(bare_home) as reg:
        reg.model("m").stable = 3
    head = registry.load(bare_home, versions=False)
    rec = head.model("m")
    assert head.head_only and rec.versions == [] and rec.version_count() == 3 * pages.PAGE_SIZE
    # Break the middle page: the full load notices, the selective read never opens it.
    middle = next(p for p in rec.pages if p.page == 1)
    (bare_home.model_repo / middle.key).write_text("{not json")
    with pytest.raises(RegistryError, match="malformed registry page"):
        registry.load(bare_home)
    shown = registry.select(bare_home, rec, {3}, 5)
    assert [v.version for v in shown] == [3, *range(3 * pages.PAGE_SIZE - 4, 3 * pages.PAGE_SIZE + 1)]
    assert [v.version for v in registry.select(bare_home, rec, set(), 0)] == []
    with pytest.raises(ValueError):
        registry.save(bare_home, head)  # a head-only registry cannot be written back


def test_a_full_load_reads_its_pages_at_once_and_keeps_their_order(bare_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page is a round trip on object storage: the three pages are read concurrently (a
    barrier that three readers must reach together), and the versions come back in order."""
    import threading

    add_versions(bare_home, range(1, 3 * pages.PAGE_SIZE + 1))
    barrier = threading.Barrier(3, timeout=10)
    store_type = type(bare_home.store)
    read = store_type.read

    def read_together(self: object, key: str) -> object:
        if key.startswith(pages.PREFIX + "/"):
            barrier.wait()  # BrokenBarrierError after 10 s if the pages were read one by one
        return read(self, key)

    monkeypatch.setattr(store_type, "read", read_together)
    rec = registry.load(bare_home).model("m")
    assert [v.version for v in rec.versions] == list(range(1, 3 * pages.PAGE_SIZE + 1))
    assert len(rec.checkpoints) == 3 * pages.PAGE_SIZE


def test_a_reader_whose_page_was_replaced_reads_the_new_head(bare_home: Paths) -> None:
    add_versions(bare_home, range(1, 4))
    rec = registry.load(bare_home, versions=False).model("m")
    old_keys = {p.key for p in rec.pages}
    add_versions(bare_home, range(4, 5))  # replaces page 0 and removes the old one
    assert not any((bare_home.model_repo / k).exists() for k in old_keys)
    assert [v.version for v in registry.select(bare_home, rec, set(), 10)] == [1, 2, 3, 4]


def test_a_writer_killed_between_its_pages_and_its_head_changes_nothing_and_its_pages_go_later(
        bare_home: Paths, python: str, subprocess_env: dict[str, str]) -> None:
    add_versions(bare_home, range(1, 3))
    head_before = bare_home.registry_file.read_bytes()
    before = registry.load(bare_home).to_dict()
    code = (
        "from tests.unit.test_registry_pages import add_versions\n"
        "from lifecycle.store.config import Paths\n"
        "add_versions(Paths.from_env(), range(3, 5))\n"
    )
    env = dict(subprocess_env, MLC_HOME=str(bare_home.home), MLC_FAILPOINTS="registry:pages")
    r = subprocess.run([python, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert bare_home.registry_file.read_bytes() == head_before
    leftovers = page_files(bare_home) - referenced(bare_home)
    assert leftovers  # the killed writer's new page, which no head names
    assert registry.load(bare_home).to_dict() == before
    add_versions(bare_home, range(5, 6))
    assert page_files(bare_home) == referenced(bare_home)
    assert [v.version for v in registry.load(bare_home).model("m").versions] == [1, 2, 5]


def test_two_processes_writing_at_once_lose_no_version(
        bare_home: Paths, python: str, subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from lifecycle.store import registry\n"
        "from lifecycle.store.config import Paths\n"
        "paths = Paths.from_env()\n"
        "for _ in range(15):\n"
        "    with registry.transaction(paths) as reg:\n"
        "        rec = reg.model('m', create=True)\n"
        "        n = (rec.latest_version() or 0) + 1\n"
        "        rec.versions.append(registry.VersionRecord(version=n, checkpoint_digest=f'{sys.argv[1]}{n}',\n"
        "                                                   checkpoint='c', step=n, validated=True))\n"
    )
    env = dict(subprocess_env, MLC_HOME=str(bare_home.home))
    procs = [subprocess.Popen([python, "-c", code, tag], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    versions = registry.load(bare_home).model("m").versions
    assert [v.version for v in versions] == list(range(1, 31))
    assert sorted(v.checkpoint_digest[0] for v in versions) == ["a"] * 15 + ["b"] * 15
    assert page_files(bare_home) == referenced(bare_home)


def test_a_write_that_lost_the_race_leaves_no_page_behind(bare_home: Paths) -> None:
    from lifecycle.errors import StaleGeneration

    add_versions(bare_home, range(1, 3))
    stale = registry.load(bare_home)
    add_versions(bare_home, range(3, 4))  # another writer commits first
    stale.model("m").versions.pop()
    with pytest.raises(StaleGeneration):
        registry.save(bare_home, stale)
    assert page_files(bare_home) == referenced(bare_home)
    assert [v.version for v in registry.load(bare_home).model("m").versions] == [1, 2, 3]
