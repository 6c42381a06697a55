"""Named failpoints for crash tests: inert unless ``MLC_FAILPOINTS`` names them.

Code marks the moments a crash must be survivable with ``failpoint("name")``. A test (or a
person reproducing a crash) sets one environment variable::

    MLC_FAILPOINTS="journal:label:done"               # SIGKILL this mlc right there
    MLC_FAILPOINTS="journal:sandbox:done=pause:1.5"   # sleep 1.5 s there (act at a known step)
    MLC_FAILPOINTS="register:claimed,store:publish=kill"

It is a comma-separated list of ``name`` or ``name=action``; the action is ``kill`` (the
default: SIGKILL, no clean-up runs, exactly like a power cut for the files mlc wrote),
``pause:SECONDS`` (``sleep:SECONDS`` is the same), or ``error:SHARE``: :func:`failpoint` then
returns True for that share of its calls, at random, and the caller fails what it was doing.
Unset, every failpoint is one dictionary lookup. With ``MLC_FAILPOINTS_LOG`` naming a file, each
failpoint that acts first appends its name and the pid to it, so a test knows the process is
paused (or about to die) exactly there instead of sleeping and hoping; a pause ends early once
the file ``<log>.release`` exists (the test has done its part).

The failpoints:

- ``journal:<step>:<state>``: right after the rollout journal records that entry, e.g.
  ``journal:label:done`` (steps and states: :mod:`lifecycle.store.journal`).
- ``sandbox:available``: the candidate is AVAILABLE in the sandbox, not checked yet (a test
  holds a promote there to look at the servers).
- ``rollout:seen``: a promote or rollback has read the model's history and not yet waited for
  the registry lease (a rollout that commits meanwhile makes it stale).
- ``register:claimed``: a register has claimed version N and not published it yet.
- ``register:published``: version N is published; the registry does not record it yet.
- ``registry:pages``: a registry write has created its new version pages and not yet replaced
  ``registry.yaml`` (the head) that names them.
- ``gc:deleted``: ``mlc gc`` has deleted one version from the store; the registry does not
  record the deletion yet (it does once every deletion is done).
- ``store:publish``: inside :meth:`~lifecycle.store.base.Store.publish_version`, the files are
  in place but the version is not visible yet (a local store: staged and fsynced, before the
  rename; an object store: files uploaded, manifest not written).
- ``store:copy``: inside :meth:`~lifecycle.store.base.Store.copy_version` (``mlc sync``, a
  server's copies), the files are in the incoming folder, not renamed into place yet.
- ``server:load:<model>:<version>``: in ``mlc-model-server``, before it loads that version
  (``=pause:S`` makes one replica slow to load it: set it in that server's environment only).
- ``server:label:<model>:<label>:<version>``: in ``mlc-model-server``, before a config that
  moves that label to that version takes effect (``=pause:S``: a replica slow to take a label).
- ``server:predict:<model>:<version>``: in ``mlc-model-server``, before that version answers a
  Predict (the client's or a shadow copy): ``=sleep:0.02`` makes it slow, ``=error:0.5`` fails
  half its answers with UNAVAILABLE (a bad candidate for ``mlc rollout``'s tests).
"""

from __future__ import annotations

import os
import random
import signal
import time

ENV = "MLC_FAILPOINTS"
LOG_ENV = "MLC_FAILPOINTS_LOG"


def action(name: str) -> str | None:
    """The action ``MLC_FAILPOINTS`` sets for ``name`` (``kill``, ``pause:S``), or None."""
    for item in os.environ.get(ENV, "").split(","):
        point, _, act = item.strip().partition("=")
        if point == name:
            return act or "kill"
    return None


def _pause(seconds: float, release: str | None) -> None:
    """Sleep ``seconds``, or less once the file ``release`` exists (the test has done its part)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if release is not None and os.path.exists(release):
            return
        time.sleep(min(left, 0.05))


def failpoint(name: str) -> bool:
    """Kill or pause here if ``MLC_FAILPOINTS`` names ``name``; True if its ``error:P`` fires."""
    if ENV not in os.environ:
        return False
    act = action(name)
    if act is None:
        return False
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{name} {os.getpid()}\n")
    if act == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif act.startswith(("pause:", "sleep:")):
        _pause(float(act.partition(":")[2] or 1), f"{log}.release" if log else None)
    elif act.startswith("error:"):
        return random.random() < float(act.partition(":")[2] or 1)
    else:
        raise ValueError(f"{ENV}: unknown action {act!r} for failpoint {name!r} "
                         "(use kill, pause:SECONDS or error:SHARE)")
    return False
