"""Server-side batching in a real server merging real requests (the scheduler alone is in
tests/unit/test_batch_scheduler.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from lifecycle.errors import InvalidArgument
from tests.support.concurrency import concurrently

pytestmark = pytest.mark.e2e


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


def test_server_merges_concurrent_predicts(server: object) -> None:
    from tests.support.server_support import Client, value

    client = Client(server.grpc_address)
    try:
        responses = concurrently(6, lambda i: client.predict("rep", [[float(i)]]))
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


def test_platform_config_file_sets_session_batching_and_tags(tmp_path: Path) -> None:
    """--platform_config_file: the tensorflow platform's legacy_config replaces the flags, as in TF Serving."""
    from lifecycle.errors import StartupError
    from lifecycle.server import ServerOptions, create_server
    from lifecycle.server.config.platform_config import read_platform_config
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
