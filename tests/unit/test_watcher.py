"""The watcher in-process, without TensorFlow: a simulated trainer writes checkpoints slowly, in
bursts and half-written, and a register callable that hashes what it is given stands in for
``api.register`` (versions by content digest, like the real one). The command line is in
tests/cli/test_watch.py; real checkpoints, TensorFlow and a server in tests/e2e/test_watch_e2e.py.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from lifecycle.errors import CheckpointError, FailedPrecondition, ValidationFailed
from lifecycle.register import checkpoints
from lifecycle.register.watch import Registered, Watcher
from tests.support.polling import wait_until
from tests.support.trainer_sim import SimTrainer, digest_of, synthetic_files
from tests.support.watch_support import (
    POLL,
    SETTLE,
    FakeRegister,
    run_once,
    watching,
)

# --- the state file ----------------------------------------------------------------------------


def test_state_prefixes_names_every_listed_checkpoint_inside_the_folder(tmp_path: Path) -> None:
    assert checkpoints.state_prefixes(tmp_path) == []
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "/elsewhere/old/ckpt-30"\n'
        'all_model_checkpoint_paths: "ckpt-10"\n'
        'all_model_checkpoint_paths: "sub/ckpt-20"\n'
        'all_model_checkpoint_paths: "/elsewhere/old/ckpt-30"\n'
        "all_model_checkpoint_timestamps: 1795547105.4\n"
    )
    assert checkpoints.state_prefixes(tmp_path) == [tmp_path / "ckpt-30", tmp_path / "ckpt-10", tmp_path / "ckpt-20"]


def test_a_state_file_caught_mid_write_names_nothing_yet(tmp_path: Path) -> None:
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-1')
    assert checkpoints.state_prefixes(tmp_path) == []


# --- registering exactly once, never half-written -------------------------------------------------


def test_slow_half_written_and_burst_checkpoints_are_each_registered_once_from_complete_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = SimTrainer(run)
    register = FakeRegister()

    def train() -> None:
        trainer.write(1, chunks=6, chunk_pause=0.06)  # slow: a shard grows for ~0.3 s
        # Named in the state file and its index written first, then its shard stops half-way
        # for longer than many polls: only the settle time keeps the watcher from reading it.
        trainer.write(2, half_pause=SETTLE * 0.6, state_first=True, index_first=True)
        for step in range(3, 8):  # a burst
            trainer.write(step)

    with watching([run], register, rescan=SETTLE / 2) as w:
        t = threading.Thread(target=train)
        t.start()
        t.join()
        wait_until(lambda: len(register.reads) >= 7, what="7 registrations")
        # A duplicate would start as a pending candidate, found by a scan and pending for the
        # settle time, longer than the rescan period: two more full rescans and nothing pending
        # mean every folder was looked at again after the last registration and nothing is coming.
        scans = w.watcher.full_scans
        wait_until(lambda: w.watcher.full_scans >= scans + 2 and not w.watcher.pending, what="two idle rescans")
    names = [name for name, _ in register.reads]
    assert sorted(names) == sorted(f"ckpt-{s}" for s in range(1, 8)), names
    for name, digest in register.reads:
        assert digest == trainer.digests[name], f"{name} was read before it was complete"
    registered = {e.checkpoint.rsplit("/", 1)[-1]: e.version for e in w.kinds("registered")}
    assert sorted(registered.values()) == list(range(1, 8))
    by_step = [registered[f"ckpt-{s}"] for s in range(1, 8)]
    assert by_step == sorted(by_step), "versions follow training order"
    assert w.summary is not None and w.summary.stopped_by == "signal"
    assert w.kinds("stopped")


def test_a_checkpoint_missing_a_shard_waits_until_it_is_complete(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = SimTrainer(run)
    register = FakeRegister()
    files = synthetic_files(5, shards=2)
    with watching([run], register) as w:
        trainer.write(5, files=files, skip=(".data-00001-of-00002",))
        wait_until(lambda: bool(w.kinds("incomplete")), what="the incomplete event")
        assert "missing ckpt-5.data-00001-of-00002" in w.kinds("incomplete")[0].message
        assert register.reads == []
        trainer.write_file(5, ".data-00001-of-00002", files[".data-00001-of-00002"])
        wait_until(lambda: bool(register.reads), what="the registration")
    assert register.reads == [("ckpt-5", trainer.digests["ckpt-5"])]


def test_once_leaves_an_incomplete_checkpoint_alone_instead_of_waiting_forever(tmp_path: Path) -> None:
    trainer = SimTrainer(tmp_path / "run")
    trainer.write(1)
    trainer.write(2, files=synthetic_files(2, shards=2), skip=(".data-00001-of-00002",))
    trainer.write(3, skip=(".index", ".data-00000-of-00001"))  # named in the state file, no files at all
    summary, events = run_once([trainer.run_dir], FakeRegister())
    assert summary.registered == [1] and summary.stopped_by == "once"
    incomplete = {e.step: e.message for e in events if e.kind == "incomplete"}
    assert incomplete[2].endswith("missing ckpt-2.data-00001-of-00002; left alone (--once)")
    assert incomplete[3].endswith("has no index file (ckpt-3.index) yet; left alone (--once)")


def test_a_failing_checkpoint_is_logged_with_its_reason_and_watching_goes_on(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = SimTrainer(run)
    register = FakeRegister(fail={
        "ckpt-2": ValidationFailed("eval mIoU 0.010 is below min_miou 0.2", check="metrics"),
        "ckpt-3": RuntimeError("a bug in a register hook"),
    })
    with watching([run], register) as w:
        for step in (1, 2, 3):
            trainer.write(step)
        wait_until(lambda: len(w.kinds("failed")) == 2, what="two failures")
        trainer.write(4)
        wait_until(lambda: len(w.kinds("registered")) == 2, what="ckpt-4")
    failed = {e.checkpoint.rsplit("/", 1)[-1]: e.message for e in w.kinds("failed")}
    assert failed["ckpt-2"] == "eval mIoU 0.010 is below min_miou 0.2"
    assert failed["ckpt-3"] == "unexpected RuntimeError: a bug in a register hook"
    assert [e.step for e in w.kinds("registered")] == [1, 4]
    assert [n for n, _ in register.reads].count("ckpt-2") == 1, "a failed checkpoint is not retried unchanged"


def test_a_write_that_stalls_past_the_settle_time_fails_and_is_retried_once_the_file_changes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = SimTrainer(run)
    files = synthetic_files(7)
    data = files[".data-00000-of-00001"]

    class RefusesTruncated(FakeRegister):
        def __call__(self, prefix: Path) -> Registered:
            if checkpoints.resolve(prefix).digest != trainer.digests[prefix.name]:
                self.reads.append((prefix.name, "truncated"))
                raise CheckpointError(f"checkpoint {prefix} is corrupt or truncated")  # as TF's reader says
            return super().__call__(prefix)

    register = RefusesTruncated()
    with watching([run], register) as w:
        trainer.write(7, files={**files, ".data-00000-of-00001": data[: len(data) // 2]})
        trainer.digests["ckpt-7"] = digest_of("ckpt-7", files)  # the final content is what counts
        wait_until(lambda: bool(w.kinds("failed")), what="the stalled checkpoint to fail")
        assert "corrupt or truncated" in w.kinds("failed")[0].message
        trainer.write_file(7, ".data-00000-of-00001", data)  # the trainer finishes after all
        wait_until(lambda: bool(w.kinds("registered")), what="the retry")
    assert [name for name, _ in register.reads] == ["ckpt-7", "ckpt-7"]
    assert register.reads[-1][1] == trainer.digests["ckpt-7"]


def test_a_restart_registers_nothing_twice(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = SimTrainer(run)
    for step in (10, 20, 30):
        trainer.write(step)
    register = FakeRegister()
    first, _ = run_once([run], register)
    assert (first.registered, first.known, first.stopped_by) == ([1, 2, 3], [], "once")
    trainer.write(40)  # landed while nobody was watching
    second, events = run_once([run], register)
    assert second.registered == [4] and second.known == [1, 2, 3]
    assert [e.kind for e in events if e.kind in ("registered", "known")] == ["known"] * 3 + ["registered"]
    assert len(register.versions) == 4


def test_a_folder_that_does_not_exist_yet_or_is_deleted_and_recreated_is_watched(tmp_path: Path) -> None:
    run = tmp_path / "later"
    trainer = SimTrainer(run)
    register = FakeRegister()
    with watching([run], register) as w:
        wait_until(lambda: bool(w.kinds("waiting")), what="waiting for the folder")
        trainer.write(1)
        wait_until(lambda: len(w.kinds("registered")) == 1, what="the first checkpoint")
        # Deleted and recreated at once (no tick in between): the old watch died with the folder.
        shutil.rmtree(run)
        trainer.written.clear()
        trainer.write(1, files=synthetic_files(101))
        wait_until(lambda: len(w.kinds("registered")) == 2, what="the recreated run's checkpoint")
        # Deleted, noticed, then recreated.
        shutil.rmtree(run)
        wait_until(lambda: bool(w.kinds("gone")), what="the folder to be reported gone")
        trainer.written.clear()
        trainer.write(2, files=synthetic_files(102))
        wait_until(lambda: len(w.kinds("registered")) == 3, what="the third run's checkpoint")
    assert [e.version for e in w.kinds("registered")] == [1, 2, 3]
    assert any(e.message.startswith("watching again") for e in w.kinds("watching"))
    assert len(register.reads) == 3


def test_several_folders_are_watched_together(tmp_path: Path) -> None:
    a, b = SimTrainer(tmp_path / "a"), SimTrainer(tmp_path / "b")
    register = FakeRegister()
    with watching([a.run_dir, b.run_dir, a.run_dir], register) as w:
        a.write(1)
        b.write(1, files=synthetic_files(1001))
        wait_until(lambda: len(w.kinds("registered")) == 2, what="both folders")
    assert len(w.kinds("watching")) == 2, "a folder named twice is watched once"


# --- promotion ------------------------------------------------------------------------------------


def test_promote_if_better_offers_the_newest_of_a_burst_and_reports_a_refusal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = SimTrainer(run)
    for step in (1, 2, 3):
        trainer.write(step)
    offered: list[int] = []

    def promote(version: int) -> str:
        offered.append(version)
        if version == 4:
            raise FailedPrecondition("quality gate: version 4 has mIoU 0.1000, below stable 3's 0.5000")
        return f"deeplab: version {version} is now stable"

    register = FakeRegister()
    summary, events = run_once([run], register, promote=promote)
    assert offered == [3] and summary.promoted == [3]
    assert [e.message for e in events if e.kind == "promoted"] == ["deeplab: version 3 is now stable"]
    trainer.write(4)
    summary, events = run_once([run], register, promote=promote)
    assert offered == [3, 4], "known versions are not offered again"
    assert summary.kept == [4] and summary.promoted == []
    kept = [e for e in events if e.kind == "kept"]
    assert kept[0].version == 4 and "quality gate" in kept[0].message


# --- stopping -------------------------------------------------------------------------------------


def test_max_events_and_exit_after_stop_the_watch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = SimTrainer(run)
    for step in (1, 2, 3):
        trainer.write(step)
    watcher = Watcher([run], FakeRegister(), settle=0.1, poll=POLL)
    summary = watcher.run(max_events=2)
    assert (summary.outcomes, summary.stopped_by, summary.registered) == (2, "max-events", [1, 2])
    t0 = time.monotonic()
    summary = Watcher([tmp_path / "empty"], FakeRegister(), poll=POLL).run(exit_after=0.3)
    assert summary.stopped_by == "exit-after" and 0.25 < time.monotonic() - t0 < 5


def test_a_failed_validation_is_remembered_until_the_definition_changes(tmp_path: Path) -> None:
    import os

    from lifecycle.register.watch import failed_before
    from lifecycle.store.registry import Attempt, ModelRecord

    definition = tmp_path / "deeplab.yaml"
    definition.write_text("name: deeplab\n")
    os.utime(definition, (1_700_000_000, 1_700_000_000))  # 2023-11-14T22:13:20Z
    rec = ModelRecord(name="deeplab", attempts=[
        Attempt("ckpt/a", "sha256:a", "metrics", "eval mIoU too low", time="2023-11-15T00:00:00+00:00"),
        Attempt("ckpt/b", "sha256:b", "export", "No space left on device", time="2023-11-15T00:00:00+00:00"),
        Attempt("ckpt/c", "sha256:c", "parity", "outputs differ", time="2023-11-14T00:00:00+00:00"),
    ])
    failed = failed_before(rec, "sha256:a", definition)
    assert failed is not None and failed.error == "eval mIoU too low"
    assert failed_before(rec, "sha256:b", definition) is None, "an export failure may pass next time"
    assert failed_before(rec, "sha256:c", definition) is None, "the definition changed since"
    assert failed_before(rec, "sha256:new", definition) is None
