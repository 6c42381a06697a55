"""register publishes versions and leaves a pending rollout journal alone: recovering it would
reload production servers, which only the commands that drive servers (promote, rollback, serve) do."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle import api, rollout
from lifecycle.store import journal, registry
from lifecycle.store.config import Paths

pytestmark = pytest.mark.e2e


def test_register_leaves_a_pending_rollout_journal_for_the_commands_that_drive_servers(
    registered_home: Paths, variant_checkpoints: list[Path]
) -> None:
    paths = registered_home
    pending = journal.Journal(action="promote", model="deeplab", version=2,
                              before={"stable": None, "canary": None}, after={"stable": 2, "canary": None})
    journal.write(paths, pending)
    journal.step(paths, pending, "intent", "done")
    journal.step(paths, pending, "sandbox", "done")
    left = journal.load(paths)

    result = api.register(variant_checkpoints[0], paths=paths)

    assert (result.version, result.reused) == (4, False)
    assert left is not None and journal.load(paths) == left, "register must not touch the journal"
    assert registry.load(paths).model("deeplab").history == []
    status = api.status(paths=paths)
    assert status.pending_rollout is not None and "sandbox:done" in status.pending_rollout
    assert any("the next mlc promote, rollback or serve recovers it" in w for w in status.warnings)

    # The next command that drives servers finds it first (no servers here: it reverts).
    assert "reverted it" in (rollout.recover(paths) or "")
    assert journal.load(paths) is None
    (event,) = registry.load(paths).model("deeplab").history
    assert event.result == "reverted" and "by recovery" in event.detail
