"""The servers mlc drives, and the local server processes ``mlc serve`` runs.

Which servers: ``configs/servers.yaml`` when it exists (written by people, one entry per
replica), else the servers ``mlc serve`` started, as recorded under ``.mlc/servers/``::

    # configs/servers.yaml
    reload: request        # request: HandleReloadConfigRequest (default)
                           # poll: write the file and wait for the servers' own file poll
    poll_seconds: 1        # --model_config_file_poll_wait_seconds that `mlc serve` passes in poll mode
    servers:
      - grpc: 127.0.0.1:8500
        rest: 127.0.0.1:8501
      - grpc: 127.0.0.1:8510
        rest: 127.0.0.1:8511

Every server reads the same ``configs/models.config``. ``mlc serve`` starts every listed
server on this machine (or one on the default ports without a servers file) and writes one
record per process, ``.mlc/servers/<grpc port>.json``, which ``mlc stop`` uses.

This module must not import TensorFlow or grpc: ``status`` goes through it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError, ServerUnavailable, UsageError
from lifecycle.store.config import Paths, load_yaml_file
from lifecycle.store.files import atomic_write_text
from lifecycle.store.registry import now_iso

RELOAD_MODES = ("request", "poll")
ENGINES = ("auto", "embedded", "tfserving")
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_POLL_SECONDS = 1
TFSERVING_BINARY = "tensorflow_model_server"


@dataclass(frozen=True)
class ServerSpec:
    """One server to drive: its gRPC address, its REST address (optional) and reload mode."""

    grpc: str
    rest: str | None = None
    reload: str = "request"
    poll_seconds: int = DEFAULT_POLL_SECONDS

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

    def spec(self) -> ServerSpec:
        return ServerSpec(self.grpc, self.rest, self.reload, self.poll_seconds)


# --- the servers file ------------------------------------------------------------------------


def servers_file(paths: Paths) -> Path:
    """configs/servers.yaml."""
    return paths.configs / "servers.yaml"


def _address(value: Any, where: str) -> str:
    text = str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{where}: expected host:port, got {text!r}")
    return text


def parse_servers(data: Any, source: Path) -> list[ServerSpec]:
    """Parse the servers file's data; structural problems raise ConfigError naming the file."""
    if not isinstance(data, dict) or not isinstance(data.get("servers"), list) or not data["servers"]:
        raise ConfigError(f"malformed servers file {source}: expected a non-empty 'servers' list of {{grpc, rest}}")
    reload = str(data.get("reload", "request"))
    if reload not in RELOAD_MODES:
        raise ConfigError(f"{source}: reload must be one of {', '.join(RELOAD_MODES)}, got {reload!r}")
    poll = data.get("poll_seconds", DEFAULT_POLL_SECONDS)
    if not isinstance(poll, int) or poll < 1:
        raise ConfigError(f"{source}: poll_seconds must be a positive integer, got {poll!r}")
    specs = []
    for i, entry in enumerate(data["servers"]):
        where = f"{source}: servers[{i}]"
        if isinstance(entry, str):
            entry = {"grpc": entry}
        if not isinstance(entry, dict) or "grpc" not in entry:
            raise ConfigError(f"{where}: expected {{grpc: host:port, rest: host:port}}")
        rest = entry.get("rest")
        specs.append(
            ServerSpec(
                grpc=_address(entry["grpc"], f"{where}.grpc"),
                rest=None if rest is None else _address(rest, f"{where}.rest"),
                reload=reload,
                poll_seconds=poll,
            )
        )
    if len({s.grpc for s in specs}) != len(specs):
        raise ConfigError(f"{source}: the same gRPC address is listed twice")
    return specs


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
    """Whether ``mlc serve`` can start this server here (a loopback address)."""
    return spec.grpc.rpartition(":")[0] in LOCAL_HOSTS


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


def _is_our_process(record: ServerRecord) -> bool:
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
        if _is_our_process(rec):
            alive.append(rec)
        else:
            remove_record(paths, rec)
    return alive


def record_file(paths: Paths, grpc: str) -> Path:
    return records_dir(paths) / f"{grpc.rpartition(':')[2]}.json"


def write_record(paths: Paths, record: ServerRecord) -> None:
    atomic_write_text(record_file(paths, record.grpc), json.dumps(asdict(record), indent=2))


def remove_record(paths: Paths, record: ServerRecord) -> None:
    try:
        record_file(paths, record.grpc).unlink()
    except FileNotFoundError:
        pass


# --- which servers to drive -----------------------------------------------------------------


def load(paths: Paths) -> Fleet:
    """The servers to drive: configs/servers.yaml, else live `mlc serve` records, else none."""
    file = servers_file(paths)
    if file.exists():
        return Fleet(parse_servers(load_yaml_file(file, "servers file"), file), "configs/servers.yaml")
    records = live_records(paths)
    return Fleet([r.spec() for r in records], "mlc serve records" if records else "none")


# --- starting and stopping servers ----------------------------------------------------------


def resolve_engine(engine: str) -> str:
    """auto -> tfserving when tensorflow_model_server is on PATH, else embedded."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "tfserving" if shutil.which(TFSERVING_BINARY) else "embedded"
    if engine == "tfserving" and not shutil.which(TFSERVING_BINARY):
        raise UsageError(f"--engine tfserving: {TFSERVING_BINARY} is not on PATH; use --engine embedded")
    return engine


def server_command(engine: str, spec: ServerSpec, config_file: Path) -> list[str]:
    """tensorflow_model_server's command line for ``spec`` (same flags for both engines)."""
    grpc_port = spec.grpc.rpartition(":")[2]
    flags = [f"--port={grpc_port}", f"--model_config_file={config_file}"]
    if spec.rest:
        flags.append(f"--rest_api_port={spec.rest.rpartition(':')[2]}")
    if spec.reload == "poll":
        # The server reads the labelled file at start-up, before any version is AVAILABLE.
        flags.append(f"--model_config_file_poll_wait_seconds={spec.poll_seconds}")
        flags.append("--allow_version_labels_for_unavailable_models=true")
    if engine == "tfserving":
        return [shutil.which(TFSERVING_BINARY) or TFSERVING_BINARY, *flags]
    return [sys.executable, "-m", "lifecycle.server.main", *flags]


def _child_env() -> dict[str, str]:
    """The environment for a server child: it imports this mlc even when not pip-installed."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> Any:
    """A preexec_fn: the child gets SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG).

    Set between fork and exec, so it holds for any server binary; the signal comes when the
    forking thread ends, so start_process must be called from a thread that lives as long as
    the foreground serve (the main thread). If the parent died before the prctl, exit at once.
    """
    def arm() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm if sys.platform.startswith("linux") else None


def start_process(paths: Paths, engine: str, spec: ServerSpec, detach: bool) -> tuple[subprocess.Popen[bytes], ServerRecord]:
    """Start one server process on configs/models.config and record it."""
    command = server_command(engine, spec, paths.serving_config)
    log: Path | None = None
    if detach:
        log = paths.state_dir / "logs" / f"server-{spec.grpc.rpartition(':')[2]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=_child_env(), start_new_session=True, cwd=paths.home,
        )
        out.close()
    else:
        # A foreground server must not outlive `mlc serve`, even one killed with SIGKILL.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=_child_env(), cwd=paths.home,
                                preexec_fn=_die_with_parent(os.getpid()))
    record = ServerRecord(
        pid=proc.pid, engine=engine, grpc=spec.grpc, rest=spec.rest, reload=spec.reload,
        poll_seconds=spec.poll_seconds, config_file=str(paths.serving_config),
        log=None if log is None else str(log), command=command, detached=detach,
    )
    write_record(paths, record)
    return proc, record


def wait_ready(
    proc: subprocess.Popen[bytes], record: ServerRecord, expect: Mapping[str, int], timeout: float
) -> None:
    """Wait until the server answers and reports each ``expect`` model's version AVAILABLE."""
    from lifecycle.serving.client import rest_model_status, tcp_ready

    deadline = time.monotonic() + timeout
    pending = dict(expect)
    while True:
        code = proc.poll()
        if code is not None:
            tail = ""
            if record.log and Path(record.log).exists():
                lines = Path(record.log).read_text(errors="replace").strip().splitlines()
                tail = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
            raise ServerUnavailable(
                f"server {record.grpc} exited with code {code} while starting"
                + (f": {tail.strip()}" if tail else "")
                + (f" (log: {record.log})" if record.log else "")
            )
        try:
            up = tcp_ready(record.grpc) and (record.rest is None or tcp_ready(record.rest))
            if up and record.rest:
                for model, version in list(pending.items()):
                    states = rest_model_status(record.rest, model, timeout=1.0)
                    if states.get(version) is not None and states[version].state == "AVAILABLE":
                        del pending[model]
                if not pending:
                    return
            elif up:
                return
        except Exception:  # noqa: BLE001 - not up yet; the deadline decides
            pass
        if time.monotonic() > deadline:
            raise ServerUnavailable(
                f"server {record.grpc} did not become ready within {timeout:.0f} s"
                + (f" (log: {record.log})" if record.log else "")
            )
        time.sleep(0.1)


def stop_record(paths: Paths, record: ServerRecord, grace: float = 10.0) -> bool:
    """Stop one recorded server (SIGTERM, then SIGKILL after ``grace``); True if it was running."""
    was_running = _is_our_process(record)
    if was_running:
        try:
            os.kill(record.pid, signal.SIGTERM)
        except ProcessLookupError:
            was_running = False
        deadline = time.monotonic() + grace
        while was_running and pid_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(record.pid):
            try:
                os.kill(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    remove_record(paths, record)
    return was_running
