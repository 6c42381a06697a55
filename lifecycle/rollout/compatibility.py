"""The signature-compatibility gate: would a client of stable still work against the candidate?

The candidate's serving signatures are compared with stable's, read from each version's
``saved_model.pb`` without TensorFlow (:mod:`lifecycle.serving.signatures`; a version whose
SavedModel cannot be parsed falls back to the signatures its validation report kept). A client
of stable breaks when:

- a signature, an input or an output it uses is gone or renamed (one removed and one added
  with the same dtype and shape);
- an input is added (clients of stable do not send it);
- a tensor's dtype or a signature's method changed;
- an input's shape is stricter: a fixed size where stable had -1, another fixed size, another
  rank, or a known rank where stable's was unknown;
- an output's rank or one of its fixed sizes changed.

Added outputs, added signatures and relaxed shapes (-1 where stable had a size) pass. ``promote`` and ``rollout``
call :func:`check` from their preconditions; ``mlc diff`` shows :func:`compare`'s verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lifecycle.errors import CorruptVersion, FailedPrecondition, LifecycleError
from lifecycle.serving import signatures
from lifecycle.store.config import Paths
from lifecycle.store.registry import ModelRecord, VersionRecord, full_report

Signatures = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Difference:
    """One difference between stable's and the candidate's signatures, and whether it breaks clients."""

    signature: str
    part: str  # signature | method | input | output
    name: str
    stable: str  # as people read it ("float32 [-1, 1]", "absent")
    candidate: str
    breaking: bool
    why: str

    def describe(self) -> str:
        """One line naming the signature, the tensor and both sides."""
        what = f"signature {self.signature!r}" + ("" if self.part == "signature" else f" {self.part} {self.name!r}")
        return f"{what}: stable has {self.stable}, the candidate has {self.candidate} ({self.why})"


@dataclass(frozen=True)
class Verdict:
    """The comparison of a candidate's signatures with stable's."""

    stable: int | None
    candidate: int
    differences: tuple[Difference, ...] = ()
    skipped: str = ""  # why nothing was compared

    @property
    def breaking(self) -> list[Difference]:
        """The differences that break a client of stable."""
        return [d for d in self.differences if d.breaking]

    @property
    def compatible(self) -> bool:
        """No difference breaks a client of stable."""
        return not self.breaking

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"stable": self.stable, "candidate": self.candidate, "compatible": self.compatible,
                "skipped": self.skipped, "differences": [asdict(d) | {"description": d.describe()}
                                                         for d in self.differences]}


def _spec(spec: dict[str, Any] | None) -> str:
    if spec is None:
        return "absent"
    shape = "unknown rank" if spec.get("shape") is None else str(list(spec["shape"]))
    return f"{spec['dtype']} {shape}"


def _shape_change(old: list[int] | None, new: list[int] | None, is_input: bool) -> str:
    """Why a shape change breaks a client ('' when it does not)."""
    if new is None:
        return ""  # unknown rank accepts and may return anything a client had
    if old is None:
        return "a known rank where stable's was unknown" if is_input else ""
    if len(old) != len(new):
        return f"rank {len(old)} became {len(new)}"
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if a == b or b == -1 or a == -1 and not is_input:
            # A relaxed size; or an output fixed where it was free, which a client of stable reads all the same.
            continue
        if a == -1:
            return f"dimension {i} is fixed to {b} where stable accepted any size"
        return f"dimension {i} is {b}, stable's {a}"
    return ""


def compare(stable: Signatures, candidate: Signatures, stable_version: int | None = None,
            candidate_version: int = 0) -> Verdict:
    """Every difference from stable's signatures to the candidate's, each judged breaking or not."""
    out: list[Difference] = []
    for key in sorted(set(stable) | set(candidate)):
        s, c = stable.get(key), candidate.get(key)
        if s is None or c is None:
            present = c or s or {}
            summary = f"{present['method']} ({', '.join(present['inputs'])} -> {', '.join(present['outputs'])})"
            out.append(Difference(key, "signature", key, "absent" if s is None else summary,
                                  "absent" if c is None else summary, c is None,
                                  "removed" if c is None else "added"))
            continue
        if s["method"] != c["method"]:
            out.append(Difference(key, "method", s["method"], s["method"], c["method"], True, "method changed"))
        for side in ("inputs", "outputs"):
            is_input = side == "inputs"
            gone = [n for n in sorted(s[side]) if n not in c[side]]
            new = [n for n in sorted(c[side]) if n not in s[side]]
            renamed: dict[str, str] = {}  # one removed and one added with the same spec: a rename
            for n in gone:
                same = [m for m in new if c[side][m] == s[side][n] and m not in renamed.values()]
                if same:
                    renamed[n] = same[0]
            for name in sorted(set(s[side]) | set(c[side]), key=lambda n: (n not in gone, n)):
                a, b = s[side].get(name), c[side].get(name)
                if a == b or name in renamed.values():
                    continue
                if b is None:
                    why = f"renamed to {renamed[name]!r}" if name in renamed else "removed"
                    breaking = True
                elif a is None:
                    why, breaking = ("added: clients of stable do not send it", True) if is_input else ("added", False)
                elif a["dtype"] != b["dtype"]:
                    why, breaking = "dtype changed", True
                else:
                    why = _shape_change(a.get("shape"), b.get("shape"), is_input)
                    breaking = bool(why)
                    why = why or "shape relaxed"
                out.append(Difference(key, side[:-1], name, _spec(a), _spec(b), breaking, why))
    return Verdict(stable_version, candidate_version, tuple(out))


def read(paths: Paths, model: str, version: VersionRecord) -> Signatures:
    """A published version's signatures, without TensorFlow (its report's when the SavedModel will not parse)."""
    where = f"{paths.store.url}/{model}/{version.version}"
    try:
        return signatures.parse(paths.store.read_version_file(model, version.version, "saved_model.pb"),
                                f"{where}/saved_model.pb")
    except (LifecycleError, OSError) as first:
        try:
            text = paths.store.read_version_file(model, version.version, "saved_model.pbtxt")
            return signatures.parse(text, f"{where}/saved_model.pbtxt", text=True)
        except (LifecycleError, OSError):
            kept = full_report(paths, model, version).get("signatures")
            if isinstance(kept, dict) and kept:
                return kept
            if isinstance(first, OSError):
                raise CorruptVersion(f"{where}: cannot read its SavedModel: {first}") from first
            raise first from None


def verdict(paths: Paths, rec: ModelRecord, candidate: VersionRecord, stable: int | None) -> Verdict:
    """The candidate compared with ``stable`` (nothing to compare without a stable, or when it is the candidate)."""
    if stable is None or stable == candidate.version:
        return Verdict(stable, candidate.version, skipped="no other stable version to compare with")
    try:
        old, new = read(paths, rec.name, rec.version(stable)), read(paths, rec.name, candidate)
    except LifecycleError as e:
        return Verdict(stable, candidate.version, skipped=f"signatures unreadable: {e.message}")
    return compare(old, new, stable, candidate.version)


def check(paths: Paths, rec: ModelRecord, candidate: VersionRecord, stable: int | None,
          allow_breaking: bool = False) -> str | None:
    """Refuse a candidate whose signatures would break a client of ``stable``, in one line.

    With ``allow_breaking`` the refusal becomes a note the history records (the caller then
    insists on a reason). Returns that note, or None when the gate passed (or had nothing to
    compare: no other stable, or a side whose signatures cannot be read).
    """
    found = verdict(paths, rec, candidate, stable)
    if found.skipped or found.compatible:
        return None
    first = found.breaking[0]
    more = f" (and {len(found.breaking) - 1} more; see `mlc diff {rec.name} {stable} {candidate.version}`)" \
        if len(found.breaking) > 1 else ""
    why = f"signature gate: version {candidate.version} would break clients of stable {stable}: {first.describe()}{more}"
    if not allow_breaking:
        raise FailedPrecondition(f"{why}; promote with --allow-breaking --reason TEXT to override")
    return f"allowed breaking change past the {why}"
