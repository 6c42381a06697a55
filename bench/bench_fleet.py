"""Benchmark: promote wall time on 1 replica and on 3 replicas, the ratio measured in the same run.

Three ``mlc-model-server`` child processes on 127.0.0.1 serve one mlc home of half_plus_two
versions. Rounds alternate between driving only the first server (configs/servers.yaml lists
one) and driving all three (it lists three), promoting back and forth between two versions
(the library call, so TensorFlow's import is not counted); an untimed ``mlc reconcile`` before
each promote brings the servers the previous round left out to the recorded state. Replicas load in parallel, so the
goal is 3 replicas <= 1.3 x 1 replica. On a machine with fewer cores than replicas the loads
compete for CPU; the figure says so with the core count.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/bench_fleet.py --rounds 6
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.bench_rollout import child_env, free_port  # noqa: E402 - after the path set-up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="promotes timed per fleet size")
    args = parser.parse_args()

    from lifecycle import api
    from lifecycle.serving import fleet
    from tests.support.rollout_support import MODEL, build_versions, make_home

    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    built = build_versions(tmp / "built", [1, 2])
    paths = make_home(tmp / "home", built, [1, 2], stable=1)
    specs = [fleet.ServerSpec(f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}") for _ in range(3)]
    fleet.write_servers_file(paths, specs)
    os.environ.update(child_env(paths.home))
    api.serve(engine="embedded", detach=True, paths=paths)
    try:
        times: dict[int, list[float]] = {1: [], 3: []}
        current = 1
        for round_ in range(args.rounds + 1):  # round 0 warms imports and the sandbox
            for size in (1, 3):
                fleet.write_servers_file(paths, specs)
                api.reconcile(paths=paths)  # untimed: replicas 2 and 3 missed the 1-replica promote
                fleet.write_servers_file(paths, specs[:size])
                target = 2 if current == 1 else 1
                t0 = time.perf_counter()
                api.promote(MODEL, target, paths=paths, force=True, reason="bench")
                if round_:
                    times[size].append(time.perf_counter() - t0)
                current = target
        one, three = statistics.median(times[1]), statistics.median(times[3])
        print(f"promote, 1 replica  (median of {args.rounds}): {one * 1000:8.1f} ms")
        print(f"promote, 3 replicas (median of {args.rounds}): {three * 1000:8.1f} ms")
        print(f"  ratio 3 / 1: {three / one:4.2f}x (goal <= 1.30x; {os.cpu_count()} CPU cores for 3 servers and mlc)")
    finally:
        fleet.write_servers_file(paths, specs)
        api.stop(paths=paths)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
