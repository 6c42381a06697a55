"""The private sandbox of ``mlc promote``: a second, separate core on a Unix socket only mlc knows.

``mlc serve`` starts mlc-model-server with ``--mlc_sandbox_socket=PATH`` (a socket in a folder
only its user can enter). Beside the public core the server then runs a second
:class:`~lifecycle.server.core.ServerCore` with its own manager, empty at start, serving
TF Serving's ModelService and PredictionService on that socket alone. ``mlc promote`` loads a
candidate there by ``HandleReloadConfigRequest`` (the candidate alone), replays its warmup
request, compares the golden digest and reloads an empty config: the candidate is never in the
public core, so no client of the public ports can reach it or see it in a model status.

Why here: this process has TensorFlow loaded already, so the CLI checks a candidate without
importing TensorFlow (about 2.5 s) or starting a server of its own. The sandbox loads with no
retries (a candidate that does not load fails at once) and no batching; warmup and the session
options are the public core's. Checks are serialised by the CLI (a lock file beside the socket).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from lifecycle.server.models.manager import ManagerOptions

log = logging.getLogger("mlc-model-server")


class Sandbox:
    """The sandbox core and its gRPC endpoint on the private socket."""

    def __init__(self, core: Any, endpoint: Any, socket_path: str) -> None:
        self.core = core
        self.socket_path = socket_path
        self._endpoint = endpoint

    def stop(self) -> None:
        """Stop listening, unload the candidate (if any) and remove the socket file."""
        self._endpoint.stop(None)
        self.core.stop()
        Path(self.socket_path).unlink(missing_ok=True)


def start_sandbox(manager: ManagerOptions, socket_path: str, warmup_iterations: int,
                  transport: str = "threads") -> Sandbox:
    """Start the empty sandbox core on ``socket_path`` (readable and writable by this user only)."""
    from lifecycle.server.core import ServerCore
    from lifecycle.server.grpc.endpoint import start_grpc

    core = ServerCore(dataclasses.replace(manager, max_num_load_retries=0), warmup_iterations=warmup_iterations)
    old_umask = os.umask(0o177)  # the socket file is created 0600
    try:
        endpoint = start_grpc(core, "", None, socket_path, "", 4, health=False, transport=transport)
    except BaseException:
        core.stop()
        raise
    finally:
        os.umask(old_umask)
    log.info("Running the private sandbox of mlc promote at UNIX socket %s ...", socket_path)
    return Sandbox(core, endpoint, socket_path)
