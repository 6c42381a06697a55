"""A repository in object storage shared by many mlc homes ("machines"), on a real SeaweedFS.

Eight homes register at once into one bucket; a register killed mid-upload leaves nothing
visible and the next one proceeds; wrong credentials, an unreachable endpoint or a missing
bucket are one line each and change nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.s3 import S3Store
from tests.support.homes import tree_state
from tests.support.seaweed import Seaweed, free_ports

pytestmark = pytest.mark.e2e

PREFIX = "fleet/repo"
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def repo_env(seaweed: Seaweed, bucket: str, **extra: str) -> dict[str, str]:
    """What a machine needs to use the shared repository: the AWS variables and MLC_REPOSITORY."""
    return {**seaweed.env(), "MLC_REPOSITORY": f"s3://{bucket}/{PREFIX}", **extra}


def bucket_state(seaweed: Seaweed, bucket: str) -> dict[str, str]:
    """Every object of the bucket with its ETag: compare before/after."""
    pages = seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


@pytest.fixture
def shared_repo(seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test process (and the homes it opens) uses ``s3://<fresh bucket>/fleet/repo``."""
    env = repo_env(seaweed, s3_bucket)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def run_mlc(python: str, env: dict[str, str], home: Paths, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "lifecycle", *args], env={**env, "MLC_HOME": str(home.home)},
        capture_output=True, text=True, timeout=timeout,
    )


def test_eight_machines_register_into_one_bucket(
    make_home: Callable[..., Paths], variant_checkpoints: list[Path], tmp_path: Path,
    seaweed: Seaweed, s3_bucket: str, shared_repo: dict[str, str],
) -> None:
    """Eight ``mlc register`` processes, each in its own home, all pointed at one bucket."""
    from tests.support import forked_cli

    homes = [make_home(f"machine-{i}") for i in range(8)]
    ctx = forked_cli.context()
    outputs = [tmp_path / f"register-{i}.out" for i in range(8)]
    procs = [
        ctx.Process(
            target=forked_cli.run_cli,
            args=(["register", str(c)], {**repo_env(seaweed, s3_bucket), **ONE_THREAD, "MLC_HOME": str(h.home)}, str(out)),
        )
        for c, h, out in zip(variant_checkpoints, homes, outputs, strict=True)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    texts = [out.read_text() for out in outputs]
    for p, text, out in zip(procs, texts, outputs, strict=True):
        assert p.exitcode == 0, text + Path(str(out) + ".err").read_text()
    printed = sorted(int(text.strip().splitlines()[-1]) for text in texts)
    assert printed == list(range(1, 9))

    # A ninth machine sees all of it: registry, checkpoints, versions with manifests.
    reader = make_home("reader")
    rec = registry.load(reader).model("deeplab")
    assert [v.version for v in rec.versions] == list(range(1, 9))
    assert len({v.checkpoint_digest for v in rec.versions}) == 8 and len(rec.checkpoints) == 8
    assert all(v.validated for v in rec.versions) and rec.attempts == [] and rec.history == []
    store = reader.store
    assert isinstance(store, S3Store) and store.url == f"s3://{s3_bucket}/{PREFIX}"
    assert store.version_numbers("deeplab") == list(range(1, 9))
    assert store.leftovers("deeplab") == []
    # Each machine kept its own upload as its local copy, and nothing else.
    for home, text in zip(homes, texts, strict=True):
        number = text.strip().splitlines()[-1]
        assert sorted(p.name for p in home.model_dir("deeplab").iterdir() if not p.name.startswith(".")) == [number]
    # The reader copies a version on demand, verified against its manifest.
    copy = store.version_path("deeplab", 5)
    assert copy == reader.version_dir("deeplab", 5) and (copy / "saved_model.pb").is_file()
    assert '"validated": true' in registry.version_record_file(copy).read_text()


def test_a_register_killed_mid_upload_leaves_no_version(
    make_home: Callable[..., Paths], variant_checkpoints: list[Path], seaweed: Seaweed, s3_bucket: str,
    python: str, subprocess_env: dict[str, str], shared_repo: dict[str, str],
) -> None:
    """SIGKILL after the files are uploaded, before the manifest: nothing visible, next register proceeds."""
    env = {**subprocess_env, **repo_env(seaweed, s3_bucket, MLC_S3_LEASE_TTL="3"), **ONE_THREAD}
    home = make_home("crashing")
    killed = run_mlc(python, {**env, "MLC_FAILPOINTS": "store:publish"}, home, "register", str(variant_checkpoints[0]))
    assert killed.returncode == -9, killed.stderr
    other = make_home("other")
    store = other.store
    assert store.version_numbers("deeplab") == []
    assert registry.load(other).models.get("deeplab") is None or registry.load(other).model("deeplab").versions == []
    leftovers = store.leftovers("deeplab")
    assert [x.number for x in leftovers] == [1]
    assert leftovers[0].objects > 3  # the files, no manifest

    # The next register, on another machine, proceeds (after the dead writer's lease expired).
    done = run_mlc(python, env, other, "register", str(variant_checkpoints[1]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "2"  # 1 stays taken by the dead writer
    assert store.version_numbers("deeplab") == [2]
    assert [v.version for v in registry.load(other).model("deeplab").versions] == [2]
    assert [x.number for x in store.leftovers("deeplab")] == [1]

    # gc leaves a young upload alone (its writer may be alive), removes it past the grace period.
    young = run_mlc(python, env, other, "gc", "--json")
    assert young.returncode == 0 and '"deeplab/1: an upload' in young.stdout, young.stderr
    assert [x.number for x in store.leftovers("deeplab")] == [1]
    cleaned = run_mlc(python, env, other, "gc", "--grace", "0")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "deleted deeplab incomplete upload 1" in cleaned.stdout
    assert store.leftovers("deeplab") == [] and store.version_numbers("deeplab") == [2]
    assert not [k for k in bucket_state(seaweed, s3_bucket) if k.startswith(f"{PREFIX}/deeplab/1/")]
    events = registry.load(other).model("deeplab").history
    assert [(e.action, e.from_version, e.result) for e in events] == [("gc", 1, "deleted")]


@pytest.mark.parametrize("fault", ["wrong credentials", "unreachable endpoint", "missing bucket"])
def test_bad_storage_settings_are_one_line_and_change_nothing(
    fault: str, registered_home: Paths, tiny_run, seaweed: Seaweed, s3_bucket: str,  # noqa: ANN001
    python: str, subprocess_env: dict[str, str],
) -> None:
    env = {**subprocess_env, **repo_env(seaweed, s3_bucket)}
    # A repository with something in it, so "nothing changes" means something.
    seaweed.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/registry.yaml", Body=b"schema: 1\nmodels: {}\n")
    expected = {
        "wrong credentials": "refused the credentials",
        "unreachable endpoint": "cannot reach the object store at http://127.0.0.1",
        "missing bucket": "does not exist",
    }[fault]
    if fault == "wrong credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif fault == "unreachable endpoint":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_ports(1)[0]}"
    else:
        env["MLC_REPOSITORY"] = "s3://no-such-bucket-for-mlc/repo"
    home_before, bucket_before = tree_state(registered_home.home), bucket_state(seaweed, s3_bucket)
    for args in (["register", str(tiny_run.prefixes[0])], ["status"], ["history", "deeplab"]):
        result = run_mlc(python, env, registered_home, *args, timeout=120)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and expected in lines[0], (args, result.stderr)
    assert tree_state(registered_home.home) == home_before
    assert bucket_state(seaweed, s3_bucket) == bucket_before
    assert "no-such-bucket-for-mlc" not in {b["Name"] for b in seaweed.client().list_buckets()["Buckets"]}
