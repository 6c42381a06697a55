"""End-to-end: the REST layer under malformed input answers 4xx JSON errors, never 5xx or a hang.

Hypothesis sends malformed JSON, wrong shapes and dtypes, huge numbers and nestings, bad
base64, unknown fields, methods and paths to one server; afterwards the server still answers.
Deterministic tests cover the request-size bound, chunked bodies and the REST timeout.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.server import RunningServer, ServerOptions, create_server
from tests.support.polling import wait_until
from tests.support.savedmodels import (
    build_half_plus_two_examples,
    build_spinner,
    build_string_model,
)
from tests.support.server_support import add_version, model_config, server_config

pytestmark = pytest.mark.e2e

MAX_REQUEST_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("robust_models")
    add_version(root / "hp", 1)
    build_string_model(root / "text" / "1")
    build_half_plus_two_examples(root / "hpt" / "1")
    build_spinner(root / "spin" / "1")
    config = server_config(*(model_config(name, root / name) for name in ("hp", "text", "hpt", "spin")))
    running = create_server(ServerOptions(
        model_config=config, grpc_port=None, rest_api_port=0, file_system_poll_wait_seconds=0,
        rest_api_timeout_in_ms=1500, max_request_bytes=MAX_REQUEST_BYTES, rest_api_enable_cors_support=True,
    ))
    yield running
    running.stop()


def request(server: RunningServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, answer_headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(server.host, server.rest_port, timeout=20)
    try:
        connection.request(method, path, body=body, headers=headers or {},
                           encode_chunked="Transfer-Encoding" in (headers or {}))
        response = connection.getresponse()
        if answer_headers is not None:
            answer_headers.update(response.getheaders())
        return response.status, response.read()
    finally:
        connection.close()


def assert_json_error(status: int, body: bytes) -> None:
    assert 400 <= status < 500, (status, body[:300])
    assert set(json.loads(body)) == {"error"}


# --- strategies ---------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.fixed_dictionaries({"b64": st.text(max_size=12)}),
)
keys = st.sampled_from(["instances", "inputs", "signature_name", "examples", "context", "x", "text", "b64", "n", "bogus"])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=20)


@st.composite
def nested_numbers(draw: Any) -> Any:
    shape = draw(st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=4))
    leaf = draw(st.sampled_from([0.5, 7, -(2**40), True, "s", {"b64": "AA=="}, None, 1e300]))

    def build(dims: list[int]) -> Any:
        return leaf if not dims else [build(dims[1:]) for _ in range(dims[0])]

    value = build(shape)
    if draw(st.booleans()) and isinstance(value, list) and value:
        value.append(draw(json_values))  # ragged or mixed
    return value


bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda k, v, sig: json.dumps({k: v, **({"signature_name": sig} if sig is not None else {})}).encode(),
              st.sampled_from(["instances", "inputs", "examples"]), nested_numbers() | json_values,
              st.none() | st.sampled_from(["", "serving_default", "nope", "regress_x_to_y", "classify_labels"])),
    st.builds(lambda k, name, v: json.dumps({k: [{name: v}]}).encode(),
              st.sampled_from(["instances", "examples"]), keys, nested_numbers()),
    st.integers(min_value=1, max_value=3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(min_value=1, max_value=3000).map(lambda d: b'{"instances": ' + b"[" * d + b"1" + b"]" * d + b"}"),
)
segments = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
paths = st.one_of(
    st.builds(lambda m, tail: f"/v1/models/{m}{tail}", st.sampled_from(["hp", "text", "hpt", "spin", "nope"]) | segments,
              st.sampled_from(["", ":predict", ":classify", ":regress", ":explode", "/metadata", "/versions/1",
                               "/versions/99999999999999999999:predict", "/versions/-1", "/labels/x:predict",
                               "/versions/1/metadata", "//", ":predict/extra"])),
    st.builds(lambda s: "/" + s, segments),
    st.builds(lambda s: "/v1/" + s, segments),
)
methods = st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(method=methods, path=paths, body=bodies)
def test_fuzz_rest_answers_only_json_4xx(server: RunningServer, method: str, path: str, body: bytes) -> None:
    quoted = urllib.parse.quote(path, safe="/:")
    status, answer = request(server, method, quoted, body if method != "GET" else None)
    if status == 200:
        if method != "OPTIONS":  # a CORS preflight has no body
            json.loads(answer)
        return
    assert_json_error(status, answer)


def test_server_still_serves_after_fuzzing(server: RunningServer) -> None:
    status, body = request(server, "POST", "/v1/models/hp:predict", b'{"instances": [[1.0]]}')
    assert (status, body) == (200, b'{\n    "predictions": [[1.5]\n    ]\n}')
    # TF Serving's documented example, byte for byte (this half_plus_two adds 1, not 2).
    status, body = request(server, "POST", "/v1/models/hp:predict", b'{"instances": [1.0, 2.0, 5.0]}')
    assert (status, body) == (200, b'{\n    "predictions": [1.5, 2.0, 3.5\n    ]\n}')


def test_request_size_bound(server: RunningServer) -> None:
    big = b'{"instances": [' + b"1.0," * MAX_REQUEST_BYTES + b"1.0]}"
    status, body = request(server, "POST", "/v1/models/hp:predict", big)
    assert status == 413
    assert json.loads(body)["error"].startswith(f"Request body of {len(big)} bytes exceeds the limit of {MAX_REQUEST_BYTES} bytes")


def test_chunked_body_is_read(server: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"instances": '
        yield b"[[3.0]]}"

    status, body = request(server, "POST", "/v1/models/hp:predict", chunks(), {"Transfer-Encoding": "chunked"})
    assert (status, body) == (200, b'{\n    "predictions": [[2.5]\n    ]\n}')


def test_other_methods_and_paths(server: RunningServer) -> None:
    status, body = request(server, "PUT", "/v1/models/hp:predict", b"{}")
    assert (status, json.loads(body)) == (400, {"error": "Malformed request: PUT /v1/models/hp:predict"})
    status, body = request(server, "DELETE", "/v1/models/hp")
    assert (status, json.loads(body)) == (400, {"error": "Malformed request: DELETE /v1/models/hp"})
    status, body = request(server, "GET", "/nothing")
    assert_json_error(status, body)


def test_oversized_headers_are_a_431(server: RunningServer) -> None:
    status, body = request(server, "GET", "/v1/models/hp", headers={"X-Big": "x" * 70_000})
    assert (status, json.loads(body)) == (431, {"error": "Request line and headers exceed 65536 bytes"})
    assert request(server, "GET", "/v1/models/hp")[0] == 200  # the server goes on


def test_rest_timeout_is_a_504(server: RunningServer) -> None:
    status, body = request(server, "POST", "/v1/models/spin:predict", b'{"instances": [100000000000]}')
    assert status == 504, body
    assert json.loads(body)["error"]
    status, body = request(server, "POST", "/v1/models/spin:predict", b'{"instances": [10]}')
    assert (status, body) == (200, b'{\n    "predictions": [10\n    ]\n}')


def test_cors_headers_and_preflight(server: RunningServer) -> None:
    headers: dict[str, str] = {}
    status, _ = request(server, "OPTIONS", "/v1/models/hp:predict", answer_headers=headers)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "POST, GET"
    headers.clear()
    status, _ = request(server, "GET", "/v1/models/hp", answer_headers=headers)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"


STALLED = 400  # quick in the suite; bench/bench_rest_flood.py measures 3,000


def test_stalled_connections_hold_no_worker_and_are_dropped(tmp_path: Path) -> None:
    """Slow clients (half a request, then nothing) do not starve a well-behaved client.

    As TF Serving's event-loop REST server: the kernel queues connections (backlog at the
    system maximum), a fixed pool of --rest_api_num_threads workers answers whole requests,
    and a client that has not sent a whole request within --rest_api_timeout_in_ms is dropped.
    """
    add_version(tmp_path / "hp", 1)
    running = create_server(ServerOptions(
        model_config=server_config(model_config("hp", tmp_path / "hp")), grpc_port=None, rest_api_port=0,
        file_system_poll_wait_seconds=0, rest_api_timeout_in_ms=5000, rest_api_num_threads=4,
    ))
    stalled: list[socket.socket] = []
    try:
        rest = running.rest
        assert rest.backlog == int(Path("/proc/sys/net/core/somaxconn").read_text())
        threads_before = threading.active_count()
        body = b'{"instances": [[1.0]]}'
        for i in range(STALLED):
            s = socket.create_connection((running.host, running.rest_port), timeout=10)
            if i % 2:  # headers only, half of them
                s.sendall(b"POST /v1/models/hp:predict HTTP/1.1\r\nHost: x\r\nContent-Le")
            else:  # whole headers, half the body
                s.sendall(b"POST /v1/models/hp:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                          % (len(body), body[:5]))
            stalled.append(s)
        wait_until(lambda: rest.open_connections >= STALLED, timeout=30)
        for _ in range(20):
            status, answer = request(running, "POST", "/v1/models/hp:predict", body)
            assert (status, json.loads(answer)) == (200, {"predictions": [[1.5]]})
        assert rest.open_connections >= STALLED and rest.dropped == 0  # they were all still there
        assert threading.active_count() - threads_before <= 4  # workers only, none per connection
        # Each stalled client is dropped once its 5 s are up: the server closes the connection.
        wait_until(lambda: rest.dropped >= STALLED, timeout=60)
        for s in stalled:
            s.settimeout(10)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in stalled:
            s.close()
        running.stop()
