"""configs/servers.yaml: addresses anywhere, REST URLs, TLS, dns entries; the desired-state document."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from lifecycle.errors import ConfigError, ServerUnavailable
from lifecycle.serving import desired, fleet
from lifecycle.serving.client import tcp_ready
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.serving.tls import Tls
from tests.support.homes import new_home


def parse(tmp_path: Path, text: str) -> list[fleet.ServerSpec]:
    source = tmp_path / "servers.yaml"
    return fleet.parse_servers(yaml.safe_load(text), source)


def test_addresses_rest_urls_and_tls(tmp_path: Path) -> None:
    specs = parse(tmp_path, """
tls: {ca: certs/ca.pem, cert: certs/mlc.pem, key: certs/mlc.key, server_name: hpt.serving}
servers:
  - {grpc: 10.1.2.3:8500, rest: "https://10.1.2.3:8501/"}
  - {grpc: "[fd00::7]:8500", rest: 10.1.2.4:8501, tls: {ca: other.pem}}
""")
    assert specs[0].grpc == "10.1.2.3:8500" and specs[0].rest == "https://10.1.2.3:8501"
    assert specs[0].tls == Tls(str(tmp_path / "certs/ca.pem"), str(tmp_path / "certs/mlc.pem"),
                               str(tmp_path / "certs/mlc.key"), "hpt.serving")
    assert specs[1].tls == Tls(str(tmp_path / "other.pem"))
    assert not fleet.is_local(specs[0])


@pytest.mark.parametrize(
    "text, message",
    [
        ("servers: [{grpc: 'a:1', rest: 'ftp://a:2'}]", "http:// or https://"),
        ("servers: [{grpc: 'a:99999'}]", "expected host:port"),
        ("tls: {cert: c.pem}\nservers: [{grpc: 'a:1'}]", "at least ca"),
        ("tls: {ca: ca.pem, cert: c.pem}\nservers: [{grpc: 'a:1'}]", "both cert and key"),
        ("servers: [{dns: 'x:1', grpc: 'a:1'}]", "expected {grpc"),
        ("servers: [{dns: 'localhost:1', rest_port: 'x'}]", "expected a port number"),
        ("servers: [{dns: 'localhost:1', rest_scheme: 'ftp'}]", "http or https"),
        ("servers: [{grpc: '127.0.0.1:1'}, {dns: 'localhost:1'}]", "listed twice"),
        ("replica_timeout: 0\nservers: [{grpc: 'a:1'}]", "replica_timeout: expected a positive number of seconds"),
        ("servers: [{grpc: 'a:1', replica_timeout: 'x'}]", "replica_timeout: expected a positive number"),
    ],
)
def test_bad_entries_are_config_errors_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="servers.yaml") as e:
        parse(tmp_path, text)
    assert message in e.value.message


def test_replica_timeouts_default_per_file_per_entry_and_flag(tmp_path: Path) -> None:
    specs = parse(tmp_path, "servers: [{grpc: 'a:1'}]")
    assert specs[0].replica_timeout == fleet.DEFAULT_REPLICA_TIMEOUT_S
    specs = parse(tmp_path, "replica_timeout: 30\nservers: [{grpc: 'a:1'}, {grpc: 'b:1', replica_timeout: 300}]")
    assert [s.replica_timeout for s in specs] == [30.0, 300.0]
    paths = new_home(tmp_path / "home")
    (paths.configs / "servers.yaml").write_text("replica_timeout: 30\nservers: [{grpc: 'a:1'}, {grpc: 'b:1', replica_timeout: 300}]\n")
    assert [s.replica_timeout for s in fleet.load(paths, replica_timeout=5).servers] == [5.0, 5.0]


def test_a_server_named_by_hand_gets_the_tls_of_servers_yaml(tmp_path: Path) -> None:
    paths = new_home(tmp_path / "home")
    (paths.configs / "servers.yaml").write_text(
        "tls: {ca: ca.pem}\nservers: [{grpc: 'a:1', rest: 'http://a:2', tls: {ca: own.pem}}]\n"
    )
    assert fleet.named(paths, "a:1").tls == Tls(str(paths.configs / "own.pem"))  # listed: its own entry
    assert fleet.named(paths, "a:2", rest=True).grpc == "a:1"
    other = fleet.named(paths, "b:1")
    assert other.grpc == "b:1" and other.tls == Tls(str(paths.configs / "ca.pem"))  # not listed: the file's TLS
    (paths.configs / "servers.yaml").unlink()
    assert fleet.named(paths, "b:1").tls is None


def test_dns_entry_is_every_address_the_name_resolves_to(tmp_path: Path) -> None:
    specs = parse(tmp_path, "servers: [{dns: 'localhost:8500', rest_port: 8501}]")
    assert specs and all(s.found_by == "dns localhost:8500" for s in specs)
    assert "127.0.0.1:8500" in [s.grpc for s in specs]
    assert "http://127.0.0.1:8501" in [s.rest for s in specs]
    assert not any(fleet.is_local(s) for s in specs)  # mlc serve does not start discovered replicas


def test_a_name_that_does_not_resolve_is_named(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match="cannot resolve no-such-host.invalid"):
        parse(tmp_path, "servers: [{dns: 'no-such-host.invalid:8500'}]")


def test_a_temporary_resolver_failure_is_asked_again_and_a_lasting_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EAI_AGAIN (the resolver gave no answer in time) is retried; the third in a row is the error."""
    real, calls = socket.getaddrinfo, []

    def flaky(host: str, *args: object, **kwargs: object) -> object:
        calls.append(host)
        if len(calls) <= failures:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(fleet, "RESOLVE_RETRIES_S", (0.0, 0.0))
    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    failures = 2
    assert "127.0.0.1:8500" in [s.grpc for s in parse(tmp_path, "servers: [{dns: 'localhost:8500'}]")]
    assert len(calls) == 3
    calls.clear()
    failures = 3
    with pytest.raises(ServerUnavailable, match="cannot resolve localhost .*Temporary failure"):
        parse(tmp_path, "servers: [{dns: 'localhost:8500'}]")
    assert len(calls) == 3


def test_tcp_ready_takes_urls() -> None:
    assert not tcp_ready("http://127.0.0.1:1")


def test_desired_state_generations(tmp_path: Path) -> None:
    paths = new_home(tmp_path)
    assert desired.load(paths).generation == 0
    one = {"m": ModelServing((1,), {"stable": 1})}
    two = {"m": ModelServing((2,), {"stable": 2})}
    assert desired.record(paths, one) == 1
    assert desired.record(paths, one) == 1  # unchanged: no new generation
    assert desired.record(paths, two) == 2
    state = desired.load(paths)
    assert state.models == two
    assert state.generation_of("m", ModelServing((2,), {"stable": 2})) == 2
    assert state.generation_of("m", ModelServing((1,), {"stable": 1})) == 1
    assert state.generation_of("m", ModelServing((1, 2), {"stable": 1})) is None
    assert state.generation_of("other", None) == 2


def test_damaged_desired_state_is_a_config_error(tmp_path: Path) -> None:
    paths = new_home(tmp_path)
    paths.store.write(desired.KEY, b"{not json", None)
    with pytest.raises(ConfigError, match="malformed desired serving state"):
        desired.load(paths)
