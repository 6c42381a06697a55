"""The traffic split's gRPC tests again on ``--mlc_grpc_transport=asyncio``.

The routing key (metadata ``mlc-route-key``), the split, requests that name a version or a label,
and the per-version request metrics (entrypoint GRPC), from tests/e2e/test_server_traffic.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lifecycle.server import RunningServer
from tests.e2e.test_server_traffic import (  # noqa: F401 - fixtures and tests pytest runs here again
    client,
    root,
    server,
    test_per_version_request_counts_codes_and_latency_on_the_monitoring_endpoint,
    test_versioned_and_labelled_requests_are_never_split_and_answer_byte_for_byte,
    test_weight_splits_sticky_keys_and_raising_it_moves_keys_one_way,
)
from tests.support.server_support import default_grpc_transport

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def _asyncio_transport() -> Iterator[None]:
    with default_grpc_transport("asyncio"):
        yield


def test_the_split_server_runs_on_the_asyncio_transport(server: RunningServer) -> None:  # noqa: F811 - the fixture
    assert server.grpc_transport == "asyncio"
