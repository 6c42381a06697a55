"""Sending the outbox: signed POSTs with a short timeout, retried with backoff, never failing a command.

Every mlc command that queued an event sends what is due in a background thread when it ends
(:func:`deliver_in_background`) and waits for it at most the receivers' timeout: a receiver
that is down or hangs never blocks or fails the command. What was not sent stays in the outbox
with its attempts and the time of its next try (:func:`backoff`), for a later command or
``mlc hooks deliver``. Receivers get each event at least once and deduplicate by its ``id``
(also sent as ``X-Mlc-Event-Id``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from lifecycle.errors import LifecycleError
from lifecycle.store import outbox
from lifecycle.store.config import Paths
from lifecycle.store.outbox import Receiver

SIGNATURE_HEADER = "X-Mlc-Signature-256"
MAX_BACKOFF_S = 300.0


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 1, 2, 4 ... up to five minutes."""
    return float(min(MAX_BACKOFF_S, 2.0 ** max(0, attempts - 1)))


def post(receiver: Receiver, event: dict[str, Any]) -> str:
    """POST one event; '' when the receiver answered 2xx, else what went wrong."""
    body = json.dumps(event, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "mlc-hooks", "X-Mlc-Event": str(event["event"]),
               "X-Mlc-Event-Id": str(event["id"])}
    secret = os.environ.get(receiver.secret_env, "") if receiver.secret_env else ""
    if receiver.secret_env and not secret:
        return f"${receiver.secret_env} is not set: not sending unsigned"
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    request = urllib.request.Request(receiver.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=receiver.timeout) as answer:  # noqa: S310 - the URL is configs/hooks.yaml's, http(s) only
            code = int(answer.status)
    except urllib.error.HTTPError as e:
        code = int(e.code)
    except (OSError, ValueError) as e:  # refused, timed out, reset, bad URL
        return f"{type(e).__name__}: {e}"
    return "" if 200 <= code < 300 else f"HTTP {code}"


@dataclass
class DeliveryReport:
    """What one pass over the outbox did, and what is still pending."""

    sent: int = 0
    failed: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def deliver(paths: Paths, force: bool = False, stop: threading.Event | None = None) -> DeliveryReport:
    """Send every due delivery of the outbox once (``force``: also those still backing off)."""
    report = DeliveryReport()
    wanted = {r.name: r for r in outbox.receivers(paths)}
    for entry in outbox.pending(paths):
        if stop is not None and stop.is_set():
            break
        changed = False
        for name, d in entry.body["deliveries"].items():
            receiver = wanted.get(name)
            if d["sent"] or receiver is None or (not force and d["next_try"] > time.time()):
                continue
            error = post(receiver, entry.event)
            d["attempts"] += 1
            d["sent"], d["error"] = not error, error
            d["next_try"] = 0.0 if not error else time.time() + backoff(d["attempts"])
            report.sent += not error
            report.failed += bool(error)
            changed = True
        if changed:
            outbox.update(paths, entry)
    report.pending = status(paths)
    return report


def status(paths: Paths) -> list[dict[str, Any]]:
    """Every pending delivery: event id and name, receiver, attempts, next try and last error."""
    return [{"id": e.event["id"], "event": e.event["event"], "model": e.event.get("model"), "time": e.event["time"],
             "receiver": name, "attempts": d["attempts"], "next_try": d["next_try"], "error": d["error"]}
            for e in outbox.pending(paths) for name, d in e.deliveries.items() if not d["sent"]]


def test(paths: Paths) -> DeliveryReport:
    """Queue a test event for every receiver and send it now."""
    if not outbox.receivers(paths):
        raise LifecycleError(f"no receivers: {paths.configs / outbox.HOOKS_FILE} is missing (see docs/governance.md)")
    outbox.emit(paths, "test", None, {"message": "a test event from mlc hooks test"})
    return deliver(paths, force=False)


def deliver_in_background(paths: Paths) -> None:
    """Send what is due in a daemon thread and wait for it at most the longest receiver timeout.

    Called when a command ends; never raises. A delivery still running when the wait is over
    is abandoned with the process (its event stays in the outbox for the next command).
    """
    try:
        wanted = outbox.receivers(paths)
    except LifecycleError:
        return
    if not wanted:
        return
    stop = threading.Event()

    def send() -> None:
        try:
            deliver(paths, stop=stop)
        except (LifecycleError, OSError, ValueError, KeyError, TypeError):
            pass  # the outbox keeps it; `mlc hooks status` shows it

    thread = threading.Thread(target=send, name="mlc-hooks", daemon=True)
    thread.start()
    thread.join(max(r.timeout for r in wanted))
    stop.set()


def act(paths: Paths, action: str) -> DeliveryReport:
    """What ``mlc hooks ACTION`` does: deliver (everything now), status (list what is pending) or test."""
    if action == "deliver":
        return deliver(paths, force=True)
    if action == "test":
        return test(paths)
    return DeliveryReport(pending=status(paths))
