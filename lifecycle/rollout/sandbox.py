"""The sandbox: a candidate version loaded alone on a private server, and its golden digest checked.

TF Serving sends unversioned requests to the highest loaded version, so a candidate takes
traffic as soon as it loads beside the stable one: it must be known good before that.

Where the check runs:

- **in a running embedded server of this home** (``mlc serve`` starts each mlc-model-server
  with a private sandbox, :mod:`lifecycle.server.sandbox`): a second, separate core reachable
  only on a Unix socket in a folder only this user can enter. The candidate is loaded there by
  ``HandleReloadConfigRequest`` (alone), checked, and unloaded by an empty config; it is never
  in the public core, so no client of the public ports reaches it or sees it. That process has
  TensorFlow loaded already, so ``mlc promote`` imports none (mlc's wire messages, numpy).
  One check at a time: a lock file beside the socket.
- **otherwise** (no server, or only tensorflow_model_server, which has no private sandbox):
  the embedded server's public :func:`lifecycle.server.create_server` in this process on
  127.0.0.1:0, which imports TensorFlow.
"""

from __future__ import annotations

import time
from pathlib import Path

from lifecycle.errors import LifecycleError, ModelNotFound, ServerUnavailable, StepFailed
from lifecycle.failpoints import failpoint
from lifecycle.rollout.driver import RPC_TIMEOUT_S, DrivenServer, Driver
from lifecycle.rollout.live_check import LiveCheck
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import ServingClient
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store.config import Paths

PROBE_TIMEOUT_S = 2.0


def sandbox_check(paths: Paths, model: str, check: LiveCheck, timeout: float) -> None:
    """Load one version alone on a private server and check its golden digest."""
    deadline = time.monotonic() + timeout
    for socket in private_sandboxes(paths):
        try:
            _check_in_server(paths, socket, model, check, deadline)
            return
        except ServerUnavailable:
            continue  # that server stopped meanwhile: another one, or this process
    _check_in_process(paths, model, check, deadline)


def private_sandboxes(paths: Paths) -> list[str]:
    """The sandbox sockets of this home's running embedded servers."""
    return [r.sandbox for r in fleet.live_records(paths) if r.engine == "embedded" and r.sandbox and Path(r.sandbox).exists()]


def _check_in_server(paths: Paths, socket: str, model: str, check: LiveCheck, deadline: float) -> None:
    """The check in a server's private sandbox core (see the module docstring)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(socket).with_suffix(".lock")))
    try:
        lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
    except Timeout as e:
        raise StepFailed("sandbox", f"another sandbox check holds {lock.lock_file}") from e
    client = ServingClient(f"unix:{socket}", None, timeout=RPC_TIMEOUT_S)
    try:
        try:  # ServerUnavailable if that server is gone: the caller checks elsewhere
            client.model_status_grpc(model, timeout=PROBE_TIMEOUT_S)
        except ModelNotFound:
            pass  # it answers: the sandbox is empty
        config = tfs_config.build(paths, {model: ModelServing((check.version,), {})})
        try:
            # Returns once the candidate is AVAILABLE; a load failure is the reload's error.
            client.reload(config, timeout=max(1.0, deadline - time.monotonic()))
        except LifecycleError as e:
            cause = e.message.partition("refused the config reload: ")[2] or e.message
            raise StepFailed("sandbox", f"version {check.version} of {model} does not load: {_one_line(cause)}") from e
        try:
            _verify(paths, client, model, check, deadline)
        finally:
            empty = type(config)()
            empty.model_config_list.SetInParent()  # an empty list: unload everything
            try:
                client.reload(empty, timeout=RPC_TIMEOUT_S)
            except LifecycleError:
                pass  # the next check replaces the sandbox's whole config anyway
    finally:
        client.close()
        lock.release()


def _check_in_process(paths: Paths, model: str, check: LiveCheck, deadline: float) -> None:
    """The check in a server started in this process on 127.0.0.1:0 (imports TensorFlow)."""
    from lifecycle.tf_import import import_tensorflow

    import_tensorflow()  # without its start-up noise on the terminal
    from lifecycle.server import ServerOptions, create_server

    config = tfs_config.build(paths, {model: ModelServing((check.version,), {})})
    options = ServerOptions(model_config=config, grpc_port=0, rest_api_port=None, max_num_load_retries=0)
    try:
        server = create_server(options)  # returns once the version is AVAILABLE (or raises)
    except LifecycleError as e:
        raise StepFailed("sandbox", f"version {check.version} of {model} does not load: {_one_line(e.message)}") from e
    try:
        with ServingClient(f"127.0.0.1:{server.grpc_port}", None, timeout=RPC_TIMEOUT_S) as client:
            _verify(paths, client, model, check, deadline)
    finally:
        server.stop(grace=None)


def _verify(paths: Paths, client: ServingClient, model: str, check: LiveCheck, deadline: float) -> None:
    """Wait until the candidate is AVAILABLE on the sandbox, then replay its golden request."""
    target = DrivenServer(fleet.ServerSpec(client.grpc_address), client)
    driver = Driver(paths, model, [target], deadline)
    driver.wait_available("sandbox", [check.version], {})
    failpoint("sandbox:available")
    if check.requests and not check.golden:
        raise StepFailed("sandbox", f"version {check.version} of {model} has no golden digest in its report")
    driver.verify("sandbox", check)


def _one_line(text: str) -> str:
    """A server's error (TensorFlow's span several lines) as one line for the CLI."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
