"""Benchmark ``mlc status`` with 100 registered versions against interpreter start-up.

It synthesises a registry of one model with 100 versions (realistic reports: signature, golden
record with a class histogram, 21 per-class IoUs, checks) laid out as ``mlc register`` leaves
them (the report's summary in registry.yaml, the whole report beside each version), then
times, as child processes in the same run:

- ``python -c pass`` (the interpreter alone) and ``python -c "import yaml"``;
- ``python -m lifecycle status`` (rich table) and ``python -m lifecycle status --json``;

and prints medians and the ratios of status to each baseline, plus the in-process
``api.status()`` time. With ``--versions N`` other than 100 it also times ``status --json`` on
100 versions in the same run and prints the ratio (the goal: 10,000 versions <= 1.5 x 100).

    python bench/bench_status.py
    python bench/bench_status.py --versions 100 --runs 7
    python bench/bench_status.py --versions 10000 --runs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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


def wall(cmd: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlc-bench-status-"))
    try:
        home = work / "home"
        synthesize(home, args.versions)
        env = dict(os.environ, MLC_HOME=str(home), COLUMNS="160")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        py = sys.executable
        wall([py, "-c", "pass"], env, 1)  # warm the file cache
        bare = wall([py, "-c", "pass"], env, args.runs)
        yaml_only = wall([py, "-c", "import yaml"], env, args.runs)
        table = wall([py, "-m", "lifecycle", "status"], env, args.runs)
        as_json = wall([py, "-m", "lifecycle", "status", "--json"], env, args.runs)

        from lifecycle import api
        from lifecycle.store.config import Paths

        t0 = time.perf_counter()
        report = api.status(paths=Paths.from_env(home))
        in_process = time.perf_counter() - t0
        assert len(report.models[0].versions) == args.versions

        print(f"registry: {args.versions} versions, {(home / 'model_repo' / 'registry.yaml').stat().st_size:,} bytes; "
              f"median of {args.runs} runs")
        print(f"python -c pass:            {bare * 1000:7.0f} ms")
        print(f"python -c 'import yaml':   {yaml_only * 1000:7.0f} ms")
        print(f"mlc status:                {table * 1000:7.0f} ms  ({table / bare:.1f}x pass, {table / yaml_only:.1f}x import yaml)")
        print(f"mlc status --json:         {as_json * 1000:7.0f} ms  ({as_json / bare:.1f}x pass, {as_json / yaml_only:.1f}x import yaml)")
        print(f"api.status() in process:   {in_process * 1000:7.0f} ms")
        if args.versions != 100:
            small = work / "home100"
            synthesize(small, 100)
            base = wall([py, "-m", "lifecycle", "status", "--json"], dict(env, MLC_HOME=str(small)), args.runs)
            print(f"mlc status --json at 100:  {base * 1000:7.0f} ms  ({args.versions} versions: "
                  f"{as_json / base:.2f}x the time at 100)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
