"""A real webhook receiver on 127.0.0.1 for the hook tests: checks each POST's signature and keeps
the events it accepted, deduplicated by id (as a receiver of at-least-once delivery should)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    """Events by id, how many POSTs came, and any that failed the signature check."""

    secret: str
    port: int = 0
    hang: float = 0.0  # seconds each request is held before answering
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: int = 0
    bad_signatures: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if owner.hang:
                    threading.Event().wait(owner.hang)
                want = "sha256=" + hmac.new(owner.secret.encode(), body, hashlib.sha256).hexdigest()
                with owner._lock:
                    owner.posts += 1
                    if not hmac.compare_digest(want, self.headers.get("X-Mlc-Signature-256", "")):
                        owner.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    event = json.loads(body)
                    owner.events.setdefault(event["id"], event)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
