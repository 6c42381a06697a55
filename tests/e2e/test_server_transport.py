"""End-to-end: gRPC over a Unix socket, channel arguments, unlimited messages, health service,
TLS, and the TensorFlow session flags."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from lifecycle.errors import StartupError
from lifecycle.server import ServerOptions, create_server
from lifecycle.server.grpc.endpoint import channel_arguments
from tests.support.server_support import (
    TIMEOUT_S,
    Client,
    add_version,
    model_config,
    server_config,
    value,
)

pytestmark = pytest.mark.e2e


def test_channel_arguments_override_tf_servings_defaults() -> None:
    args = dict(channel_arguments("grpc.max_receive_message_length=1024, grpc.primary_user_agent=mlc"))
    assert args["grpc.max_receive_message_length"] == 1024
    assert args["grpc.max_send_message_length"] == 2**31 - 1
    assert args["grpc.primary_user_agent"] == "mlc"


def test_unix_socket_health_and_channel_arguments(tmp_path: Path) -> None:
    add_version(tmp_path / "hp", 1)
    sock = tmp_path / "grpc.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # a socket file nobody listens on, as a killed server leaves it
    stale.close()
    options = ServerOptions(
        model_config=server_config(model_config("hp", tmp_path / "hp")), file_system_poll_wait_seconds=0,
        grpc_socket_path=str(sock), enable_grpc_healthcheck_service=True,
        grpc_channel_arguments="grpc.max_receive_message_length=65536",
    )
    server = create_server(options)
    try:
        assert server.grpc_socket_path == str(sock)
        unix = Client(f"unix:{sock}")
        tcp = Client(server.grpc_address)
        try:
            assert value(unix.predict("hp", [[2.0]])).tolist() == [[2.0]]
            health = health_pb2_grpc.HealthStub(unix.channel)
            for service in ("", "tensorflow.serving.PredictionService"):
                answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
            # The channel argument caps requests at 64 KiB (TF Serving's default is unlimited).
            with pytest.raises(grpc.RpcError) as info:
                tcp.predict("hp", np.zeros((20000, 1), np.float32))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # A second server takes the live socket path over, as gRPC (and so TF Serving) does:
            # new clients on the path reach it, the first server keeps serving on TCP.
            add_version(tmp_path / "hp2", 2)
            second = create_server(ServerOptions(
                model_config=server_config(model_config("hp", tmp_path / "hp2")), grpc_port=None,
                grpc_socket_path=str(sock), file_system_poll_wait_seconds=0))
            try:
                # Its own subchannel pool: gRPC would otherwise reuse the open connection of
                # `unix` (to the first server) for the same target.
                channel = grpc.insecure_channel(f"unix:{sock}", options=[("grpc.use_local_subchannel_pool", 1)])
                newcomer = Client(f"unix:{sock}")
                newcomer.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                try:
                    assert newcomer.predict("hp", [[2.0]]).model_spec.version.value == 2
                finally:
                    channel.close()
                    newcomer.close()
                assert tcp.predict("hp", [[2.0]]).model_spec.version.value == 1
            finally:
                second.stop()
            # A path that is not a socket is refused.
            plain = tmp_path / "not-a-socket"
            plain.write_text("x")
            with pytest.raises(StartupError, match="exists and is not a socket"):
                create_server(ServerOptions(model_config=options.model_config, grpc_port=None,
                                            grpc_socket_path=str(plain), file_system_poll_wait_seconds=0))
        finally:
            unix.close()
            tcp.close()
    finally:
        server.stop()


def test_messages_are_unlimited_by_default(tmp_path: Path) -> None:
    add_version(tmp_path / "hp", 1)
    server = create_server(ServerOptions(model_config=server_config(model_config("hp", tmp_path / "hp")),
                                         file_system_poll_wait_seconds=0))
    client = Client(server.grpc_address)
    try:
        # 40 MB each way: beyond gRPC's 4 MB default, within TF Serving's INT_MAX.
        big = np.ones((10_000_000, 1), np.float32)
        channel = grpc.insecure_channel(server.grpc_address, options=[("grpc.max_receive_message_length", -1)])
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        client.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert value(client.predict("hp", big)).shape == (10_000_000, 1)
        channel.close()
    finally:
        client.close()
        server.stop()


def test_session_threads_from_flags(tmp_path: Path) -> None:
    from tensorflow.core.protobuf import config_pb2

    from lifecycle.server.app import session_config
    from lifecycle.server.config.flags import options_from_flags, parse_flags

    assert session_config(ServerOptions()) is None
    both = config_pb2.ConfigProto.FromString(session_config(options_from_flags(parse_flags(
        ["--tensorflow_session_parallelism=3"]))))
    assert (both.intra_op_parallelism_threads, both.inter_op_parallelism_threads) == (3, 3)
    path = tmp_path / "session.config"
    path.write_text("intra_op_parallelism_threads: 7\nallow_soft_placement: true\n")
    merged = config_pb2.ConfigProto.FromString(session_config(options_from_flags(parse_flags(
        [f"--tensorflow_session_config_file={path}", "--tensorflow_inter_op_parallelism=2"]))))
    assert (merged.intra_op_parallelism_threads, merged.inter_op_parallelism_threads, merged.allow_soft_placement) == (7, 2, True)
    jit = config_pb2.ConfigProto.FromString(session_config(options_from_flags(parse_flags(
        ["--xla_cpu_compilation_enabled", "--mixed_precision=bfloat16", "--per_process_gpu_memory_fraction=0.5"]))))
    assert jit.gpu_options.per_process_gpu_memory_fraction == 0.5
    assert jit.graph_options.optimizer_options.global_jit_level == config_pb2.OptimizerOptions.ON_1
    assert jit.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == 1  # ON
    add_version(tmp_path / "hp", 1)
    server = create_server(ServerOptions(model_config=server_config(model_config("hp", tmp_path / "hp")),
                                         file_system_poll_wait_seconds=0, tensorflow_intra_op_parallelism=1))
    client = Client(server.grpc_address)
    try:
        assert value(client.predict("hp", [[2.0]])).tolist() == [[2.0]]
    finally:
        client.close()
        server.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_with_ssl_config_file(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    config = tmp_path / "ssl.config"
    config.write_text(f"server_key: {json.dumps(key.read_text())}\nserver_cert: {json.dumps(cert.read_text())}\n")
    add_version(tmp_path / "hp", 1)
    server = create_server(ServerOptions(model_config=server_config(model_config("hp", tmp_path / "hp")),
                                         file_system_poll_wait_seconds=0, ssl_config_file=str(config)))
    try:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        secure = grpc.secure_channel(server.grpc_address, grpc.ssl_channel_credentials(cert.read_bytes()),
                                     options=[("grpc.ssl_target_name_override", "localhost")])
        client = Client(server.grpc_address)
        client.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(secure)
        assert value(client.predict("hp", [[2.0]])).tolist() == [[2.0]]
        plain = Client(server.grpc_address)  # a plaintext client cannot talk to a TLS server
        with pytest.raises(grpc.RpcError) as info:
            plain.predict_stub.Predict(plain_request(), timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        plain.close()
        secure.close()
        client.close()
    finally:
        server.stop()
    config.write_text("server_key: 'x'\n")
    with pytest.raises(StartupError, match="needs both server_key and server_cert"):
        create_server(ServerOptions(model_config=server_config(model_config("hp", tmp_path / "hp")),
                                    file_system_poll_wait_seconds=0, ssl_config_file=str(config)))


def plain_request() -> object:
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hp"
    return request
