"""The servers mlc drives: configs/servers.yaml, else the records of ``mlc serve``.

Which servers: ``configs/servers.yaml`` when it exists (written by people, one entry per
replica), else the servers ``mlc serve`` started, as recorded under ``.mlc/servers/``::

    # configs/servers.yaml
    reload: request        # request: HandleReloadConfigRequest (default)
                           # poll: write the file and wait for the servers' own file poll
    poll_seconds: 1        # --model_config_file_poll_wait_seconds that `mlc serve` passes in poll mode
    replica_timeout: 60    # seconds each replica has to load a version (an entry may set its own)
    tls:                   # optional: gRPC over TLS to every server (paths relative to configs/)
      ca: certs/ca.pem       # the CA that signs the servers' certificates
      cert: certs/mlc.pem    # a client certificate and key, for mutual TLS
      key: certs/mlc.key
      server_name: hpt.serving   # optional: the name the servers' certificates carry
    servers:
      - grpc: 127.0.0.1:8500
        rest: 127.0.0.1:8501               # or a URL: http://10.0.0.7:8501
      - grpc: 10.0.0.8:8500
        rest: http://10.0.0.8:8501
        replica_timeout: 300               # a slower host
      - dns: hpt-replicas.serving.svc.cluster.local:8500   # every address the name resolves to
        rest_port: 8501                                     # (a Kubernetes headless Service)

A ``dns`` entry is resolved through the system resolver (``socket.getaddrinfo``: resolv.conf,
search domains, nsswitch, exactly what any program in the same pod or host sees), again by
every command, so replicas that came or went since the last command are driven as they are now.
A temporary failure of the resolver (no answer in time) is asked again twice before it counts.

Every server reads the same ``configs/models.config``. ``mlc serve`` starts every listed
server on this machine (or one on the default ports without a servers file) and writes one
record per process, ``.mlc/servers/<grpc port>.json``, which ``mlc stop`` uses; starting,
supervising and stopping those processes is :mod:`lifecycle.operations.processes`.

This module must not import TensorFlow or grpc: ``status`` goes through it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError, ServerUnavailable
from lifecycle.serving.tls import Tls
from lifecycle.store.config import Paths, load_yaml_file
from lifecycle.store.files import atomic_write_text
from lifecycle.store.registry import now_iso


class ReloadMode(StrEnum):
    """How servers learn of a new configs/models.config."""

    request = "request"  # mlc sends HandleReloadConfigRequest
    poll = "poll"  # the servers poll the file (--model_config_file_poll_wait_seconds)


RELOAD_MODES = tuple(m.value for m in ReloadMode)
SANDBOX_PREFIX = "mlc-sandbox-"  # the private folder `mlc serve` makes for a server's sandbox socket
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_POLL_SECONDS = 1
# How long one replica may take to load a version (or otherwise reach a state a rollout waits
# for), from when it was asked; `--replica-timeout` or configs/servers.yaml change it.
DEFAULT_REPLICA_TIMEOUT_S = 60.0
# Pauses before asking the resolver again after a temporary failure (EAI_AGAIN), as a client
# library's retry would; an unknown name fails at once.
RESOLVE_RETRIES_S = (0.2, 1.0)


@dataclass(frozen=True)
class ServerSpec:
    """One server to drive: its gRPC address, its REST address (optional) and reload mode."""

    grpc: str
    rest: str | None = None  # host:port, or an http:// or https:// URL
    reload: str = "request"
    poll_seconds: int = DEFAULT_POLL_SECONDS
    tls: Tls | None = None
    found_by: str | None = None  # "dns NAME:PORT" for a replica found by discovery
    replica_timeout: float = DEFAULT_REPLICA_TIMEOUT_S  # its own deadline to load a version

    @property
    def name(self) -> str:
        """How the server is named in output: its gRPC address."""
        return self.grpc


@dataclass
class Fleet:
    """The servers to drive and where that list came from."""

    servers: list[ServerSpec]
    source: str  # "configs/servers.yaml" | "mlc serve records" | "default"

    @property
    def names(self) -> list[str]:
        """The servers' names, in order."""
        return [s.name for s in self.servers]


@dataclass
class ServerRecord:
    """A server process started by ``mlc serve``."""

    pid: int
    engine: str
    grpc: str
    rest: str | None
    reload: str
    poll_seconds: int
    config_file: str
    log: str | None
    command: list[str]
    started: str = field(default_factory=now_iso)
    detached: bool = True
    # The private sandbox socket of an embedded server (--mlc_sandbox_socket), in a folder of its own.
    sandbox: str | None = None

    def spec(self) -> ServerSpec:
        """The server to drive that this process is."""
        return ServerSpec(self.grpc, self.rest, self.reload, self.poll_seconds)


# --- the servers file ------------------------------------------------------------------------


def servers_file(paths: Paths) -> Path:
    """configs/servers.yaml."""
    return paths.configs / "servers.yaml"


def _address(value: Any, where: str, url: bool = False) -> str:
    text = str(value)
    scheme, sep, rest = text.partition("://")
    if url and sep and scheme not in ("http", "https"):
        raise ConfigError(f"{where}: a REST URL must start with http:// or https://, got {text!r}")
    host, sep2, port = (rest if sep and url else text).rstrip("/").rpartition(":")
    if not sep2 or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where}: expected host:port{' or http(s)://host:port' if url else ''}, got {text!r}")
    return text.rstrip("/")


def _port(value: Any, where: str) -> int:
    if not isinstance(value, int) or not 0 < value <= 65535:
        raise ConfigError(f"{where}: expected a port number, got {value!r}")
    return value


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _tls(data: Any, where: str, base: Path) -> Tls | None:
    """The ``tls`` section: paths relative to the servers file's folder."""
    if data is None:
        return None
    if not isinstance(data, dict) or "ca" not in data or set(data) - {"ca", "cert", "key", "server_name"}:
        raise ConfigError(f"{where}: expected {{ca, cert, key, server_name}} with at least ca")
    if ("cert" in data) != ("key" in data):
        raise ConfigError(f"{where}: mutual TLS needs both cert and key")

    def path(key: str) -> str | None:
        return None if data.get(key) is None else str(base / str(data[key]))

    name = data.get("server_name")
    return Tls(ca=str(path("ca")), cert=path("cert"), key=path("key"), server_name=None if name is None else str(name))


@dataclass(frozen=True)
class Discovery:
    """A ``dns: NAME:PORT`` entry: every address NAME resolves to, at gRPC PORT."""

    name: str
    port: int
    rest_port: int | None
    rest_scheme: str
    template: ServerSpec  # reload mode, poll seconds, TLS

    def resolve(self) -> list[ServerSpec]:
        """One spec per address NAME resolves to now (sorted); ServerUnavailable if it does not."""
        for pause in (*RESOLVE_RETRIES_S, None):
            try:
                infos = socket.getaddrinfo(self.name, self.port, type=socket.SOCK_STREAM)
                break
            except (socket.gaierror, UnicodeError) as e:
                # EAI_AGAIN ("temporary failure": no answer in time) is worth asking again; an
                # unknown name (NXDOMAIN) or a malformed one is not.
                if pause is None or getattr(e, "errno", None) != socket.EAI_AGAIN:
                    raise ServerUnavailable(
                        f"cannot resolve {self.name} (dns entry in configs/servers.yaml): "
                        f"{getattr(e, 'strerror', None) or e}"
                    ) from e
                time.sleep(pause)
        hosts = sorted({str(info[4][0]) for info in infos})  # an IPv4 or IPv6 address
        out = []
        for host in hosts:
            h = f"[{host}]" if ":" in host else host
            rest = None if self.rest_port is None else f"{self.rest_scheme}://{h}:{self.rest_port}"
            out.append(replace(self.template, grpc=f"{h}:{self.port}", rest=rest, found_by=f"dns {self.name}:{self.port}"))
        return out


def parse_entries(data: Any, source: Path) -> list[ServerSpec | Discovery]:
    """Parse the servers file's data; structural problems raise ConfigError naming the file."""
    if not isinstance(data, dict) or not isinstance(data.get("servers"), list) or not data["servers"]:
        raise ConfigError(f"malformed servers file {source}: expected a non-empty 'servers' list of {{grpc, rest}} or {{dns}}")
    reload = str(data.get("reload", "request"))
    if reload not in RELOAD_MODES:
        raise ConfigError(f"{source}: reload must be one of {', '.join(RELOAD_MODES)}, got {reload!r}")
    poll = data.get("poll_seconds", DEFAULT_POLL_SECONDS)
    if not isinstance(poll, int) or poll < 1:
        raise ConfigError(f"{source}: poll_seconds must be a positive integer, got {poll!r}")
    tls = _tls(data.get("tls"), f"{source}: tls", source.parent)
    replica_timeout = _seconds(data.get("replica_timeout", DEFAULT_REPLICA_TIMEOUT_S), f"{source}: replica_timeout")
    entries: list[ServerSpec | Discovery] = []
    for i, entry in enumerate(data["servers"]):
        where = f"{source}: servers[{i}]"
        if isinstance(entry, str):
            entry = {"grpc": entry}
        if not isinstance(entry, dict) or ("grpc" in entry) == ("dns" in entry):
            raise ConfigError(f"{where}: expected {{grpc: host:port, rest: host:port}} or {{dns: NAME:PORT, rest_port: PORT}}")
        own_tls = _tls(entry["tls"], f"{where}.tls", source.parent) if "tls" in entry else tls
        own_timeout = (_seconds(entry["replica_timeout"], f"{where}.replica_timeout") if "replica_timeout" in entry
                       else replica_timeout)
        template = ServerSpec(grpc="", reload=reload, poll_seconds=poll, tls=own_tls, replica_timeout=own_timeout)
        if "dns" in entry:
            name, _, port = _address(entry["dns"], f"{where}.dns").rpartition(":")
            scheme = str(entry.get("rest_scheme", "http"))
            if scheme not in ("http", "https"):
                raise ConfigError(f"{where}.rest_scheme: expected http or https, got {scheme!r}")
            rest_port = None if entry.get("rest_port") is None else _port(entry["rest_port"], f"{where}.rest_port")
            entries.append(Discovery(name, int(port), rest_port, scheme, template))
            continue
        rest = entry.get("rest")
        entries.append(
            replace(
                template,
                grpc=_address(entry["grpc"], f"{where}.grpc"),
                rest=None if rest is None else _address(rest, f"{where}.rest", url=True),
            )
        )
    return entries


def resolve(entries: list[ServerSpec | Discovery], source: Path | str = "configs/servers.yaml") -> list[ServerSpec]:
    """Every server of the entries, dns entries resolved now; the same address twice is an error."""
    specs: list[ServerSpec] = []
    for entry in entries:
        specs.extend(entry.resolve() if isinstance(entry, Discovery) else [entry])
    seen: set[str] = set()
    for spec in specs:
        if spec.grpc in seen:
            raise ConfigError(f"{source}: the gRPC address {spec.grpc} is listed twice")
        seen.add(spec.grpc)
    return specs


def parse_servers(data: Any, source: Path) -> list[ServerSpec]:
    """The servers the file's data lists, dns entries resolved now."""
    return resolve(parse_entries(data, source), source)


def write_servers_file(paths: Paths, servers: list[ServerSpec], reload: str = "request") -> None:
    """Write configs/servers.yaml (used by tests and by people who prefer not to hand-edit)."""
    import yaml

    data = {
        "reload": reload,
        "servers": [{"grpc": s.grpc, **({"rest": s.rest} if s.rest else {})} for s in servers],
    }
    atomic_write_text(servers_file(paths), yaml.safe_dump(data, sort_keys=False))


LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def is_local(spec: ServerSpec) -> bool:
    """Whether ``mlc serve`` can start this server here (a listed loopback address)."""
    return spec.found_by is None and spec.grpc.rpartition(":")[0] in LOCAL_HOSTS


# --- records of started servers -------------------------------------------------------------


def records_dir(paths: Paths) -> Path:
    """.mlc/servers/: one JSON record per server process mlc serve started."""
    return paths.state_dir / "servers"


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def is_ours(record: ServerRecord) -> bool:
    """The recorded pid still runs the recorded command (guards against pid reuse)."""
    if not pid_alive(record.pid):
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return record.config_file.encode() in b" ".join(cmdline)


def read_records(paths: Paths) -> list[ServerRecord]:
    """Records of servers started by mlc serve (alive or not), by gRPC port."""
    folder = records_dir(paths)
    if not folder.is_dir():
        return []
    out = []
    for file in sorted(folder.glob("*.json")):
        try:
            out.append(ServerRecord(**json.loads(file.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue  # a foreign or damaged file is not ours to interpret
    return out


def live_records(paths: Paths) -> list[ServerRecord]:
    """Records whose process still runs; records of dead processes are removed."""
    alive = []
    for rec in read_records(paths):
        if is_ours(rec):
            alive.append(rec)
        else:
            remove_record(paths, rec)
    return alive


def record_file(paths: Paths, grpc: str) -> Path:
    """The record of the server on gRPC address ``grpc``: .mlc/servers/<port>.json."""
    return records_dir(paths) / f"{grpc.rpartition(':')[2]}.json"


def write_record(paths: Paths, record: ServerRecord) -> None:
    """Record a server ``mlc serve`` started (atomically)."""
    atomic_write_text(record_file(paths, record.grpc), json.dumps(asdict(record), indent=2))


def remove_record(paths: Paths, record: ServerRecord) -> None:
    """Forget a server: its record file, and its sandbox folder (made by ``mlc serve``) if any."""
    try:
        record_file(paths, record.grpc).unlink()
    except FileNotFoundError:
        pass
    if record.sandbox and Path(record.sandbox).parent.name.startswith(SANDBOX_PREFIX):
        shutil.rmtree(Path(record.sandbox).parent, ignore_errors=True)


# --- which servers to drive -----------------------------------------------------------------


def load(paths: Paths, replica_timeout: float | None = None) -> Fleet:
    """The servers to drive: configs/servers.yaml, else live `mlc serve` records, else none.

    ``replica_timeout`` (``--replica-timeout``) replaces every server's own deadline.
    """
    file = servers_file(paths)
    if file.exists():
        known = Fleet(parse_servers(load_yaml_file(file, "servers file"), file), "configs/servers.yaml")
    else:
        records = live_records(paths)
        known = Fleet([r.spec() for r in records], "mlc serve records" if records else "none")
    if replica_timeout is not None:
        known.servers = [replace(s, replica_timeout=replica_timeout) for s in known.servers]
    return known


def named(paths: Paths, address: str, rest: bool = False) -> ServerSpec:
    """The server an address names (``mlc predict --server``), with the TLS configs/servers.yaml gives it.

    A listed server (its gRPC address, or with ``rest`` its REST address, with or without the
    scheme) keeps its own entry; any other address gets the file's ``tls`` section, so a server
    of a TLS fleet named by hand is not dialled in plaintext.
    """
    file = servers_file(paths)
    if not file.exists():
        return ServerSpec("", address) if rest else ServerSpec(address)
    data = load_yaml_file(file, "servers file")
    bare = address.rpartition("://")[2].rstrip("/")
    for entry in parse_entries(data, file):
        if isinstance(entry, ServerSpec) and (
            entry.grpc == address if not rest else (entry.rest or "").rpartition("://")[2] == bare
        ):
            return entry
    tls = _tls(data.get("tls"), f"{file}: tls", file.parent) if isinstance(data, dict) else None
    return ServerSpec("", address, tls=tls) if rest else ServerSpec(address, tls=tls)
