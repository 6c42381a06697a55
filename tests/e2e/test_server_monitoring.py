"""End-to-end: Prometheus metrics on the REST port (--monitoring_config_file)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from lifecycle.server import RunningServer, ServerOptions, create_server
from lifecycle.server.monitoring import DEFAULT_PATH
from tests.support.server_support import (
    Client,
    add_version,
    model_config,
    server_config,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("monitored")
    add_version(root / "hp", 3)
    config = root / "monitoring.config"
    config.write_text('prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n')
    running = create_server(ServerOptions(
        model_config=server_config(model_config("hp", root / "hp")), rest_api_port=0,
        file_system_poll_wait_seconds=0, monitoring_config_file=str(config),
    ))
    yield running
    running.stop()


def scrape(server: RunningServer) -> str:
    with urllib.request.urlopen(server.rest_url + DEFAULT_PATH, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def test_requests_loads_and_states_are_exported(server: RunningServer) -> None:
    client = Client(server.grpc_address)
    try:
        client.predict("hp", [[1.0]])
        client.predict("hp", [[1.0]], version=3)
        with pytest.raises(grpc.RpcError):
            client.predict("hp", [[1.0]], version=9)
    finally:
        client.close()
    request = urllib.request.Request(server.rest_url + "/v1/models/hp:predict", data=b'{"instances": [[1.0]]}')
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    text = scrape(server)
    for type_line in ("# TYPE :tensorflow:serving:request_count counter",
                      "# TYPE :tensorflow:serving:request_latency histogram",
                      "# TYPE :mlc:serving:request_count counter",
                      "# TYPE :tensorflow:cc:saved_model:load_latency counter",
                      "# TYPE :mlc:serving:model_load_latency histogram",
                      "# TYPE :mlc:serving:model_version_state gauge"):
        assert type_line in text
    assert ':tensorflow:serving:request_count{model_name="hp",status="OK"} 3' in text
    assert ':tensorflow:serving:request_count{model_name="hp",status="NOT_FOUND"} 1' in text
    assert (':mlc:serving:request_count{model_name="hp",model_version="3",API="Predict",entrypoint="GRPC",'
            'status="OK"} 2') in text
    assert ':mlc:serving:request_count{model_name="hp",model_version="3",API="Predict",entrypoint="REST",status="OK"} 1' in text
    assert ':mlc:serving:request_count{model_name="hp",model_version="",API="Predict",entrypoint="GRPC",status="NOT_FOUND"} 1' in text
    assert re.search(r':tensorflow:serving:request_latency_count\{model_name="hp",API="Predict",entrypoint="REST",status="OK"\} 1\n', text)
    assert re.search(r':tensorflow:serving:request_latency_bucket\{model_name="hp",API="Predict",entrypoint="GRPC",status="OK",le="\+Inf"\} 2\n', text)
    assert ':mlc:serving:model_version_state{model_name="hp",model_version="3",state="AVAILABLE"} 1' in text
    assert re.search(r':mlc:serving:model_load_latency_count\{model_name="hp",model_version="3"\} 1\n', text)
