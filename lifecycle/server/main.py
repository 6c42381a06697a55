"""``mlc-model-server``: the console entry point (``python -m lifecycle.server.main`` too).

Parses tensorflow_model_server's flags (:mod:`lifecycle.server.config.flags`), starts the server
(:mod:`lifecycle.server.app`) and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from lifecycle.errors import FlagError, LifecycleError
from lifecycle.server import memtrace
from lifecycle.server.app import create_server
from lifecycle.server.config.flags import options_from_flags, parse_flags, usage

log = logging.getLogger("mlc-model-server")

LOG_FORMAT = "%(asctime)s %(levelname).1s %(name)s] %(message)s"


def freeze_startup_objects() -> None:
    """Keep the objects start-up made out of every later garbage collection.

    Importing TensorFlow and loading the models leaves about 280,000 tracked objects that live as
    long as the server. A full (generation 2) collection walks them all: measured at 148 ms
    (``gc.callbacks`` in a server under bench/bench_server.py), a pause for every request in
    flight, which TF Serving's clients never see from the C++ server. Collected once here, then
    frozen (``gc.freeze``), they are skipped; objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: ``mlc-model-server --model_config_file=... --port=8500``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in args):
        sys.stdout.write(usage())
        return 0
    try:
        values = parse_flags(args)
    except FlagError as e:
        # As tensorflow_model_server: the bad flag on stderr, the usage text on stdout.
        sys.stderr.write(f"{e.message}\n")
        sys.stdout.write(usage())
        return e.exit_code
    if values.get("version"):
        import lifecycle

        sys.stdout.write(f"TensorFlow ModelServer: mlc-model-server {lifecycle.__version__}\n")
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT)
    options = options_from_flags(values)
    from lifecycle.tf_import import import_tensorflow

    # Before any model loads, without the CUDA-probe noise of a CPU machine or deprecation
    # warnings (all of TensorFlow's log with MLC_VERBOSE=1); the rest goes to this server's log.
    import_tensorflow()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("Received signal %d, shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = create_server(options)
    except LifecycleError as e:
        log.error("Failed to start server. Error: %s", e.message)
        return 1
    freeze_startup_objects()
    memtrace.arm()
    while not stop.wait(0.5):
        pass
    server.stop(grace=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
