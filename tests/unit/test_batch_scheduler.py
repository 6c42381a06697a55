"""Server-side batching without a server: the batch scheduler on numpy runs, the batching
parameters file, and the generated protos. A real server merging real requests is in
tests/e2e/test_server_batching.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from lifecycle.errors import (
    DeadlineExceeded,
    InvalidArgument,
    LifecycleError,
    ServerUnavailable,
)
from lifecycle.server.models.batching import BatchingOptions, BatchScheduler, read_batching_parameters
from tests.support.concurrency import concurrently
from tests.support.polling import wait_until


def _run_recording(seen: list[dict[str, tuple[int, ...]]], delay: float = 0.0):  # noqa: ANN202
    def run(feeds: Mapping[str, np.ndarray], fetches: list[str], timeout_ms: int | None) -> list[np.ndarray]:
        seen.append({name: value.shape for name, value in feeds.items()})
        time.sleep(delay)
        return [feeds["x"] * 2 for _ in fetches]

    return run


def test_concurrent_tasks_merge_pad_and_split() -> None:
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1,
                                               allowed_batch_sizes=(2, 4, 8)))
    seen: list[dict[str, tuple[int, ...]]] = []
    run = _run_recording(seen)
    try:
        results = concurrently(5, lambda i: scheduler.run("s", run, {"x": np.full((1, 3), i, np.float32)}, ["y"], None))
    finally:
        scheduler.stop()
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result[0], np.full((1, 3), 2 * i, np.float32))
    assert [shape["x"] for shape in seen] == [(8, 3)]  # 5 rows in one run, padded to the allowed 8


def test_variable_length_inputs_are_padded_only_when_asked() -> None:
    for pad, runs in ((True, 1), (False, 2)):
        scheduler = BatchScheduler(BatchingOptions(max_batch_size=4, batch_timeout_micros=200_000, num_batch_threads=1,
                                                   pad_variable_length_inputs=pad))
        seen: list[dict[str, tuple[int, ...]]] = []
        run = _run_recording(seen)
        try:
            results = concurrently(2, lambda i, scheduler=scheduler, run=run: scheduler.run("s", run, {"x": np.ones((1, 2 + i), np.float32)}, ["y"], None))
        finally:
            scheduler.stop()
        assert len(seen) == runs
        assert [r[0].shape for r in results] == ([(1, 3), (1, 3)] if pad else [(1, 2), (1, 3)])


def test_refusals() -> None:
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=2, max_enqueued_batches=2, num_batch_threads=1,
                                               batch_timeout_micros=0))
    seen: list[dict[str, tuple[int, ...]]] = []
    gate, started = threading.Event(), threading.Event()
    record = _run_recording(seen)

    def gated(feeds: Mapping[str, np.ndarray], fetches: list[str], timeout_ms: int | None) -> list[np.ndarray]:
        started.set()
        gate.wait(10)
        return record(feeds, fetches, timeout_ms)

    results: dict[str, object] = {}

    def submit(name: str, timeout_ms: int | None) -> threading.Thread:
        def call() -> None:
            try:
                results[name] = scheduler.run("s", gated, {"x": np.ones((2, 1))}, ["y"], timeout_ms)
            except LifecycleError as e:
                results[name] = e

        thread = threading.Thread(target=call)
        thread.start()
        return thread

    try:
        with pytest.raises(InvalidArgument, match="^Task size 3 is larger than maximum input batch size 2$"):
            scheduler.run("s", gated, {"x": np.ones((3, 1))}, ["y"], None)
        with pytest.raises(InvalidArgument, match="equal 0th-dimension size"):
            scheduler.run("s", gated, {"x": np.ones((1, 1)), "z": np.ones((2, 1))}, ["y"], None)
        # The one batch thread takes "running" and blocks on the gate; then "expires" (1 ms
        # deadline) and "queued" fill the queue's two batches, and "refused" finds it full.
        threads = [submit("running", None)]
        assert started.wait(10)
        submitted = time.monotonic()
        threads.append(submit("expires", 1))
        wait_until(lambda: scheduler.queued_rows() == 2, timeout=10)
        threads.append(submit("queued", None))
        wait_until(lambda: scheduler.queued_rows() == 4, timeout=10)
        with pytest.raises(ServerUnavailable, match="The batch scheduling queue to which this task was submitted is full"):
            scheduler.run("s", gated, {"x": np.ones((2, 1))}, ["y"], None)
        while time.monotonic() < submitted + 0.005:  # let the 1 ms deadline pass while queued
            time.sleep(0.001)
        gate.set()
        for thread in threads:
            thread.join(10)
        assert isinstance(results["running"], list) and isinstance(results["queued"], list)
        assert isinstance(results["expires"], DeadlineExceeded), results
        assert len(seen) == 2  # the expired task never ran
    finally:
        gate.set()
        scheduler.stop()


def test_batching_parameters_file(tmp_path: Path) -> None:
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n"
                    "num_batch_threads { value: 3 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n"
                    "pad_variable_length_inputs: true\n")
    assert read_batching_parameters(path) == BatchingOptions(
        max_batch_size=16, batch_timeout_micros=1000, num_batch_threads=3, allowed_batch_sizes=(8, 16),
        pad_variable_length_inputs=True)
    path.write_text("max_batch_size: 16\n")
    with pytest.raises(InvalidArgument, match="Error parsing text-format tensorflow.serving.BatchingParameters"):
        read_batching_parameters(path)
    path.write_text("max_batch_size { value: 16 }\nallowed_batch_sizes: 8\n")
    with pytest.raises(InvalidArgument, match="Last entry in allowed_batch_sizes must match max_batch_size"):
        read_batching_parameters(path)


def test_generated_protos_match_their_sources(tmp_path: Path) -> None:
    """The committed *_pb2.py hold the descriptors protoc makes from the .proto files today."""
    repo = Path(__file__).resolve().parents[2]
    sources = [f"lifecycle/server/protos/{n}.proto" for n in ("batching", "monitoring", "ssl", "profiler")]
    sources.append("lifecycle/serving/wire/tfs_wire.proto")
    # protoc runs in a child process: in a process that has loaded TensorFlow it can crash.
    args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{repo}", f"--python_out={tmp_path}"]
    args += [f"{repo}/{source}" for source in sources]
    subprocess.run(args, check=True, capture_output=True)
    pattern = re.compile(r"AddSerializedFile\((b'.*?')\)", re.S)
    for source in sources:
        generated = source.removesuffix(".proto") + "_pb2.py"
        fresh = (tmp_path / generated).read_text()
        committed = (repo / generated).read_text()
        assert pattern.search(fresh).group(1) == pattern.search(committed).group(1), f"run scripts/gen_protos.sh ({source})"
