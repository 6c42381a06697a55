"""Benchmark the registry write a promote does, against a long history, on a folder and on S3.

The history and the failed attempts live in append-only pages beside the registry head
(:mod:`lifecycle.store.registry_log`), so a promote's commit should cost the same whatever the
length of the history. For each repository (a local ``model_repo/``, then an ``s3://`` prefix on
a SeaweedFS this script starts on 127.0.0.1 and stops at the end) it measures:

1. ``commit``: the registry commit of a promote (what ``complete_forward`` does under the
   rollout's lease, without servers: load the registry, move ``stable``, append the event,
   save), median of --commits, in a home with --events history events against the baseline,
   the same home with 10 events, measured in turns in the same run. Goal: ratio <= 1.2.
2. ``head``: the size of ``registry.yaml`` with 10,000 versions and 10,000 events. Goal: <= 16 KB.

    python bench/bench_registry.py
    python bench/bench_registry.py --commits 50 --events 20000

Its last line is a summary for scripts: ``summary: local_commit_ratio=... local_head_bytes=...
s3_commit_ratio=... s3_head_bytes=... ok=yes|no``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lifecycle.store import registry  # noqa: E402 - after the path set-up above
from lifecycle.store.config import Paths  # noqa: E402
from lifecycle.store.registry import CheckpointRecord, HistoryEvent, VersionRecord  # noqa: E402

BASELINE_EVENTS = 10
HEAD_LIMIT = 16 * 1024
RATIO_LIMIT = 1.2


def make_home(root: Path, url: str | None, versions: int, events: int) -> Paths:
    """A home whose repository is ``url`` (None: model_repo/), holding ``versions`` and ``events``."""
    paths = Paths.from_env(root)
    paths.configs.mkdir(parents=True)
    if url is None:
        os.environ.pop("MLC_REPOSITORY", None)
    else:
        os.environ["MLC_REPOSITORY"] = url
    paths.store  # noqa: B018 - chosen now, while $MLC_REPOSITORY names this home's repository
    with registry.transaction(paths) as reg:
        rec = reg.model("m", create=True)
        for n in range(1, versions + 1):
            rec.checkpoints.append(CheckpointRecord(f"sha256:{n:064x}", f"runs/a/ckpt-{n}", n, "2.16.1"))
            rec.versions.append(VersionRecord(n, f"sha256:{n:064x}", f"runs/a/ckpt-{n}", n, True,
                                              {"metrics": {"miou": 0.5}, "full": "assets.extra/mlc_report.json"}))
        rec.history.extend(HistoryEvent("promote", n % versions or None, n % versions + 1, "ok", reason="bench",
                                        journal=f"{n:012x}") for n in range(events))
        rec.stable = 1
    return paths


def commit(paths: Paths, to: int) -> None:
    """The registry write of one promote: stable moves to ``to``, one event is appended."""
    reg = registry.load(paths)
    rec = reg.model("m")
    rec.history.append(HistoryEvent("promote", rec.stable, to, "ok", reason="bench", journal="0123456789ab"))
    rec.stable = to
    registry.save(paths, reg)


def timed(fn: Callable[[], None]) -> float:
    """Seconds ``fn()`` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_commits(root: Path, url: Callable[[str], str | None], versions: int, events: int, commits: int) -> tuple[float, float]:
    """Median commit time with BASELINE_EVENTS and with ``events``, measured in turns."""
    homes = {n: make_home(root / f"events-{n}", url(f"events-{n}"), versions, n) for n in (BASELINE_EVENTS, events)}
    times: dict[int, list[float]] = {n: [] for n in homes}
    leases = {n: registry.lease(p) for n, p in homes.items()}  # a rollout holds it from start to end
    for lease in leases.values():
        lease.__enter__()
    try:
        for i in range(commits + 2):
            for n, paths in homes.items():
                took = timed(functools.partial(commit, paths, 1 + i % versions))
                if i >= 2:  # the first two warm the caches and connections
                    times[n].append(took)
    finally:
        for lease in leases.values():
            lease.__exit__(None, None, None)
    for n, paths in homes.items():
        assert len(registry.load(paths, versions=False).model("m").history) == n + commits + 2
    return statistics.median(times[BASELINE_EVENTS]), statistics.median(times[events])


def head_bytes(root: Path, url: str | None) -> int:
    """The size of registry.yaml with 10,000 versions and 10,000 events."""
    paths = make_home(root, url, 10_000, 10_000)
    commit(paths, 2)
    doc = paths.store.read(registry.KEY)
    assert doc is not None
    return len(doc.data)


def run(name: str, root: Path, url: Callable[[str], str | None], args: argparse.Namespace) -> tuple[float, int]:
    """Both measurements on one kind of repository (``url`` names a home's); print them, return ratio and size."""
    base, long = bench_commits(root / "commits", url, args.versions, args.events, args.commits)
    size = head_bytes(root / "head", url("head"))
    ratio = long / base
    print(f"{name}: promote commit with {args.versions} versions, median of {args.commits}:")
    print(f"  {BASELINE_EVENTS} events (baseline): {base * 1000:.2f} ms; {args.events} events: {long * 1000:.2f} ms;"
          f" ratio {ratio:.2f} (goal <= {RATIO_LIMIT})")
    print(f"  registry.yaml with 10,000 versions and 10,000 events: {size} bytes ({size / 1024:.1f} KB,"
          f" goal <= {HEAD_LIMIT // 1024} KB)")
    return ratio, size


def main() -> None:
    """Measure on a local folder, then on a SeaweedFS started here; print the summary line last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlc-bench-registry-"))
    from tests.support import seaweed

    results: dict[str, tuple[float, int]] = {}
    server = None
    saved = {"MLC_REPOSITORY": os.environ.get("MLC_REPOSITORY")}
    try:
        results["local"] = run("local folder", root / "local", lambda _: None, args)
        server = seaweed.start(root / "weed")
        for name, value in server.env().items():
            saved.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        bucket = server.new_bucket("bench")
        results["s3"] = run("SeaweedFS (s3://)", root / "s3", lambda home: f"s3://{bucket}/{home}", args)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    ok = all(r <= RATIO_LIMIT and s <= HEAD_LIMIT for r, s in results.values())
    print("summary: " + " ".join(f"{k}_commit_ratio={r:.2f} {k}_head_bytes={s}" for k, (r, s) in results.items())
          + f" ok={'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()
