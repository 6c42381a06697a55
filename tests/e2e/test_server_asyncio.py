"""The asyncio gRPC transport (``--mlc_grpc_transport=asyncio``): the gRPC tests again, and its own.

The tests imported below (errors and their messages, metadata, TLS, Unix socket and health,
message sizes, reload, the ProfilerService) run here a second time with every server of this module on the asyncio
transport, so that both transports answer the same tests. The tests written here check what only
the asyncio transport could get wrong: deadlines reaching the model run, cheap calls answered while
every pool thread is busy, and a graceful stop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from lifecycle.server import RunningServer, ServerOptions, create_server
from tests.e2e.test_server_predict import (  # noqa: F401 - fixtures and tests pytest runs here again
    client,
    server,
    test_get_model_metadata,
    test_status_errors,
    test_unknown_label_is_invalid_argument,
    test_unknown_model_is_not_found_latest,
    test_wrong_input_alias_and_dtype_are_invalid_argument,
)
from tests.e2e.test_server_profiler import test_profiler_client_traces_requests_served_meanwhile  # noqa: F401
from tests.e2e.test_server_transport import (  # noqa: F401
    test_messages_are_unlimited_by_default,
    test_tls_with_ssl_config_file,
    test_unix_socket_health_and_channel_arguments,
)
from tests.e2e.test_server_versions import (  # noqa: F401
    harness,
    test_reload_replaces_whole_config_and_waits_for_new_models,
)
from tests.support.savedmodels import build_spinner
from tests.support.server_support import Client, add_version, default_grpc_transport, model_config, server_config, value

pytestmark = pytest.mark.e2e

SPIN_FOR_A_SECOND = 300_000  # loop iterations of build_spinner's model: about 1 s on one core


@pytest.fixture(scope="module", autouse=True)
def _asyncio_transport() -> Iterator[None]:
    with default_grpc_transport("asyncio"):
        yield


@pytest.fixture(scope="module")
def spin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("asyncio_models")
    build_spinner(root / "spin" / "1")
    add_version(root / "hp", 1)
    return root


def _start(root: Path, **changes: object) -> RunningServer:
    config = server_config(model_config("spin", root / "spin"), model_config("hp", root / "hp"))
    return create_server(ServerOptions(model_config=config, file_system_poll_wait_seconds=0, **changes))  # type: ignore[arg-type]


def _spin(n: int) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "spin"
    request.inputs["n"].CopyFrom(tf.make_tensor_proto(np.array([n], np.int64)))
    return request


def test_the_server_runs_on_the_asyncio_transport(server: RunningServer) -> None:  # noqa: F811 - the fixture
    assert server.grpc_transport == "asyncio"


def test_a_deadline_cuts_the_run_short_and_status_answers_while_the_pool_is_busy(spin_root: Path) -> None:
    running = _start(spin_root, grpc_max_threads=1)
    caller = Client(running.grpc_address)
    try:
        assert running.grpc_transport == "asyncio"
        outcome: list[grpc.RpcError] = []

        def spin_past_the_deadline() -> None:
            try:
                caller.predict_stub.Predict(_spin(10**12), timeout=3)  # hours of spinning without the deadline
            except grpc.RpcError as e:
                outcome.append(e)

        spinning = threading.Thread(target=spin_past_the_deadline)
        spinning.start()
        # The one pool thread spins; model status is answered on the event loop all the same.
        assert caller.status("hp") == {1: ("AVAILABLE", 0, "")}
        spinning.join(timeout=30)
        assert [e.code() for e in outcome] == [grpc.StatusCode.DEADLINE_EXCEEDED]
        # The deadline reached the run (RunOptions' timeout), so the pool thread is free again
        # (spin has run once: its runs are not measured cheap, so this one goes to the pool).
        assert caller.predict_stub.Predict(_spin(1), timeout=10).outputs["n"].int64_val == [1]
    finally:
        caller.close()
        running.stop()


def test_a_model_measured_cheap_is_answered_on_the_loop_while_the_pool_is_busy(spin_root: Path) -> None:
    running = _start(spin_root, grpc_max_threads=1)
    caller = Client(running.grpc_address)
    try:
        for _ in range(40):  # enough runs for RunCosts to measure half_plus_two's cost
            assert value(caller.predict("hp", [[2.0]])).tolist() == [[2.0]]
        busy = caller.predict_stub.Predict.future(_spin(10**12), timeout=3)  # holds the one pool thread
        threading.Event().wait(0.3)
        assert value(caller.predict("hp", [[4.0]])).tolist() == [[3.0]]
        with pytest.raises(grpc.RpcError) as info:
            busy.result()
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        caller.close()
        running.stop()


def test_stop_lets_an_in_flight_run_finish_then_refuses_new_calls(spin_root: Path) -> None:
    running = _start(spin_root, enable_grpc_healthcheck_service=True)
    caller = Client(running.grpc_address)
    try:
        assert value(caller.predict("hp", [[2.0]])).tolist() == [[2.0]]
        in_flight = caller.predict_stub.Predict.future(_spin(2 * SPIN_FOR_A_SECOND), timeout=60)
        threading.Event().wait(0.3)  # the run has started
        running.stop(grace=60)
        assert in_flight.result().outputs["n"].int64_val == [2 * SPIN_FOR_A_SECOND]
        with pytest.raises(grpc.RpcError) as info:
            caller.predict_stub.Predict(_spin(1), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        caller.close()
        running.stop()
    # The shared event loop serves the next server of the process.
    again = _start(spin_root)
    try:
        fresh = Client(again.grpc_address)
        assert value(fresh.predict("hp", [[2.0]])).tolist() == [[2.0]]
        fresh.close()
    finally:
        again.stop()
