"""Soak: does mlc-model-server's memory stay flat across promote/rollback cycles under load?

It trains the small DeepLab (``configs/deeplab.yaml``, backbone ``small``) for a few steps,
registers two checkpoints as versions 1 and 2, promotes 1, serves the home with ``mlc serve
--detach`` (an embedded mlc-model-server child process), and then, while 4 client threads send
label-addressed Predict requests (``version_label: stable``, a 64x64 image) without pause, runs
``--cycles`` cycles of ``mlc promote deeplab 2`` then ``mlc rollback deeplab`` (library calls).

Every answer is checked: a failed RPC is an error; an answer from a version other than the
one ``stable`` named for the whole life of the request (requests that overlap a promote or a
rollback may get either) is wrong. It prints the server's RSS (``/proc/PID/status`` VmRSS) after
cycles 20, 100 and the last, and ends with

    soak: C cycles, R requests, E errors, W wrong, RSS A -> B -> C MiB

Goal: RSS at the last cycle <= 1.05 x RSS at cycle 20, 0 errors and 0 wrong.
``MLC_TRACEMALLOC=FILE`` in the environment makes the server trace Python allocations and
write the top growth since start-up to FILE on SIGUSR2 (the bench asks at each checkpoint,
with ``--tracemalloc FILE``).

    python bench/bench_soak.py                 # 200 cycles: long on a shared 2-core machine
    python bench/bench_soak.py --cycles 30 --marks 10,20,30
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rss_mib(pid: int) -> float:
    """The resident set of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


class Stable:
    """What ``stable`` names, and an epoch that moves at the start and end of each change."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.epoch = 0
        self.changing = False

    def begin(self) -> None:
        """A promote or rollback starts: answers may come from either version."""
        self.changing = True
        self.epoch += 1

    def end(self, version: int) -> None:
        """It has returned: ``stable`` is ``version``."""
        self.version = version
        self.changing = False
        self.epoch += 1


def client_loop(address: str, state: Stable, stop: threading.Event, counts: dict[str, int], lock: threading.Lock) -> None:
    """Label-addressed Predict requests until ``stop``; count requests, errors and wrong versions."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "deeplab"
    request.model_spec.signature_name = "predict_images"
    request.model_spec.version_label = "stable"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.full((1, 64, 64, 3), 128, np.float32)))
    request.inputs["height"].CopyFrom(tf.make_tensor_proto(np.array([64], np.int32)))
    request.inputs["width"].CopyFrom(tf.make_tensor_proto(np.array([64], np.int32)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))
    mine = {"requests": 0, "errors": 0, "wrong": 0}
    while not stop.is_set():
        before = (state.epoch, state.changing, state.version)
        try:
            response = stub.Predict(request, timeout=30)
        except grpc.RpcError as e:
            mine["errors"] += 1
            print(f"# error: {e.code()} {e.details()}", flush=True)
            continue
        finally:
            mine["requests"] += 1
        after = (state.epoch, state.changing)
        if before[:2] == after and not before[1] and response.model_spec.version.value != before[2]:
            mine["wrong"] += 1
            print(f"# wrong: answered by {response.model_spec.version.value}, stable was {before[2]}", flush=True)
    with lock:
        for k, v in mine.items():
            counts[k] += v


def main() -> None:
    """Build the home, serve, cycle under load, print RSS at the marks and the last line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=200, help="promote + rollback cycles")
    parser.add_argument("--marks", default="20,100,200", help="cycles after which to print RSS (the last is the end)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--tracemalloc", metavar="FILE", default="",
                        help="run the server with MLC_TRACEMALLOC=FILE and ask for a snapshot diff at each mark")
    args = parser.parse_args()
    marks = sorted({int(m) for m in args.marks.split(",") if int(m) <= args.cycles} | {args.cycles})
    if args.tracemalloc:
        os.environ["MLC_TRACEMALLOC"] = str(Path(args.tracemalloc).resolve())

    from lifecycle import api
    from tests.support.homes import new_home

    tmp = Path(tempfile.mkdtemp(prefix="mlc-bench-soak-"))
    paths = new_home(tmp / "home")
    os.environ["MLC_HOME"] = str(paths.home)
    t0 = time.perf_counter()
    trained = api.train(tmp / "run" / "1", steps=40, save_every=20, paths=paths)
    for checkpoint in trained.checkpoints:
        api.register(Path(checkpoint.prefix), paths=paths)
    api.promote("deeplab", 1, paths=paths, force=True, reason="soak")
    print(f"# trained and registered 2 versions in {time.perf_counter() - t0:.0f} s", flush=True)
    from tests.support.ports import free_ports

    grpc_port, rest_port = free_ports(2)
    served = api.serve(engine="embedded", grpc_port=grpc_port, rest_port=rest_port, detach=True, paths=paths)
    pid, address = served.servers[0].pid, served.servers[0].grpc
    state = Stable(1)
    stop = threading.Event()
    counts = {"requests": 0, "errors": 0, "wrong": 0}
    lock = threading.Lock()
    threads = [threading.Thread(target=client_loop, args=(address, state, stop, counts, lock)) for _ in range(args.clients)]
    rss: list[float] = []
    try:
        for t in threads:
            t.start()
        time.sleep(2.0)
        print(f"# server pid {pid} at {address}, RSS before the first cycle {rss_mib(pid):.0f} MiB", flush=True)
        began = time.perf_counter()
        for cycle in range(1, args.cycles + 1):
            state.begin()
            api.promote("deeplab", 2, paths=paths, reason="soak")
            state.end(2)
            state.begin()
            api.rollback("deeplab", reason="soak", paths=paths)
            state.end(1)
            if cycle in marks:
                if args.tracemalloc:
                    os.kill(pid, signal.SIGUSR2)
                    time.sleep(3.0)
                rss.append(rss_mib(pid))
                print(f"# cycle {cycle}: RSS {rss[-1]:.0f} MiB, {time.perf_counter() - began:.0f} s", flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        api.stop(paths=paths)
    shown = " -> ".join(f"{r:.0f}" for r in rss)
    growth = rss[-1] / rss[0] if rss else float("nan")
    print(f"# RSS last / first mark: {growth:.3f} (goal <= 1.05)")
    print(f"soak: {args.cycles} cycles, {counts['requests']} requests, {counts['errors']} errors, {counts['wrong']} wrong, RSS {shown} MiB")


if __name__ == "__main__":
    main()
