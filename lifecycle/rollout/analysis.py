"""Judging one step of a progressive rollout: the candidate against stable over the same interval.

The figures are the differences between two scrapes of every replica, summed over the replicas
(:mod:`lifecycle.serving.metrics`). A step passes when it saw enough requests and the candidate's
error rate exceeds stable's by at most ``max_error_rate``, its p99 latency is at most
``max_p99_ratio`` times stable's, and the shadowed answers agree with stable's at least
``min_agreement`` on average. A failing verdict names the metric, its value and its threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle.rollout.steps import Limits, TrafficStep
from lifecycle.serving.metrics import Snapshot, VersionCounts

PASS, FAIL, TOO_FEW = "pass", "fail", "too few"


@dataclass
class VersionFigures:
    """One version's figures over a step's interval (what status and --json show)."""

    requests: int
    error_rate: float | None
    p99_ms: float | None
    agreement: float | None = None

    @classmethod
    def of(cls, c: VersionCounts, agreement: float | None = None) -> VersionFigures:
        """From a version's counts over the interval."""
        p99 = c.p99
        return cls(int(c.requests), c.error_rate, None if p99 is None else p99 * 1000.0, agreement)


@dataclass
class StepReport:
    """A step's verdict and figures: one entry of ``--json``'s ``steps``."""

    step: str
    weight: float
    requests: int = 0
    error_rate: float | None = None
    p99_ratio: float | None = None
    agreement: float | None = None
    verdict: str = "pending"  # pending | pass | fail | too few | aborted
    reason: str = ""
    metric: str = ""  # the metric that failed: error_rate | p99_ratio | agreement | requests
    value: float | None = None
    threshold: float | None = None
    shadowed: int = 0
    dropped: int = 0
    seconds: float = 0.0
    versions: dict[str, VersionFigures] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


def _shadow(counts: Snapshot, versions: tuple[int, int]) -> VersionCounts:
    """The shadow counters, whichever of the two versions the server files them under."""
    out = VersionCounts()
    for v in versions:
        if v in counts:
            c = counts[v]
            out = out.plus(VersionCounts(shadowed=c.shadowed, dropped=c.dropped, agreement=c.agreement))
    return out


def judge(step: TrafficStep, counts: Snapshot, stable: int, candidate: int, limits: Limits, seconds: float = 0.0) -> StepReport:
    """The verdict of one step on the interval's counts (summed over replicas)."""
    s, c = counts.get(stable, VersionCounts()), counts.get(candidate, VersionCounts())
    shadow = _shadow(counts, (stable, candidate))
    agreement = shadow.agreement.mean()
    report = StepReport(step.name, step.weight, shadowed=int(shadow.shadowed), dropped=int(shadow.dropped),
                        agreement=agreement, seconds=seconds)
    report.versions = {str(stable): VersionFigures.of(s), str(candidate): VersionFigures.of(c, agreement)}
    # What the step is judged on: the candidate's own answers, or in a shadow step the compared copies.
    report.requests = int(c.requests) if step.weight > 0 else int(shadow.agreement.count or shadow.shadowed)
    if c.error_rate is not None:
        report.error_rate = c.error_rate
    if c.p99 and s.p99:
        report.p99_ratio = c.p99 / s.p99
    if report.requests < limits.min_requests:
        what = "compared shadow requests" if step.weight == 0 else "requests answered by the candidate"
        return _verdict(report, TOO_FEW, "requests", report.requests, limits.min_requests,
                        f"only {report.requests} {what}, below min_requests {limits.min_requests}")
    if c.error_rate is not None:
        stable_rate = s.error_rate or 0.0
        if c.error_rate - stable_rate > limits.max_error_rate:
            return _verdict(report, FAIL, "error_rate", c.error_rate, stable_rate + limits.max_error_rate,
                            f"error_rate {c.error_rate:.3f} of version {candidate} is above the threshold "
                            f"{stable_rate + limits.max_error_rate:.3f} (stable {stable}: {stable_rate:.3f} + max_error_rate "
                            f"{limits.max_error_rate:g}; {int(c.errors)} of {int(c.requests)} requests failed)")
    if agreement is not None and agreement < limits.min_agreement:
        return _verdict(report, FAIL, "agreement", agreement, limits.min_agreement,
                        f"agreement {agreement:.3f} of version {candidate} with stable {stable} is below "
                        f"min_agreement {limits.min_agreement:g} ({int(shadow.agreement.count)} shadowed requests compared)")
    c99, s99 = c.p99, s.p99
    if c99 and s99 and c.requests >= max(1, limits.min_requests) and c99 / s99 > limits.max_p99_ratio:
        return _verdict(report, FAIL, "p99_ratio", c99 / s99, limits.max_p99_ratio,
                        f"p99_ratio {c99 / s99:.2f} (version {candidate} p99 {c99 * 1000:.1f} ms, stable "
                        f"{stable} {s99 * 1000:.1f} ms) is above max_p99_ratio {limits.max_p99_ratio:g}")
    report.verdict = PASS
    return report


def _verdict(report: StepReport, verdict: str, metric: str, value: float, threshold: float, reason: str) -> StepReport:
    report.verdict, report.metric, report.value, report.threshold, report.reason = verdict, metric, value, threshold, reason
    return report
