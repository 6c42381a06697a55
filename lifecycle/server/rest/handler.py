"""REST transport: TF Serving's ``/v1/models/...`` API as a standard-library HTTP handler.

Connections, framing, timeouts and the worker pool are :mod:`lifecycle.server.rest.connections`'s;
this module reads one buffered request, finds its row in :data:`lifecycle.server.rest.routes.ROUTES`
and answers with that row's endpoint (:mod:`lifecycle.server.rest.endpoints`). Before the table:
a CORS preflight (``OPTIONS``, with ``--rest_api_enable_cors_support``), the Prometheus path
(``--monitoring_config_file``) and ``404`` for anything outside ``/v1/``.

Errors are ``{"error": "<message>"}`` with the HTTP status of the error's gRPC code
(``lifecycle.errors.GRPC_TO_HTTP``), mapped in one place, :meth:`_Handler._respond_error`.

mlc's admin rows of the table answer only a request whose ``mlc-admin-token`` header holds the
server's token (``--mlc_admin_token_file``); without it they answer as any unknown path does.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from lifecycle.errors import (
    InvalidArgument,
    LifecycleError,
    RequestTooLarge,
    ResourceExhausted,
)
from lifecycle.server.core import ServerCore
from lifecycle.server.monitoring import request_observer
from lifecycle.server.rest import json_codec as rest_json
from lifecycle.server.rest.endpoints import RestRequest
from lifecycle.server.rest.routes import find_route
from lifecycle.server.traffic.split import ROUTE_KEY

ADMIN_TOKEN_HEADER = "mlc-admin-token"

log = logging.getLogger("mlc-model-server")

_V1_PREFIX = re.compile(r"/v1/", re.IGNORECASE)
# Default bound on a REST request body (mlc's own; TF Serving has none). A 513x513 RGB image
# as JSON integers is about 3 MB; --mlc_max_request_bytes raises the bound.
DEFAULT_MAX_REQUEST_BYTES = 256 << 20
_last_date: list[Any] = [0, ""]  # the second and its Date text


def handler_class(core: ServerCore, timeout_ms: int = 30000, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                  metrics_path: str | None = None, cors: bool = False,
                  admin_token: str | None = None) -> type[BaseHTTPRequestHandler]:
    """The HTTP handler bound to one server's core and settings (connections.RestServer runs it)."""
    return type("BoundHandler", (_Handler,), {
        "core": core, "timeout_ms": timeout_ms, "max_request_bytes": max_request_bytes,
        "metrics_path": metrics_path, "cors": cors, "admin_token": admin_token,
    })


class _Handler(BaseHTTPRequestHandler):
    core: ServerCore
    timeout_ms: int
    max_request_bytes: int
    metrics_path: str | None  # Prometheus exposition on this GET path, if enabled
    cors: bool  # --rest_api_enable_cors_support
    admin_token: str | None  # --mlc_admin_token_file's token: the admin path answers only with it
    protocol_version = "HTTP/1.1"
    server_version = "mlc-model-server"

    def handle_expect_100(self) -> bool:
        """The event loop already sent ``100 Continue`` before it read the body."""
        return True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("rest: " + format, *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header: whole seconds, so formatted once a second rather than once a request."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = _last_date
        if second != now:
            text = super().date_time_string(now)
            _last_date[:] = (now, text)  # one list store: threads see the old pair or the new one
        return text

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    # TF Serving answers any other method with INVALID_ARGUMENT "Malformed request" (400).
    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own errors (bad request line, headers too long) as JSON too."""
        self.close_connection = True
        self._respond(code, rest_json.error_json(message or self.responses.get(code, ("Error",))[0]))

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._read_body()
            if method == "OPTIONS" and self.cors:  # a CORS preflight
                self._respond(200, b"")
                return
            if method == "GET" and self.metrics_path is not None and path == self.metrics_path:
                self._respond(200, self.core.metrics.render(), content_type="text/plain; version=0.0.4")
                return
            if not _V1_PREFIX.match(path):
                self._respond(404, rest_json.error_json(f"Not found: {method} {path}"))
                return
            result = self._route(method, path, body)
        except LifecycleError as e:
            self._respond_error(e)
            return
        except RecursionError:
            self._respond_error(InvalidArgument("JSON Value: nested too deeply"))
            return
        except MemoryError:
            self._respond_error(ResourceExhausted("Request too large to process in memory"))
            return
        except Exception as e:  # a bug: answer 500 rather than drop the connection
            log.exception("REST %s %s failed", method, path)
            self._respond_error(LifecycleError(f"{type(e).__name__}: {e}"))
            return
        self._respond(200, result)

    def _read_body(self) -> bytes:
        """The request body: Content-Length or chunked, at most max_request_bytes."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise InvalidArgument("malformed Content-Length header") from None
        if length < 0:
            self.close_connection = True
            raise InvalidArgument("malformed Content-Length header")
        if length > self.max_request_bytes:
            self.close_connection = True  # the unread body must not be taken for the next request
            raise self._too_large(length)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise InvalidArgument("malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if size < 0 or total > self.max_request_bytes:
                self.close_connection = True
                raise self._too_large(total)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _too_large(self, size: int) -> RequestTooLarge:
        return RequestTooLarge(
            f"Request body of {size} bytes exceeds the limit of {self.max_request_bytes} bytes "
            "(raise it with --mlc_max_request_bytes)"
        )

    def _route(self, method: str, path: str, body: bytes) -> bytes | str:
        found = find_route(method, path, admin=self._is_admin())
        if found is None:
            raise InvalidArgument(f"Malformed request: {method} {path}")
        route, ref = found
        request = RestRequest(ref, body, self.timeout_ms, self.headers.get(ROUTE_KEY))
        if route.api is None:
            return route.endpoint(self.core, request)
        observe = request_observer(self.core.metrics, ref.name, route.api, "REST")
        status = "INTERNAL"
        try:
            result = route.endpoint(self.core, request)
            status = "OK"
            return result
        except LifecycleError as e:
            status = e.grpc_code
            raise
        except RecursionError:
            status = "INVALID_ARGUMENT"
            raise
        finally:
            observe(status)

    def _is_admin(self) -> bool:
        """Whether the request carries this server's admin token (never, without the flag)."""
        given = self.headers.get(ADMIN_TOKEN_HEADER)
        if not self.admin_token or given is None:
            return False
        return hmac.compare_digest(given.strip().encode(), self.admin_token.encode())

    def _respond_error(self, error: LifecycleError) -> None:
        self._respond(error.http_status, rest_json.error_json(error.message))

    def _respond(self, status: int, payload: bytes | str | dict[str, Any],
                 content_type: str = "application/json") -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        data = payload if isinstance(payload, bytes) else payload.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            if getattr(self, "cors", False):
                self.send_header("Access-Control-Allow-Origin", "*")
                if self.command == "OPTIONS":
                    self.send_header("Access-Control-Allow-Methods", "POST, GET")
                    self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client went away; nothing left to tell it
            self.close_connection = True
