"""The fault matrix's parts: a SeaweedFS that can die and come back, a tiny file system, mlc
child processes held at a named failpoint, and label-addressed load whose failures are counted.

- :class:`Store` is a ``weed mini`` of the test's own (never the session's shared one): ``kill``
  SIGKILLs it (the object store goes away mid-request), ``restart`` starts it again on the same
  ports and data folder, and the objects written before the kill are all there.
- :func:`small_fs` mounts a tmpfs of a few MiB (root only; :func:`small_fs_unavailable` says why
  not), so a home on it fills up with ENOSPC; it is unmounted and removed at the end.
- :class:`Mlc` runs ``python -m lifecycle`` with ``MLC_FAILPOINTS`` and ``MLC_FAILPOINTS_LOG``:
  :meth:`Mlc.start` returns at once, :meth:`Mlc.reached` waits until the child is at a failpoint.
- :func:`report_load` records a cell's request count and failed requests on the test's report
  (``record_property``), which scripts/faults.sh prints per cell.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle import failpoints
from tests.support import seaweed
from tests.support.polling import wait_until

FAULT_PAUSE_S = 30  # a failpoint's pause: long enough for the test to act, killed or waited out


@dataclass
class Store:
    """A SeaweedFS this test may kill and bring back (same ports, same data)."""

    server: seaweed.Seaweed
    args: list[str]
    env: dict[str, str]

    @classmethod
    def start(cls, root: Path) -> Store:
        server = seaweed.start(root)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": seaweed.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": seaweed.SECRET_KEY}
        env.pop("S3_BUCKET", None)
        return cls(server, [str(a) for a in server.process.args], env)  # type: ignore[union-attr]  # Popen's args is the list given

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def kill(self) -> None:
        """SIGKILL the whole weed mini (master, volume, filer, S3 gateway): the store is gone."""
        if self.server.process.poll() is None:
            os.kill(self.server.process.pid, signal.SIGKILL)
            self.server.process.wait(timeout=30)

    def restart(self, bucket: str) -> None:
        """Start weed again on the same ports and data folder; wait until ``bucket`` reads again."""
        from botocore.exceptions import BotoCoreError, ClientError

        with open(self.server.log_file, "ab") as log:
            self.server.process = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )
        client = self.server.client()

        def reads() -> bool:  # the filer lists and the volume server reads and writes again
            try:
                client.list_objects_v2(Bucket=bucket, MaxKeys=5)
                client.put_object(Bucket=bucket, Key="restart-probe", Body=b"back")
                return bool(client.get_object(Bucket=bucket, Key="restart-probe")["Body"].read() == b"back")
            except (BotoCoreError, ClientError):
                return False

        wait_until(reads, 60, "SeaweedFS to serve the bucket again")

    def stop(self) -> None:
        self.server.stop(grace=2.0)


def small_fs_unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here (None: it can)."""
    if os.name != "posix" or not Path("/proc/filesystems").exists():
        return "needs Linux to mount a small file system"
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs (mount -t tmpfs)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "needs mount and umount"
    return None


@contextmanager
def small_fs(size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a fresh folder; unmounted and removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="mlc-fault-fs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True, timeout=30)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)
        shutil.rmtree(where, ignore_errors=True)


def fill(folder: Path, leave: int = 0) -> None:
    """Write a file in ``folder`` until its file system has at most ``leave`` bytes free."""
    with open(folder / ".filler", "ab") as f:
        while True:
            free = shutil.disk_usage(folder).free
            if free <= leave:
                return
            try:
                f.write(b"\0" * min(1 << 20, free - leave))
                f.flush()
            except OSError:
                return


@dataclass
class Mlc:
    """One ``python -m lifecycle`` child, held at failpoints named in ``MLC_FAILPOINTS``."""

    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[str] | None = None
    args: tuple[str, ...] = ()
    out: str = ""
    err: str = ""

    def start(self, *args: str, points: str = "") -> Mlc:
        env = dict(self.env)
        if points:
            env[failpoints.ENV] = points
            env[failpoints.LOG_ENV] = str(self.log)
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "lifecycle", *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        return self

    def reached(self, name: str, timeout: float = 120) -> None:
        """Wait until the child has reached failpoint ``name`` (it is paused there, or dying)."""
        assert self.proc is not None

        def there() -> bool:
            if self.log.exists() and any(line.split()[0] == name for line in self.log.read_text().splitlines() if line):
                return True
            assert self.proc is not None
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"mlc {' '.join(self.args)} exited {self.proc.returncode} before {name}: {out}{err}")
            return False

        wait_until(there, timeout, f"mlc {' '.join(self.args)} to reach failpoint {name}")

    def release(self) -> None:
        """End the child's failpoint pauses now (this and any later one)."""
        Path(f"{self.log}.release").touch()

    def wait(self, timeout: float = 180) -> int:
        """Wait for the child to end; its exit code (-9 when SIGKILLed)."""
        assert self.proc is not None
        self.out, self.err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def run_mlc(env: dict[str, str], *args: str, timeout: float = 180) -> tuple[int, str, str]:
    """Run one mlc command to completion: (exit code, stdout, stderr)."""
    r = subprocess.run([sys.executable, "-m", "lifecycle", *args], env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def one_line(err: str) -> str:
    """The single line of an mlc error (AssertionError if there are more)."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err}"
    return lines[0]


@dataclass
class Counted:
    """What a cell's client load saw."""

    requests: int = 0
    failed: list[str] = field(default_factory=list)


def report_load(record_property: Any, load: Any) -> Counted:
    """Record the load's totals on the test's report and return them."""
    counted = Counted(load.total() + len(load.failures), list(load.failures))
    record_property("requests", counted.requests)
    record_property("failed_requests", len(counted.failed))
    return counted


def serve(paths: Any) -> Any:
    """An in-process mlc-model-server on the home's models.config, listed in configs/servers.yaml."""
    from lifecycle.serving import fleet
    from tests.support.rollout_support import start_server

    server = start_server(paths)
    fleet.write_servers_file(paths, [fleet.ServerSpec(server.grpc_address, f"127.0.0.1:{server.rest_port}")])
    return server


def child_env(subprocess_env: dict[str, str], paths: Any, **extra: str) -> dict[str, str]:
    """The environment of an mlc child working on ``paths`` (with this process's AWS and MLC settings)."""
    passed = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "MLC_"))}
    return {**subprocess_env, **passed, "MLC_HOME": str(paths.home), **extra}


@dataclass
class LabelLoad:
    """Label-addressed gRPC Predicts of any model (``request`` names it), counted; no answer checks."""

    address: str
    request: Any
    label: str = "stable"
    failures: list[str] = field(default_factory=list)
    answers: int = 0
    wrong: list[str] = field(default_factory=list)
    _stop: Any = None
    _thread: Any = None

    def _run(self) -> None:
        from lifecycle.errors import LifecycleError
        from lifecycle.serving.client import ServingClient

        self.request.model_spec.ClearField("version")
        self.request.model_spec.version_label = self.label
        with ServingClient(self.address, timeout=30.0) as client:
            while not self._stop.is_set():
                try:
                    client.predict(self.request)
                    self.answers += 1
                except LifecycleError as e:
                    self.failures.append(e.message)

    def total(self) -> int:
        return self.answers

    def __enter__(self) -> LabelLoad:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def deeplab_request(model: str = "deeplab", size: int = 32) -> Any:
    """A small PredictRequest of the DeepLab signature (predict_images)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, size, size, 3), np.float32)))
    request.inputs["height"].CopyFrom(tf.make_tensor_proto(np.array([size], np.int32)))
    request.inputs["width"].CopyFrom(tf.make_tensor_proto(np.array([size], np.int32)))
    return request


@dataclass
class Replica:
    """One mlc-model-server child on 127.0.0.1 (gRPC and REST ports of its own)."""

    grpc: str
    rest: str
    proc: subprocess.Popen[bytes]


def start_replicas(paths: Any, root: Path, env: dict[str, str], count: int = 3) -> list[Replica]:
    """``count`` mlc-model-server children serving version 1 of hpt, listed in configs/servers.yaml
    and given the registry's labels by ``mlc reconcile``'s code; the caller kills them."""
    from lifecycle import api
    from lifecycle.serving import tfs_config
    from lifecycle.serving.client import rest_model_status
    from lifecycle.serving.tfs_config import ModelServing
    from tests.support.ports import free_ports
    from tests.support.rollout_support import MODEL

    startup = root / "startup.config"  # versions only: labels may point only at AVAILABLE versions
    startup.write_text(tfs_config.render(tfs_config.build(paths, {MODEL: ModelServing((1,), {})})))
    ports = free_ports(2 * count)
    replicas = []
    for i in range(count):
        proc = subprocess.Popen(
            [sys.executable, "-m", "lifecycle.server.main", f"--port={ports[2 * i]}", f"--rest_api_port={ports[2 * i + 1]}",
             f"--model_config_file={startup}", "--max_num_load_retries=0"],
            env=env, stdout=(root / f"r{i}.log").open("wb"), stderr=subprocess.STDOUT,
        )
        replicas.append(Replica(f"127.0.0.1:{ports[2 * i]}", f"127.0.0.1:{ports[2 * i + 1]}", proc))
    (paths.configs / "servers.yaml").write_text(
        "servers:\n" + "".join(f"  - {{grpc: '{r.grpc}', rest: '{r.rest}'}}\n" for r in replicas))

    def serving(r: Replica) -> bool:
        try:
            state = rest_model_status(r.rest, MODEL, timeout=2).get(1)
        except Exception:  # noqa: BLE001 - not up yet
            return False
        return state is not None and state.state == "AVAILABLE"

    for r in replicas:
        wait_until(functools.partial(serving, r), 120, f"{r.grpc} to serve version 1")
    assert not api.reconcile(paths=paths).failed
    return replicas
