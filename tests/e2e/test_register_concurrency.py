"""Concurrent registers and registers killed with SIGKILL (real processes, real TensorFlow)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lifecycle import api
from lifecycle.serving import warmup
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e


def start_register(python: str, env: dict[str, str], paths: Paths, checkpoint: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [python, "-m", "lifecycle", "register", str(checkpoint)],
        # One thread per TF pool: eight processes share two cores, oversubscription only adds switching.
        env=dict(env, MLC_HOME=str(paths.home), TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def registers_at_once(paths: Paths, checkpoints: list[Path], tmp_path: Path, env: dict[str, str] | None = None,
                      release_when_all_reach: str | None = None) -> list[str]:
    """One ``mlc register`` per checkpoint, all started at once (forked from a process that
    imported TensorFlow once); each must exit 0. Returns what each printed.

    With ``release_when_all_reach`` (a failpoint that ``env`` pauses), the pauses end as soon as
    every register has reached that failpoint (the failpoint log says so), not when they time out.
    """
    from lifecycle import failpoints
    from tests.support import forked_cli

    ctx = forked_cli.context()
    env = {"MLC_HOME": str(paths.home), "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", **(env or {})}
    log = tmp_path / "failpoints.log"
    if release_when_all_reach is not None:
        env[failpoints.LOG_ENV] = str(log)
    outputs = [tmp_path / f"register-{i}.out" for i in range(len(checkpoints))]
    procs = [ctx.Process(target=forked_cli.run_cli, args=(["register", str(c)], env, str(out)))
             for c, out in zip(checkpoints, outputs, strict=True)]
    for p in procs:
        p.start()
    if release_when_all_reach is not None:
        def all_reached() -> bool:
            lines = log.read_text().splitlines() if log.exists() else []
            if sum(line.split()[0] == release_when_all_reach for line in lines if line) >= len(procs):
                return True
            ended = [out for p, out in zip(procs, outputs, strict=True) if p.exitcode is not None]
            assert not ended, f"a register ended before {release_when_all_reach}: " + "".join(
                out.read_text() + Path(str(out) + ".err").read_text() for out in ended)
            return False

        wait_until(all_reached, 300, f"every register at failpoint {release_when_all_reach}")
        Path(f"{log}.release").touch()
    for p in procs:
        p.join(timeout=300)
    texts = [out.read_text() for out in outputs]
    for p, text, out in zip(procs, texts, outputs, strict=True):
        assert p.exitcode == 0, text + Path(str(out) + ".err").read_text()
    return texts


def assert_consistent(paths: Paths) -> registry.ModelRecord | None:
    """Every integer folder is a complete, validated SavedModel; the registry parses."""
    reg = registry.load(paths)
    for n in registry.versions_on_disk(paths, "deeplab"):
        d = paths.version_dir("deeplab", n)
        assert (d / "saved_model.pb").is_file() and (d / "variables" / "variables.index").is_file(), d
        assert warmup.warmup_file(d).is_file(), d
        assert '"validated": true' in registry.version_record_file(d).read_text(), d
    return reg.models.get("deeplab")


def test_eight_concurrent_registers_get_versions_1_to_8(make_home, variant_checkpoints: list[Path], tmp_path: Path) -> None:
    """Eight ``mlc register`` processes started at once (forked from a server that imported TF once)."""
    paths = make_home()
    texts = registers_at_once(paths, variant_checkpoints, tmp_path)
    printed = sorted(int(text.strip().splitlines()[-1]) for text in texts)
    assert printed == list(range(1, 9))
    rec = registry.load(paths).model("deeplab")
    assert [v.version for v in rec.versions] == list(range(1, 9))
    assert len({v.checkpoint_digest for v in rec.versions}) == 8 and len(rec.checkpoints) == 8
    assert sorted(p.name for p in paths.model_dir("deeplab").iterdir()) == [str(n) for n in range(1, 9)]
    assert_consistent(paths)


def test_sigkill_at_any_moment_leaves_a_consistent_tree(
    registered_home: Paths, variant_checkpoints: list[Path], python: str, subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    from tests.support import forked_cli

    paths = registered_home
    model_dir = paths.model_dir("deeplab")
    rng = random.Random(1234)

    def staging() -> bool:
        return any(p.name.startswith(".staging-") and p.is_dir() for p in model_dir.iterdir())

    # Kill points: during start-up, while exporting/validating in staging, and the moment a new
    # version folder appears (between the rename and the registry save, if we are quick enough).
    # Start-up is a fresh ``python -m lifecycle`` (killed while it imports); the later moments are
    # ``mlc register`` children forked from a process that imported TensorFlow once, so they do
    # not pay that import again before reaching their moment.
    moments = ["startup", "staging", "published"]
    env = {"MLC_HOME": str(paths.home), "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    for i, moment in enumerate(moments):
        before = set(registry.versions_on_disk(paths, "deeplab"))
        if moment == "startup":
            proc = start_register(python, subprocess_env, paths, variant_checkpoints[i])
            time.sleep(rng.uniform(0.5, 3.0))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert_consistent(paths)
            continue
        out = tmp_path / f"{moment}.out"
        child = forked_cli.start(["register", str(variant_checkpoints[i])], env, out)
        err = Path(f"{out}.err")
        if moment == "staging":
            wait_until(staging, 60, "a staging folder", interval=0.005, details=err.read_text)
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            wait_until(lambda before=before: set(registry.versions_on_disk(paths, "deeplab")) - before, 120,
                       "a new version folder", interval=0.005, details=err.read_text)
        assert child.pid is not None
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished (and was reaped) before the kill: a register that completed
            pass
        child.join(30)
        assert child.exitcode in (0, -signal.SIGKILL), err.read_text()
        assert_consistent(paths)

    # The next register cleans up stale staging folders and adopts any orphaned version.
    result = api.register(variant_checkpoints[len(moments)], paths=paths)
    rec = assert_consistent(paths)
    assert rec is not None
    on_disk = registry.versions_on_disk(paths, "deeplab")
    assert [v.version for v in rec.versions] == on_disk and result.version == on_disk[-1]
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".staging-")]
    assert len({v.checkpoint_digest for v in rec.versions}) == len(rec.versions)
    # The version killed right after its rename is in the registry (recorded or adopted).
    assert len(on_disk) >= 3 + 1 + 1
    published = variant_checkpoints[moments.index("published")]
    assert published.parent.name in {Path(v.checkpoint).parent.name for v in rec.versions}


def test_sigkill_at_each_publish_failpoint_is_recovered(
    registered_home: Paths, variant_checkpoints: list[Path], tmp_path: Path
) -> None:
    """Killed right after the claim, inside the store's publish, and after the publish (failpoints)."""
    from lifecycle import failpoints
    from tests.support import forked_cli

    paths = registered_home
    ctx = forked_cli.context()
    env = {"MLC_HOME": str(paths.home), "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    points = ["register:claimed", "store:publish", "register:published"]
    for i, point in enumerate(points):
        out = tmp_path / f"killed-{i}.out"
        child = ctx.Process(target=forked_cli.run_cli,
                            args=(["register", str(variant_checkpoints[i])], dict(env, **{failpoints.ENV: point}), str(out)))
        child.start()
        child.join(300)
        assert child.exitcode == -signal.SIGKILL, out.read_text() + Path(str(out) + ".err").read_text()
        assert_consistent(paths)
    # 4 and 5 were claimed and never published (numbers burned); 6 was published, not recorded.
    assert registry.versions_on_disk(paths, "deeplab") == [1, 2, 3, 6]
    assert [v.version for v in registry.load(paths).model("deeplab").versions] == [1, 2, 3]
    result = api.register(variant_checkpoints[len(points)], paths=paths)
    rec = assert_consistent(paths)
    assert rec is not None and [v.version for v in rec.versions] == [1, 2, 3, 6, 7] and result.version == 7
    assert Path(rec.version(6).checkpoint).parent.name == variant_checkpoints[2].parent.name  # adopted
    assert sorted(p.name for p in paths.model_dir("deeplab").iterdir()) == ["1", "2", "3", "6", "7"]


def test_a_register_inside_its_publish_holds_up_no_other_register(
    registered_home: Paths, variant_checkpoints: list[Path], tmp_path: Path
) -> None:
    """The lease is held to claim N and to record it, not for the publish (an upload, on S3) between."""
    from lifecycle import failpoints
    from tests.support import forked_cli

    paths = registered_home
    ctx = forked_cli.context()
    env = {"MLC_HOME": str(paths.home), "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
           failpoints.ENV: "store:publish=pause:120"}
    out = tmp_path / "paused.out"
    child = ctx.Process(target=forked_cli.run_cli, args=(["register", str(variant_checkpoints[0])], env, str(out)))
    child.start()
    try:
        claim = paths.model_repo / ".claims" / "deeplab" / "4"
        wait_until(claim.is_file, 300, "the paused register's claim of 4")
        result = api.register(variant_checkpoints[1], paths=paths)  # under the default lease timeout
        assert result.version == 5 and child.is_alive()  # done while 4's publish is still under way
        assert registry.versions_on_disk(paths, "deeplab") == [1, 2, 3, 5]
    finally:
        child.kill()
        child.join(30)
    rec = assert_consistent(paths)
    assert rec is not None and [v.version for v in rec.versions] == [1, 2, 3, 5]


def test_two_registers_of_the_same_checkpoint_record_one_version(
    registered_home: Paths, variant_checkpoints: list[Path], tmp_path: Path
) -> None:
    """Both registers claim a number before either records (each pauses after its claim), so
    neither can see the other's version when it claims: the first to record wins, the other
    removes its copy and prints the winner's version. One content, one version."""
    from lifecycle import failpoints

    paths = registered_home
    claims = paths.model_repo / ".claims" / "deeplab"
    claimed_before = set(claims.iterdir()) if claims.is_dir() else set()
    # Each pauses after its claim until both have claimed (at most 120 s), then both record.
    texts = registers_at_once(paths, [variant_checkpoints[0]] * 2, tmp_path, {failpoints.ENV: "register:claimed=pause:120"},
                              release_when_all_reach="register:claimed")
    # The race happened: both claimed a number (4 and 5) before either recorded.
    assert sorted(int(c.name) for c in set(claims.iterdir()) - claimed_before) == [4, 5]
    printed = [int(text.strip().splitlines()[-1]) for text in texts]
    assert printed[0] == printed[1] and printed[0] in (4, 5), texts
    assert sum("is already deeplab version" in text for text in texts) == 1, texts
    rec = assert_consistent(paths)
    assert rec is not None and [v.version for v in rec.versions] == [1, 2, 3, printed[0]]
    assert registry.versions_on_disk(paths, "deeplab") == [1, 2, 3, printed[0]]  # the loser's copy is gone
    assert not [p.name for p in paths.model_dir("deeplab").iterdir() if p.name.startswith(".")]
