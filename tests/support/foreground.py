"""A long-running ``mlc`` command (``mlc serve`` in the foreground) as a child process, its output
drained all along: an undrained pipe fills with server logs and blocks both processes on write,
so Ctrl-C could not stop them."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.support.polling import wait_until


@dataclass
class Foreground:
    """The child and every line it has printed so far (stdout and stderr together)."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(list(self.lines))


def start_mlc(python: str, args: Sequence[str], env: Mapping[str, str], ready: str = "press Ctrl-C",
              timeout: float = 120) -> Foreground:
    """Start ``mlc *args`` and return once it printed ``ready``; fail (showing its output) if it exits first."""
    process = subprocess.Popen([python, "-m", "lifecycle", *args], env=dict(env), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    child = Foreground(process)
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: child.lines.extend(iter(stdout.readline, "")), daemon=True).start()
    try:
        wait_until(lambda: process.poll() is not None or any(ready in line for line in list(child.lines)),
                   timeout=timeout, what=f"mlc {' '.join(args[:1])} to print {ready!r}", details=child.output)
        assert process.poll() is None, child.output()
    except BaseException:
        process.kill()
        process.wait()
        raise
    return child
