"""Unit: a servable's cached signature plans answer and fail exactly as a first, unplanned run
does, whether the plan runs on the session's inter-op pool or in the caller's thread."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.protobuf import config_pb2

from lifecycle.errors import FailedPrecondition, InvalidArgument, LifecycleError
from lifecycle.server.models.loader import Servable
from lifecycle.server.models.plans import PLAN_PROBE_RUNS, RunTiming, run_options_bytes
from tests.support.savedmodels import build_half_plus_two_tf1


@pytest.fixture(scope="module")
def servable(tmp_path_factory: pytest.TempPathFactory) -> Servable:
    path = build_half_plus_two_tf1(tmp_path_factory.mktemp("plans") / "1")
    loaded = Servable("half_plus_two", 1, path, ["serve"])
    yield loaded
    loaded.close()


@pytest.mark.parametrize("timeout_ms", [None, 0, 1, 127, 128, 30000, 2**40])
@pytest.mark.parametrize("inline", [False, True])
def test_run_options_bytes_are_the_messages_own(timeout_ms: int | None, inline: bool) -> None:
    expected = config_pb2.RunOptions(timeout_in_ms=timeout_ms or 0, inter_op_thread_pool=-1 if inline else 0)
    assert run_options_bytes(timeout_ms, inline) == expected.SerializeToString()


@pytest.mark.parametrize(("seconds", "inline"), [
    ([0.0001] * PLAN_PROBE_RUNS, True),
    ([0.01] * PLAN_PROBE_RUNS, False),
    ([0.0001] * (PLAN_PROBE_RUNS // 2 - 1) + [0.01] * (PLAN_PROBE_RUNS // 2 + 1), False),  # by the median
])
def test_run_timing_decides_once_by_the_median(seconds: list[float], inline: bool) -> None:
    timing = RunTiming()
    for value in seconds[:-1]:
        timing.record(value)
        assert not timing.inline  # undecided runs stay on the pool
    timing.record(seconds[-1])
    assert timing.inline is inline
    timing.record(10.0 if inline else 0.0)  # decided: later runs change nothing
    assert timing.inline is inline


def _errors(servable: Servable) -> list[tuple[type, str]]:
    cases = [
        ("missing", {"x": np.array([[1.0]], np.float32)}, None),
        ("", {"z": np.array([[1.0]], np.float32)}, None),
        ("", {}, None),
        ("", {"x": np.array([[1.0]], np.float32)}, ["nope"]),
        ("", {"x": np.array([[1.0]], np.float32)}, ["y", "y"]),
        ("", {"x": np.array([[1.0]], np.float64)}, None),
    ]
    seen = []
    for signature, inputs, output_filter in cases:
        with pytest.raises(LifecycleError) as info:
            servable.run(signature, inputs, output_filter, timeout_ms=5000)
        seen.append((type(info.value), info.value.grpc_code, info.value.message))
    return seen


def test_cached_and_inline_plans_answer_and_fail_as_the_first_run(servable: Servable) -> None:
    x = np.array([[1.0], [4.0]], np.float32)
    first_errors = _errors(servable)  # nothing planned yet for these requests
    assert [e[:2] for e in first_errors[:3]] == [(FailedPrecondition, "FAILED_PRECONDITION"),
                                                 (InvalidArgument, "INVALID_ARGUMENT"),
                                                 (InvalidArgument, "INVALID_ARGUMENT")]
    assert "Expects arg[0] to be float but double is provided" in first_errors[-1][2]
    expected = {"y": np.array([[2.5], [4.0]], np.float32)}
    np.testing.assert_array_equal(servable.run("", {"x": x}, ["y"], timeout_ms=5000)["y"], expected["y"])
    plan = servable.plan("", {"x": x}, ["y"])
    assert servable.plan("", {"x": x}, ("y",)) is plan  # cached
    assert not plan.timing.inline
    for _ in range(PLAN_PROBE_RUNS):  # as if its runs took microseconds (wall time is not for tests)
        plan.timing.record(0.0)
    assert plan.timing.inline
    for plain in (servable.plan("", {"x": x}), servable.plan("serving_default", {"x": x})):
        for _ in range(PLAN_PROBE_RUNS):
            plain.timing.record(0.0)
    np.testing.assert_array_equal(servable.run("", {"x": x}, ["y"], timeout_ms=5000)["y"], expected["y"])
    np.testing.assert_array_equal(servable.run("", {"x": np.array([1.0], np.float32)}, ["y"])["y"], [2.5])  # lenient feed
    assert _errors(servable) == first_errors
