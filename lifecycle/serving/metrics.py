"""Per-version request metrics scraped from a server's Prometheus endpoint, and their arithmetic.

mlc-model-server exports, per model and version (labels ``model_name``, ``version``):

- ``:mlc:request_count{code}`` (counter; ``code`` is the gRPC status name, ``OK`` on success);
- ``:mlc:request_latency_bucket{le}``, ``_sum``, ``_count`` (histogram, seconds);
- ``:mlc:shadow_requests``, ``:mlc:shadow_dropped`` (counters) and
  ``:mlc:shadow_agreement_bucket{le}``, ``_sum``, ``_count`` (histogram of agreement in [0, 1]).

Counters are cumulative, so a step's figures are the difference of two scrapes
(:meth:`VersionCounts.minus`), summed over the replicas (:meth:`VersionCounts.plus`). The p99
is read from the histogram's buckets (:func:`quantile`). No TensorFlow here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from lifecycle.errors import ServingError
from lifecycle.serving.client import DEFAULT_TIMEOUT_S, rest_call
from lifecycle.serving.fleet import ServerSpec

METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath
REQUESTS = ":mlc:request_count"
LATENCY = ":mlc:request_latency"
SHADOWED = ":mlc:shadow_requests"
DROPPED = ":mlc:shadow_dropped"
AGREEMENT = ":mlc:shadow_agreement"

# name{label="value",...} value [timestamp]
_SAMPLE = re.compile(r'^(?P<name>[^\s{]+)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'\s*(?P<key>[^=\s,]+)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True)
class Sample:
    """One line of the text format: a metric name, its labels and its value."""

    name: str
    labels: dict[str, str]
    value: float


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse(text: str) -> list[Sample]:
    """The samples of Prometheus' text exposition format (comments and blank lines skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = {g["key"]: _unescape(g["value"]) for g in _LABEL.finditer(m["labels"] or "")}
        try:
            value = float(m["value"])
        except ValueError:
            continue
        out.append(Sample(m["name"], labels, value))
    return out


@dataclass
class Histogram:
    """Cumulative bucket counts by upper bound, with the sum and count of the observations."""

    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0
    count: float = 0.0

    def minus(self, other: Histogram) -> Histogram:
        """This histogram less an earlier scrape of it."""
        return Histogram({le: c - other.buckets.get(le, 0.0) for le, c in self.buckets.items()},
                         self.sum - other.sum, self.count - other.count)

    def plus(self, other: Histogram) -> Histogram:
        """The two histograms together (another replica's)."""
        keys = set(self.buckets) | set(other.buckets)
        return Histogram({le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in keys},
                         self.sum + other.sum, self.count + other.count)

    def mean(self) -> float | None:
        """The mean observation (None without observations)."""
        return self.sum / self.count if self.count > 0 else None


def quantile(h: Histogram, q: float) -> float | None:
    """The ``q`` quantile estimated from the buckets as Prometheus' histogram_quantile does:
    linear within the bucket that holds it (None without observations)."""
    bounds = sorted(h.buckets)
    if not bounds:
        return None
    total = h.buckets[bounds[-1]] if math.isinf(bounds[-1]) else max(h.count, h.buckets[bounds[-1]])
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le in bounds:
        count = h.buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower  # beyond the last finite bound: the best it can say
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = le, count
    return lower


@dataclass
class VersionCounts:
    """What one version did (cumulative, or over an interval after :meth:`minus`)."""

    requests: float = 0.0
    errors: float = 0.0
    codes: dict[str, float] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    shadowed: float = 0.0
    dropped: float = 0.0
    agreement: Histogram = field(default_factory=Histogram)

    def minus(self, other: VersionCounts) -> VersionCounts:
        """This scrape less an earlier one (a counter reset, a restarted server, counts from zero)."""
        if self.requests < other.requests or self.shadowed < other.shadowed:
            return self
        codes = {c: n - other.codes.get(c, 0.0) for c, n in self.codes.items()}
        return VersionCounts(self.requests - other.requests, self.errors - other.errors, codes,
                             self.latency.minus(other.latency), self.shadowed - other.shadowed,
                             self.dropped - other.dropped, self.agreement.minus(other.agreement))

    def plus(self, other: VersionCounts) -> VersionCounts:
        """Both together (two replicas)."""
        codes = {c: self.codes.get(c, 0.0) + other.codes.get(c, 0.0) for c in set(self.codes) | set(other.codes)}
        return VersionCounts(self.requests + other.requests, self.errors + other.errors, codes,
                             self.latency.plus(other.latency), self.shadowed + other.shadowed,
                             self.dropped + other.dropped, self.agreement.plus(other.agreement))

    @property
    def error_rate(self) -> float | None:
        """Errors per request (None without requests)."""
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def p99(self) -> float | None:
        """The 99th percentile latency in seconds (None without requests)."""
        return quantile(self.latency, 0.99)


Snapshot = dict[int, VersionCounts]  # version -> its counts, for one model


def _histogram_part(h: Histogram, sample: Sample, base: str) -> None:
    if sample.name == base + "_bucket":
        le = sample.labels.get("le", "+Inf")
        h.buckets[math.inf if le in ("+Inf", "Inf", "inf") else float(le)] = sample.value
    elif sample.name == base + "_sum":
        h.sum = sample.value
    elif sample.name == base + "_count":
        h.count = sample.value


def model_snapshot(samples: list[Sample], model: str) -> Snapshot:
    """Each version's counts of ``model`` in one scrape."""
    out: Snapshot = {}
    for s in samples:
        if s.labels.get("model_name") != model or not s.name.startswith(":mlc:"):
            continue
        try:
            version = int(s.labels.get("version", ""))
        except ValueError:
            continue
        v = out.setdefault(version, VersionCounts())
        if s.name == REQUESTS:
            code = s.labels.get("code", "OK")
            v.codes[code] = v.codes.get(code, 0.0) + s.value
            v.requests += s.value
            if code != "OK":
                v.errors += s.value
        elif s.name.startswith(LATENCY + "_"):
            _histogram_part(v.latency, s, LATENCY)
        elif s.name == SHADOWED:
            v.shadowed += s.value
        elif s.name == DROPPED:
            v.dropped += s.value
        elif s.name.startswith(AGREEMENT + "_"):
            _histogram_part(v.agreement, s, AGREEMENT)
    return out


def interval(after: Snapshot, before: Snapshot) -> Snapshot:
    """Per version, what happened between two scrapes of one server."""
    return {v: counts.minus(before.get(v, VersionCounts())) for v, counts in after.items()}


def total(snapshots: list[Snapshot]) -> Snapshot:
    """Per version, the sum over replicas."""
    out: Snapshot = {}
    for snap in snapshots:
        for v, counts in snap.items():
            out[v] = out[v].plus(counts) if v in out else counts
    return out


def scrape(spec: ServerSpec, timeout: float = DEFAULT_TIMEOUT_S, path: str = METRICS_PATH) -> list[Sample]:
    """Read one server's metrics (its REST port, TF Serving's Prometheus path)."""
    if not spec.rest:
        raise ServingError(f"server {spec.name} has no REST address; its metrics are read over REST", "UNAVAILABLE")
    status, reason, raw = rest_call(spec.rest, "GET", path, timeout, tls=spec.tls)
    if status != 200:
        raise ServingError(
            f"server {spec.name} serves no metrics at {path} ({status} {reason}); mlc-model-server exports them "
            "with --monitoring_config_file (prometheus_config { enable: true }), which `mlc serve` passes",
            "UNAVAILABLE",
        )
    return parse(raw.decode("utf-8", errors="replace"))
