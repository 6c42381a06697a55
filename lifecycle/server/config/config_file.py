"""The model config file: reading ``--model_config_file`` and watching it for changes.

``read_model_config_file`` parses the text ``ModelServerConfig``; ``ConfigFileWatcher`` is TF
Serving's ``--model_config_file_poll_wait_seconds`` poller (plus a watchdog accelerator), and
counts its polls so tests can wait until it has provably looked at the file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

from lifecycle.errors import LifecycleError
from lifecycle.server.config.textproto import read_textproto

log = logging.getLogger("mlc-model-server")


def read_model_config_file(path: str | Path) -> Any:
    """Parse a text-format ModelServerConfig; INVALID_ARGUMENT naming the file if malformed."""
    from tensorflow_serving.config import model_server_config_pb2

    return read_textproto(path, model_server_config_pb2.ModelServerConfig())


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: what the watcher compares to decide whether it changed."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def single_model_config(name: str, base_path: str) -> Any:
    """The config TF Serving builds from --model_name and --model_base_path."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = "tensorflow"
    return config


class ConfigFileWatcher:
    """Re-reads --model_config_file every poll interval, and at once when watchdog sees it change.

    A config is applied again only when the file's content changed or its last apply failed,
    so a config that was refused (e.g. a label on a version still loading) is retried.
    """

    def __init__(self, path: Path, interval_s: float, apply: Any, applied_digest: str) -> None:
        self.path = path
        self.interval_s = interval_s
        self._apply = apply
        self._digest = applied_digest
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlc-config-poll", daemon=True)
        self._observer: Any = None
        self.polls = 0  # finished polls (reads of the file) so far
        self.last_error: LifecycleError | None = None  # why the last changed file was refused
        self._polled = threading.Condition()

    def start(self) -> None:
        """Start the poll thread and the watchdog observer."""
        self._thread.start()
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            target = str(self.path.resolve())
            wake = self._wake

            class _Handler(FileSystemEventHandler):
                def on_any_event(self, event: Any) -> None:
                    # Not "opened"/"closed_no_write": our own reads of the file raise those.
                    if event.event_type not in ("created", "modified", "moved", "closed", "deleted"):
                        return
                    paths = {getattr(event, "src_path", ""), getattr(event, "dest_path", "")}
                    if target in {str(Path(p).resolve()) for p in paths if p}:
                        wake.set()

            self._observer = Observer()
            self._observer.schedule(_Handler(), str(self.path.resolve().parent), recursive=False)
            self._observer.daemon = True
            self._observer.start()
        except Exception as e:  # watchdog is an accelerator; polling still works without it
            log.warning("watchdog unavailable for %s (%s); relying on polling", self.path, e)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.poll_once()

    def poll_once(self) -> None:
        """Read the file and apply it if it changed (or failed last time); then count the poll."""
        try:
            self._poll()
        finally:
            with self._polled:
                self.polls += 1
                self._polled.notify_all()

    def _poll(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as e:
            log.error("Failed to read ModelServerConfig file: %s", e)
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return
        try:
            config = read_model_config_file(self.path)
            self._apply(config)
        except LifecycleError as e:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s: %s", e.grpc_code, e.message)
            self.last_error = e
            self._digest = ""
            return
        self.last_error = None
        self._digest = digest
        log.info("Reloaded model config file %s", self.path)

    def wait_for_polls(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` polls have finished (True) or ``timeout`` s passed."""
        with self._polled:
            return self._polled.wait_for(lambda: self.polls >= count, timeout)

    def stop(self) -> None:
        """Stop polling and watching."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
        self._thread.join(timeout=2)

