"""Prometheus metrics, served as TF Serving serves them (``--monitoring_config_file``).

A ``MonitoringConfig`` text file turns the exporter on::

    prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }

and the REST port then answers ``GET <path>`` (default ``/monitoring/prometheus/metrics``) in
Prometheus' text format with ``# TYPE`` lines. Names follow TF Serving's exporter (metric path
with ``/`` turned into ``:``); mlc's additions live under ``:mlc:``:

- ``:tensorflow:serving:request_count{model_name,status}`` (counter, TF Serving's);
- ``:tensorflow:serving:request_latency{model_name,API,entrypoint,status}`` (histogram in
  microseconds with TF Serving's buckets, 10 * 1.8^i);
- ``:mlc:serving:request_count{model_name,model_version,API,entrypoint,status}`` (counter:
  requests per answering version; version "" when none answered);
- ``:tensorflow:cc:saved_model:load_latency{model_path}`` (counter, microseconds, TF's) and
  ``:mlc:serving:model_load_latency{model_name,model_version}`` (histogram, microseconds);
- ``:tensorflow:serving:model_warmup_latency{model_path}`` (histogram, microseconds);
- ``:mlc:serving:model_version_state{model_name,model_version,state}`` (gauge, 1 for each
  version's current state, read from the manager at scrape time);
- ``:mlc:request_count{model_name,version,code}`` (counter: requests per answering version, code
  the gRPC status name) and ``:mlc:request_latency{model_name,version}`` (histogram in seconds,
  :data:`SECONDS_BUCKETS`), what ``mlc rollout`` judges a candidate against stable by;
- the shadow comparison's ``:mlc:shadow_*`` (:mod:`lifecycle.server.traffic.shadow`).

Requests are counted by the transports (entrypoint GRPC or REST) around Predict, Classify,
Regress and MultiInference; the answering version is noted by the manager on the request's
thread (:func:`note_served`).
"""

from __future__ import annotations

import bisect
import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lifecycle.errors import InvalidArgument

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
LATENCY_BUCKETS = [10 * 1.8**i for i in range(33)]  # Buckets::Exponential(10, 1.8, 33)
# mlc's per-version latency, in seconds: 14 bounds a decade from 100 us to 100 s (at most 25 %
# apart), so a p99 read from the buckets of a millisecond-scale model is close to the true one.
SECONDS_BUCKETS = [round(m * 10.0**e, 12) for e in range(-4, 2) for m in (1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9)] + [100.0]

_served = threading.local()


def note_served(version: int) -> None:
    """Remember, for this thread's current request, which version answered it."""
    _served.version = version


def take_served() -> int | None:
    """The version noted for this thread's request since the last call, if any."""
    version = getattr(_served, "version", None)
    _served.version = None
    return version


def request_observer(metrics: Metrics, model: str, api: str, entrypoint: str) -> Callable[[str], None]:
    """Start timing one request; call the result with its final status code name."""
    take_served()  # forget any version noted for an earlier request on this thread
    started = time.perf_counter()

    def done(status: str) -> None:
        metrics.record_request(model, take_served(), api, entrypoint, status, (time.perf_counter() - started) * 1e6)

    return done


@functools.lru_cache(maxsize=4096)
def _request_labels(model: str, version: int | None, api: str, entrypoint: str,
                    status: str) -> tuple[Labels, Labels, Labels, Labels, Labels]:
    """The label sets one request adds to: TF Serving's request_count and request_latency, mlc's
    serving:request_count, and the per-version request_count and request_latency."""
    shown = "" if version is None else str(version)
    return (
        (("model_name", model), ("status", status)),
        (("model_name", model), ("API", api), ("entrypoint", entrypoint), ("status", status)),
        (("model_name", model), ("model_version", shown), ("API", api), ("entrypoint", entrypoint), ("status", status)),
        (("model_name", model), ("version", shown), ("code", status)),
        (("model_name", model), ("version", shown)),
    )


@dataclass(frozen=True)
class PrometheusOptions:
    """Whether to export, and on which REST path."""

    enable: bool = False
    path: str = DEFAULT_PATH


def read_monitoring_config(path: str | Path) -> PrometheusOptions:
    """Parse a text MonitoringConfig; INVALID_ARGUMENT naming the file if malformed."""
    from lifecycle.server.config.textproto import read_textproto
    from lifecycle.server.protos import monitoring_pb2

    prometheus = read_textproto(path, monitoring_pb2.MonitoringConfig()).prometheus_config
    metrics_path = prometheus.path or DEFAULT_PATH
    if not metrics_path.startswith("/"):
        raise InvalidArgument(f"Prometheus path must start with '/': {metrics_path}")
    return PrometheusOptions(enable=prometheus.enable, path=metrics_path)


Labels = tuple[tuple[str, str], ...]


class _Histogram:
    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


class Metrics:
    """One server's metrics: counters and histograms by label set, rendered for Prometheus."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {}
        self._gauges: list[Callable[[], Iterable[tuple[str, Labels, float]]]] = []

    def increment(self, name: str, labels: dict[str, str], by: float = 1) -> None:
        """Add to a counter."""
        with self._lock:
            self._count(name, tuple(labels.items()), by)

    def _count(self, name: str, key: Labels, by: float = 1) -> None:
        """Add to a counter's series ``key``; the caller holds the lock."""
        series = self._counters.setdefault(name, {})
        series[key] = series.get(key, 0) + by

    def observe(self, name: str, labels: dict[str, str], value: float,
                buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        """Add a sample to a histogram (by default TF Serving's latency buckets)."""
        key = tuple(labels.items())
        with self._lock:
            self._histograms.setdefault(name, {}).setdefault(key, _Histogram(buckets)).add(value)

    def add_gauges(self, collect: Callable[[], Iterable[tuple[str, Labels, float]]]) -> None:
        """Register gauges read at scrape time: ``collect()`` yields (name, labels, value)."""
        self._gauges.append(collect)

    # --- what the server records ------------------------------------------------------------

    def record_request(self, model: str, version: int | None, api: str, entrypoint: str, status: str,
                       latency_us: float) -> None:
        """One Predict/Classify/Regress/MultiInference request and how it ended (one lock hold)."""
        count, latency, own, by_version, version_latency = _request_labels(model, version, api, entrypoint, status)
        with self._lock:
            self._count(":tensorflow:serving:request_count", count)
            self._histograms.setdefault(":tensorflow:serving:request_latency", {}).setdefault(
                latency, _Histogram()).add(latency_us)
            self._count(":mlc:serving:request_count", own)
            self._count(":mlc:request_count", by_version)
            if version is not None:
                self._histograms.setdefault(":mlc:request_latency", {}).setdefault(
                    version_latency, _Histogram(SECONDS_BUCKETS)).add(latency_us / 1e6)

    def record_load(self, model: str, version: int, path: str, latency_us: float) -> None:
        """A version finished loading its SavedModel."""
        self.increment(":tensorflow:cc:saved_model:load_latency", {"model_path": path}, latency_us)
        self.observe(":mlc:serving:model_load_latency", {"model_name": model, "model_version": str(version)},
                     latency_us)

    def record_warmup(self, path: str, latency_us: float) -> None:
        """A version finished replaying its warmup records."""
        self.observe(":tensorflow:serving:model_warmup_latency", {"model_path": path}, latency_us)

    # --- exposition ------------------------------------------------------------------------

    def render(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            histograms = {
                name: {k: (h.bounds, list(h.counts), h.total, h.count) for k, h in series.items()}
                for name, series in self._histograms.items()
            }
        for name in sorted(counters):
            lines.append(f"# TYPE {name} counter")
            for labels, value in counters[name].items():
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
        for name in sorted(histograms):
            lines.append(f"# TYPE {name} histogram")
            for labels, (bounds, counts, total, count) in histograms[name].items():
                cumulative = 0
                for bound, bucket in zip([*bounds, float("inf")], counts, strict=True):
                    cumulative += bucket
                    le = "+Inf" if bound == float("inf") else _number(bound)
                    lines.append(f"{name}_bucket{_labels(labels + (('le', le),))} {cumulative}")
                lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
                lines.append(f"{name}_count{_labels(labels)} {count}")
        gauges: dict[str, list[tuple[Labels, float]]] = {}
        for collect in self._gauges:
            for name, labels, value in collect():
                gauges.setdefault(name, []).append((labels, value))
        for name in sorted(gauges):
            lines.append(f"# TYPE {name} gauge")
            for labels, value in gauges[name]:
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
