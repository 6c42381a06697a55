"""Helpers for the progressive rollout tests: homes of hpt versions, servers as `mlc serve` starts them, clients.

Versions of hpt compute 0.5 * x + offset: version 1 and version 2 both with offset 1 (a good
candidate: the same answers), version 3 with offset 3 (a candidate that answers differently).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.operations.processes import admin_token_file
from lifecycle.server import RunningServer, ServerOptions, create_server
from lifecycle.serving import fleet, tfs_config, traffic
from lifecycle.serving.client import ServingClient
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.rollout_support import MODEL, Load, golden, make_home, warmup_request, write_warmup

runner = CliRunner()
FAST = ["--min-requests", "5", "--max-p99-ratio", "1000"]  # in-process servers share one GIL: p99 is noise here


def build(root: Path) -> Path:
    """Versions 1 and 2 (offset 1) and 3 (offset 3) with warmup records under root."""
    from tests.support.savedmodels import build_half_plus_two_tf1

    for v, offset in ((1, 1.0), (2, 1.0), (3, 3.0)):
        build_half_plus_two_tf1(root / str(v), offset=offset)
        write_warmup(root / str(v))
    return root


def home(tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    paths = make_home(tmp_path, built, [1, 2, 3], stable=1)
    with registry.transaction(paths) as reg:  # version 2 answers as version 1 does
        reg.model(MODEL).version(2).report["golden"]["digest"] = golden(1)
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    return paths


def start_servers(paths: Paths, n: int = 1, monitoring: bool = True) -> list[RunningServer]:
    """``n`` servers as `mlc serve` starts them: admin token, traffic file, metrics; listed in configs/servers.yaml."""
    config = paths.home / "monitoring.config"
    config.write_text("prometheus_config { enable: true }\n")
    labelled = tfs_config.read(paths) or {}
    unlabelled = tfs_config.build(paths, {m: tfs_config.ModelServing(s.versions, {}) for m, s in labelled.items()})
    servers = []
    for _ in range(n):
        server = create_server(ServerOptions(
            grpc_port=0, rest_api_port=0, model_config=unlabelled, max_num_load_retries=0,
            monitoring_config_file=str(config) if monitoring else "", mlc_admin_token_file=str(admin_token_file(paths)),
            mlc_traffic_file=str(traffic.traffic_file(paths)),
        ))
        with ServingClient(server.grpc_address) as client:
            client.reload(tfs_config.build(paths, labelled))
        servers.append(server)
    fleet.write_servers_file(paths, [fleet.ServerSpec(s.grpc_address, f"127.0.0.1:{s.rest_port}") for s in servers])
    return servers


@dataclass
class DefaultRoute:
    """Clients on the default route (no version, no label) with the official stubs: who answered, what failed."""

    address: str
    threads: int = 2
    answers: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, n: int) -> None:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        request = warmup_request()
        with grpc.insecure_channel(self.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    response = stub.Predict(request, timeout=10, metadata=[("mlc-route-key", f"client{n}-{i}")])
                except grpc.RpcError as e:
                    self.failures.append(str(e.code()))
                    continue
                v = response.model_spec.version.value
                self.answers[v] = self.answers.get(v, 0) + 1

    def __enter__(self) -> DefaultRoute:
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)


def splits(paths: Paths, servers: list[RunningServer]) -> list[traffic.Split | None]:
    token = traffic.read_token(paths)
    return [traffic.get_split(fleet.ServerSpec(s.grpc_address, f"127.0.0.1:{s.rest_port}"), MODEL, token) for s in servers]


def loaded(server: RunningServer) -> dict[int, str]:
    with ServingClient(server.grpc_address) as c:
        return {v: s.state for v, s in c.model_status_grpc(MODEL).items() if s.state != "END"}


def rollout(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["rollout", MODEL, *args, "--json"])
    return result.exit_code, json.loads(result.output) if result.output.strip().startswith("{") else {"output": result.output}


def stable_clients(server: RunningServer) -> Load:
    return Load(server.grpc_address, threads=2, allowed={1, 2, 3}, request=warmup_request(), digests={1: golden(1), 2: golden(1), 3: golden(3)})


