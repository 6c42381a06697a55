"""Server-side batching: concurrent session runs merged along dimension 0, as TF Serving batches.

``--enable_batching`` wraps every servable's session (Predict, Classify, Regress,
MultiInference and warmup all go through :meth:`Servable.run_tensors`) with a queue per
(servable, fed tensor names, fetched tensor names, per-row shapes and dtypes). One
:class:`BatchScheduler` per server owns ``num_batch_threads`` threads shared by every queue,
like TF Serving's SharedBatchScheduler:

- a batch is closed once it holds ``max_batch_size`` rows, or once its oldest task has waited
  ``batch_timeout_micros``; tasks are not split across batches;
- a batch is padded up to the next of ``allowed_batch_sizes`` by repeating its first row, and
  the padding is cut off the outputs;
- with ``pad_variable_length_inputs`` tensors whose dims beyond the first differ are padded to
  the batch's largest shape (with each tensor's first element, as TF Serving pads); otherwise
  only tasks with equal row shapes share a queue, so one odd request never fails the others;
- a task larger than ``max_batch_size`` is INVALID_ARGUMENT, a full queue
  (``max_enqueued_batches``) is UNAVAILABLE, and a task whose deadline passes in the queue is
  DEADLINE_EXCEEDED. A batch runs with the longest deadline of its tasks.

Parameters come from ``--batching_parameters_file``, a text ``BatchingParameters`` (TF
Serving's message, generated into ``lifecycle/server/protos``). With
``--enable_per_model_batching_parameters`` a version folder's ``batching_params.pbtxt`` gives
that version its own scheduler and threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    LifecycleError,
    ServerUnavailable,
)

if TYPE_CHECKING:
    from lifecycle.server.protos import batching_pb2

log = logging.getLogger("mlc-model-server")

# --enable_per_model_batching_parameters reads this file from a version folder.
PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"

RunSession = Callable[[Mapping[str, np.ndarray], list[str], "int | None"], list[np.ndarray]]


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters with its defaults (SharedBatchScheduler / BatchingSession)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size <= 0:
            raise InvalidArgument("max_batch_size must be positive")
        if self.num_batch_threads <= 0:
            raise InvalidArgument("num_batch_threads must be positive")
        if self.max_enqueued_batches <= 0:
            raise InvalidArgument("max_enqueued_batches must be positive")
        if self.batch_timeout_micros < 0:
            raise InvalidArgument("batch_timeout_micros must be non-negative")
        sizes = list(self.allowed_batch_sizes)
        if sizes:
            if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] <= 0:
                raise InvalidArgument("allowed_batch_sizes entries must be monotonically increasing")
            if sizes[-1] != self.max_batch_size:
                raise InvalidArgument("Last entry in allowed_batch_sizes must match max_batch_size; "
                                      f"last entry was {sizes[-1]}; expected {self.max_batch_size}")


def read_batching_parameters(path: str | Path) -> BatchingOptions:
    """Parse a text BatchingParameters file; INVALID_ARGUMENT naming the file if malformed."""
    from lifecycle.server.config.textproto import read_textproto
    from lifecycle.server.protos import batching_pb2

    return options_from_proto(read_textproto(path, batching_pb2.BatchingParameters()))


def options_from_proto(message: batching_pb2.BatchingParameters) -> BatchingOptions:
    """BatchingOptions from a BatchingParameters message; unset wrappers keep the defaults."""
    values: dict[str, Any] = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                 "thread_pool_name"):
        if message.HasField(name):
            values[name] = getattr(message, name).value
    values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = message.pad_variable_length_inputs
    return BatchingOptions(**values)


class _Task:
    __slots__ = ("feeds", "size", "deadline", "done", "outputs", "error", "enqueued")

    def __init__(self, feeds: dict[str, np.ndarray], size: int, deadline: float | None) -> None:
        self.feeds = feeds
        self.size = size
        self.deadline = deadline
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.outputs: list[np.ndarray] | None = None
        self.error: LifecycleError | None = None


class _Queue:
    def __init__(self, key: tuple, fetches: list[str], run: RunSession) -> None:
        self.key = key
        self.fetches = fetches
        self.run = run
        self.tasks: deque[_Task] = deque()
        self.rows = 0


class BatchScheduler:
    """The shared batch threads and every servable's queues."""

    def __init__(self, options: BatchingOptions) -> None:
        self.options = options
        self._lock = threading.Condition()
        self._queues: dict[tuple, _Queue] = {}
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{options.thread_pool_name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # --- submitting -----------------------------------------------------------------------

    def run(self, owner: object, run: RunSession, feeds: Mapping[str, np.ndarray], fetches: list[str],
            timeout_ms: int | None) -> list[np.ndarray]:
        """Run ``fetches`` on ``feeds`` as part of a batch; blocks until this task's rows are back."""
        feeds = {name: np.asarray(value) for name, value in feeds.items()}
        size = _batch_size(feeds)
        if size > self.options.max_batch_size:
            raise InvalidArgument(
                f"Task size {size} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        shapes = tuple(sorted(
            (name, value.dtype.str, None if self.options.pad_variable_length_inputs else value.shape[1:])
            for name, value in feeds.items()
        ))
        key = (id(owner), tuple(fetches), shapes)
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        task = _Task(feeds, size, deadline)
        with self._lock:
            if self._stopping:
                raise ServerUnavailable("Batch scheduler is shutting down")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(key, list(fetches), run)
            capacity = self.options.max_enqueued_batches * self.options.max_batch_size
            if queue.rows + size > capacity:
                raise ServerUnavailable("The batch scheduling queue to which this task was submitted is full")
            queue.tasks.append(task)
            queue.rows += size
            self._lock.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.outputs is not None
        return task.outputs

    def queued_rows(self) -> int:
        """Rows waiting in every queue (not yet taken by a batch thread)."""
        with self._lock:
            return sum(q.rows for q in self._queues.values())

    def forget(self, owner: object) -> None:
        """Drop the (empty) queues of a servable that is being unloaded."""
        with self._lock:
            for key in [k for k, q in self._queues.items() if k[0] == id(owner) and not q.tasks]:
                del self._queues[key]

    def stop(self) -> None:
        """Stop the batch threads once the queued tasks have run."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    # --- the batch threads ----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                batch = self._next_batch()
                while batch is None:
                    if self._stopping and not any(q.tasks for q in self._queues.values()):
                        return
                    self._lock.wait(self._wait_time())
                    batch = self._next_batch()
            queue, tasks = batch
            self._process(queue, tasks)

    def _wait_time(self) -> float | None:
        timeout_s = self.options.batch_timeout_micros / 1e6
        oldest = [q.tasks[0].enqueued for q in self._queues.values() if q.tasks]
        if not oldest:
            return None
        return max(0.0, min(oldest) + timeout_s - time.monotonic()) + 1e-4

    def _next_batch(self) -> tuple[_Queue, list[_Task]] | None:
        """The first queue (oldest task first) whose batch is full or timed out, and its tasks."""
        now = time.monotonic()
        timeout_s = self.options.batch_timeout_micros / 1e6
        ready = [
            q for q in self._queues.values()
            if q.tasks and (q.rows >= self.options.max_batch_size or now - q.tasks[0].enqueued >= timeout_s
                            or self._stopping)
        ]
        if not ready:
            return None
        queue = min(ready, key=lambda q: q.tasks[0].enqueued)
        tasks: list[_Task] = []
        rows = 0
        while queue.tasks and rows + queue.tasks[0].size <= self.options.max_batch_size:
            task = queue.tasks.popleft()
            rows += task.size
            queue.rows -= task.size
            tasks.append(task)
        return queue, tasks

    def _process(self, queue: _Queue, tasks: list[_Task]) -> None:
        now = time.monotonic()
        live = []
        for task in tasks:
            if task.deadline is not None and task.deadline <= now:
                task.error = DeadlineExceeded("Deadline exceeded while waiting in the batch queue")
                task.done.set()
            else:
                live.append(task)
        if not live:
            return
        try:
            feeds, padded = self._merge(live)
            deadlines = [t.deadline for t in live if t.deadline is not None]
            timeout_ms = None if len(deadlines) < len(live) else max(1, int((max(deadlines) - now) * 1000))
            outputs = queue.run(feeds, queue.fetches, timeout_ms)
            self._split(live, outputs, padded)
        except LifecycleError as e:
            for task in live:
                task.error = e
        except Exception as e:  # a bug must still answer every waiting request
            log.exception("batch failed")
            for task in live:
                task.error = InternalError(f"{type(e).__name__}: {e}")
        finally:
            for task in live:
                task.done.set()

    def _merge(self, tasks: list[_Task]) -> tuple[dict[str, np.ndarray], int]:
        rows = sum(t.size for t in tasks)
        padded = rows
        for allowed in self.options.allowed_batch_sizes:
            if allowed >= rows:
                padded = allowed
                break
        merged: dict[str, np.ndarray] = {}
        for name in tasks[0].feeds:
            parts = [t.feeds[name] for t in tasks]
            if self.options.pad_variable_length_inputs:
                parts = _pad_to_common_shape(parts)
            if padded > rows:
                parts.append(np.repeat(parts[0][:1], padded - rows, axis=0))
            merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return merged, padded

    @staticmethod
    def _split(tasks: list[_Task], outputs: list[np.ndarray], padded: int) -> None:
        for output in outputs:
            if output.ndim == 0 or output.shape[0] != padded:
                raise InternalError(
                    f"Batched output tensor has 0th dimension {output.shape[0] if output.ndim else 'none'}; "
                    f"expected {padded} (the signature's outputs must be batched along dimension 0)"
                )
        start = 0
        for task in tasks:
            task.outputs = [output[start:start + task.size] for output in outputs]
            start += task.size


def _batch_size(feeds: Mapping[str, np.ndarray]) -> int:
    sizes = set()
    for value in feeds.values():
        if value.ndim == 0:
            raise InvalidArgument("Batching Run() input tensors must have at least one dimension")
        sizes.add(value.shape[0])
    if len(sizes) != 1:
        raise InvalidArgument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def _pad_to_common_shape(parts: list[np.ndarray]) -> list[np.ndarray]:
    ranks = {p.ndim for p in parts}
    if len(ranks) != 1:
        raise InvalidArgument("Tensors with the same name have different ranks and cannot be padded")
    target = tuple(max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim))
    padded = []
    for part in parts:
        if part.shape[1:] == target:
            padded.append(part)
            continue
        fill = part.reshape(-1)[0] if part.size else 0
        out = np.full((part.shape[0], *target), fill, dtype=part.dtype)
        out[tuple(slice(0, s) for s in part.shape)] = part
        padded.append(out)
    return padded
