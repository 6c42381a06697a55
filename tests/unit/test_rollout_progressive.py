"""The progressive rollout without servers: plans, metric texts, verdicts, journal and abort flag."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lifecycle.errors import ConfigError, FailedPrecondition, UsageError
from lifecycle.rollout import split as fleet_split
from lifecycle.rollout.analysis import FAIL, PASS, TOO_FEW, judge
from lifecycle.rollout.steps import DEFAULT_STEPS, Limits, TrafficPlan, parse_duration, parse_steps, traffic_plan
from lifecycle.serving import metrics, traffic
from lifecycle.serving.traffic import Split
from lifecycle.store import journal
from lifecycle.store.config import Paths

# What mlc-model-server's exporter prints (lifecycle.server.monitoring): per-version counters and
# histograms in seconds, the shadow's counters and agreement histogram under the candidate's version.
BEFORE = """\
# TYPE :mlc:request_count counter
:mlc:request_count{model_name="hpt",version="1",code="OK"} 100
:mlc:request_count{model_name="hpt",version="2",code="OK"} 10
:mlc:request_count{model_name="other",version="2",code="OK"} 999
# TYPE :mlc:request_latency histogram
:mlc:request_latency_bucket{model_name="hpt",version="1",le="0.001"} 50
:mlc:request_latency_bucket{model_name="hpt",version="1",le="0.002"} 100
:mlc:request_latency_bucket{model_name="hpt",version="1",le="0.004"} 100
:mlc:request_latency_bucket{model_name="hpt",version="1",le="+Inf"} 100
:mlc:request_latency_sum{model_name="hpt",version="1"} 0.12
:mlc:request_latency_count{model_name="hpt",version="1"} 100
:mlc:request_latency_bucket{model_name="hpt",version="2",le="0.001"} 10
:mlc:request_latency_bucket{model_name="hpt",version="2",le="0.002"} 10
:mlc:request_latency_bucket{model_name="hpt",version="2",le="0.004"} 10
:mlc:request_latency_bucket{model_name="hpt",version="2",le="+Inf"} 10
:mlc:request_latency_sum{model_name="hpt",version="2"} 0.005
:mlc:request_latency_count{model_name="hpt",version="2"} 10
"""

AFTER = """\
# TYPE :mlc:request_count counter
:mlc:request_count{model_name="hpt",version="1",code="OK"} 1100
:mlc:request_count{model_name="hpt",version="2",code="OK"} 60
:mlc:request_count{model_name="hpt",version="2",code="UNAVAILABLE"} 50
# TYPE :mlc:request_latency histogram
:mlc:request_latency_bucket{model_name="hpt",version="1",le="0.001"} 550
:mlc:request_latency_bucket{model_name="hpt",version="1",le="0.002"} 1090
:mlc:request_latency_bucket{model_name="hpt",version="1",le="0.004"} 1100
:mlc:request_latency_bucket{model_name="hpt",version="1",le="+Inf"} 1100
:mlc:request_latency_sum{model_name="hpt",version="1"} 1.3
:mlc:request_latency_count{model_name="hpt",version="1"} 1100
:mlc:request_latency_bucket{model_name="hpt",version="2",le="0.001"} 10
:mlc:request_latency_bucket{model_name="hpt",version="2",le="0.002"} 30
:mlc:request_latency_bucket{model_name="hpt",version="2",le="0.004"} 110
:mlc:request_latency_bucket{model_name="hpt",version="2",le="+Inf"} 110
:mlc:request_latency_sum{model_name="hpt",version="2"} 0.3
:mlc:request_latency_count{model_name="hpt",version="2"} 110
# TYPE :mlc:shadow_requests counter
:mlc:shadow_requests{model_name="hpt",version="2"} 400
:mlc:shadow_dropped{model_name="hpt",version="2"} 3
:mlc:shadow_agreement_bucket{model_name="hpt",version="2",le="0.5"} 40
:mlc:shadow_agreement_bucket{model_name="hpt",version="2",le="1"} 397
:mlc:shadow_agreement_bucket{model_name="hpt",version="2",le="+Inf"} 397
:mlc:shadow_agreement_sum{model_name="hpt",version="2"} 357.0
:mlc:shadow_agreement_count{model_name="hpt",version="2"} 397
"""


def step(text: str):  # noqa: ANN201 - a TrafficStep
    return parse_steps(text, "test")[0]


def test_steps_parse_every_spelling_and_refuse_the_rest() -> None:
    steps = parse_steps("shadow:30s, 5%:1.5s,25% 2m", "--steps")
    assert [(s.name, s.weight, s.shadow, s.hold) for s in steps] == [
        ("shadow", 0.0, 1.0, 30.0), ("5%", 0.05, 0.0, 1.5), ("25%", 0.25, 0.0, 120.0)]
    assert parse_steps(["shadow 60s", "50% 60s"], "yaml")[1].weight == 0.5
    assert parse_duration("500ms", "x") == 0.5 and parse_duration(3, "x") == 3.0
    for bad in ("5%", "5%:soon", "100%:1s", "0%:1s", "half:1s", "25%:1s,5%:1s", "5%:1s,5%:1s", "5%:-1s", ""):
        with pytest.raises(ConfigError):
            parse_steps(bad, "--steps")
    assert len(parse_steps(DEFAULT_STEPS, "default")) == 4


def definition(paths: Paths, rollout: str = "") -> None:
    paths.configs.mkdir(parents=True, exist_ok=True)
    (paths.configs / "hpt.yaml").write_text(
        "name: hpt\nnetwork: {}\n"
        "signature: {key: serving_default, inputs: {x: {dtype: float32, shape: [-1, 1]}}, "
        "outputs: {y: {dtype: float32, shape: [-1, 1]}}}\n" + rollout
    )


def test_plan_comes_from_the_definition_and_flags_override_it(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    definition(paths, "rollout:\n  steps: [shadow 2s, 10% 3s]\n  min_requests: 5\n  too_few: abort\n  max_wait: 1m\n")
    plan = traffic_plan(paths, "hpt")
    assert [s.name for s in plan.steps] == ["shadow", "10%"] and plan.source.endswith("hpt.yaml")
    assert plan.limits == Limits(min_requests=5, too_few="abort", max_wait=60.0)
    plan = traffic_plan(paths, "hpt", "5%:1s", min_requests=50, max_error_rate=0.2, too_few=None)
    assert plan.source == "--steps" and [s.name for s in plan.steps] == ["5%"]
    assert plan.limits.min_requests == 50 and plan.limits.max_error_rate == 0.2 and plan.limits.too_few == "abort"
    assert TrafficPlan.from_dict(plan.to_dict()) == plan
    with pytest.raises(UsageError, match="--min-agreement"):
        traffic_plan(paths, "hpt", min_agreement=2.0)
    with pytest.raises(UsageError, match="--steps"):
        traffic_plan(paths, "hpt", "lots")


def test_an_unknown_key_of_the_rollout_section_is_refused_naming_the_file(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    definition(paths, "rollout:\n  stepz: [shadow 2s]\n")
    with pytest.raises(ConfigError, match=r"hpt.yaml: rollout: unknown key\(s\) stepz"):
        traffic_plan(paths, "hpt")
    definition(paths, "rollout:\n  too_few: sometimes\n")
    with pytest.raises(ConfigError, match="too_few must be wait or abort"):
        traffic_plan(paths, "hpt")


def test_a_recorded_text_parses_into_per_version_counts_and_a_p99() -> None:
    before = metrics.model_snapshot(metrics.parse(BEFORE), "hpt")
    after = metrics.model_snapshot(metrics.parse(AFTER), "hpt")
    assert set(before) == {1, 2}
    assert after[2].requests == 110 and after[2].errors == 50 and after[2].codes == {"OK": 60, "UNAVAILABLE": 50}
    d = metrics.interval(after, before)
    assert d[1].requests == 1000 and d[1].errors == 0 and d[2].requests == 100 and d[2].errors == 50
    assert d[2].error_rate == 0.5
    # stable: 500 of 1000 below 1 ms, 990 below 2 ms: p99 (rank 990) is at the 2 ms bound
    assert d[1].p99 == pytest.approx(0.002)
    # candidate: 0, 20, 80 in (.., 1], (1, 2], (2, 4] ms: rank 99 is (99 - 20) / 80 of the way from 2 to 4 ms
    assert d[2].p99 == pytest.approx(0.002 + 0.002 * 79 / 80)
    assert d[2].shadowed == 400 and d[2].dropped == 3 and d[2].agreement.mean() == pytest.approx(357 / 397)
    both = metrics.total([d, d])
    assert both[2].requests == 200 and both[2].p99 == pytest.approx(d[2].p99)
    # a restarted server (counters back near zero) counts from zero, never negative
    assert metrics.interval(before, after)[2].requests == 10


def test_quantile_of_an_empty_or_overflowing_histogram() -> None:
    assert metrics.quantile(metrics.Histogram(), 0.99) is None
    h = metrics.Histogram({0.1: 0, math.inf: 10}, 5.0, 10)
    assert metrics.quantile(h, 0.99) == 0.1  # beyond the last finite bound


def counts(text: str = AFTER, before: str = BEFORE) -> metrics.Snapshot:
    return metrics.interval(metrics.model_snapshot(metrics.parse(text), "hpt"),
                            metrics.model_snapshot(metrics.parse(before), "hpt"))


def test_a_failing_candidate_fails_its_weighted_step_on_the_error_rate() -> None:
    report = judge(step("5%:1s"), counts(), 1, 2, Limits(max_p99_ratio=100))
    assert report.verdict == FAIL and report.metric == "error_rate"
    assert report.value == 0.5 and report.threshold == 0.01 and report.requests == 100
    assert "error_rate 0.500 of version 2 is above the threshold 0.010" in report.reason
    assert report.versions["1"].requests == 1000 and report.versions["2"].error_rate == 0.5


def test_low_agreement_fails_the_shadow_step_and_slowness_the_p99() -> None:
    report = judge(step("shadow:1s"), counts(), 1, 2, Limits(max_error_rate=1.0))
    assert report.verdict == FAIL and report.metric == "agreement" and report.requests == 397
    assert "agreement 0.899 of version 2 with stable 1 is below min_agreement 0.95" in report.reason
    report = judge(step("5%:1s"), counts(), 1, 2, Limits(max_error_rate=1.0, min_agreement=0.5))
    assert report.verdict == FAIL and report.metric == "p99_ratio" and report.value == pytest.approx(report.p99_ratio)
    assert report.p99_ratio == pytest.approx((0.002 + 0.002 * 79 / 80) / 0.002)
    passed = judge(step("5%:1s"), counts(), 1, 2, Limits(max_error_rate=1.0, min_agreement=0.5, max_p99_ratio=3))
    assert passed.verdict == PASS and passed.reason == ""


def test_too_few_requests_is_its_own_verdict() -> None:
    report = judge(step("5%:1s"), counts(), 1, 2, Limits(min_requests=1000))
    assert report.verdict == TOO_FEW and report.metric == "requests"
    assert "only 100 requests answered by the candidate, below min_requests 1000" in report.reason


def test_split_bodies_and_the_traffic_file(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    split = Split(1, 2, 0.05, 0.0, {"kind": "generic"})
    assert Split.from_body(split.to_body()) == split and Split.from_body({}) is None
    assert split.same_weights(Split(1, 2, 0.05)) and not split.same_weights(Split(1, 2, 0.25))
    traffic.record_split(paths, "hpt", split)
    traffic.record_split(paths, "other", Split(3, 4, 0.5))
    assert traffic.read_traffic_file(paths)["hpt"] == split
    traffic.record_split(paths, "hpt", None)
    assert set(traffic.read_traffic_file(paths)) == {"other"}
    assert traffic.traffic_file(paths) == paths.serving_config.parent / "traffic.json"


def test_the_journal_keeps_a_rollouts_progress_and_the_abort_flag_finds_it(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    (tmp_path / "model_repo").mkdir()
    with pytest.raises(FailedPrecondition, match="no rollout of hpt is running"):
        fleet_split.request_abort(paths, "hpt")
    j = journal.Journal("rollout", "hpt", 2, {"stable": 1, "canary": None}, {"stable": 2, "canary": None})
    j.progress = {"stable": 1, "candidate": 2, "plan": {}, "steps": []}
    journal.write(paths, j)
    journal.step(paths, j, "traffic", "begin", "5%")
    loaded = journal.load(paths)
    assert loaded is not None and loaded.progress["candidate"] == 2 and loaded.last() == "traffic:begin"
    assert fleet_split.journal_split(loaded) == Split.pinned(1, 2)
    assert Split.pinned(1, 2).shadow > 0  # weight 0 and shadow 0 would clear the split
    assert fleet_split.abort_requested(paths, j.id) is None
    assert "rollout of hpt" in fleet_split.request_abort(paths, "hpt")
    assert fleet_split.abort_requested(paths, j.id)
    assert fleet_split.abort_requested(paths, "another-rollout") is None
    fleet_split.clear_abort(paths)
    assert fleet_split.abort_requested(paths, j.id) is None
