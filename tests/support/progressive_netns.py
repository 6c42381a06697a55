"""Replicas for `mlc rollout` on separate hosts (network namespaces): each an mlc-model-server
started as `mlc serve` starts it (the home's admin token, configs/traffic.json, Prometheus
metrics), serving hpt version 1 with the registry's labels; mlc runs in a client namespace.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from lifecycle.operations.processes import admin_token_file
from lifecycle.serving import fleet, tfs_config, traffic
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support import netns
from tests.support.polling import wait_until
from tests.support.progressive_support import build
from tests.support.rollout_support import MODEL, golden, make_home

GRPC_PORT, REST_PORT = 8500, 8501
T = TypeVar("T")


@dataclass
class Lab:
    """A home, its replicas (short name -> address) in namespaces of ``lab``, and the client namespace."""

    lab: netns.NetLab
    paths: Paths
    env: dict[str, str]
    addresses: dict[str, str]
    client: str = "c"
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spec(self, r: str) -> fleet.ServerSpec:
        return fleet.ServerSpec(f"{self.addresses[r]}:{GRPC_PORT}", f"{self.addresses[r]}:{REST_PORT}")

    def inside(self, fn: Callable[[], T]) -> T:
        """``fn()`` run in the client namespace (its sockets live there); its result or its exception."""
        out: list[T] = []
        errors: list[BaseException] = []

        def call() -> None:
            try:
                out.append(fn())
            except BaseException as e:  # noqa: BLE001 - raised again below
                errors.append(e)

        t = self.lab.thread(self.client, call)
        t.start()
        t.join()
        if errors:
            raise errors[0]
        return out[0]

    def weights(self, replicas: tuple[str, ...] | None = None) -> list[float | None]:
        """Each replica's split weight for hpt over the admin path (None: no split)."""
        token = traffic.read_token(self.paths)

        def read() -> list[float | None]:
            got = [traffic.get_split(self.spec(r), MODEL, token, timeout=5) for r in replicas or tuple(self.addresses)]
            return [None if s is None else s.weight for s in got]

        return self.inside(read)

    def mlc(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.client, [sys.executable, "-m", "lifecycle", *args], env=self.env, timeout=timeout)


def start_lab(net: netns.NetLab, root: Path, subprocess_env: dict[str, str], replicas: tuple[str, ...],
              client: str = "c") -> Lab:
    """A home of hpt 1..3 (2 answers as 1 does) under ``root`` and ``replicas`` added to ``net``, reconciled."""
    paths = make_home(root / "home", build(root / "built"), [1, 2, 3], stable=1)
    with registry.transaction(paths) as reg:  # version 2 answers as version 1 does
        reg.model(MODEL).version(2).report["golden"]["digest"] = golden(1)
    startup = root / "startup.config"  # versions alone: labels come by a reload once AVAILABLE
    startup.write_text(tfs_config.render(tfs_config.build(paths, {MODEL: ModelServing((1,), {})})))
    monitoring = root / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    env = dict(subprocess_env, MLC_HOME=str(paths.home))
    addresses = {r: net.add_host(r) for r in replicas}
    if client not in net.hosts:
        net.add_host(client)
    f = Lab(net, paths, env, addresses, client)
    for r in replicas:
        f.servers[r] = net.popen(r, [
            sys.executable, "-m", "lifecycle.server.main", f"--port={GRPC_PORT}", f"--rest_api_port={REST_PORT}",
            f"--mlc_bind_address={addresses[r]}", f"--model_config_file={startup}", "--max_num_load_retries=0",
            f"--monitoring_config_file={monitoring}", f"--mlc_admin_token_file={admin_token_file(paths)}",
            f"--mlc_traffic_file={traffic.traffic_file(paths)}",
        ], env=env, stdout=(root / f"{r}.log").open("ab"), stderr=subprocess.STDOUT)
    fleet.write_servers_file(paths, [f.spec(r) for r in replicas])
    for r in replicas:
        wait_until(lambda r=r: answer(f, r, None) == 1, 180, f"replica {r} to serve version 1")  # type: ignore[misc]  # bound default
    result = f.mlc("reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    return f


def answer(f: Lab, r: str, label: str | None) -> int | None:
    """The version that answers a REST Predict at replica ``r`` (no version: the default route), or None."""
    def ask() -> int | None:
        conn = http.client.HTTPConnection(f.addresses[r], REST_PORT, timeout=5)
        try:
            where = f"/labels/{label}" if label else ""
            conn.request("POST", f"/v1/models/{MODEL}{where}:predict", body=json.dumps({"instances": [[1.0]]}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            return round(json.loads(body)["predictions"][0][0] - 0.5) if resp.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    return f.inside(ask)
