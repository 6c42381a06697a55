"""--enable_profiler (default true): TensorFlow's profiler client traces requests over the gRPC port."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lifecycle.server import ServerOptions, create_server
from tests.support.server_support import (
    Client,
    add_version,
    model_config,
    server_config,
)

pytestmark = pytest.mark.e2e


def test_profiler_client_traces_requests_served_meanwhile(tmp_path: Path) -> None:
    import tensorflow as tf

    add_version(tmp_path / "hp", 1)
    config = server_config(model_config("hp", tmp_path / "hp"))
    with create_server(ServerOptions(model_config=config, file_system_poll_wait_seconds=0)) as server:
        client = Client(server.grpc_address)
        stop = threading.Event()
        served = []

        def load() -> None:
            while not stop.is_set():
                served.append(client.predict("hp", [[1.0]]).model_spec.version.value)

        thread = threading.Thread(target=load)
        thread.start()
        try:
            logdir = tmp_path / "logdir"
            tf.profiler.experimental.client.trace(f"grpc://{server.grpc_address}", str(logdir), duration_ms=1500)
        finally:
            stop.set()
            thread.join(30)
            client.close()
    assert served
    (xplane,) = (logdir / "plugins" / "profile").glob("*/*.xplane.pb")
    # The XSpace holds the Predict session runs and half_plus_two's ops (y = a * x + b, op "y").
    # (Its raw bytes are searched: TensorFlow writes some names that are not valid UTF-8, which
    # Python's protobuf refuses to parse.)
    trace = xplane.read_bytes()
    assert trace.count(b"SessionRun") >= 1 and b"y:AddV2" in trace


def test_profiler_off(tmp_path: Path) -> None:
    import tensorflow as tf

    add_version(tmp_path / "hp", 1)
    config = server_config(model_config("hp", tmp_path / "hp"))
    with create_server(ServerOptions(model_config=config, file_system_poll_wait_seconds=0,
                                     enable_profiler=False)) as server:
        with pytest.raises(Exception, match="(?i)unimplemented|no trace|failed"):
            tf.profiler.experimental.client.trace(f"grpc://{server.grpc_address}", str(tmp_path / "off"),
                                                  duration_ms=200, num_tracing_attempts=1)
    assert not list((tmp_path / "off").glob("**/*.xplane.pb"))
