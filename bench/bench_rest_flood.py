"""Benchmark the REST port under a flood of stalled connections.

A well-behaved client sends one small ``:predict`` at a time and times each answer. Its median
and p99 latency with N stalled connections open (each sent half a request, then nothing) are
printed as ratios to the same client's latency with no flood, measured in the same run against
the same ``mlc-model-server`` child process (``--rest_api_timeout_in_ms=5000``). Stalled
connections the server drops are reopened, so the flood holds for the whole measurement. Also
printed: how long the N connections took to be accepted, and how many the server dropped
within its timeout (plus 5 s).

    python bench/bench_rest_flood.py                    # 3,000 stalled connections, ~1 minute
    python bench/bench_rest_flood.py --stalled 600 --requests 200
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BODY = b'{"instances": [[1.0]]}'
PARTIAL = (b"POST /v1/models/hp:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\n{\"inst")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/v1/models/hp")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("server did not become ready")
        time.sleep(0.2)


def latencies(port: int, count: int) -> list[float]:
    """One keep-alive client, one request at a time; seconds per answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("POST", "/v1/models/hp:predict", body=BODY)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        out.append(time.perf_counter() - started)
    connection.close()
    return out


class Flood:
    """N stalled connections, reopened as the server drops them."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.sockets: list[socket.socket] = []
        self.dropped = 0
        self._stop = threading.Event()

    def open_one(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.sendall(PARTIAL)
        s.setblocking(False)
        return s

    def open_all(self) -> float:
        started = time.perf_counter()
        self.sockets = [self.open_one() for _ in range(self.count)]
        return time.perf_counter() - started

    def count_dropped(self) -> int:
        """Sockets the server has closed (EOF or reset), replaced by fresh stalled ones."""
        dropped = 0
        for i, s in enumerate(self.sockets):
            try:
                closed = s.recv(1) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if closed:
                dropped += 1
                s.close()
                self.sockets[i] = self.open_one()
        self.dropped += dropped
        return dropped

    def keep_up(self) -> None:
        while not self._stop.wait(0.5):
            self.count_dropped()

    def close(self) -> None:
        self._stop.set()
        for s in self.sockets:
            s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stalled", type=int, default=3000, help="stalled connections in the flood")
    parser.add_argument("--requests", type=int, default=300, help="requests of the good client per phase")
    parser.add_argument("--timeout-ms", type=int, default=5000, help="--rest_api_timeout_in_ms of the server")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * args.stalled + 1024)), hard))

    from tests.support.server_support import add_version

    with tempfile.TemporaryDirectory() as tmp:
        add_version(Path(tmp) / "hp", 1)
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "lifecycle.server.main", "--port=0", f"--rest_api_port={port}",
             "--model_name=hp", f"--model_base_path={Path(tmp) / 'hp'}", "--file_system_poll_wait_seconds=0",
             f"--rest_api_timeout_in_ms={args.timeout_ms}"],
            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        flood = Flood(port, args.stalled)
        try:
            wait_ready(port)
            latencies(port, 20)  # warm up
            quiet = latencies(port, args.requests)
            accept_s = flood.open_all()
            flooded = latencies(port, args.requests)
            # Drops: every stalled connection should be closed within the timeout (+5 s).
            deadline = time.monotonic() + args.timeout_ms / 1000 + 5
            first_wave = 0
            while time.monotonic() < deadline and first_wave < args.stalled:
                first_wave += flood.count_dropped()
                time.sleep(0.2)
            keeper = threading.Thread(target=flood.keep_up, daemon=True)
            keeper.start()
            churned = latencies(port, args.requests)  # while dropped connections are reopened
        finally:
            flood.close()
            process.terminate()
            process.wait(30)

    def p(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000

    print(f"good client, {args.requests} sequential :predict per phase; {args.stalled} stalled connections")
    print(f"  no flood:            median {statistics.median(quiet) * 1000:7.2f} ms   p99 {p(quiet, 0.99):7.2f} ms")
    for name, values in (("flood open:", flooded), ("flood reopening:", churned)):
        print(f"  {name:<20} median {statistics.median(values) * 1000:7.2f} ms   p99 {p(values, 0.99):7.2f} ms"
              f"   ratio to no flood: median x{statistics.median(values) / statistics.median(quiet):.2f},"
              f" p99 x{p(values, 0.99) / p(quiet, 0.99):.2f}")
    print(f"  {args.stalled} stalled connections accepted in {accept_s:.2f} s")
    print(f"  dropped by the server within {args.timeout_ms / 1000:.0f} s + 5 s: {first_wave} of {args.stalled}")


if __name__ == "__main__":
    main()
