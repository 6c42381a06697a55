"""End to end: ``mlc watch`` with real DeepLab checkpoints, TensorFlow, the registry and a server.

A simulated trainer copies ``tiny_run``'s checkpoints into a watched run folder the way a
trainer can be caught writing them (index first, data stopping half-way, a corrupt shard, a
checkpoint too weak to pass validation); the watcher runs in-process through ``api.watch``,
and a restart goes through the command line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.register.watch import WatchEvent, WatchSummary
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.deeplab_runs import TinyRun
from tests.support.trainer_sim import SimTrainer, real_files

pytestmark = pytest.mark.e2e
runner = CliRunner()


def set_definition(paths: Paths, section: str, **values: object) -> None:
    """Change keys of one section of the home's configs/deeplab.yaml."""
    path = paths.definition_file("deeplab")
    data = yaml.safe_load(path.read_text())
    data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def watch_in_thread(paths: Paths, run: Path, events: list[WatchEvent], **kwargs: object) -> tuple[threading.Thread, dict[str, WatchSummary]]:
    out: dict[str, WatchSummary] = {}

    def go() -> None:
        out["summary"] = api.watch([run], settle=0.3, on_event=events.append, paths=paths, **kwargs)  # type: ignore[arg-type]

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, out


def by_name(events: list[WatchEvent], kind: str) -> dict[str, WatchEvent]:
    return {e.checkpoint.rsplit("/", 1)[-1]: e for e in events if e.kind == kind and e.checkpoint}


def test_watch_registers_each_real_checkpoint_once_and_a_restart_adds_nothing(
    make_home: Callable[..., Paths], tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = make_home()
    # tiny_run's step 20 scores about 0.14 and step 60 about 0.43 on the evaluation set.
    set_definition(paths, "validation", min_miou=0.25)
    run = tmp_path / "ckpt" / "16645"
    trainer = SimTrainer(run)
    weak = real_files(tiny_run.prefix(20))
    corrupt = real_files(tiny_run.prefix(40))
    data = corrupt[".data-00000-of-00001"]
    corrupt[".data-00000-of-00001"] = data[: len(data) // 3]
    good = real_files(tiny_run.prefix(60))

    events: list[WatchEvent] = []
    thread, out = watch_in_thread(paths, run, events, max_events=3, exit_after=150)
    trainer.write(20, weak)
    trainer.write(40, corrupt)
    # Index and state file first, then the data stops half-way: only the settle time protects.
    trainer.write(60, good, state_first=True, index_first=True, half_pause=0.2)
    thread.join(timeout=160)
    assert not thread.is_alive()
    summary = out["summary"]
    assert summary.stopped_by == "max-events" and summary.registered == [1], [e.message for e in events]

    failed = by_name(events, "failed")
    assert "validation check 'metrics' failed: eval mIoU" in failed["ckpt-20"].message
    assert "below validation.min_miou 0.25" in failed["ckpt-20"].message
    assert "corrupt or truncated" in failed["ckpt-40"].message
    registered = by_name(events, "registered")["ckpt-60"]
    assert registered.version == 1 and registered.step == 60 and registered.miou is not None

    rec = registry.load(paths).model("deeplab")
    assert [(v.version, v.step, v.checkpoint_digest) for v in rec.versions] == [(1, 60, trainer.digests["ckpt-60"])]
    assert [(a.check, a.checkpoint_digest) for a in rec.attempts] == [("metrics", trainer.digests["ckpt-20"])]

    # A restart (through the CLI) registers nothing twice and does not retry the known failure.
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    result = runner.invoke(app, ["watch", str(run), "--once", "--settle", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    outcome = {line["checkpoint"].rsplit("/", 1)[-1]: (line["kind"], line["version"])
               for line in lines if line["kind"] in ("registered", "known", "failed", "skipped")}
    assert outcome == {"ckpt-20": ("skipped", None), "ckpt-40": ("failed", None), "ckpt-60": ("known", 1)}
    assert lines[-1]["kind"] == "summary" and lines[-1]["registered"] == [] and lines[-1]["known"] == [1]
    after = registry.load(paths).model("deeplab")
    assert len(after.versions) == 1 and len(after.attempts) == 1

    # mlc status shows the eval mIoU stored with the version.
    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["models"][0]["versions"][0]["miou"] == pytest.approx(registered.miou)


def test_the_watcher_follows_tensorflows_own_checkpoint_writer(tmp_path: Path) -> None:
    """tf.train.CheckpointManager's real write pattern (temp folders, renames, max_to_keep deletes)."""
    import tensorflow as tf

    from lifecycle.register import checkpoints
    from tests.support.polling import wait_until
    from tests.support.watch_support import FakeRegister, watching

    run = tmp_path / "run"
    weights = tf.Variable(tf.zeros([128, 128]))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(w=weights), str(run), max_to_keep=3)
    register = FakeRegister()
    with watching([run], register) as w:
        for step in range(1, 7):  # a burst: the first ones are deleted again by max_to_keep
            weights.assign_add(tf.ones([128, 128]))
            manager.save(checkpoint_number=step)
        wait_until(lambda: {"ckpt-4", "ckpt-5", "ckpt-6"} <= {n for n, _ in register.reads}, what="the kept checkpoints")
    names = [n for n, _ in register.reads]
    assert len(names) == len(set(names)), f"a checkpoint was read twice: {names}"
    for name, digest in register.reads:
        if (run / f"{name}.index").exists():
            assert digest == checkpoints.resolve(run / name).digest, f"{name} was read before TF finished it"
    assert [e.step for e in w.kinds("registered")] == sorted(e.step for e in w.kinds("registered"))
