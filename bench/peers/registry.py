"""The registry half of bench/bench_peers.py: mlc's Store on a local folder beside MLflow's SQLite registry.

For one model at each size (100, then 10,000 versions) it times, interleaved round by round
with the MLflow child (bench/peers/mlflow_registry.py in .bench-venv-mlflow):

- ``register``: a new version's registry record (mlc: lease, claim the next number in the
  store, append the record, save; MLflow: ``create_model_version``);
- ``move``: moving the serving label (mlc: the registry commit of a promote, as
  lifecycle.rollout.transaction.complete_forward does it, without servers; MLflow:
  ``set_registered_model_alias``);
- ``resolve``: the version a label names (mlc: the head alone; MLflow: ``get_model_version_by_alias``);
- ``list``: the 20 newest versions, as a status page shows them (mlc: head + the pages holding
  them; MLflow: ``search_model_versions`` ordered by version, 20 results).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL = "deeplab"
OPS = ("register", "move", "resolve", "list")
GOALS = {"register": 1.0, "move": 5.0, "resolve": 2.0, "list": 2.0}  # mlc speed-up over MLflow wanted
# Goals that apply only at the run's largest size (issue 25: the move "at 10,000 versions").
AT_LARGEST = {"move"}


class MlflowChild:
    """The MLflow registry process: one JSON command a line, one JSON answer a line."""

    def __init__(self, python: Path, script: Path, root: Path) -> None:
        self.process = subprocess.Popen([str(python), str(script), str(root)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the MLflow child exited with {self.process.wait()}")
        return dict(json.loads(line))

    def close(self) -> None:
        """End the child."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


class MlcRegistry:
    """mlc's registry on a local folder, driven through lifecycle.store.registry."""

    def __init__(self, home: Path) -> None:
        from lifecycle.store.config import Paths

        (home / "configs").mkdir(parents=True, exist_ok=True)
        self.paths = Paths.from_env(home)
        self.flip = 0

    def record(self, number: int) -> Any:
        """A version record of the size `mlc register` writes (its report summary)."""
        from lifecycle.store import registry

        report = {"checks": {k: "ok" for k in ("contract", "round_trip", "parity", "golden", "metrics", "warmup")},
                  "metrics": {"miou": 0.5, "pixel_accuracy": 0.9},
                  "signature": {"key": "serving_default", "method": "tensorflow/serving/predict"}}
        return registry.VersionRecord(version=number, checkpoint_digest=f"sha256:{number:064x}",
                                      checkpoint=f"ckpt/1/ckpt-{number}", step=number, validated=True,
                                      report=registry.report_summary(report))

    def fill(self, versions: int) -> None:
        """Grow the model to ``versions`` versions in one transaction (set-up, not measured)."""
        from lifecycle.store import registry

        with registry.transaction(self.paths) as reg:
            rec = reg.model(MODEL, create=True)
            have = max((v.version for v in rec.versions), default=0)
            rec.versions.extend(self.record(n) for n in range(have + 1, versions + 1))
            rec.stable = versions

    def register(self) -> None:
        """Lease, claim the next number, append its record, save."""
        from lifecycle.store import registry

        with registry.transaction(self.paths) as reg:
            rec = reg.model(MODEL)
            rec.versions.append(self.record(registry.allocate_version(self.paths, rec)))

    def move(self) -> None:
        """The registry commit of a promote (complete_forward's commit step), alternating two versions."""
        from lifecycle.store import registry
        from lifecycle.store.registry import HistoryEvent

        self.flip ^= 1
        with registry.lease(self.paths):
            reg = registry.load(self.paths, lazy=True)  # as complete_forward's commit reads it
            rec = reg.model(MODEL)
            newest = rec.latest_version() or 1
            before, rec.stable = rec.stable, newest - self.flip
            rec.history.append(HistoryEvent(action="promote", from_version=before, to_version=rec.stable,
                                            result="ok", reason="bench"))
            registry.save(self.paths, reg)

    def resolve(self) -> int | None:
        """The version the ``stable`` label names."""
        from lifecycle.store import registry

        return registry.load(self.paths, versions=False).model(MODEL).stable

    def listing(self) -> list[Any]:
        """The 20 newest versions, as ``mlc status`` reads them."""
        from lifecycle.store import registry

        rec = registry.load(self.paths, versions=False).model(MODEL)
        return registry.select(self.paths, rec, set(), 20)


def timed(call: Callable[[], object], reps: int) -> list[float]:
    """``reps`` wall times of ``call`` in ms."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def compare(work: Path, mlflow_python: Path, sizes: list[int], reps: int, rounds: int) -> list[dict[str, Any]]:
    """Median ms per operation and size for both registries; the rounds interleaved."""
    mlc = MlcRegistry(work / "mlc-home")
    child = MlflowChild(mlflow_python, Path(__file__).with_name("mlflow_registry.py"), work / "mlflow")
    calls: dict[str, Callable[[], object]] = {"register": mlc.register, "move": mlc.move,
                                              "resolve": mlc.resolve, "list": mlc.listing}
    rows = []
    try:
        for size in sizes:
            t0 = time.perf_counter()
            mlc.fill(size)
            child.ask({"fill": size})
            print(f"# registry: filled to {size} versions in {time.perf_counter() - t0:.0f} s", flush=True)
            for op in OPS:
                ours: list[float] = []
                theirs: list[float] = []
                for r in range(rounds):
                    # Interleaved, and in the opposite order every other round.
                    if r % 2 == 0:
                        ours += timed(calls[op], reps)
                        theirs += child.ask({"op": op, "reps": reps})["ms"]
                    else:
                        theirs += child.ask({"op": op, "reps": reps})["ms"]
                        ours += timed(calls[op], reps)
                rows.append({"size": size, "op": op, "mlc": statistics.median(ours),
                             "mlflow": statistics.median(theirs)})
    finally:
        child.close()
    return rows


def report(rows: list[dict[str, Any]]) -> float:
    """Print the table and each side's growth; the smallest (speed-up / goal) over the rows."""
    print(f"{'registry op':<10} {'versions':>8} {'mlc ms':>8} {'MLflow ms':>9} {'mlc speed-up':>12} {'goal':>5} {'/goal':>6}")
    worst = float("inf")
    sizes = sorted({r["size"] for r in rows})
    for row in rows:
        speedup = row["mlflow"] / row["mlc"]
        if row["op"] in AT_LARGEST and row["size"] != sizes[-1]:
            print(f"{row['op']:<10} {row['size']:>8} {row['mlc']:>8.2f} {row['mlflow']:>9.2f} {speedup:>12.2f}"
                  f" {'-':>5} {'-':>6}")
            continue
        worst = min(worst, speedup / GOALS[row["op"]])
        print(f"{row['op']:<10} {row['size']:>8} {row['mlc']:>8.2f} {row['mlflow']:>9.2f} {speedup:>12.2f}"
              f" {GOALS[row['op']]:>5.1f} {speedup / GOALS[row['op']]:>6.2f}")
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        by = {(r["op"], r["size"]): r for r in rows}
        print(f"# growth {small} -> {big} versions (mlc goal <= 1.2):")
        for op in OPS:
            a, b = by[(op, small)], by[(op, big)]
            print(f"#   {op:<9} mlc {b['mlc'] / a['mlc']:5.2f}x   MLflow {b['mlflow'] / a['mlflow']:5.2f}x")
    return worst

