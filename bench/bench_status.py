"""Benchmark ``mlc status`` with 100 registered versions and a live server against interpreter start-up.

It synthesises a registry of one model with 100 versions (realistic reports: signature, golden
record with a class histogram, 21 per-class IoUs, checks) laid out as ``mlc register`` leaves
them (the report's summary in the registry's pages, the whole report beside each version), the
newest one stable and served by a live ``mlc-model-server`` on 127.0.0.1 (a small SavedModel)
as ``mlc serve --detach`` leaves it (``configs/models.config`` and the server's record in
``.mlc/servers/``; ``--servers-file`` lists it in ``configs/servers.yaml`` instead, as a fleet
does; ``--no-server`` leaves it out), then times, as child processes in the same run:

- ``python -c pass`` (the interpreter alone) and ``python -c "import yaml"``;
- ``python -m lifecycle status`` (rich table) and ``python -m lifecycle status --json``;

and prints medians of wall and CPU time (user + system of the child: steadier than wall time on
a busy machine) and the ratios of status to each baseline, plus the in-process
``api.status()`` time. With ``--versions N`` other than 100 it also times ``status --json`` on
100 versions (same server) in the same run, the two interleaved, and prints the ratio (the
goal: 10,000 versions <= 1.5 x 100).

    python bench/bench_status.py
    python bench/bench_status.py --versions 100 --runs 7
    python bench/bench_status.py --versions 10000 --runs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthesize(home: Path, versions: int) -> None:
    """A registry with ``versions`` validated deeplab versions, written through the library."""
    from lifecycle.store import registry
    from lifecycle.store.config import Paths

    classes = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
    paths = Paths.from_env(home)
    (home / "configs").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "deeplab.yaml", home / "configs" / "deeplab.yaml")
    with registry.transaction(paths) as reg:
        rec = reg.model("deeplab", create=True)
        for n in range(1, versions + 1):
            digest = f"sha256:{n:064x}"
            rec.checkpoints.append(registry.CheckpointRecord(digest=digest, path=f"ckpt/16645/ckpt-{n * 100}",
                                                             step=n * 100, tf_version="2.21.0"))
            report = {
                "signature": {"key": "predict_images", "method": "tensorflow/serving/predict",
                              "inputs": {"images": {"dtype": "float32", "shape": [-1, -1, -1, 3]},
                                         "height": {"dtype": "int32", "shape": [1]},
                                         "width": {"dtype": "int32", "shape": [1]}},
                              "outputs": {"segmentation_map": {"dtype": "int32", "shape": [-1, -1, -1]}}},
                "golden": {"digest": f"sha256:{n * 7:064x}", "output": "segmentation_map", "shape": [1, 48, 64],
                           "histogram": {c: 100 + i for i, c in enumerate(classes[:6])}},
                "metrics": {"miou": 0.5 + n / 1000, "per_class_iou": {c: 0.5 for c in classes},
                            "pixel_accuracy": 0.9},
                "checks": {k: "ok" for k in ("contract", "round_trip", "parity", "golden", "metrics", "warmup")},
            }
            version = registry.VersionRecord(version=n, checkpoint_digest=digest, checkpoint=f"ckpt/16645/ckpt-{n * 100}",
                                             step=n * 100, validated=True, report=report)
            own = registry.version_record_file(paths.model_dir("deeplab") / str(n))
            own.parent.mkdir(parents=True)
            own.write_text(json.dumps({"version": {"report": report}}))
            rec.versions.append(dataclasses.replace(version, report=registry.report_summary(report)))
        rec.stable = versions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_config(home: Path) -> Path:
    """Write configs/models.config from the registry, as ``mlc serve`` does; its path."""
    from lifecycle.serving import tfs_config
    from lifecycle.store import registry
    from lifecycle.store.config import Paths

    paths = Paths.from_env(home)
    tfs_config.write(paths, tfs_config.build(paths, tfs_config.served_from_registry(registry.load(paths))))
    return paths.serving_config


def start_server(home: Path, version: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], list[str], str, str]:
    """mlc-model-server on ``home``'s models.config, version ``version`` a small SavedModel; process, command, addresses."""
    target = home / "model_repo" / "deeplab" / str(version)
    built = home / "built"
    subprocess.run([sys.executable, "-c", "import sys; from tests.support.savedmodels import build_half_plus_two_tf2; "
                    "build_half_plus_two_tf2(sys.argv[1])", str(built)],
                   env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for item in built.iterdir():  # beside the version's own record (assets.extra/mlc_report.json)
        if not (target / item.name).exists():
            shutil.move(str(item), target / item.name)
    grpc, rest = free_port(), free_port()
    command = [sys.executable, "-m", "lifecycle.server.main", f"--port={grpc}", f"--rest_api_port={rest}",
               f"--model_config_file={serve_config(home)}", "--allow_version_labels_for_unavailable_models"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{rest}/v1/models/deeplab", timeout=1) as r:
                if b"AVAILABLE" in r.read():
                    return proc, command, f"127.0.0.1:{grpc}", f"127.0.0.1:{rest}"
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("mlc-model-server did not come up")
        time.sleep(0.2)


def list_server(home: Path, proc: subprocess.Popen[bytes], command: list[str], grpc: str, rest: str,
                servers_file: bool) -> None:
    """Make ``home``'s mlc find the server: configs/servers.yaml, or the record ``mlc serve --detach`` leaves."""
    from lifecycle.serving import fleet
    from lifecycle.store.config import Paths

    paths = Paths.from_env(home)
    if servers_file:
        (home / "configs" / "servers.yaml").write_text(f"servers:\n  - grpc: {grpc}\n    rest: {rest}\n")
        return
    if not paths.serving_config.exists():
        serve_config(home)
    config = next(a for a in command if a.startswith("--model_config_file=")).partition("=")[2]
    fleet.write_record(paths, fleet.ServerRecord(pid=proc.pid, engine="embedded", grpc=grpc, rest=rest,
                                                 reload="request", poll_seconds=1, config_file=config, log=None,
                                                 command=command))


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """One run of ``cmd``: its wall time and its CPU time (user + system), in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@dataclasses.dataclass
class Timing:
    """Medians of several runs: wall and CPU seconds."""

    wall: float
    cpu: float

    @classmethod
    def of(cls, runs: list[tuple[float, float]]) -> Timing:
        return cls(statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))

    def vs(self, other: Timing) -> str:
        return f"{self.wall / other.wall:4.1f}x wall, {self.cpu / other.cpu:4.1f}x cpu"

    def __str__(self) -> str:
        return f"{self.wall * 1000:6.0f} ms wall {self.cpu * 1000:6.0f} ms cpu"


def wall(cmd: list[str], env: dict[str, str], runs: int) -> Timing:
    return Timing.of([run(cmd, env) for _ in range(runs)])


def interleaved(cmd: list[str], env: dict[str, str], other_env: dict[str, str] | None,
                runs: int) -> tuple[Timing, Timing | None]:
    """Medians of ``cmd`` under ``env`` and (alternating with it, so load drifts hit both) under ``other_env``."""
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for _ in range(runs):
        ours.append(run(cmd, env))
        if other_env is not None:
            theirs.append(run(cmd, other_env))
    return Timing.of(ours), Timing.of(theirs) if theirs else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-server", action="store_true", help="no live server (status reads only files)")
    parser.add_argument("--servers-file", action="store_true",
                        help="list the server in configs/servers.yaml (a fleet) instead of the record mlc serve leaves")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlc-bench-status-"))
    server = None
    try:
        home = work / "home"
        synthesize(home, args.versions)
        env = dict(os.environ, MLC_HOME=str(home), COLUMNS="160", TF_CPP_MIN_LOG_LEVEL="2")
        # As an installed mlc runs: from cached bytecode (compiled by the warm-up run, kept out of the tree).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        small = work / "home100"
        if args.versions != 100:
            synthesize(small, 100)
        if not args.no_server:
            # One server serves the big home's stable version N, as `mlc serve --detach` leaves it; the
            # 100-version home lists it too (its stable 100 is not loaded there: status reads and
            # reports the same live state).
            server, command, grpc, rest = start_server(home, args.versions, env)
            for h in (home, small) if args.versions != 100 else (home,):
                list_server(h, server, command, grpc, rest, args.servers_file)
        py = sys.executable
        wall([py, "-c", "pass"], env, 1)  # warm the file cache
        wall([py, "-m", "lifecycle", "status"], env, 1)  # and the bytecode cache
        bare = wall([py, "-c", "pass"], env, args.runs)
        yaml_only = wall([py, "-c", "import yaml"], env, args.runs)
        table = wall([py, "-m", "lifecycle", "status"], env, args.runs)
        as_json, base = interleaved([py, "-m", "lifecycle", "status", "--json"], env,
                                    dict(env, MLC_HOME=str(small)) if args.versions != 100 else None, args.runs)

        from lifecycle import api
        from lifecycle.store.config import Paths

        t0 = time.perf_counter()
        report = api.status(paths=Paths.from_env(home))
        in_process = time.perf_counter() - t0
        assert getattr(report.models[0], "versions_total", len(report.models[0].versions)) == args.versions
        if not args.no_server:
            assert report.models[0].versions[-1].servers == {grpc: "AVAILABLE"}, report.models[0].versions[-1]

        head = (home / 'model_repo' / 'registry.yaml').stat().st_size
        print(f"registry: {args.versions} versions, registry.yaml {head:,} bytes; "
              f"{'no server' if args.no_server else 'one live mlc-model-server'}; median of {args.runs} runs")
        print(f"python -c pass:            {bare}")
        print(f"python -c 'import yaml':   {yaml_only}")
        print(f"mlc status:                {table}  ({table.vs(bare)} pass)")
        print(f"mlc status --json:         {as_json}  ({as_json.vs(bare)} pass)")
        print(f"api.status() in process:   {in_process * 1000:6.0f} ms")
        if base is not None:
            print(f"mlc status --json at 100:  {base}  ({args.versions} versions: {as_json.vs(base)} the time at 100)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
