"""Benchmark promote and status against baselines measured in the same run.

1. **Promote overhead beyond the model's own load time.** On a live ``mlc-model-server`` (a
   child process, as in production), it times ``mlc promote`` (the library call, so that
   TensorFlow's import is not counted) between two versions, back and forth, and compares with:
   - ``load``: the model's own load time, i.e. a bare ``HandleReloadConfigRequest`` to the
     other version followed by polling until it is AVAILABLE (what a hand-edited config does,
     with no sandbox, no checks and no labels);
   and prints promote / load as a ratio and the per-step times of the promote.
2. **``mlc status`` wall time with a live server**, as a child process (``python -m lifecycle
   status --json``), compared in the same run with ``mlc history M --json`` (any command: typer
   coerces parameters through pydantic), ``mlc --help`` (CLI start-up) and ``python -c pass``.

By default it builds half_plus_two versions. ``--home H --model M --versions A,B`` uses
registered versions of an existing mlc home instead (e.g. the small DeepLab of the demo).

    TF_CPP_MIN_LOG_LEVEL=2 python bench/bench_rollout.py
    python bench/bench_rollout.py --home ~/demo --model deeplab --versions 1,2 --rounds 4
"""

from __future__ import annotations

import argparse
import os
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, MLC_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def wall(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="an existing mlc home (default: build half_plus_two versions)")
    parser.add_argument("--model", default="hpt")
    parser.add_argument("--versions", default="1,2", help="two registered versions to swap between")
    parser.add_argument("--rounds", type=int, default=6, help="promotes (and baseline swaps) to time")
    parser.add_argument("--status-runs", type=int, default=7)
    args = parser.parse_args()

    from lifecycle import api
    from lifecycle.serving import fleet, tfs_config
    from lifecycle.serving.client import ServingClient
    from lifecycle.store import registry
    from lifecycle.store.config import Paths

    a, b = (int(v) for v in args.versions.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    if args.home is None:
        from tests.support.rollout_support import build_versions, make_home

        built = build_versions(tmp / "built", [a, b])
        paths = make_home(tmp / "home", built, [a, b], stable=a)
    else:  # work on a copy: the benchmark promotes back and forth
        shutil.copytree(args.home, tmp / "home", ignore=shutil.ignore_patterns(".mlc", "servers.yaml", "ckpt"))
        paths = Paths((tmp / "home").resolve())
        with registry.transaction(paths) as reg:
            rec = reg.model(args.model)
            rec.stable, rec.canary = a, None
    model = args.model
    env = child_env(paths.home)
    grpc_port, rest_port = free_port(), free_port()
    os.environ.update(env)
    served = api.serve(engine="embedded", grpc_port=grpc_port, rest_port=rest_port, detach=True, paths=paths)
    address = served.servers[0].grpc
    try:
        print(f"model {model}, versions {a} <-> {b}, server {address} (embedded, child process)")
        # --- promote vs the model's own load time -------------------------------------------
        api.promote(model, b, paths=paths, force=True, reason="bench")  # warm up imports and the sandbox once
        api.promote(model, a, paths=paths, force=True, reason="bench")
        promote_s: list[float] = []
        steps: dict[str, list[float]] = {}
        current = a
        for _ in range(args.rounds):
            target = b if current == a else a
            t0 = time.perf_counter()
            result = api.promote(model, target, paths=paths, force=True, reason="bench")
            promote_s.append(time.perf_counter() - t0)
            for step, seconds in result.timings.items():
                steps.setdefault(step, []).append(seconds)
            current = target
        load_s: list[float] = []
        with ServingClient(address) as client:
            for _ in range(args.rounds):
                target = b if current == a else a
                config = tfs_config.build(paths, {model: tfs_config.ModelServing((target,), {})})
                t0 = time.perf_counter()
                client.reload(config)
                while client.model_status_grpc(model).get(target) is None or \
                        client.model_status_grpc(model)[target].state != "AVAILABLE":
                    time.sleep(0.005)
                load_s.append(time.perf_counter() - t0)
                current = target
            # leave the server as the registry says
            client.reload(tfs_config.build(paths, tfs_config.served_from_registry(registry.load(paths))))
        p, l = statistics.median(promote_s), statistics.median(load_s)
        print(f"promote (library call, median of {args.rounds}): {p * 1000:8.1f} ms")
        print(f"bare reload until AVAILABLE (model load):      {l * 1000:8.1f} ms")
        print(f"  ratio promote / load: {p / l:5.2f}x   overhead beyond load: {(p - l) * 1000:.1f} ms")
        med = {k: statistics.median(v) for k, v in steps.items()}
        protocol = p - med.get("sandbox", 0.0) - med.get("available", 0.0)
        print(f"  = sandbox load {med.get('sandbox', 0) * 1000:.1f} ms + production load {med.get('available', 0) * 1000:.1f} ms"
              f" + protocol (journal, reloads, checks, labels, unload, commit) {protocol * 1000:.1f} ms")
        print("  promote steps (median ms): " + ", ".join(
            f"{k} {statistics.median(v) * 1000:.1f}" for k, v in steps.items()))

        # --- status wall time ------------------------------------------------------------------
        fleet.write_servers_file(paths, [fleet.ServerSpec(address, served.servers[0].rest)])
        py = sys.executable
        wall([py, "-m", "lifecycle", "status", "--json"], env, 1)  # warm the file cache
        status_s = wall([py, "-m", "lifecycle", "status", "--json"], env, args.status_runs)
        history_s = wall([py, "-m", "lifecycle", "history", model, "--json"], env, args.status_runs)
        help_s = wall([py, "-m", "lifecycle", "--help"], env, args.status_runs)
        bare_s = wall([py, "-c", "pass"], env, args.status_runs)
        s, r, h, z = (statistics.median(x) for x in (status_s, history_s, help_s, bare_s))
        print(f"mlc status --json, live server (median of {args.status_runs}): {s * 1000:7.1f} ms")
        print(f"mlc history M --json (a command reading the registry only): {r * 1000:7.1f} ms  -> status/history {s / r:4.2f}x")
        print(f"mlc --help (CLI start-up, no command run):                  {h * 1000:7.1f} ms  -> status/help {s / h:4.2f}x")
        print(f"python -c pass (interpreter):                               {z * 1000:7.1f} ms  -> status/python {s / z:4.1f}x")
    finally:
        api.stop(paths=paths)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
