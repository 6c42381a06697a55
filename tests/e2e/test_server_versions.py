"""End-to-end: version policies, states, labels, reloads, failed loads and warmup.

Each test runs its own server on 127.0.0.1 with fast polling; versions are half_plus_two TF1
exports answering y = 0.5 * x + version, so every answer names the version that gave it.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2

from lifecycle.errors import StartupError
from lifecycle.server import RunningServer, ServerOptions, create_server
from lifecycle.store.files import atomic_write_text
from tests.support.polling import wait_until
from tests.support.savedmodels import write_warmup_requests
from tests.support.server_support import (
    Client,
    add_version,
    model_config,
    server_config,
    value,
    wait_state,
)

pytestmark = pytest.mark.e2e


class Harness:
    """A server plus a client, stopped at teardown."""

    def __init__(self) -> None:
        self.servers: list[RunningServer] = []
        self.clients: list[Client] = []

    def start(self, **kwargs: object) -> tuple[RunningServer, Client]:
        kwargs.setdefault("file_system_poll_wait_seconds", 0.05)
        kwargs.setdefault("load_retry_interval_micros", 10_000)
        server = create_server(ServerOptions(**kwargs))
        client = Client(server.grpc_address)
        self.servers.append(server)
        self.clients.append(client)
        return server, client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.servers:
            server.stop(grace=0)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def answer(client: Client, name: str, **spec: object) -> tuple[int, float]:
    response = client.predict(name, [[0.0]], **spec)
    return response.model_spec.version.value, float(value(response)[0][0])


# --- policies and the file-system source ----------------------------------------------------


def test_latest_policy_serves_highest_and_ignores_non_integer_folders(tmp_path: Path, harness: Harness) -> None:
    base = tmp_path / "m"
    for v in (1, 2):
        add_version(base, v)
    (base / "tmp-export").mkdir()
    (base / ".staging-3").mkdir()
    server, client = harness.start(model_config=server_config(model_config("m", base)))
    assert client.status("m") == {2: ("AVAILABLE", 0, "")}
    assert answer(client, "m") == (2, 2.0)

    # A new version folder is picked up by polling; the old one unloads after it is AVAILABLE.
    add_version(base, 3)
    wait_state(client, "m", 3, "AVAILABLE")
    wait_state(client, "m", 2, "END")
    assert answer(client, "m") == (3, 3.0)
    states = client.status("m")
    assert list(states) == [3, 2]  # newest first
    assert states[2] == ("END", 0, "")


def test_all_and_specific_policies(tmp_path: Path, harness: Harness) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for v in (1, 2, 3):
        add_version(a, v)
        add_version(b, v)
    config = server_config(model_config("a", a, policy="all"), model_config("b", b, policy="specific", versions=[1, 3]))
    server, client = harness.start(model_config=config)
    assert {v: s[0] for v, s in client.status("a").items()} == {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}
    assert {v: s[0] for v, s in client.status("b").items()} == {3: "AVAILABLE", 1: "AVAILABLE"}
    assert answer(client, "b", version=1) == (1, 1.0)
    assert answer(client, "a") == (3, 3.0)  # unversioned -> highest AVAILABLE
    with pytest.raises(grpc.RpcError) as info:
        client.predict("b", version=2)
    assert info.value.details() == "Servable not found for request: Specific(b, 2)"


# --- failed loads ---------------------------------------------------------------------------


def test_failed_load_retries_then_ends_with_error_while_old_serves(
    tmp_path: Path, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "m"
    add_version(base, 1)
    server, client = harness.start(
        model_config=server_config(model_config("m", base)), max_num_load_retries=2, rest_api_port=0
    )
    broken = base / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    wait_state(client, "m", 2, "END")
    state, code, message = client.status("m")[2]
    assert code != 0 and message
    assert client.status("m")[1] == ("AVAILABLE", 0, "")
    assert answer(client, "m") == (1, 1.0)
    # mlc status reads the same over REST: END with the error's code name and message.
    with urllib.request.urlopen(f"{server.rest_url}/v1/models/m/versions/2", timeout=10) as response:
        rest_status = json.loads(response.read())["model_version_status"][0]
    assert rest_status["state"] == "END"
    assert rest_status["status"]["error_code"] not in ("OK", "") and rest_status["status"]["error_message"] == message
    attempts = [r for r in caplog.records if "{name: m version: 2} failed" in r.getMessage()]
    assert len(attempts) == 3  # the first try and max_num_load_retries=2 retries


def test_single_model_mode(tmp_path: Path, harness: Harness) -> None:
    add_version(tmp_path / "hp", 5)
    server, client = harness.start(model_name="half_plus_two", model_base_path=str(tmp_path / "hp"))
    assert answer(client, "half_plus_two") == (5, 5.0)


def test_startup_fails_when_the_port_is_taken(tmp_path: Path) -> None:
    add_version(tmp_path / "m", 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(StartupError, match="UNAVAILABLE"):
            create_server(ServerOptions(
                model_config=server_config(model_config("m", tmp_path / "m")),
                grpc_port=taken.getsockname()[1], file_system_poll_wait_seconds=0,
            ))


def test_startup_fails_when_every_version_fails(tmp_path: Path) -> None:
    base = tmp_path / "m" / "1"
    base.mkdir(parents=True)
    (base / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(StartupError) as info:
        create_server(ServerOptions(
            model_config=server_config(model_config("m", base.parent)),
            max_num_load_retries=0, file_system_poll_wait_seconds=0,
        ))
    assert "1 model(s) did not become available" in info.value.message
    assert info.value.message.startswith("UNKNOWN: ")


# --- labels and reloads ---------------------------------------------------------------------


def test_labels_follow_tf_serving_rules(tmp_path: Path, harness: Harness) -> None:
    base = tmp_path / "m"
    for v in (1, 2):
        add_version(base, v)
    # At startup no version is AVAILABLE yet, so any label is refused without the flag.
    with pytest.raises(StartupError) as info:
        create_server(ServerOptions(
            model_config=server_config(model_config("m", base, policy="specific", versions=[1], labels={"stable": 1})),
            file_system_poll_wait_seconds=0,
        ))
    assert info.value.message == (
        "FAILED_PRECONDITION: Request to assign label to version 1 of model m, which is not "
        "currently available for inference"
    )

    server, client = harness.start(model_config=server_config(model_config("m", base, policy="specific", versions=[1])))
    client.reload(server_config(model_config("m", base, policy="specific", versions=[1], labels={"stable": 1})))
    assert answer(client, "m", label="stable") == (1, 1.0)

    # Loading version 2 and labelling it in the same reload is refused whole ...
    refused = server_config(model_config("m", base, policy="specific", versions=[1, 2], labels={"stable": 1, "canary": 2}))
    with pytest.raises(grpc.RpcError) as info:
        client.reload(refused)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == (
        "Request to assign label to version 2 of model m, which is not currently available for inference"
    )
    # ... so version 2 was not even loaded and the old config keeps serving, even after two
    # more polls of the file system (the first may have begun before the refusal).
    polls = server.core.manager.polls
    assert server.core.manager.wait_for(lambda: server.core.manager.polls >= polls + 2, timeout=10)
    assert 2 not in client.status("m")
    assert answer(client, "m", label="stable") == (1, 1.0)

    # The two-step protocol works: load first, then label.
    client.reload(server_config(model_config("m", base, policy="specific", versions=[1, 2], labels={"stable": 1})))
    wait_state(client, "m", 2, "AVAILABLE")
    client.reload(server_config(model_config("m", base, policy="specific", versions=[1, 2], labels={"stable": 1, "canary": 2})))
    assert answer(client, "m", label="canary") == (2, 2.0)
    assert answer(client, "m") == (2, 2.0)  # unversioned goes to the highest AVAILABLE


def test_allow_flag_permits_new_labels_on_unavailable_versions_only(tmp_path: Path, harness: Harness) -> None:
    base = tmp_path / "m"
    for v in (1, 2):
        add_version(base, v)
    config = server_config(model_config("m", base, policy="specific", versions=[1], labels={"stable": 1}))
    server, client = harness.start(model_config=config, allow_version_labels_for_unavailable_models=True)
    assert answer(client, "m", label="stable") == (1, 1.0)
    # A new label may point at a version that is not loaded yet ...
    client.reload(server_config(model_config("m", base, policy="specific", versions=[1, 2], labels={"stable": 1, "canary": 2})))
    # ... but moving an existing label onto an unavailable version is still refused.
    add_version(base, 3)
    with pytest.raises(grpc.RpcError) as info:
        client.reload(server_config(model_config("m", base, policy="specific", versions=[1, 2, 3], labels={"stable": 3})))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_reload_replaces_whole_config_and_waits_for_new_models(tmp_path: Path, harness: Harness) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    add_version(a, 1)
    add_version(b, 4)
    server, client = harness.start(model_config=server_config(model_config("a", a)))
    client.reload(server_config(model_config("b", b)))
    # Returns once the new model is AVAILABLE; the absent model is unloaded.
    assert client.status("b") == {4: ("AVAILABLE", 0, "")}
    wait_state(client, "a", 1, "END")
    with pytest.raises(grpc.RpcError) as info:
        client.predict("a")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    # A bad reload (duplicate names) is refused and the old config keeps serving.
    with pytest.raises(grpc.RpcError) as info:
        client.reload(server_config(model_config("b", b), model_config("b", b)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "Illegal to list model b multiple times in config list"
    assert answer(client, "b") == (4, 4.0)

    # Only a ModelConfigList can be reloaded.
    custom = server_config()
    custom.custom_model_config.Pack(custom.model_config_list)
    with pytest.raises(grpc.RpcError) as info:
        client.reload(custom)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("ServerModelConfig type not supported by HandleReloadConfigRequest.")


def test_config_file_is_polled_and_watched(tmp_path: Path, harness: Harness) -> None:
    base = tmp_path / "m"
    for v in (1, 2):
        add_version(base, v)
    config_file = tmp_path / "models.config"
    atomic_write_text(config_file, text_format.MessageToString(
        server_config(model_config("m", base, policy="specific", versions=[1]))))
    # A long poll interval: the change below can only be seen this fast through watchdog.
    server, client = harness.start(model_config_file=str(config_file), model_config_file_poll_wait_seconds=30)
    assert answer(client, "m") == (1, 1.0)
    # No busy loop: while the server's file-system poller (every 0.05 s) runs five times, the
    # config file (30 s interval, nothing changed) is not read at all.
    manager, watcher = server.core.manager, server.config_watcher
    assert watcher is not None
    start = manager.polls
    assert manager.wait_for(lambda: manager.polls >= start + 5, timeout=10)
    assert watcher.polls == 0
    atomic_write_text(config_file, text_format.MessageToString(
        server_config(model_config("m", base, policy="specific", versions=[2]))))
    wait_state(client, "m", 2, "AVAILABLE", timeout=10)
    wait_state(client, "m", 1, "END", timeout=10)

    # A malformed file keeps the old config serving.
    polls = watcher.polls
    atomic_write_text(config_file, "model_config_list { config { nme: 'x' } }")
    wait_until(lambda: watcher.polls > polls and watcher.last_error is not None, timeout=10)
    assert "Invalid protobuf file" in watcher.last_error.message
    assert answer(client, "m") == (2, 2.0)


# --- warmup ---------------------------------------------------------------------------------


def test_warmup_runs_before_available_and_bad_file_fails_the_load(tmp_path: Path, harness: Harness) -> None:
    base = tmp_path / "m"
    add_version(base, 1, write_warmup_requests)
    server, client = harness.start(model_config=server_config(model_config("m", base)), max_num_load_retries=0)
    assert client.status("m") == {1: ("AVAILABLE", 0, "")}

    add_version(base, 2, lambda d: write_warmup_requests(d, raw=b"\x00not a tfrecord file at all\xff" * 4))
    wait_state(client, "m", 2, "END")
    _, code, message = client.status("m")[2]
    assert code != 0 and message

    request = predict_pb2.PredictRequest()
    request.inputs["not_an_input"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    add_version(base, 3, lambda d: write_warmup_requests(d, requests=[request]))
    wait_state(client, "m", 3, "END")
    assert client.status("m")[3][1:] == (3, "input tensor alias not found in signature: not_an_input. Inputs expected to be in the set {x}.")

    good = predict_pb2.PredictRequest()
    good.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    add_version(base, 4, lambda d: write_warmup_requests(d, requests=[good] * 1001))
    wait_state(client, "m", 4, "END")
    assert "Number of warmup records exceeds the maximum (1000)" in client.status("m")[4][2]
    assert answer(client, "m") == (1, 1.0)  # version 1 served throughout


# --- the no-failure transition test ---------------------------------------------------------


def test_no_failed_requests_during_label_moves_and_version_swaps(tmp_path: Path, harness: Harness) -> None:
    """Clients keep sending while versions are added and removed and labels move.

    A request counts as failed only if its version stayed wanted for the whole request;
    label-addressed and unversioned requests must always succeed.
    """
    base = tmp_path / "m"
    add_version(base, 1)
    server, client = harness.start(model_config=server_config(model_config("m", base, policy="specific", versions=[1])))
    client.reload(server_config(model_config("m", base, policy="specific", versions=[1], labels={"stable": 1})))

    lock = threading.Lock()
    wanted: set[int] = {1}  # versions AVAILABLE and not about to be dropped
    stop = threading.Event()
    results: list[tuple[str, object, bool, str]] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        c = Client(server.grpc_address)
        try:
            while not stop.is_set():
                mode = ("label", "version", "latest")[int(rng.integers(3))]
                with lock:
                    version = int(rng.choice(sorted(wanted)))
                spec = {"label": "stable"} if mode == "label" else {"version": version} if mode == "version" else {}
                try:
                    got_version, y = answer(c, "m", **spec)
                    ok = abs(y - got_version) < 1e-6 and (mode != "version" or got_version == version)
                    results.append((mode, version, ok, ""))
                except grpc.RpcError as e:
                    with lock:
                        still_wanted = version in wanted
                    # A version-addressed failure only counts if the version is still wanted.
                    counted = mode != "version" or still_wanted
                    results.append((mode, version, not counted, f"{e.code()}: {e.details()}"))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        stable = 1
        for new in (2, 3, 4):
            add_version(base, new)
            # 1. load the candidate beside stable, labels only on AVAILABLE versions
            client.reload(server_config(model_config("m", base, policy="specific", versions=[stable, new], labels={"stable": stable})))
            wait_state(client, "m", new, "AVAILABLE")
            with lock:
                wanted.add(new)
            # 2. move the label
            client.reload(server_config(model_config("m", base, policy="specific", versions=[stable, new], labels={"stable": new})))
            # 3. drop the old version
            with lock:
                wanted.discard(stable)
            client.reload(server_config(model_config("m", base, policy="specific", versions=[new], labels={"stable": new})))
            wait_state(client, "m", stable, "END")
            stable = new
        # Requests keep going after the last step: every thread answers a few more times.
        after_last_step = len(results)
        wait_until(lambda: len(results) >= after_last_step + 40, timeout=30, what="40 answers after the last step")
    finally:
        stop.set()
        for t in threads:
            t.join()

    failures = [r for r in results if not r[2]]
    assert len(results) > 100, len(results)
    assert failures == []
    assert answer(client, "m", label="stable") == (4, 4.0)
