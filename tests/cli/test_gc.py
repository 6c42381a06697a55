"""mlc gc, pin and unpin through the CLI, on a local repository and on a real S3 one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.serving import tfs_config
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent, VersionRecord
from tests.support.homes import tree_state

runner = CliRunner()
MODEL = "m"


def publish(paths: Paths, versions: list[int]) -> None:
    """Publish stand-in versions (a file each) through the store and record them."""
    store = paths.store
    with registry.transaction(paths) as reg:
        rec = reg.model(MODEL, create=True)
        for v in versions:
            assert store.claim_version(MODEL, v, "test")
            staged = store.staging_dir(MODEL) / f".staging-test-{v}"
            staged.mkdir(parents=True)
            (staged / "saved_model.pb").write_bytes(b"v%d" % v)
            store.publish_version(MODEL, v, staged)
            rec.versions.append(VersionRecord(v, f"digest{v}", f"ckpt-{v}", v, True))


def history_of(paths: Paths, actions: list[tuple[str, int | None, int | None]], stable: int | None, canary: int | None = None) -> None:
    with registry.transaction(paths) as reg:
        rec = reg.model(MODEL)
        rec.history.extend(HistoryEvent(a, f, t, "ok") for a, f, t in actions)
        rec.stable, rec.canary = stable, canary


def mlc(paths: Paths, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env={"MLC_HOME": str(paths.home)})
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(params=["local", "s3"])
def home(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A home with versions 1..8 of model m: promoted 2, 4, 6 then rolled back to 4; canary 7."""
    monkeypatch.delenv("MLC_REPOSITORY", raising=False)
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        monkeypatch.setenv("MLC_REPOSITORY", f"s3://{request.getfixturevalue('s3_bucket')}/repo")
    paths = Paths(tmp_path.resolve())
    publish(paths, list(range(1, 9)))
    history_of(paths, [("promote", None, 2), ("promote", 2, 4), ("promote", 4, 6), ("rollback", 6, 4)], stable=4, canary=7)
    return paths


def test_gc_keeps_what_may_serve_and_records_each_deletion(home: Paths) -> None:
    code, out, err = mlc(home, "pin", MODEL, "1")
    assert (code, out.strip()) == (0, "m: pinned 1"), err
    tfs_config.write(home, tfs_config.build(home, {MODEL: tfs_config.ModelServing((4, 7), {"stable": 4, "canary": 7})}))
    for lock in home.home.rglob(".mlc*.lock"):
        lock.unlink()  # left by the set-up's transactions: a dry run must not make one again
    before = tree_state(home.home)
    code, out, _ = mlc(home, "gc", "--keep", "1", "--dry-run", "--json")
    planned = json.loads(out)
    assert code == 0 and planned["dry_run"] is True
    assert tree_state(home.home) == before  # a dry run writes nothing, not even a lock file
    assert [(r["version"], r["kind"]) for r in planned["removed"]] == [(3, "version"), (5, "version"), (6, "version")]
    assert home.store.version_numbers(MODEL) == list(range(1, 9))  # a dry run deletes nothing
    kept = "\n".join(planned["kept"])
    for line in ("m/1: pinned", "m/2: in the rollback chain", "m/4: labelled stable", "m/7: labelled canary",
                 "m/8: one of the newest 1"):
        assert line in kept

    code, out, err = mlc(home, "gc", "--keep", "1")
    assert code == 0, err
    assert "deleted m version 3" in out and "deleted m version 6" in out
    assert home.store.version_numbers(MODEL) == [1, 2, 4, 7, 8]
    rec = registry.load(home).model(MODEL)
    assert [v.version for v in rec.versions] == [1, 2, 4, 7, 8]
    gc_events = [(e.from_version, e.result) for e in rec.history if e.action == "gc"]
    assert gc_events == [(3, "deleted"), (5, "deleted"), (6, "deleted")]
    assert rec.stable == 4 and rec.canary == 7  # rollouts untouched

    # Unpinned, version 1 goes on the next gc; the rollback chain still holds 2.
    assert mlc(home, "unpin", MODEL, "1")[1].strip() == "m: pinned none"
    assert mlc(home, "gc", "--keep", "1")[0] == 0
    assert home.store.version_numbers(MODEL) == [2, 4, 7, 8]


def test_bad_gc_and_pin_input_is_one_line_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLC_REPOSITORY", raising=False)
    paths = Paths(tmp_path.resolve())
    publish(paths, [1, 2])
    before = tree_state(paths.home)
    for args, code, words in [
        (["gc", "nosuch"], 1, "'nosuch' is not in the registry"),
        (["gc", "--keep", "0"], 2, "--keep"),
        (["pin", MODEL, "9"], 1, "has no version 9"),
        (["pin", "../x", "1"], 2, "invalid model name"),
    ]:
        got, out, err = mlc(paths, *args)
        assert got == code, (args, out, err)
        assert words in err.strip().splitlines()[-1], (args, err)
        if code == 1:  # typer's own usage errors print the usage line above theirs
            assert len(err.strip().splitlines()) == 1, (args, err)
    assert tree_state(paths.home) == before
