"""Server-side batching: the scheduler on numpy runs, then a real server merging real requests."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import numpy as np
import pytest

from lifecycle.errors import (
    DeadlineExceeded,
    InvalidArgument,
    LifecycleError,
    ServerUnavailable,
)
from lifecycle.server.batching import (
    BatchingOptions,
    BatchScheduler,
    read_batching_parameters,
)
from tests.support.polling import wait_until


def _run_recording(seen: list[dict[str, tuple[int, ...]]], delay: float = 0.0):  # noqa: ANN202
    def run(feeds: Mapping[str, np.ndarray], fetches: list[str], timeout_ms: int | None) -> list[np.ndarray]:
        seen.append({name: value.shape for name, value in feeds.items()})
        time.sleep(delay)
        return [feeds["x"] * 2 for _ in fetches]

    return run


def _concurrently(n: int, call) -> list[object]:  # noqa: ANN001
    results: list[object] = [None] * n

    def one(i: int) -> None:
        try:
            results[i] = call(i)
        except LifecycleError as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


def test_concurrent_tasks_merge_pad_and_split() -> None:
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1,
                                               allowed_batch_sizes=(2, 4, 8)))
    seen: list[dict[str, tuple[int, ...]]] = []
    run = _run_recording(seen)
    try:
        results = _concurrently(5, lambda i: scheduler.run("s", run, {"x": np.full((1, 3), i, np.float32)}, ["y"], None))
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
            results = _concurrently(2, lambda i: scheduler.run("s", run, {"x": np.ones((1, 2 + i), np.float32)}, ["y"], None))
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
    names = ["batching", "monitoring", "ssl", "profiler"]
    # protoc runs in a child process: in a process that has loaded TensorFlow it can crash.
    args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{repo}", f"--python_out={tmp_path}"]
    args += [f"{repo}/lifecycle/server/protos/{n}.proto" for n in names]
    subprocess.run(args, check=True, capture_output=True)
    pattern = re.compile(r"AddSerializedFile\((b'.*?')\)", re.S)
    for name in names:
        fresh = (tmp_path / "lifecycle/server/protos" / f"{name}_pb2.py").read_text()
        committed = (repo / "lifecycle/server/protos" / f"{name}_pb2.py").read_text()
        assert pattern.search(fresh).group(1) == pattern.search(committed).group(1), f"run scripts/gen_protos.sh ({name})"


# --- a real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from lifecycle.server import ServerOptions, create_server
    from tests.support.savedmodels import build_batch_reporter
    from tests.support.server_support import model_config, server_config

    root = tmp_path_factory.mktemp("batching_models")
    build_batch_reporter(root / "rep" / "1")
    params = root / "batching.config"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 100000 }\n"
                      "num_batch_threads { value: 1 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 8\n")
    running = create_server(ServerOptions(
        model_config=server_config(model_config("rep", root / "rep")), file_system_poll_wait_seconds=0,
        enable_batching=True, batching_parameters_file=str(params), rest_api_port=0,
    ))
    yield running
    running.stop()


@pytest.mark.e2e
def test_server_merges_concurrent_predicts(server: object) -> None:
    from tests.support.server_support import Client, value

    client = Client(server.grpc_address)
    try:
        responses = _concurrently(6, lambda i: client.predict("rep", [[float(i)]]))
        for i, response in enumerate(responses):
            assert value(response).tolist() == [[0.5 * i + 2]]
        batches = [int(value(r, "batch")[0]) for r in responses]
        assert max(batches) == 8, batches  # six rows merged, padded to the allowed 8
        assert value(client.predict("rep", [[1.0]]), "batch").tolist() == [4]  # alone: padded to 4
        with pytest.raises(grpc.RpcError) as info:
            client.predict("rep", [[1.0]] * 9)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "Task size 9 is larger than maximum input batch size 8"
    finally:
        client.close()


@pytest.mark.e2e
def test_per_model_batching_parameters(tmp_path: Path) -> None:
    from lifecycle.server import ServerOptions, create_server
    from tests.support.savedmodels import build_batch_reporter
    from tests.support.server_support import Client, model_config, server_config, value

    version = build_batch_reporter(tmp_path / "rep" / "1")
    (version / "batching_params.pbtxt").write_text("max_batch_size { value: 2 }\nallowed_batch_sizes: 2\n")
    server = create_server(ServerOptions(
        model_config=server_config(model_config("rep", tmp_path / "rep")), file_system_poll_wait_seconds=0,
        enable_batching=True, enable_per_model_batching_parameters=True,
    ))
    client = Client(server.grpc_address)
    try:
        assert value(client.predict("rep", [[1.0]]), "batch").tolist() == [2]  # padded to this version's 2
        with pytest.raises(grpc.RpcError) as info:
            client.predict("rep", [[1.0]] * 3)
        assert info.value.details() == "Task size 3 is larger than maximum input batch size 2"
    finally:
        client.close()
        server.stop()


@pytest.mark.e2e
def test_platform_config_file_sets_session_batching_and_tags(tmp_path: Path) -> None:
    """--platform_config_file: the tensorflow platform's legacy_config replaces the flags, as in TF Serving."""
    from lifecycle.errors import StartupError
    from lifecycle.server import ServerOptions, create_server
    from lifecycle.server.platform_config import read_platform_config
    from tests.support.savedmodels import build_batch_reporter
    from tests.support.server_support import Client, model_config, server_config, value

    build_batch_reporter(tmp_path / "rep" / "1")
    platform = tmp_path / "platform.config"
    platform.write_text("""platform_configs {
  key: "tensorflow"
  value {
    source_adapter_config {
      [type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig] {
        legacy_config {
          session_config { intra_op_parallelism_threads: 1 inter_op_parallelism_threads: 1 }
          batching_parameters { max_batch_size { value: 4 } batch_timeout_micros { value: 0 }
                                allowed_batch_sizes: 2 allowed_batch_sizes: 4 }
          saved_model_tags: "serve"
          model_warmup_options { num_request_iterations { value: 3 } }
        }
      }
    }
  }
}
""")
    settings = read_platform_config(platform)
    from tensorflow.core.protobuf import config_pb2

    session = config_pb2.ConfigProto.FromString(settings.session_config)
    assert (session.intra_op_parallelism_threads, session.inter_op_parallelism_threads) == (1, 1)
    assert (settings.batching.max_batch_size, settings.num_request_iterations_for_warmup) == (4, 3)
    assert settings.enable_model_warmup is False  # proto3 default, as TF Serving reads the file

    # Batching is on although --enable_batching is not: a lone row runs padded to 2.
    with create_server(ServerOptions(model_config=server_config(model_config("rep", tmp_path / "rep")),
                                     file_system_poll_wait_seconds=0, platform_config_file=str(platform))) as server:
        client = Client(server.grpc_address)
        try:
            assert value(client.predict("rep", [[1.0]]), "batch").tolist() == [2]
            with pytest.raises(grpc.RpcError) as info:
                client.predict("rep", [[1.0]] * 5)
            assert info.value.details() == "Task size 5 is larger than maximum input batch size 4"
        finally:
            client.close()

    # Tags from the file: a model exported with "serve" does not load for tag "gpu".
    platform.write_text(platform.read_text().replace('saved_model_tags: "serve"', 'saved_model_tags: "gpu"'))
    with pytest.raises(StartupError, match="gpu"):
        create_server(ServerOptions(model_config=server_config(model_config("rep", tmp_path / "rep")),
                                    file_system_poll_wait_seconds=0, platform_config_file=str(platform),
                                    max_num_load_retries=0))
    platform.write_text("platform_configs { key: 'tensorflow' value { source_adapter_config { "
                        "[type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig] "
                        "{ legacy_config { no_such_field: 1 } } } } }")
    with pytest.raises(InvalidArgument, match="Invalid protobuf file: .*no_such_field"):
        read_platform_config(platform)
