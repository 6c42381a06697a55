"""Shadow copies: stable's default-route answers re-run on the candidate and compared, off the request path.

The request thread only offers a copy (its inputs and stable's outputs) to a bounded queue and
goes on answering its client; a full queue drops the copy and counts it. One worker thread
takes copies in turn, runs each on the candidate, compares the two answers by the split's task
(:mod:`lifecycle.server.traffic.compare`) and records the result. The candidate's answer goes
nowhere else.

Metrics, labelled by model_name and the candidate's version: ``:mlc:shadow_requests`` (copies
queued), ``:mlc:shadow_dropped`` (copies refused by a full queue), ``:mlc:shadow_errors`` (with
``code``: copies the candidate failed, counted as agreement 0), the ``:mlc:shadow_agreement``
histogram, ``:mlc:shadow_mask_iou`` (segmentation) and the ``:mlc:shadow_max_abs_diff`` gauge
(generic: the largest difference since a split first named this candidate).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from lifecycle.errors import LifecycleError
from lifecycle.server.monitoring import Labels, Metrics
from lifecycle.server.traffic.compare import compare
from lifecycle.server.traffic.split import Compare

log = logging.getLogger("mlc-model-server")

QUEUE_SIZE = 64
# Agreement is in [0, 1]: buckets fine near 1, where a good candidate sits.
AGREEMENT_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)


@dataclass(frozen=True)
class ShadowCopy:
    """One request to re-run on the candidate, with stable's answer to compare against."""

    model: str
    version: int  # the candidate's
    signature_name: str
    inputs: Mapping[str, np.ndarray]
    output_filter: tuple[str, ...]
    stable_outputs: Mapping[str, np.ndarray]
    compare: Compare


Runner = Callable[[ShadowCopy], Mapping[str, np.ndarray]]  # the candidate's outputs for a copy


class Shadow:
    """The bounded queue of shadow copies and the one worker that runs and compares them."""

    def __init__(self, run: Runner, metrics: Metrics, capacity: int = QUEUE_SIZE) -> None:
        self._run = run
        self._metrics = metrics
        self._queue: queue.Queue[ShadowCopy] = queue.Queue(maxsize=capacity)
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._max_diff: dict[tuple[str, int], float] = {}
        metrics.add_gauges(self._gauges)

    def offer(self, copy: ShadowCopy) -> bool:
        """Queue a copy without waiting; False (and counted as dropped) when the queue is full."""
        if self._worker is None:
            self._start()
        labels = {"model_name": copy.model, "version": str(copy.version)}
        try:
            self._queue.put_nowait(copy)
        except queue.Full:
            self._metrics.increment(":mlc:shadow_dropped", labels)
            return False
        self._metrics.increment(":mlc:shadow_requests", labels)
        return True

    def reset(self, model: str) -> None:
        """Forget the model's largest differences (a split names a new candidate)."""
        for key in [k for k in list(self._max_diff) if k[0] == model]:
            self._max_diff.pop(key, None)

    def _start(self) -> None:
        with self._start_lock:
            if self._worker is None and not self._stopping.is_set():
                self._worker = threading.Thread(target=self._work, name="mlc-shadow", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                copy = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._compare(copy)
            except Exception:  # a comparison bug must not kill the worker
                log.exception("shadow comparison of %s version %s failed", copy.model, copy.version)

    def _compare(self, copy: ShadowCopy) -> None:
        labels = {"model_name": copy.model, "version": str(copy.version)}
        try:
            outputs = self._run(copy)
            result = compare(copy.compare.kind, copy.compare.output, copy.stable_outputs, outputs)
        except LifecycleError as e:
            self._metrics.increment(":mlc:shadow_errors", {**labels, "code": e.grpc_code})
            self._metrics.observe(":mlc:shadow_agreement", labels, 0.0, AGREEMENT_BUCKETS)
            return
        self._metrics.observe(":mlc:shadow_agreement", labels, result.agreement, AGREEMENT_BUCKETS)
        if result.iou is not None:
            self._metrics.observe(":mlc:shadow_mask_iou", labels, result.iou, AGREEMENT_BUCKETS)
        if result.max_abs_diff is not None:
            key = (copy.model, copy.version)
            self._max_diff[key] = max(self._max_diff.get(key, 0.0), result.max_abs_diff)

    def _gauges(self) -> Iterator[tuple[str, Labels, float]]:
        for (model, version), value in list(self._max_diff.items()):
            yield ":mlc:shadow_max_abs_diff", (("model_name", model), ("version", str(version))), value

    def stop(self) -> None:
        """Stop the worker; copies still queued are not compared."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout=5)

