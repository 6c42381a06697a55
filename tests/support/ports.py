"""Free TCP ports on 127.0.0.1, for child processes that must be told their port up front.

In-process servers bind port 0 and report what they got; a child started with a command line
(``mlc serve --grpc-port P``, a fleet in servers.yaml) needs a number before it starts. A port
chosen here is also one that nothing listens on, for "unreachable server" tests.
"""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together while choosing)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """One free TCP port on 127.0.0.1."""
    return free_ports(1)[0]
