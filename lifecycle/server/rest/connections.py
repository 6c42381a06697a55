"""The REST port's connections: one event loop reads whole requests, a fixed pool answers them.

TF Serving serves REST from libevent (util/net_http/server/internal/evhttp_server.cc) with a
fixed executor of ``--rest_api_num_threads`` workers (default 4 x the CPUs, server.h) and times
requests out after ``--rest_api_timeout_in_ms``. This server does the same with the standard
library, so connection floods and slow clients cannot starve it:

- the listening socket's backlog is the system maximum (``net.core.somaxconn``), so a burst of
  connections is queued by the kernel instead of being refused or retried by SYN;
- an asyncio loop (one thread) holds every connection and reads each request whole (headers,
  then a ``Content-Length`` or chunked body), so an idle or stalled connection costs no thread;
- the whole read of a request, and the write of its answer, must finish within
  ``--rest_api_timeout_in_ms``; a client that is slower is dropped (counted in ``dropped``);
- a complete request goes to a bounded ``ThreadPoolExecutor`` of ``--rest_api_num_threads``
  workers, which run the HTTP handler (:mod:`lifecycle.server.rest.handler`) on the buffered bytes.

asyncio's streams beat a hand-written selector loop (their buffering, limits and
``readuntil``/``readexactly`` are what a request reader needs), and an HTTP library would
replace the handler whose TF-Serving-exact answers the tests pin down: the loop only frames
requests, the stdlib handler still parses and answers them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

from lifecycle.errors import RequestHeadersTooLarge
from lifecycle.server.rest import json_codec as rest_json

log = logging.getLogger("mlc-model-server")

MAX_HEADER_BYTES = 64 * 1024  # the request line and headers together
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def listen_backlog() -> int:
    """The system's maximum listen backlog (net.core.somaxconn), else socket.SOMAXCONN."""
    try:
        with open("/proc/sys/net/core/somaxconn", encoding="ascii") as f:
            return max(int(f.read().strip()), socket.SOMAXCONN)
    except (OSError, ValueError):
        return socket.SOMAXCONN


def default_num_threads() -> int:
    """TF Serving's default for --rest_api_num_threads: 4 x the schedulable CPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 4 * cpus


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_body: int) -> bytes | None:
    """One request's bytes, framed as HTTP/1.1 frames it; None on a clean close between requests.

    A body over ``max_body`` or a malformed framing header is not read: the handler answers
    those from the head alone (413, 400) and closes the connection.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise
    except asyncio.LimitOverrunError:
        raise RequestHeadersTooLarge(
            f"Request line and headers exceed {MAX_HEADER_BYTES} bytes") from None
    if b"chunked" in (_header(head, b"transfer-encoding") or b"").lower():
        parts = [head]
        total = 0
        while True:
            line = await reader.readuntil(b"\n")
            parts.append(line)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return b"".join(parts)
            if size == 0:
                while (trailer := await reader.readuntil(b"\n")) not in (b"\r\n", b"\n"):
                    parts.append(trailer)
                parts.append(trailer)
                return b"".join(parts)
            total += size
            if size < 0 or total > max_body:
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            parts.append(await reader.readuntil(b"\n"))
    try:
        length = int(_header(head, b"content-length") or 0)
    except ValueError:
        return head
    if length <= 0 or length > max_body:
        return head
    if (_header(head, b"expect") or b"").lower() == b"100-continue":
        writer.write(CONTINUE)
    return head + await reader.readexactly(length)


class RestServer:
    """TF Serving's REST API on an event loop with a bounded worker pool (see the module doc)."""

    def __init__(self, handler_class: type[BaseHTTPRequestHandler], host: str, port: int, timeout_ms: int = 30000,
                 num_threads: int = 0) -> None:
        self.handler_class = handler_class
        self.backlog = listen_backlog()
        self._socket = socket.create_server((host, port), backlog=self.backlog)
        self.port: int = self._socket.getsockname()[1]
        self.num_threads = num_threads if num_threads > 0 else default_num_threads()
        self.timeout_s: float | None = timeout_ms / 1000 if timeout_ms > 0 else None
        self.max_body = getattr(handler_class, "max_request_bytes", 256 << 20)
        self.dropped = 0  # connections closed because the client was too slow
        self._pool = ThreadPoolExecutor(max_workers=self.num_threads, thread_name_prefix="mlc-rest")
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._server: Any = None
        self._thread = threading.Thread(target=self._run, name="mlc-rest-loop", daemon=True)

    @property
    def open_connections(self) -> int:
        """Connections the loop holds now."""
        return len(self._writers)

    def start(self) -> None:
        """Serve from the event loop's own thread; returns once it accepts connections."""
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(
            self._serve, sock=self._socket, backlog=self.backlog, limit=MAX_HEADER_BYTES))
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(read_request(reader, writer, self.max_body), self.timeout_s)
                except TimeoutError:
                    self.dropped += 1
                    log.debug("rest: dropped %s: no whole request within %s s", peer, self.timeout_s)
                    return
                except RequestHeadersTooLarge as e:
                    writer.write(_error_response(e.http_status, e.message))
                    await asyncio.wait_for(writer.drain(), self.timeout_s)
                    return
                if raw is None:
                    return
                response, close = await self._loop.run_in_executor(self._pool, self._answer, raw, peer)
                writer.write(response)
                try:
                    await asyncio.wait_for(writer.drain(), self.timeout_s)
                except TimeoutError:
                    self.dropped += 1
                    return
                if close:
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            return  # the client went away mid-request
        finally:
            self._writers.discard(writer)
            writer.close()

    def _answer(self, raw: bytes, peer: Any) -> tuple[bytes, bool]:
        """Run the HTTP handler on one buffered request; returns its answer and whether to close."""
        # Made without __init__, which would serve a socket: the buffered bytes stand in for one.
        handler: Any = self.handler_class.__new__(self.handler_class)
        handler.rfile = io.BytesIO(raw)
        handler.wfile = io.BytesIO()
        handler.client_address = peer
        handler.server = self
        handler.request = None
        handler.close_connection = True
        try:
            handler.handle_one_request()
        except Exception:  # a bug must not take the worker down; the client gets a 500
            log.exception("REST handler failed")
            return _error_response(500, "Internal error"), True
        return handler.wfile.getvalue(), handler.close_connection

    def stop(self) -> None:
        """Stop accepting, close every connection, and stop the loop and the workers."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._socket.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()


def _error_response(status: int, message: str) -> bytes:
    """A JSON error answer written by the loop itself (the handler never saw the request)."""
    from http import HTTPStatus

    body = rest_json.error_json(message)
    data = body if isinstance(body, bytes) else body.encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data
