"""Run the mlc command line in child processes forked from a server that imported TensorFlow once.

Eight ``mlc register`` processes would each spend ~4 s of CPU importing TensorFlow before doing
anything; on a two-core machine that is most of a concurrency test. A multiprocessing
*forkserver* imports TensorFlow and the mlc modules once (before any TensorFlow runtime exists,
so forking is safe) and forks each child from there. Each child is a separate process running
``lifecycle.cli.main`` with its own argv, environment and output file: the same code path as
``mlc ...`` on a shell, competing for the same locks.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from lifecycle import failpoints
from lifecycle.store.config import REPOSITORY_ENV

PRELOAD = [
    "tensorflow",
    "tensorflow_serving.apis.prediction_log_pb2",
    "lifecycle.cli",
    "lifecycle.networks.deeplab",
    "lifecycle.register.export",
    "lifecycle.register.validate",
    "lifecycle.rollout",
    "lifecycle.server",
    "lifecycle.serving.client",
    "tests.support.forked_cli",
]


def context() -> BaseContext:
    """The forkserver context, preloading TensorFlow and mlc (set before its first use)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def run_cli(args: list[str], env: dict[str, str], output: str) -> None:
    """Child body: ``mlc *args`` with ``env`` added; stdout to ``output``, stderr to ``output.err``."""
    # Failpoints and the repository come only from ``env``, not from the test process as it was
    # when the forkserver started (an S3 test may have started it with MLC_REPOSITORY set).
    os.environ.pop(failpoints.ENV, None)
    os.environ.pop(REPOSITORY_ENV, None)
    os.environ.update(env)
    for target, path in ((1, output), (2, output + ".err")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, target)
        os.close(fd)
    # Line by line, like a child started with PYTHONUNBUFFERED: a test may read while the command runs.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.argv = ["mlc", *args]
    code = 0
    try:
        from lifecycle.cli import main

        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - report any crash as a failing exit code
        import traceback

        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass(frozen=True)
class Finished:
    """How a forked ``mlc`` child ended: its exit code (``-9`` after SIGKILL) and what it printed."""

    exitcode: int | None
    stdout: str
    stderr: str


def start(args: Sequence[str], env: Mapping[str, str], output: Path) -> BaseProcess:
    """Start ``mlc *args`` in a forked child with ``env`` added; stdout to ``output``, stderr to ``output.err``."""
    child = context().Process(target=run_cli, args=(list(args), dict(env), str(output)))
    child.start()
    return child


def run(args: Sequence[str], env: Mapping[str, str], output: Path, timeout: float = 300) -> Finished:
    """Run ``mlc *args`` in a forked child with ``env`` added and wait for it (killed after ``timeout``)."""
    child = start(args, env, output)
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
    err = Path(str(output) + ".err")
    return Finished(child.exitcode, output.read_text() if output.exists() else "",
                    err.read_text() if err.exists() else "")
