"""TLS to a server: the files configs/servers.yaml names, read for gRPC channels and HTTPS.

Below both :mod:`lifecycle.serving.fleet` (which parses a ``tls`` section into a :class:`Tls`)
and :mod:`lifecycle.serving.client` (which opens channels with one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError


@dataclass(frozen=True)
class Tls:
    """TLS to a server: the CA that signs its certificate, and a client certificate for mutual TLS.

    Paths to PEM files. ``server_name`` overrides the name checked against the server's
    certificate (replicas found by DNS are dialled by IP address; their certificate names the
    Service).
    """

    ca: str
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None

    def read(self) -> tuple[bytes, bytes | None, bytes | None]:
        """The PEM bytes of the CA, the client certificate and key; ConfigError if unreadable."""

        def pem(path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as e:
                raise ConfigError(f"cannot read TLS file {path}: {e.strerror}") from e

        return pem(self.ca) or b"", pem(self.cert), pem(self.key)

    def ssl_context(self) -> Any:
        """An ``ssl.SSLContext`` for HTTPS to a server (REST)."""
        import ssl

        context = ssl.create_default_context(cafile=self.ca)
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context
