"""Benchmark `mlc promote` and `mlc rollback` wall time from the shell, with `mlc serve` running.

Both commands run as child processes (``python -m lifecycle promote M B`` then
``python -m lifecycle rollback M``, alternating), against an embedded server that ``mlc serve
--detach`` started on the home, exactly as a user runs them. Baselines measured in the same run:

- ``python -c pass``: the interpreter's start-up;
- ``python -c "import tensorflow"``: what the CLI paid before promote stopped importing it.

It also reports whether the commands' process imported TensorFlow (``-X importtime`` of one
promote).

By default it builds half_plus_two versions; ``--home H --model M --versions A,B`` copies an
existing mlc home (e.g. the small DeepLab of ``scripts/demo.sh``: ``--home out/demo --model
deeplab --versions 2,3``). ``--repo R`` runs the children on another checkout of mlc (to measure
a "before" on an older commit with this same script).

    python bench/bench_promote.py
    python bench/bench_promote.py --home out/demo --model deeplab --versions 2,3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed: {run.stderr.strip()[-500:]}")
    return elapsed


def imports_tensorflow(cmd: list[str], env: dict[str, str]) -> bool:
    run = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed: {run.stderr.strip()[-500:]}")
    return any(re.search(r"\|\s+tensorflow$", line.rstrip()) for line in run.stderr.splitlines())


def make_home(args: argparse.Namespace, tmp: Path, a: int, b: int) -> Path:
    from lifecycle.store import registry
    from lifecycle.store.config import Paths

    if args.home is None:
        from tests.support.rollout_support import build_versions, make_home

        built = build_versions(tmp / "built", [a, b])
        return make_home(tmp / "home", built, [a, b], stable=a).home
    # a copy: the benchmark promotes back and forth
    shutil.copytree(args.home, tmp / "home", ignore=shutil.ignore_patterns(".mlc", "servers.yaml", "ckpt", "out"))
    paths = Paths((tmp / "home").resolve())
    with registry.transaction(paths) as reg:
        rec = reg.model(args.model)
        rec.stable, rec.canary = a, None
    return paths.home


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="an existing mlc home (default: build half_plus_two versions)")
    parser.add_argument("--model", default="hpt")
    parser.add_argument("--versions", default="1,2", help="stable A and the version B to promote and roll back")
    parser.add_argument("--rounds", type=int, default=5, help="promote + rollback pairs to time")
    parser.add_argument("--repo", type=Path, default=REPO, help="the mlc checkout the children run (default: this one)")
    args = parser.parse_args()

    a, b = (int(v) for v in args.versions.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bench-promote-"))
    home = make_home(args, tmp, a, b)
    env = dict(os.environ, MLC_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.repo.resolve()), os.environ.get("PYTHONPATH")]))
    mlc = [sys.executable, "-m", "lifecycle"]
    model = args.model
    grpc_port, rest_port = free_port(), free_port()
    subprocess.run([*mlc, "serve", "--engine", "embedded", "--detach", "--grpc-port", str(grpc_port),
                    "--rest-port", str(rest_port)], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        print(f"model {model}: promote {b} / rollback to {a}, mlc serve --detach (embedded) on 127.0.0.1:{grpc_port}; "
              f"mlc from {args.repo}")
        promote = [*mlc, "promote", model, str(b), "--force", "--reason", "bench"]
        rollback = [*mlc, "rollback", model]
        wall(promote, env)  # warm the file cache and the server once
        wall(rollback, env)
        promote_s, rollback_s, bare_s, tf_s = [], [], [], []
        for _ in range(args.rounds):
            promote_s.append(wall(promote, env))
            rollback_s.append(wall(rollback, env))
            bare_s.append(wall([sys.executable, "-c", "pass"], env))
            tf_s.append(wall([sys.executable, "-c", "import tensorflow"], env))
        with_tf = imports_tensorflow(promote, env)
        wall(rollback, env)
        p, r, z, t = (statistics.median(x) for x in (promote_s, rollback_s, bare_s, tf_s))
        print(f"mlc promote  (median of {args.rounds}): {p * 1000:8.1f} ms  = {p / z:5.1f}x python -c pass, "
              f"{p / t:4.2f}x python -c 'import tensorflow'")
        print(f"mlc rollback (median of {args.rounds}): {r * 1000:8.1f} ms  = {r / z:5.1f}x python -c pass, "
              f"{r / t:4.2f}x python -c 'import tensorflow'")
        print(f"python -c pass:                  {z * 1000:8.1f} ms")
        print(f"python -c 'import tensorflow':   {t * 1000:8.1f} ms")
        print(f"the promote process imported TensorFlow: {'yes' if with_tf else 'no'}")
    finally:
        subprocess.run([*mlc, "stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
