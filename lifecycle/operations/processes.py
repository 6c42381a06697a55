"""The server processes ``mlc serve`` runs on this machine: start, wait ready, supervise, stop.

``mlc serve`` starts every server of this machine listed in configs/servers.yaml (or one on the
default ports), records each under ``.mlc/servers/`` (:mod:`lifecycle.serving.fleet`), waits
until each serves the registry's versions, and then either returns (``--detach``) or supervises
them in the foreground until they exit, SIGTERM or Ctrl-C.

This module must not import TensorFlow or grpc at import time: the CLI imports it for the
``--engine`` choices.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any

from lifecycle import progress
from lifecycle.errors import BindError, LifecycleError, ServerUnavailable, UsageError
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.fleet import ServerRecord, ServerSpec
from lifecycle.store.config import Paths
from lifecycle.store.files import atomic_write_text

TFSERVING_BINARY = "tensorflow_model_server"
ADMIN_TOKEN_FILE = "admin-token"  # in the home's .mlc/: the embedded servers' admin-path token
MONITORING_FILE = "monitoring.config"  # beside it: the MonitoringConfig that turns the metrics on
TRAFFIC_FILE = "traffic.json"  # beside configs/models.config: the traffic splits of mlc rollout


class Engine(StrEnum):
    """Which server ``mlc serve`` runs."""

    auto = "auto"  # tfserving when tensorflow_model_server is on PATH, else embedded
    embedded = "embedded"  # mlc-model-server
    tfserving = "tfserving"  # tensorflow_model_server


ENGINES = tuple(e.value for e in Engine)

Started = tuple["subprocess.Popen[bytes]", ServerRecord]


def specs_to_start(
    paths: Paths, grpc_port: int | None, rest_port: int | None, reload: str
) -> list[ServerSpec]:
    """The servers ``mlc serve`` should start here: those of configs/servers.yaml not running yet,
    or one on the given (default) ports. Refuses a server that already runs."""
    reload = str(getattr(reload, "value", reload))
    if reload not in fleet.RELOAD_MODES:
        raise UsageError(f"--reload must be one of {', '.join(fleet.RELOAD_MODES)}")
    file = fleet.servers_file(paths)
    if file.exists():
        if grpc_port is not None or rest_port is not None:
            raise UsageError(f"ports come from {file} when it exists; edit it instead of passing --grpc-port/--rest-port")
        specs = fleet.load(paths).servers
    else:
        g = fleet.DEFAULT_GRPC_PORT if grpc_port is None else grpc_port
        r = fleet.DEFAULT_REST_PORT if rest_port is None else rest_port
        specs = [ServerSpec(f"127.0.0.1:{g}", f"127.0.0.1:{r}" if r else None, reload)]
    running = {rec.grpc: rec for rec in fleet.live_records(paths)}
    if file.exists():  # (re)start the listed servers of this machine that do not run
        specs = [spec for spec in specs if spec.grpc not in running and fleet.is_local(spec)]
        if not specs:
            raise UsageError(f"every server of this machine listed in {file} already runs; stop them with `mlc stop`")
    for spec in specs:
        if spec.grpc in running:
            raise UsageError(
                f"a server started by mlc already runs at {spec.grpc} (pid {running[spec.grpc].pid}); stop it with `mlc stop`"
            )
    progress.step("checking that the ports are free")
    for spec in specs:
        check_ports_free(spec, file.exists())
    return specs


def check_ports_free(spec: ServerSpec, listed: bool) -> None:
    """BindError, at once, when another program holds a port this server is to listen on.

    Checked before TensorFlow is imported or a server started: the server would find out only
    after its start-up, as a raw gRPC error.
    """
    import socket

    for what, address in (("gRPC", spec.grpc), ("REST", spec.rest)):
        if not address or not fleet.is_local(spec):
            continue
        host, _, port = address.rpartition("://")[2].rpartition(":")
        if int(port) == 0:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is free
            try:
                probe.bind((host.strip("[]"), int(port)))
            except OSError as e:
                how = f"edit {what} of {spec.grpc} in configs/servers.yaml" if listed else \
                    f"choose another with --{what.lower()}-port"
                raise BindError(f"{what} port {address} is in use by another program ({e.strerror}); {how}") from e


def start(
    paths: Paths, engine: str, specs: list[ServerSpec], serving: tfs_config.Serving, detach: bool, timeout: float
) -> list[Started]:
    """Start ``specs`` on configs/models.config and wait until each serves ``serving``.

    The caller holds the registry lease, from this first config write to the last, so no rollout
    interleaves. Labels may point only at AVAILABLE versions, and nothing is available before a
    server has started: request-mode servers start on the versions alone and get the labels by
    a reload once ready. Anything that fails stops what was started and writes the full config.
    """
    # The rollout driver is the one piece that makes servers take a config.
    from lifecycle.rollout import apply_registry_config
    from lifecycle.tf_import import import_tensorflow

    progress.step("importing TensorFlow")  # quietly, after the ports were found free (it takes seconds)
    import_tensorflow()

    expect = {name: s.labels.get("stable", max(s.versions)) for name, s in serving.items()}
    poll = all(spec.reload == fleet.ReloadMode.poll.value for spec in specs)
    if poll:
        # Polling servers read the labelled file on their own; they start with
        # --allow_version_labels_for_unavailable_models (TF Serving's rule at start-up).
        tfs_config.write(paths, tfs_config.build(paths, serving))
    else:
        unlabelled = {name: tfs_config.ModelServing(s.versions, {}) for name, s in serving.items()}
        tfs_config.write(paths, tfs_config.build(paths, unlabelled))
    started: list[Started] = []
    try:
        for spec in specs:
            progress.step(f"starting the {engine} server at {spec.grpc}")
            started.append(start_process(paths, engine, spec, detach))
        for proc, record in started:
            loading = ", ".join(f"{name} {v}" for name, v in expect.items())
            progress.step(f"waiting for {record.grpc} to start" + (f" and load {loading}" if loading else ""))
            wait_ready(proc, record, expect, timeout)
        if not poll:
            progress.step("setting the labels (they may point only at AVAILABLE versions)")
            apply_registry_config(paths, [record.spec() for _, record in started], timeout)
    except BaseException:
        for _, record in started:
            stop_record(paths, record, grace=5.0)
        tfs_config.write(paths, tfs_config.build(paths, serving))
        raise
    return started


def supervise(paths: Paths, started: list[Started]) -> int:
    """Block until a foreground server exits (its exit code) or SIGTERM/Ctrl-C (0); stop them all."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C must stop a foreground server even when SIGINT was inherited as ignored (a
    # non-interactive shell starts background jobs that way, and Python keeps SIG_IGN).
    previous_int = signal.signal(signal.SIGINT, terminate)
    try:
        while all(proc.poll() is None for proc, _ in started):
            try:
                started[0][0].wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        return next(proc.returncode for proc, _ in started if proc.poll() is not None)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        for proc, record in started:
            stop_record(paths, record, grace=10.0)
            proc.wait()


def stop(paths: Paths, grpc_port: int | None = None) -> list[ServerRecord]:
    """Stop the servers ``mlc serve`` started (all, or the one on ``grpc_port``); the ones that ran."""
    stopped = []
    for record in fleet.read_records(paths):
        if grpc_port is not None and record.grpc.rpartition(":")[2] != str(grpc_port):
            continue
        if stop_record(paths, record):
            stopped.append(record)
    return stopped


def resolve_engine(engine: str) -> str:
    """auto -> tfserving when tensorflow_model_server is on PATH, else embedded."""
    engine = str(getattr(engine, "value", engine))
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "tfserving" if shutil.which(TFSERVING_BINARY) else "embedded"
    if engine == "tfserving" and not shutil.which(TFSERVING_BINARY):
        raise UsageError(f"--engine tfserving: {TFSERVING_BINARY} is not on PATH; use --engine embedded")
    return engine


def server_command(engine: str, spec: ServerSpec, config_file: Path, sandbox: str | None = None,
                   admin_token_file: Path | None = None) -> list[str]:
    """tensorflow_model_server's command line for ``spec`` (same flags for both engines).

    The embedded server also gets ``--mlc_sandbox_socket=sandbox`` when given: the private
    sandbox where ``mlc promote`` checks a candidate (:mod:`lifecycle.server.sandbox`); and with
    ``admin_token_file``, that file as its admin token, configs/traffic.json as the traffic
    splits to start with and the Prometheus metrics on (``.mlc/monitoring.config``), which
    ``mlc rollout`` needs.
    """
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
    if sandbox:
        flags.append(f"--mlc_sandbox_socket={sandbox}")
    if admin_token_file is not None:
        # mlc rollout judges a candidate by the server's Prometheus metrics (TF Serving's exporter).
        flags.append(f"--monitoring_config_file={admin_token_file.with_name(MONITORING_FILE)}")
        flags.append(f"--mlc_admin_token_file={admin_token_file}")
        flags.append(f"--mlc_traffic_file={config_file.with_name(TRAFFIC_FILE)}")
    return [sys.executable, "-m", "lifecycle.server.main", *flags]


def admin_token_file(paths: Paths) -> Path:
    """The home's admin token file (.mlc/admin-token, mode 0600), written once with a fresh token.

    Servers already running keep reading the same token, so a later ``mlc serve`` reuses the
    file. It appears whole or not at all: written to a private temp file, then linked into place.
    """
    target = paths.state_dir / ADMIN_TOKEN_FILE
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".admin-token-", dir=target.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, target)
        except FileExistsError:
            pass  # another mlc serve wrote it first: use that one
    finally:
        os.unlink(temp)
    return target


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
    """Start one server process on configs/models.config and record it.

    An embedded server gets a private sandbox socket in a fresh folder only this user can enter
    (``tempfile.mkdtemp``: mode 0700, and short, as Unix socket paths must be).
    """
    sandbox = token = None
    if engine == "embedded":
        sandbox = str(Path(tempfile.mkdtemp(prefix=fleet.SANDBOX_PREFIX)) / "grpc.sock")
        token = admin_token_file(paths)
        monitoring = token.with_name(MONITORING_FILE)
        if not monitoring.exists():
            atomic_write_text(monitoring, 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    command = server_command(engine, spec, paths.serving_config, sandbox, token)
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
        log=None if log is None else str(log), command=command, detached=detach, sandbox=sandbox,
    )
    fleet.write_record(paths, record)
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
        except LifecycleError:  # not up yet (unreachable, model not loaded): the deadline decides
            pass
        if time.monotonic() > deadline:
            raise ServerUnavailable(
                f"server {record.grpc} did not become ready within {timeout:.0f} s"
                + (f" (log: {record.log})" if record.log else "")
            )
        time.sleep(0.1)


def stop_record(paths: Paths, record: ServerRecord, grace: float = 10.0) -> bool:
    """Stop one recorded server (SIGTERM, then SIGKILL after ``grace``); True if it was running."""
    was_running = fleet.is_ours(record)
    if was_running:
        try:
            os.kill(record.pid, signal.SIGTERM)
        except ProcessLookupError:
            was_running = False
        deadline = time.monotonic() + grace
        while was_running and fleet.pid_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if fleet.pid_alive(record.pid):
            try:
                os.kill(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    fleet.remove_record(paths, record)
    return was_running


@dataclass
class ServeResult:
    """The servers ``mlc serve`` started."""

    engine: str
    servers: list[ServerRecord]
    config_file: str
    detached: bool
    recovered: str | None = None
    exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


@dataclass
class StopResult:
    """The servers ``mlc stop`` stopped."""

    stopped: list[ServerRecord]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def serve(paths: Paths, engine: Any, grpc_port: int | None, rest_port: int | None, detach: bool, reload: Any,
          timeout: float, on_ready: Callable[[ServeResult], None] | None) -> ServeResult:
    """``mlc serve``: recover a pending rollout, write the config from the registry, start, then supervise."""
    from lifecycle import rollout
    from lifecycle.store import registry

    engine = resolve_engine(engine)
    specs = specs_to_start(paths, grpc_port, rest_port, reload)
    # Under the registry lease from the first config write to the last, so no rollout interleaves.
    with registry.lease(paths):
        recovered = rollout.recover_pending(paths)
        serving = tfs_config.served_from_registry(registry.load(paths))
        started = start(paths, engine, specs, serving, detach, timeout)
    result = ServeResult(
        engine=engine, servers=[record for _, record in started], config_file=str(paths.serving_config),
        detached=detach, recovered=recovered,
    )
    if detach:
        return result
    if on_ready is not None:
        on_ready(result)
    result.exit_code = supervise(paths, started)
    return result
