"""Mutual TLS to a replica: configs/servers.yaml's tls section, against mlc-model-server's SSLConfig.

Every command that talks to a configured server builds its channel through the same piece
(``ServingClient.of``): a rollout, and ``mlc predict`` with or without ``--server``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle import rollout
from lifecycle.cli import app
from lifecycle.errors import ServerUnavailable
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import ServingClient
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.serving.tls import Tls
from lifecycle.store import registry
from tests.support.deeplab_runs import ServedDeeplab
from tests.support.rollout_support import MODEL, build_versions, make_home

runner = CliRunner()
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(folder: Path) -> None:
    """A CA, a server certificate for hpt.serving and a client certificate, all signed by the CA."""
    folder.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / "ca.key"), "-out",
             str(folder / "ca.pem"), "-days", "1", "-subj", "/CN=mlc test CA")
    for name, cn in (("server", "hpt.serving"), ("mlc", "mlc")):
        ext = folder / f"{name}.ext"
        ext.write_text(f"subjectAltName=DNS:{cn}\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / f"{name}.key"), "-out",
                 str(folder / f"{name}.csr"), "-subj", f"/CN={cn}")
        _openssl("x509", "-req", "-in", str(folder / f"{name}.csr"), "-CA", str(folder / "ca.pem"), "-CAkey",
                 str(folder / "ca.key"), "-CAcreateserial", "-out", str(folder / f"{name}.pem"), "-days", "1",
                 "-extfile", str(ext))


def ssl_config(certs: Path, file: Path) -> str:
    """An SSLConfig (text) for mlc-model-server: its certificate, and client certificates required."""
    file.write_text(
        f"server_key: {json.dumps((certs / 'server.key').read_text())}\n"
        f"server_cert: {json.dumps((certs / 'server.pem').read_text())}\n"
        f"custom_ca: {json.dumps((certs / 'ca.pem').read_text())}\nclient_verify: true\n"
    )
    return str(file)


TLS_SECTION = "tls: {ca: certs/ca.pem, cert: certs/mlc.pem, key: certs/mlc.key, server_name: hpt.serving}\n"


def test_promote_over_mutual_tls(tmp_path: Path) -> None:
    from lifecycle.server import ServerOptions, create_server

    built = build_versions(tmp_path / "built", [1, 2])
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    certs = paths.configs / "certs"
    make_pki(certs)
    unlabelled = tfs_config.build(paths, {MODEL: ModelServing((1,), {})})
    server = create_server(ServerOptions(grpc_port=0, rest_api_port=0, model_config=unlabelled,
                                         file_system_poll_wait_seconds=0,
                                         ssl_config_file=ssl_config(certs, tmp_path / "ssl.config")))
    try:
        (paths.configs / "servers.yaml").write_text(
            TLS_SECTION + f"servers:\n  - {{grpc: '{server.grpc_address}', rest: 'http://127.0.0.1:{server.rest_port}'}}\n"
        )
        spec = fleet.load(paths).servers[0]
        assert spec.tls is not None
        # Without the client certificate the server refuses the handshake.
        anonymous = Tls(ca=spec.tls.ca, server_name="hpt.serving")
        with ServingClient(spec.grpc, None, timeout=3, tls=anonymous) as client, pytest.raises(ServerUnavailable):
            client.model_status_grpc(MODEL)
        with ServingClient(spec.grpc, None, timeout=10, tls=spec.tls) as client:
            client.reload(tfs_config.build(paths, tfs_config.served_from_registry(registry.load(paths))))
        result = rollout.promote(paths, MODEL, 2, timeout=60)
        assert result.result == "ok"
        with ServingClient(spec.grpc, None, timeout=10, tls=spec.tls) as client:
            states = client.model_status_grpc(MODEL)
        assert states[2].state == "AVAILABLE" and (1 not in states or states[1].state == "END")
    finally:
        server.stop()


def test_predict_uses_the_tls_of_servers_yaml(tmp_path: Path, served_deeplab: ServedDeeplab) -> None:
    """``mlc predict`` reaches a server that requires client certificates: listed, named by --server, or not listed."""
    from lifecycle.server import ServerOptions, create_server
    from tests.support.server_support import model_config, server_config

    home = tmp_path / "home"
    shutil.copytree(served_deeplab.paths.configs, home / "configs",
                    ignore=shutil.ignore_patterns("servers.yaml", "models.config"))
    certs = home / "configs" / "certs"
    make_pki(certs)
    base = served_deeplab.paths.model_dir("deeplab")
    server = create_server(ServerOptions(
        grpc_port=0, rest_api_port=0, model_config=server_config(model_config("deeplab", base, "specific", [2])),
        file_system_poll_wait_seconds=0, ssl_config_file=ssl_config(certs, tmp_path / "ssl.config"),
    ))
    photo = home / "configs" / "test_image.png"
    try:
        (home / "configs" / "servers.yaml").write_text(
            TLS_SECTION + f"servers:\n  - {{grpc: '{server.grpc_address}', rest: '127.0.0.1:{server.rest_port}'}}\n"
        )
        port = server.grpc_address.rpartition(":")[2]
        for extra in ([], ["--server", server.grpc_address], ["--server", f"localhost:{port}"]):
            result = runner.invoke(app, ["predict", "deeplab", str(photo), "--version", "2", "--out", str(tmp_path / "out"),
                                         "--json", *extra], env={"MLC_HOME": str(home)})
            assert result.exit_code == 0, (extra, result.output)
            assert json.loads(result.stdout)["images"][0]["version"] == 2
        # The same server without the tls section: a plaintext channel is refused by the TLS server.
        (home / "configs" / "servers.yaml").write_text(f"servers:\n  - {{grpc: '{server.grpc_address}'}}\n")
        result = runner.invoke(app, ["predict", "deeplab", str(photo), "--version", "2", "--out", str(tmp_path / "out"),
                                     "--timeout", "5"], env={"MLC_HOME": str(home)})
        assert result.exit_code == 1 and "did not answer" in result.stderr, result.output
    finally:
        server.stop()
