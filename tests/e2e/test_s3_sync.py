"""``mlc sync --follow`` feeding a server that polls its folder, from a repository on SeaweedFS.

A watcher checks the folder continuously: every integer folder it ever sees must be complete
(every file of the manifest, with its size and sha256), and every version ``models.config``
names must be there. The server (the embedded one, polling ``models.config`` as
tensorflow_model_server does with --model_config_file_poll_wait_seconds) must load every version
it is given and never fail one.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest

from lifecycle.serving import tfs_config
from lifecycle.serving.client import ServingClient
from lifecycle.store import manifest as manifests
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.s3 import S3Store
from tests.support.polling import wait_until
from tests.support.rollout_support import MODEL, build_versions, make_home
from tests.support.seaweed import Seaweed

pytestmark = pytest.mark.e2e


class FolderWatcher:
    """Checks ``folder`` in a tight loop until stopped; records anything partial it sees."""

    def __init__(self, folder: Path, store: S3Store) -> None:
        self.folder, self.store = folder, store
        self.problems: list[str] = []
        self.seen: set[int] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._manifests: dict[int, manifests.Manifest] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _manifest(self, v: int) -> manifests.Manifest:
        if v not in self._manifests:
            self._manifests[v] = self.store.read_manifest(MODEL, v)[0]
        return self._manifests[v]

    def _check(self, version_dir: Path) -> None:
        v = int(version_dir.name)
        for rel, entry in self._manifest(v).files.items():
            try:
                manifests.verify_file(version_dir / rel, rel, entry, str(version_dir))
            except FileNotFoundError:
                if version_dir.exists():  # not removed meanwhile (removal is one rename): partial
                    self.problems.append(f"{version_dir} lacks {rel}")
            except Exception as e:  # noqa: BLE001 - any mismatch is a finding
                if version_dir.exists():
                    self.problems.append(f"{version_dir}: {e}")

    def _run(self) -> None:
        config = self.folder / "models.config"
        while not self._stop.is_set():
            self.scans += 1
            model_dir = self.folder / MODEL
            if model_dir.is_dir():
                for p in list(model_dir.iterdir()):
                    if p.name.isdigit():
                        self.seen.add(int(p.name))
                        self._check(p)
            if config.exists():
                named = tfs_config.serving_of(tfs_config.parse(config.read_text()))
                for v in named.get(MODEL, tfs_config.ModelServing(())).versions:
                    if not (model_dir / str(v)).is_dir():
                        self.problems.append(f"models.config names {v}, which is not in the folder")

    def __enter__(self) -> FolderWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def set_labels(paths: Paths, stable: int, canary: int | None = None) -> None:
    """Move the labels in the shared registry, as a promote on another machine would."""
    with registry.transaction(paths) as reg:
        rec = reg.model(MODEL)
        rec.stable, rec.canary = stable, canary


def states(address: str) -> dict[int, str]:
    with ServingClient(address) as c:
        return {v: s.describe() for v, s in c.model_status_grpc(MODEL).items()}


def test_sync_follow_never_shows_a_partial_version_to_a_polling_server(
    tmp_path: Path, seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
    python: str, subprocess_env: dict[str, str],
) -> None:
    from lifecycle import api
    from lifecycle.server import ServerOptions, create_server

    env = {**seaweed.env(), "MLC_REPOSITORY": f"s3://{s3_bucket}/shared"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    built = build_versions(tmp_path / "built", [1, 2, 3])
    trainer = make_home(tmp_path / "trainer", built, [1, 2, 3], stable=1)
    folder = tmp_path / "serving-disk"
    sidecar_home = tmp_path / "sidecar"
    sidecar_home.mkdir()
    assert isinstance(trainer.store, S3Store)

    with FolderWatcher(folder, trainer.store) as watcher:
        api.sync(folder, paths=Paths.from_env(sidecar_home))  # the storage initializer's first pass
        server = create_server(ServerOptions(
            grpc_port=0, rest_api_port=0, model_config_file=str(folder / "models.config"),
            model_config_file_poll_wait_seconds=1, allow_version_labels_for_unavailable_models=True,
        ))
        proc = subprocess.Popen(
            [python, "-m", "lifecycle", "sync", "--to", str(folder), "--follow", "--interval", "0.2",
             "--server", f"127.0.0.1:{server.rest_port}"],
            env={**subprocess_env, **env, "MLC_HOME": str(sidecar_home)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_until(lambda: states(server.grpc_address).get(1) == "AVAILABLE", 60, "version 1 served")
            set_labels(trainer, stable=1, canary=2)
            wait_until(lambda: labels(server) == {"stable": 1, "canary": 2}, 60, "canary 2 served")
            set_labels(trainer, stable=3)
            wait_until(lambda: labels(server) == {"stable": 3}, 60, "stable 3 served")
            wait_until(lambda: sorted(p.name for p in (folder / MODEL).iterdir() if p.name.isdigit()) == ["3"],
                     60, "1 and 2 removed once unloaded")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
            server.stop()
    assert proc.returncode == 0, err
    assert watcher.problems == [] and watcher.scans > 50
    assert watcher.seen == {1, 2, 3}
    for line in ("copied hpt/2", "copied hpt/3", "removed hpt/1", "removed hpt/2"):
        assert line in out, out
    final = tfs_config.serving_of(tfs_config.parse((folder / "models.config").read_text()))
    assert final[MODEL] == tfs_config.ModelServing((3,), {"stable": 3})
    assert str(folder / MODEL) in (folder / "models.config").read_text()


def labels(server) -> dict[str, int]:  # noqa: ANN001 - a running server
    """The labels the server resolves for hpt (over REST, as a client would see them)."""
    import json
    import urllib.request

    found = {}
    for label in ("stable", "canary"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}/labels/{label}", timeout=5) as r:
                found[label] = int(json.loads(r.read())["model_version_status"][0]["version"])
        except Exception:  # noqa: BLE001 - 404: no such label
            pass
    return found


def test_sync_removes_a_version_once_no_server_holds_it(
    tmp_path: Path, seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lifecycle import api
    from lifecycle.server import ServerOptions, create_server

    for name, value in {**seaweed.env(), "MLC_REPOSITORY": f"s3://{s3_bucket}/shared"}.items():
        monkeypatch.setenv(name, value)
    built = build_versions(tmp_path / "built", [1, 2])
    trainer = make_home(tmp_path / "trainer", built, [1, 2], stable=1)
    folder = tmp_path / "disk"
    first = api.sync(folder, paths=trainer)
    assert first.copied == ["hpt/1"] and first.config_changed
    # No server has loaded anything yet: the first config names the version, not its label (#1608).
    assert tfs_config.serving_of(tfs_config.parse((folder / "models.config").read_text()))[MODEL] == \
        tfs_config.ModelServing((1,), {})
    server = create_server(ServerOptions(
        grpc_port=0, rest_api_port=0, model_config_file=str(folder / "models.config"),
        model_config_file_poll_wait_seconds=1, allow_version_labels_for_unavailable_models=True,
    ))
    rest = f"127.0.0.1:{server.rest_port}"
    try:
        wait_until(lambda: states(server.grpc_address).get(1) == "AVAILABLE", 60, "version 1 served")
        set_labels(trainer, stable=2)
        # A label moves only to an AVAILABLE version: first 2 beside 1, labels unchanged (none yet).
        second = api.sync(folder, servers=[rest], paths=trainer)
        assert second.copied == ["hpt/2"] and second.removed == []
        assert second.kept == ["models.config: labels move once the servers have loaded hpt 2"]
        assert tfs_config.serving_of(tfs_config.parse((folder / "models.config").read_text()))[MODEL] == \
            tfs_config.ModelServing((1, 2), {})
        wait_until(lambda: states(server.grpc_address).get(2) == "AVAILABLE", 60, "2 loaded")
        # The labels move now; 1 goes only once the server (polling the file) has unloaded it,
        # which may already be the case by the time this pass asks.
        third = api.sync(folder, servers=[rest], paths=trainer)
        assert third.config_changed
        if third.removed != ["hpt/1"]:
            assert third.kept == ["hpt/1: loaded on a server"] and third.removed == []
            wait_until(lambda: states(server.grpc_address).get(1) in ("END", None), 60, "1 unloaded")
            assert api.sync(folder, servers=[rest], paths=trainer).removed == ["hpt/1"]
        assert states(server.grpc_address).get(1) in ("END", None)
        assert not (folder / MODEL / "1").exists()
        assert states(server.grpc_address)[2] == "AVAILABLE"
    finally:
        server.stop()
