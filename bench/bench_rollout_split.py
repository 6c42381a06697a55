"""Benchmark issue 23's traffic split and shadow against baselines measured in the same run.

1. **Split throughput.** Default-route Predict under a split (weight 0.5, a routing key on
   every request, so both versions answer) over label-addressed Predict (``stable``) with no
   split. Goal >= 0.97.
2. **Stable's p99 under a shadow.** Default-route Predict answered by stable while 100 % of
   its answers are copied to a candidate 3x slower, over the same requests with no split
   (no shadow). Goal <= 1.2. The shadow's copies compared and dropped (from the server's
   ``:mlc:shadow_*`` metrics) are printed too.

Both run against ``mlc-model-server`` in a child process, as in production, serving
half_plus_two versions; the clients are threads of this process with the official stubs. Each
figure comes from ``--rounds`` pairs of cells, in the order A B, B A, A B, ... so that a drift
of the machine's load falls on both; the ratio printed is the median of the pairs' ratios. On a
machine shared with other work single cells move by tens of percent, so the server's CPU time
per request (from /proc, much steadier) is printed beside each cell. Part 2 runs fewer clients
(``--latency-clients``) so that its p99 is a request's latency, not the queue of a saturated
machine.

The candidate is made slower by the ``server:predict`` failpoint: each of its answers sleeps
twice stable's median latency (measured in part 1), so it takes three times as long while using
no CPU. The figure is what the shadow's design costs stable (the copy, the queue, the worker),
not a second model competing for the same cores.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/bench_rollout_split.py          # about two minutes
    python bench/bench_rollout_split.py --seconds 1 --rounds 4 --clients 2

The last line is for scripts: ``RESULT split_throughput_ratio=... shadow_p99_ratio=...
shadow_dropped=... shadow_requests=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TOKEN = "bench-token"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(make_call: Callable[[], Callable[[], object]], clients: int, seconds: float,
            pid: int | None = None) -> dict[str, float]:
    """``clients`` threads calling for ``seconds``: throughput, latency percentiles (ms), server CPU us/request."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    stop_at = [float("inf")]

    def worker(index: int) -> None:
        call = make_call()
        for _ in range(20):
            call()  # warm the channel
        barrier.wait()
        own = latencies[index]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                return
            call()
            own.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    cpu_before = cpu_seconds(pid) if pid is not None else 0.0
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    cpu = cpu_seconds(pid) - cpu_before if pid is not None else float("nan")
    flat = sorted(x for own in latencies for x in own)
    return {"rps": len(flat) / elapsed, "p50": flat[len(flat) // 2] * 1000,
            "p99": flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000, "n": float(len(flat)),
            "cpu_us": cpu / max(len(flat), 1) * 1e6}


def paired(a: Callable[[], dict[str, float]], b: Callable[[], dict[str, float]],
           rounds: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """``rounds`` pairs of cells a and b, in the order a b, b a, a b, ..."""
    first: list[dict[str, float]] = []
    second: list[dict[str, float]] = []
    for i in range(rounds):
        if i % 2 == 0:
            first.append(a())
            second.append(b())
        else:
            second.append(b())
            first.append(a())
    return first, second


def ratio(top: list[dict[str, float]], bottom: list[dict[str, float]], key: str) -> float:
    """The median of the pairs' ratios of ``key``."""
    return statistics.median(t[key] / b[key] for t, b in zip(top, bottom, strict=True))


def median(cells: list[dict[str, float]], key: str) -> float:
    """The median of one figure over cells."""
    return statistics.median(c[key] for c in cells)


class Server:
    """mlc-model-server in a child process, with the admin token and Prometheus metrics."""

    def __init__(self, root: Path, failpoints: str = "") -> None:
        from tests.support.ports import free_ports

        self.grpc_port, self.rest_port = free_ports(2)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env.pop("MLC_FAILPOINTS", None)
        if failpoints:
            env["MLC_FAILPOINTS"] = failpoints
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lifecycle.server.main", f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
             f"--model_config_file={root / 'models.config'}", "--file_system_poll_wait_seconds=0",
             "--allow_version_labels_for_unavailable_models=true", f"--monitoring_config_file={root / 'monitoring.config'}",
             f"--mlc_admin_token_file={root / 'token'}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"mlc-model-server exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}/v1/models/hp", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("mlc-model-server did not start") from None
                time.sleep(0.2)

    def split(self, split: dict[str, object]) -> None:
        """Set the model's split through the admin path."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}/v1/mlc/traffic/models/hp",
                                         data=json.dumps(split).encode(), method="PUT", headers={"mlc-admin-token": TOKEN})
        urllib.request.urlopen(request, timeout=10).read()

    def metric(self, name: str, version: int) -> float:
        """One ``{model_name="hp",version=...}`` series of the monitoring endpoint (0 when absent)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}/monitoring/prometheus/metrics", timeout=10).read().decode()
        match = re.search(re.escape(name) + r'\{model_name="hp",version="' + str(version) + r'"\} (\S+)', text)
        return float(match.group(1)) if match else 0.0

    def stop(self) -> None:
        """Terminate the child and wait for it."""
        self.process.terminate()
        self.process.wait(timeout=60)


def caller(port: int, label: str | None = None, keyed: bool = False) -> Callable[[], Callable[[], object]]:
    """A factory of Predict calls on their own channel: default route, or a label; with routing keys."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hp"
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))

    def make() -> Callable[[], object]:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        keys = iter(range(10**9))
        if not keyed:
            return lambda: stub.Predict(request, timeout=30)
        return lambda: stub.Predict(request, timeout=30, metadata=[("mlc-route-key", f"user-{next(keys) % 1000}")])

    return make


def build(root: Path) -> None:
    """Three half_plus_two versions, label stable -> 2, a token and a monitoring config."""
    from tests.support.savedmodels import build_half_plus_two_tf1

    for version in (1, 2, 3):
        build_half_plus_two_tf1(root / "hp" / str(version), offset=float(version))
    (root / "models.config").write_text(
        f'model_config_list {{ config {{ name: "hp" base_path: "{root / "hp"}" model_platform: "tensorflow" '
        'model_version_policy { all {} } version_labels { key: "stable" value: 2 } } }\n')
    (root / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    (root / "token").write_text(TOKEN)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each cell")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each pair of cells")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads of part 1 (throughput)")
    parser.add_argument("--latency-clients", type=int, default=2, help="concurrent client threads of part 2 (p99)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        root = Path(tmp)
        build(root)
        print(f"# mlc-model-server traffic split: {args.seconds:.1f} s a cell, {args.rounds} pairs of cells, "
              f"{os.cpu_count()} CPUs")
        server = Server(root)
        pid = server.process.pid
        try:
            def by_label() -> dict[str, float]:
                server.split({})
                return measure(caller(server.grpc_port, label="stable"), args.clients, args.seconds, pid)

            def by_split() -> dict[str, float]:
                server.split({"stable": 2, "candidate": 3, "weight": 0.5, "shadow": 0})
                return measure(caller(server.grpc_port, keyed=True), args.clients, args.seconds, pid)

            label, split = paired(by_label, by_split, args.rounds)
            answered = {v: server.metric(":mlc:request_latency_count", v) for v in (2, 3)}
        finally:
            server.stop()
        stable_ms = median(label, "p50")
        print(f"part 1, {args.clients} clients")
        print(f"  label-addressed, no split     {median(label, 'rps'):9.1f} req/s   p50 {stable_ms:6.2f} ms"
              f"   server {median(label, 'cpu_us'):6.0f} us CPU/req")
        print(f"  default route, split 50 %     {median(split, 'rps'):9.1f} req/s   p50 {median(split, 'p50'):6.2f} ms"
              f"   server {median(split, 'cpu_us'):6.0f} us CPU/req   (keyed; answered in all: v2 {answered[2]:.0f}, v3 {answered[3]:.0f})")
        throughput_ratio = ratio(split, label, "rps")
        print(f"  split / label throughput: {throughput_ratio:.3f}   (goal >= 0.97; server CPU/req ratio "
              f"{ratio(split, label, 'cpu_us'):.3f})")

        sleep_s = 2 * stable_ms / 1000  # candidate version 1: its own run plus twice stable's latency
        server = Server(root, failpoints=f"server:predict:hp:1=sleep:{sleep_s:.6f}")
        pid = server.process.pid
        try:
            def no_shadow() -> dict[str, float]:
                server.split({})  # the default route: version 3, the highest, with no shadow
                return measure(caller(server.grpc_port), args.latency_clients, args.seconds, pid)

            def full_shadow() -> dict[str, float]:
                server.split({"stable": 3, "candidate": 1, "weight": 0, "shadow": 1.0})
                return measure(caller(server.grpc_port), args.latency_clients, args.seconds, pid)

            base, shadow = paired(no_shadow, full_shadow, args.rounds)
            server.split({})
            time.sleep(min(5.0, 64 * sleep_s * 1.5))  # let the queue drain before reading the comparisons
            requests = server.metric(":mlc:shadow_requests", 1)
            dropped = server.metric(":mlc:shadow_dropped", 1)
            compared = server.metric(":mlc:shadow_agreement_count", 1)
        finally:
            server.stop()
        print(f"part 2, {args.latency_clients} clients; the candidate sleeps {sleep_s * 1000:.2f} ms an answer "
              f"(twice stable's p50 of {stable_ms:.2f} ms)")
        for name, cells in (("stable, no shadow", base), ("stable, 100 % shadow", shadow)):
            print(f"  {name:<28} {median(cells, 'rps'):9.1f} req/s   p50 {median(cells, 'p50'):6.2f} ms   "
                  f"p99 {median(cells, 'p99'):6.2f} ms   server {median(cells, 'cpu_us'):6.0f} us CPU/req")
        print(f"  shadow copies: {requests:.0f} queued, {compared:.0f} compared, {dropped:.0f} dropped "
              f"({dropped / max(requests + dropped, 1):.1%} of {requests + dropped:.0f} offered)")
        p99_ratio = ratio(shadow, base, "p99")
        print(f"  shadow / no-shadow p99: {p99_ratio:.3f}   (goal <= 1.2)")
    print(f"RESULT split_throughput_ratio={throughput_ratio:.3f} shadow_p99_ratio={p99_ratio:.3f} "
          f"shadow_dropped={dropped:.0f} shadow_requests={requests:.0f} shadow_compared={compared:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
