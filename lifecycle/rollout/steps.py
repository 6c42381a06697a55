"""The plan of a progressive rollout: its traffic steps and the limits each step is judged by.

It comes from the ``rollout:`` section of ``configs/<model>.yaml``; flags override it::

    rollout:
      steps: [shadow 60s, 5% 60s, 25% 60s, 50% 60s]   # or "shadow:60s,5%:60s,25%:60s,50%:60s"
      max_error_rate: 0.01   # the candidate's error rate may exceed stable's by at most this
      max_p99_ratio: 1.5     # the candidate's p99 latency over stable's, at most
      min_agreement: 0.95    # mean agreement of shadowed answers with stable's, at least
      min_requests: 20       # requests a step needs before it is judged
      too_few: wait          # with fewer: wait for them (up to max_wait), or abort
      max_wait: 120s         # how long a step waits beyond its hold for enough requests

A step is ``shadow`` (weight 0; every default-route request answered by stable is also copied
to the candidate and the answers compared) or a weight ``N%`` (the share of default-route
requests the candidate answers), each with its hold time (``30s``, ``2m``, ``1.5s``). After the
last step the rollout promotes. Nothing here touches a server (``--dry-run`` prints it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lifecycle.errors import ConfigError, LifecycleError, ModelNotFound, UsageError
from lifecycle.store.config import Paths, load_definition

DEFAULT_STEPS = "shadow:60s,5%:60s,25%:60s,50%:60s"
TOO_FEW = ("wait", "abort")
_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class TrafficStep:
    """One step: the candidate's share of default-route traffic, the shadow share, the hold time."""

    name: str  # "shadow" or "5%"
    weight: float
    shadow: float
    hold: float  # seconds

    def describe(self) -> str:
        """For people: ``shadow for 30 s`` or ``5% for 30 s``."""
        what = "shadow (every stable answer compared with the candidate's)" if self.name == "shadow" else \
            f"{self.name} of default-route requests to the candidate"
        return f"{what}, hold {self.hold:g} s"


@dataclass(frozen=True)
class Limits:
    """What a step must show to pass; each has a flag of ``mlc rollout``."""

    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5
    min_agreement: float = 0.95
    min_requests: int = 20
    too_few: str = "wait"
    max_wait: float = 120.0


LIMIT_KEYS = tuple(Limits.__dataclass_fields__)


@dataclass
class TrafficPlan:
    """The steps and limits of one progressive rollout, and where they came from."""

    steps: list[TrafficStep]
    limits: Limits
    source: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the journal keeps it, so a resumed rollout runs the same plan)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficPlan:
        """The plan back from :meth:`to_dict`."""
        return cls([TrafficStep(**s) for s in data["steps"]], Limits(**data["limits"]), str(data.get("source", "")))

    def describe(self) -> list[str]:
        """One line per step, then the limits."""
        lines = [f"{s.name}: {s.describe()}" for s in self.steps]
        lim = self.limits
        lines.append(
            f"judge each step: candidate error rate <= stable's + {lim.max_error_rate:g}, p99 <= {lim.max_p99_ratio:g} x "
            f"stable's, agreement >= {lim.min_agreement:g}, at least {lim.min_requests} requests "
            f"(fewer: {'wait up to ' + format(lim.max_wait, 'g') + ' s' if lim.too_few == 'wait' else 'abort'})"
        )
        return lines


def parse_duration(text: Any, where: str) -> float:
    """Seconds from ``30s``, ``2m``, ``1.5s``, ``500ms`` or a bare number."""
    if isinstance(text, bool):
        raise ConfigError(f"{where}: expected a duration such as 30s, got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text).strip())
        if m is None:
            raise ConfigError(f"{where}: expected a duration such as 30s, 2m or 1.5s, got {text!r}")
        seconds = float(m["n"]) * _UNITS[m["unit"]]
    if seconds <= 0:
        raise ConfigError(f"{where}: a duration must be positive, got {text!r}")
    return seconds


def parse_step(text: str, where: str) -> TrafficStep:
    """One step: ``shadow:30s``, ``shadow 30s``, ``5%:30s`` or ``5% 30s``."""
    head, sep, hold = text.strip().replace(" ", ":", 1).partition(":")
    if not sep:
        raise ConfigError(f"{where}: a step is shadow:DURATION or N%:DURATION (e.g. 5%:30s), got {text!r}")
    seconds = parse_duration(hold.strip(), where)
    head = head.strip().lower()
    if head == "shadow":
        return TrafficStep("shadow", 0.0, 1.0, seconds)
    if not head.endswith("%"):
        raise ConfigError(f"{where}: a step's traffic is 'shadow' or a percentage such as 5%, got {head!r}")
    try:
        percent = float(head[:-1])
    except ValueError as e:
        raise ConfigError(f"{where}: {head!r} is not a percentage") from e
    if not 0 < percent < 100:
        raise ConfigError(f"{where}: a step's weight must be above 0% and below 100% (100% is the promote), got {head}")
    return TrafficStep(f"{percent:g}%", percent / 100.0, 0.0, seconds)


def parse_steps(value: Any, where: str) -> list[TrafficStep]:
    """Steps from a comma-separated string or a list of step strings; weights must rise."""
    items = [s for s in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
        raise ConfigError(f"{where}: expected steps such as shadow:30s,5%:30s,25%:30s")
    steps = [parse_step(s, where) for s in items]
    weights = [s.weight for s in steps]
    if weights != sorted(weights) or len({w for w in weights if w > 0}) != len([w for w in weights if w > 0]):
        # Sticky keys only ever move from stable to the candidate as the weight rises.
        raise ConfigError(f"{where}: weights must rise from step to step, got {', '.join(s.name for s in steps)}")
    return steps


def _limit(key: str, value: Any, where: str) -> Any:
    if key == "too_few":
        if value not in TOO_FEW:
            raise ConfigError(f"{where}: too_few must be wait or abort, got {value!r}")
        return value
    if key == "max_wait":
        return parse_duration(value, where)
    if key == "min_requests":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: min_requests must be a whole number >= 0, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: {key} must be a number >= 0, got {value!r}")
    if key in ("max_error_rate", "min_agreement") and value > 1:
        raise ConfigError(f"{where}: {key} is a share between 0 and 1, got {value!r}")
    return float(value)


def _section(paths: Paths, model: str) -> tuple[dict[str, Any], str]:
    try:
        definition = load_definition(paths, model)
    except ModelNotFound:
        return {}, ""
    section = definition.raw.get("rollout") or {}
    where = f"{definition.path}: rollout"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping (steps, max_error_rate, ...)")
    unknown = sorted(set(section) - {"steps", *LIMIT_KEYS})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (known: steps, {', '.join(LIMIT_KEYS)})")
    return section, where


def traffic_plan(paths: Paths, model: str, steps: str | None = None, **overrides: Any) -> TrafficPlan:
    """The plan: configs/<model>.yaml's ``rollout:`` section, then the flags (``None`` = not given)."""
    section, where = _section(paths, model)
    limits = Limits()
    for key in LIMIT_KEYS:
        if key in section:
            limits = replace(limits, **{key: _limit(key, section[key], f"{where}.{key}")})
    for key, value in overrides.items():
        if key not in LIMIT_KEYS:
            raise UsageError(f"unknown rollout limit {key!r}")
        if value is not None:
            try:
                limits = replace(limits, **{key: _limit(key, value, f"--{key.replace('_', '-')}")})
            except LifecycleError as e:
                raise UsageError(e.message) from e
    if steps is not None:
        try:
            return TrafficPlan(parse_steps(steps, "--steps"), limits, "--steps")
        except LifecycleError as e:
            raise UsageError(e.message) from e
    if "steps" in section:
        return TrafficPlan(parse_steps(section["steps"], f"{where}.steps"), limits, where.rpartition(":")[0])
    return TrafficPlan(parse_steps(DEFAULT_STEPS, "default steps"), limits, "default")
