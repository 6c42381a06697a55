"""Signature plans: a request checked against a signature once per (signature, output filter).

A :class:`SignaturePlan` holds what running a signature needs (tensor names and the runner's
handles for them) and a :class:`RunTiming` that decides, from the plan's first runs, whether
the plan is cheap enough to run in the request's thread instead of on the session's inter-op
pool (see ``INLINE_RUN_BELOW_S``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lifecycle.errors import InvalidArgument

# Plans kept per servable: one per (signature, output filter) that requests use; the filter is
# the client's, so the cache is bounded and a request beyond it is planned afresh.
MAX_CACHED_PLANS = 64
# A signature whose runs take less than this runs in the request's thread rather than on the
# session's inter-op pool (RunOptions.inter_op_thread_pool = -1). TensorFlow's advice for that
# option: "ONLY for simple graphs, where the overhead of an additional context switch is
# comparable with the overhead of Session::Run()". The handoff to the pool costs tens of
# microseconds of wake-up and thread spinning; it matters for a run of this order, not above.
INLINE_RUN_BELOW_S = 0.0005
PLAN_PROBE_RUNS = 16  # pooled runs timed before a plan decides


@dataclass(frozen=True)
class SignaturePlan:
    """One signature with one output filter, checked and resolved once per servable.

    ``feed_keys``/``fetch_keys`` are what the servable's runner takes (graph TF_Outputs for a
    SavedModel, tensor names for TFLite), so a request maps its arrays onto them directly.
    """

    name: str
    signature: Any
    inputs: dict[str, str]  # input alias -> tensor name
    outputs: tuple[str, ...]  # output aliases, in the order runs return them
    fetches: list[str]  # their tensor names
    feed_keys: dict[str, Any]
    fetch_keys: list[Any]
    timing: RunTiming = field(default_factory=lambda: RunTiming())


class RunTiming:
    """How long a plan's first runs took on the inter-op pool, and so where it runs from then on."""

    __slots__ = ("inline", "runner", "seconds")

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.inline = False
        self.runner: Callable[..., list[np.ndarray]] | None = None  # the servable's, made on first inline run

    def record(self, seconds: float) -> None:
        """Note one pooled run; after PLAN_PROBE_RUNS of them, decide once (by the median)."""
        samples = self.seconds
        if len(samples) < PLAN_PROBE_RUNS:
            samples.append(seconds)
            if len(samples) == PLAN_PROBE_RUNS:
                self.inline = sorted(samples)[PLAN_PROBE_RUNS // 2] < INLINE_RUN_BELOW_S


def run_options_bytes(timeout_ms: int | None, inline: bool = False) -> bytes:
    """A serialized tensorflow.RunOptions: ``timeout_in_ms`` (field 2) and, ``inline``,
    ``inter_op_thread_pool = -1`` (field 3: run in the caller's thread).

    Written by hand because it is built on every request; equal to the message's own bytes.
    """
    out = bytearray()
    if timeout_ms is not None and timeout_ms > 0:
        value = int(timeout_ms)
        out.append(0x10)
        while value > 0x7F:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    if inline:
        out += b"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # int32 -1, sign-extended varint
    return bytes(out)


def check_inputs(signature: Any, inputs: Mapping[str, Any]) -> None:
    """INVALID_ARGUMENT unless the request's input aliases are the signature's, as TF Serving words it."""
    expected = set(signature.inputs.keys())
    sent = set(inputs.keys())
    if sent != expected:
        if len(sent) != len(expected):
            raise InvalidArgument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
            )
        alias = sorted(sent - expected)[0]
        raise InvalidArgument(
            f"input tensor alias not found in signature: {alias}. "
            f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}."
        )


def select_outputs(signature: Any, output_filter: list[str]) -> list[str]:
    """The output aliases a request asks for (all, without a filter); unknown or repeated ones are INVALID_ARGUMENT."""
    if not output_filter:
        return list(signature.outputs.keys())
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(signature.outputs.keys()))}}}."
            )
        if alias in seen:
            raise InvalidArgument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)
