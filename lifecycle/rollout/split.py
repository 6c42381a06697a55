"""The traffic split on a fleet: set it on every replica, wait at the barrier, scrape, clear.

Used by the progressive rollout (:mod:`lifecycle.rollout.progressive`) and by recovery, which
must never leave a split behind. Every split mlc sets is also recorded in configs/traffic.json
(:func:`lifecycle.serving.traffic.record_split`) first, so that a replica restarted meanwhile
starts with it. The abort flag of ``mlc rollout MODEL --abort`` lives here too: a document of
the repository beside the journal, so any terminal (or machine) sharing it can raise it.
"""

from __future__ import annotations

import json
import time

from lifecycle.errors import FailedPrecondition, LifecycleError, StepFailed
from lifecycle.rollout.driver import RPC_TIMEOUT_S, DrivenServer, Driver, parallel
from lifecycle.serving import metrics, traffic
from lifecycle.serving.metrics import Snapshot
from lifecycle.serving.traffic import Split
from lifecycle.store import journal
from lifecycle.store.config import Paths
from lifecycle.store.registry import current_user, now_iso

ABORT_KEY = "journal/rollout-abort.json"


def _message(t: DrivenServer, e: BaseException) -> str:
    message = e.message if isinstance(e, LifecycleError) else f"{type(e).__name__}: {e}"
    return message if message.startswith("server ") else f"server {t.name}: {message}"


def push(paths: Paths, driver: Driver, step: str, model: str, split: Split | None, token: str | None) -> None:
    """Set ``split`` on every replica, then wait until every replica reports it (the fleet barrier).

    The first replica that cannot be set, or does not report the split within its deadline, is
    named in the StepFailed.
    """
    traffic.record_split(paths, model, split)
    results = parallel(driver.targets, lambda t: traffic.set_split(t.spec, model, split, token, RPC_TIMEOUT_S))
    for t, e in results:
        if e is not None:
            raise StepFailed(step, _message(t, e)) from e
    now = time.monotonic()
    for t in driver.targets:
        driver.asked[t.name] = now

    def probe(t: DrivenServer, limit: float) -> str | None:
        try:
            got = traffic.get_split(t.spec, model, token, timeout=max(0.5, min(RPC_TIMEOUT_S, limit - time.monotonic())))
        except LifecycleError as e:
            raise StepFailed(step, _message(t, e)) from e
        if (split is None and got is None) or (split is not None and split.same_weights(got)):
            return None
        return "no split" if got is None else got.describe()

    def missed(t: DrivenServer, own: bool, reports: str) -> str:
        want = "no split" if split is None else split.describe()
        return f"server {t.name} did not report the split {want} in time; it reports {reports}"

    driver.poll_each(step, probe, missed)


def set_everywhere(paths: Paths, targets: list[DrivenServer], model: str, split: Split | None, token: str | None) -> list[str]:
    """Best effort, for reverts: set ``split`` on every replica; the problems, one per replica."""
    traffic.record_split(paths, model, split)
    problems = []
    for t, e in parallel(targets, lambda t: traffic.set_split(t.spec, model, split, token, RPC_TIMEOUT_S)):
        if e is not None:
            problems.append(_message(t, e))
    return problems


def scrape_all(step: str, targets: list[DrivenServer], model: str) -> dict[str, Snapshot]:
    """Every replica's counts of ``model`` now; a replica that cannot be scraped fails the step, named."""
    out: dict[str, Snapshot] = {}

    def one(t: DrivenServer) -> None:
        out[t.name] = metrics.model_snapshot(metrics.scrape(t.spec, timeout=RPC_TIMEOUT_S), model)

    for t, e in parallel(targets, one):
        if e is not None:
            raise StepFailed(step, f"cannot read the metrics of {_message(t, e)}") from e
    return out


def since(now: dict[str, Snapshot], before: dict[str, Snapshot]) -> Snapshot:
    """What happened between two scrapes of the fleet, summed over the replicas."""
    return metrics.total([metrics.interval(snap, before.get(name, {})) for name, snap in now.items()])


# --- the abort flag ----------------------------------------------------------------------------


def request_abort(paths: Paths, model: str) -> str:
    """Ask the running rollout of ``model`` to abort at its next check; the rollout it names."""
    pending = journal.load(paths)
    if pending is None or pending.action != "rollout" or pending.model != model:
        raise FailedPrecondition(f"no rollout of {model} is running (see `mlc status {model}`)")
    flag = {"model": model, "journal": pending.id, "user": current_user(), "time": now_iso()}
    paths.store.delete(ABORT_KEY)
    paths.store.write(ABORT_KEY, json.dumps(flag).encode("utf-8"), None)
    return pending.describe()


def abort_requested(paths: Paths, journal_id: str) -> str | None:
    """Who asked the rollout with this journal to abort (None when nobody did)."""
    doc = paths.store.read(ABORT_KEY)
    if doc is None:
        return None
    try:
        flag = json.loads(doc.data.decode("utf-8"))
    except ValueError:
        return "someone (an unreadable abort flag)"
    if not isinstance(flag, dict) or flag.get("journal") != journal_id:
        return None
    return f"{flag.get('user', '?')} at {flag.get('time', '?')}"


def clear_abort(paths: Paths) -> None:
    """Remove the abort flag (the rollout it was for has ended)."""
    paths.store.delete(ABORT_KEY)


# --- recovery: a split left by an mlc that died ------------------------------------------------


def journal_split(j: journal.Journal) -> Split | None:
    """The split a progressive rollout's journal drove (None for a promote or rollback)."""
    stable, candidate = j.progress.get("stable"), j.progress.get("candidate")
    if j.action != "rollout" or stable is None or candidate is None:
        return None
    return Split.pinned(int(stable), int(candidate))


def quiesce(paths: Paths, j: journal.Journal, targets: list[DrivenServer]) -> list[str]:
    """Before a revert: weight 0 on every replica, so stable answers while the candidate unloads."""
    split = journal_split(j)
    return [] if split is None else set_everywhere(paths, targets, j.model, split, traffic.read_token(paths))


def clear(paths: Paths, j: journal.Journal, targets: list[DrivenServer]) -> list[str]:
    """After a revert or a completion: no split left on any replica, nor in configs/traffic.json."""
    if j.action != "rollout":
        return []
    clear_abort(paths)
    return set_everywhere(paths, targets, j.model, None, traffic.read_token(paths))
