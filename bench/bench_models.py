"""Cost as the number of models grows: ``mlc status --json`` and a promote with 1 and with 50 models.

It makes two mlc homes in the same run, one with 1 model and one with ``--models`` models (small
half_plus_two versions 1 and 2 each, version 1 stable), serves each with ``mlc serve --detach``
(an embedded mlc-model-server per home, every model loaded), and then, interleaved round by
round (in the opposite order every other round), times:

- ``status``: ``python -m lifecycle status --json`` as a child process (wall time);
- ``promote``: ``mlc promote m0 <other version>`` as a library call (TensorFlow imported once),
  back and forth between versions 1 and 2 of the first model.

It prints medians and the ratios many / one. Goals: status <= 2 x, promote <= 1.2 x.

    python bench/bench_models.py
    python bench/bench_models.py --models 10 --rounds 3      # quicker
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIGNATURE = ("signature: {key: serving_default, inputs: {x: {dtype: float32, shape: [-1, 1]}}, "
             "outputs: {y: {dtype: float32, shape: [-1, 1]}}}\n")


def make_home(home: Path, built: Path, count: int) -> Any:
    """A home with models m0..m<count-1>, each with versions 1 and 2 (copies of ``built``), 1 stable."""
    from lifecycle.serving import tfs_config
    from lifecycle.store import registry
    from lifecycle.store.config import Paths
    from lifecycle.store.registry import HistoryEvent, VersionRecord
    from tests.support.rollout_support import golden

    paths = Paths(home.resolve())
    paths.configs.mkdir(parents=True, exist_ok=True)
    with registry.transaction(paths) as reg:
        for i in range(count):
            name = f"m{i}"
            (paths.configs / f"{name}.yaml").write_text(f"name: {name}\nnetwork: {{}}\n" + SIGNATURE)
            rec = reg.model(name, create=True)
            for v in (1, 2):
                assert paths.store.claim_version(name, v, "bench")
                staged = paths.store.staging_dir(name) / f".staging-bench-{v}"
                shutil.copytree(built / str(v), staged)
                paths.store.publish_version(name, v, staged)
                rec.versions.append(VersionRecord(v, f"digest{v}", f"ckpt/run/ckpt-{v}", v * 100, True,
                                                  {"golden": {"digest": golden(v), "output": "y"}}))
            rec.stable = 1
            rec.history.append(HistoryEvent("promote", None, 1, "ok", reason="initial"))
        tfs_config.write(paths, tfs_config.build(paths, tfs_config.served_from_registry(reg)))
    return paths


def status_seconds(home: Path) -> float:
    """One ``mlc status --json`` as a child process, wall seconds."""
    env = dict(os.environ, MLC_HOME=str(home), PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lifecycle", "status", "--json"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    """Build both homes, serve them, time status and promote interleaved, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=50, help="models in the larger home")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (each: status and promote on both homes)")
    args = parser.parse_args()

    from lifecycle import api
    from tests.support.ports import free_ports
    from tests.support.rollout_support import build_versions

    tmp = Path(tempfile.mkdtemp(prefix="mlc-bench-models-"))
    built = build_versions(tmp / "built", [1, 2])
    homes = {1: make_home(tmp / "one", built, 1), args.models: make_home(tmp / "many", built, args.models)}
    current = {n: 1 for n in homes}
    times: dict[tuple[str, int], list[float]] = {(k, n): [] for k in ("status", "promote") for n in homes}
    try:
        for n, paths in homes.items():
            grpc_port, rest_port = free_ports(2)
            os.environ["MLC_HOME"] = str(paths.home)
            t0 = time.perf_counter()
            api.serve(engine="embedded", grpc_port=grpc_port, rest_port=rest_port, detach=True, paths=paths)
            print(f"# served {n} model(s) ({2 * n} versions built, {n} loaded) in {time.perf_counter() - t0:.1f} s", flush=True)
        for n, paths in homes.items():  # warm: imports, the sandbox, the file cache
            os.environ["MLC_HOME"] = str(paths.home)
            status_seconds(paths.home)
            current[n] = 2 if current[n] == 1 else 1
            api.promote("m0", current[n], paths=paths, force=True, reason="bench")
        for r in range(args.rounds):
            for n in (list(homes) if r % 2 == 0 else list(homes)[::-1]):
                paths = homes[n]
                os.environ["MLC_HOME"] = str(paths.home)
                times[("status", n)].append(status_seconds(paths.home))
                current[n] = 2 if current[n] == 1 else 1
                t0 = time.perf_counter()
                api.promote("m0", current[n], paths=paths, force=True, reason="bench")
                times[("promote", n)].append(time.perf_counter() - t0)
    finally:
        for paths in homes.values():
            os.environ["MLC_HOME"] = str(paths.home)
            api.stop(paths=paths)
    many = args.models
    print(f"{'operation':<16} {'1 model ms':>11} {f'{many} models ms':>13} {'ratio':>6} {'goal':>6}")
    ratios = {}
    for op, goal in (("status", 2.0), ("promote", 1.2)):
        one, lots = statistics.median(times[(op, 1)]), statistics.median(times[(op, many)])
        ratios[op] = lots / one
        label = "status --json" if op == "status" else "promote"
        print(f"{label:<16} {one * 1000:>11.1f} {lots * 1000:>13.1f} {lots / one:>6.2f} {goal:>6.1f}")
    print(f"models: status {many}/1 {ratios['status']:.2f} (goal <= 2), promote {many}/1 {ratios['promote']:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
