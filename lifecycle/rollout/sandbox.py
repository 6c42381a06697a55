"""The sandbox: a candidate version loaded alone in a private server on 127.0.0.1:0.

TF Serving sends unversioned requests to the highest loaded version, so a candidate takes
traffic as soon as it loads beside the stable one: it must be known good before that. The
sandbox is the embedded server's public :func:`lifecycle.server.create_server`.
"""

from __future__ import annotations

import time

from lifecycle.errors import LifecycleError, StepFailed
from lifecycle.rollout.driver import RPC_TIMEOUT_S, DrivenServer, Driver
from lifecycle.rollout.live_check import LiveCheck
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import ServingClient
from lifecycle.serving.tfs_config import ModelServing
from lifecycle.store.config import Paths


def sandbox_check(paths: Paths, model: str, check: LiveCheck, timeout: float) -> None:
    """Load one version alone in a private server on 127.0.0.1:0 and check its golden digest."""
    from lifecycle.server import ServerOptions, create_server  # TensorFlow from here on

    config = tfs_config.build(paths, {model: ModelServing((check.version,), {})})
    options = ServerOptions(model_config=config, grpc_port=0, rest_api_port=None, max_num_load_retries=0)
    try:
        server = create_server(options)  # returns once the version is AVAILABLE (or raises)
    except LifecycleError as e:
        raise StepFailed("sandbox", f"version {check.version} of {model} does not load: {e.message}") from e
    try:
        client = ServingClient(f"127.0.0.1:{server.grpc_port}", None, timeout=RPC_TIMEOUT_S)
        target = DrivenServer(fleet.ServerSpec(client.grpc_address), client)
        driver = Driver(paths, model, [target], time.monotonic() + timeout)
        try:
            driver.wait_available("sandbox", [check.version], {})
            if check.requests and not check.golden:
                raise StepFailed("sandbox", f"version {check.version} of {model} has no golden digest in its report")
            driver.verify("sandbox", check)
        finally:
            client.close()
    finally:
        server.stop(grace=None)
