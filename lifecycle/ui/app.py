"""The UI's HTTP server: the standard library's ThreadingHTTPServer, GET and HEAD only.

Routes (every one read-only; anything else is 404, any other method 405):

    /                                          overview            api.status()
    /models/<m>                                model page          api.status(m), api.history(m)
    /models/<m>/versions/<n>                   version page        its registry record and whole report
    /models/<m>/history?kind=K&version=N       history page        api.history(m), filtered
    /models/<m>/diff?a=A&b=B                   two versions        api.diff(m, A, B), cached
    /models/<m>/versions/<n>/mask.png          test-image pictures (lazily computed, cached)
    /models/<m>/versions/<n>/overlay.png
    /models/<m>/versions/<n>/card              its model card (mlc card's HTML; lazily made, cached)
    /models/<m>/diff/<A>-vs-<B>/<i>.png        a diff strip
    /api/status, /api/models/<m>               the api results as JSON, plus the pages' sections
    /static/ui.js, /static/ui.css              shipped in the package

Why the standard library and not a web framework: the UI has a dozen GET routes and no forms
that write, so a framework would add a dependency (and its upgrades) for routing alone.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from lifecycle import api
from lifecycle.errors import LifecycleError, ModelNotFound, UsageError, VersionNotFound
from lifecycle.store.config import Paths, repository_url
from lifecycle.ui import pages, pictures, records, reports
from lifecycle.ui.redact import redact, redact_data

STATIC = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8"}
# The page loads nothing from anywhere else and runs no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# A model card is one self-contained page: its pictures are data: URIs and its style inline; no script.
CARD_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
DEFAULT_PORT = 8600  # beside TF Serving's 8500 (gRPC) and 8501 (REST)
PICTURE_MAX_AGE = 300  # seconds a browser may reuse a computed picture

_MODEL = r"(?P<model>[^/]+)"
ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"/"), "overview"),
    (re.compile(rf"/models/{_MODEL}"), "model"),
    (re.compile(rf"/models/{_MODEL}/diff"), "diff"),
    (re.compile(rf"/models/{_MODEL}/versions/(?P<version>\d{{1,9}})"), "version"),
    (re.compile(rf"/models/{_MODEL}/history"), "history"),
    (re.compile(rf"/models/{_MODEL}/versions/(?P<version>\d{{1,9}})/(?P<picture>mask|overlay)\.png"), "version_picture"),
    (re.compile(rf"/models/{_MODEL}/versions/(?P<version>\d{{1,9}})/card"), "version_card"),
    (re.compile(rf"/models/{_MODEL}/diff/(?P<a>\d{{1,9}})-vs-(?P<b>\d{{1,9}})/(?P<index>\d{{1,3}})\.png"), "diff_picture"),
    (re.compile(r"/api/status"), "api_status"),
    (re.compile(rf"/api/models/{_MODEL}"), "api_model"),
    (re.compile(r"/static/(?P<name>[a-z.]+)"), "static"),
    (re.compile(r"/favicon\.ico"), "favicon"),
]


class Handler(BaseHTTPRequestHandler):
    """Answers one request by route; the home comes from the server."""

    server: UiHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is closed after this many seconds

    # --- plumbing --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _refuse(self) -> None:
        self._head = False
        self.close_connection = True  # its body, if any, is not read: the connection cannot be reused
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"mlc ui is read-only: GET and HEAD only\n",
                   "text/plain; charset=utf-8", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # read-only: nothing changes state

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would drown the terminal at one poll per second."""

    @property
    def home(self) -> str:
        """The header's "where": the home, and the repository when it lives elsewhere."""
        return self.server.location

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for key, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def _html(self, html: str, status: int = 200) -> None:
        self._send(status, html.encode(), "text/html; charset=utf-8")

    def _error(self, status: int, title: str, message: str) -> None:
        self._html(pages.error_page(status, title, message, self.home), status)

    def _json(self, data: Any) -> None:
        self._send(200, json.dumps(redact_data(data), default=str).encode(), "application/json")

    def _file(self, path: Path, content_type: str, cache: str) -> None:
        self._send(200, path.read_bytes(), content_type, cache=cache)

    def _host_allowed(self) -> bool:
        """Bound to loopback, answer only requests addressed to loopback (no DNS rebinding)."""
        if not self.server.loopback:
            return True
        host = self.headers.get("Host") or ""
        name = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
        return name in LOOPBACK_HOSTS

    def _answer(self, head: bool) -> None:
        self._head = head
        url = urlsplit(self.path)
        path = unquote(url.path)
        try:
            if not self._host_allowed():
                return self._error(403, "forbidden", "this page answers only requests addressed to 127.0.0.1 or localhost")
            for pattern, name in ROUTES:
                match = pattern.fullmatch(path)
                if match:
                    return getattr(self, f"route_{name}")(**match.groupdict(), query=parse_qs(url.query))
            self._error(404, "not found", f"nothing at {path}")
        except (ModelNotFound, VersionNotFound, UsageError) as e:  # an unknown or impossible name
            self._error(404, "not found", e.message)
        except LifecycleError as e:
            self._error(e.http_status, "cannot show this", e.message)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser left
        except Exception as e:  # noqa: BLE001 - the transport boundary: a bug is one stderr line and a 500 page, not a dropped connection
            print(f"mlc ui: {self.command} {redact(path)}: {type(e).__name__}: {redact(str(e))}", file=sys.stderr)
            self._error(500, "internal error", f"{type(e).__name__}: {e}")

    # --- routes ----------------------------------------------------------------------------------

    def _overview(self) -> tuple[dict[str, Any], dict[str, str]]:
        status = api.status(paths=self.server.paths).to_dict()
        return status, pages.overview_sections(status, records.rest_addresses(self.server.paths))

    def _model(self, model: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        paths = self.server.paths
        status = api.status(model, paths=paths, all_versions=True).to_dict()  # the chart plots every version
        history = api.history(model, paths=paths).to_dict()
        no_masks, no_diff = pictures.unavailable(paths, model)
        rest = records.rest_addresses(paths)
        return status, history, pages.model_sections(status, history, no_masks, no_diff, rest)

    def route_overview(self, query: dict[str, list[str]]) -> None:
        self._html(pages.overview_page(self._overview()[1], self.home))

    def route_api_status(self, query: dict[str, list[str]]) -> None:
        status, sections = self._overview()
        self._json({"status": status, "sections": _sections(sections)})

    def route_model(self, model: str, query: dict[str, list[str]]) -> None:
        self._html(pages.model_page(model, self._model(model)[2], self.home))

    def route_api_model(self, model: str, query: dict[str, list[str]]) -> None:
        status, history, sections = self._model(model)
        self._json({"status": status, "history": history, "sections": _sections(sections)})

    def route_version(self, model: str, version: str, query: dict[str, list[str]]) -> None:
        paths, n = self.server.paths, int(version)
        detail = records.version_detail(paths, model, n)  # ModelNotFound, VersionNotFound: a 404 page
        status = api.status(model, paths=paths, all_versions=True).to_dict()
        listed = next((v for v in status["models"][0]["versions"] if v["version"] == n), None)
        history = api.history(model, paths=paths).to_dict()
        no_masks, _ = pictures.unavailable(paths, model)
        self._html(reports.version_page(model, detail, listed, history, no_masks, self.home))

    def route_history(self, model: str, query: dict[str, list[str]]) -> None:
        kind = (query.get("kind") or [""])[0] or None
        wanted = (query.get("version") or [""])[0]
        if wanted and not wanted.isdigit():
            return self._error(400, "bad request", f"version must be a version number, not {wanted!r}")
        paths = self.server.paths
        history = api.history(model, paths=paths).to_dict()
        numbers = records.version_numbers(paths, model)
        self._html(reports.history_page(model, history, numbers, kind, int(wanted) if wanted else None, self.home))

    def route_diff(self, model: str, query: dict[str, list[str]]) -> None:
        try:
            a, b = int(query["a"][0]), int(query["b"][0])
        except (KeyError, ValueError):
            return self._error(400, "bad request", "name two versions: ?a=N&b=M")
        result, _ = pictures.version_diff(self.server.paths, model, a, b)
        self._html(pages.diff_page(result, self.home))

    def route_version_picture(self, model: str, version: str, picture: str, query: dict[str, list[str]]) -> None:
        path = pictures.version_picture(self.server.paths, model, int(version), f"{picture}.png")
        self._file(path, "image/png", f"private, max-age={PICTURE_MAX_AGE}")

    def route_version_card(self, model: str, version: str, query: dict[str, list[str]]) -> None:
        path = pictures.version_card(self.server.paths, model, int(version))
        self._send(200, path.read_bytes(), "text/html; charset=utf-8", extra={"Content-Security-Policy": CARD_POLICY})

    def route_diff_picture(self, model: str, a: str, b: str, index: str, query: dict[str, list[str]]) -> None:
        path = pictures.diff_picture(self.server.paths, model, int(a), int(b), int(index))
        if path is None:
            return self._error(404, "not found", f"the diff of {model} {a} and {b} has no picture {index}")
        self._file(path, "image/png", f"private, max-age={PICTURE_MAX_AGE}")

    def route_favicon(self, query: dict[str, list[str]]) -> None:
        self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", cache="max-age=86400")

    def route_static(self, name: str, query: dict[str, list[str]]) -> None:
        if name not in STATIC:
            return self._error(404, "not found", f"no static file {name}")
        body = resources.files("lifecycle.ui").joinpath("static", name).read_bytes()
        self._send(200, body, STATIC[name], cache="no-cache")


def _sections(sections: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"html": html, "digest": pages.digest(html)} for name, html in sections.items()}


def _location(paths: Paths) -> str:
    """The home, and its repository when that is not ``model_repo/`` (an ``s3://`` prefix)."""
    try:
        url = repository_url(paths)
    except LifecycleError as e:
        return f"{paths.home} (repository: {e.message})"
    return f"{paths.home} · repository {url}" if url else str(paths.home)


class UiHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its mlc home."""

    daemon_threads = True  # a browser's open keep-alive connection must not hold up shutdown

    def __init__(self, address: tuple[str, int], paths: Paths) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.paths = paths
        self.location = _location(paths)
        self.loopback = address[0] in LOOPBACK_HOSTS or address[0].startswith("127.")
        super().__init__(address, Handler)


class UiServer:
    """A running ``mlc ui``: its URL, and a way to wait for it or stop it."""

    def __init__(self, httpd: UiHTTPServer) -> None:
        self.httpd = httpd
        self.thread = threading.Thread(target=httpd.serve_forever, name="mlc-ui", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.httpd.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def wait(self, timeout: float | None = None) -> None:
        """Block until the server stops."""
        self.thread.join(timeout)

    def stop(self) -> None:
        """Stop answering and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def create_server(paths: Paths, host: str = "127.0.0.1", port: int = 0) -> UiServer:
    """Start the UI on ``host:port`` (0: a free port) in a background thread; returns the running server."""
    try:
        httpd = UiHTTPServer((host, port), paths)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from e
    return UiServer(httpd)


def serve_until_stopped(server: UiServer) -> None:
    """Block until Ctrl-C or SIGTERM (even when SIGINT was inherited as ignored), then stop the server."""
    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:  # signal handlers can only be set from the main thread
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set() and server.thread.is_alive():
            stop.wait(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()


def serve(paths: Paths, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the page of ``paths``' home until Ctrl-C or SIGTERM; ``on_ready(url)`` once it answers."""
    server = create_server(paths, host, port)
    if on_ready is not None:
        on_ready(server.url)
    serve_until_stopped(server)
