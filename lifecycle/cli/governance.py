"""Release governance commands: approve and reject (more follow: hooks, card, verify).

Each parses, makes one ``api`` call and renders; none imports TensorFlow.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lifecycle import api
from lifecycle.cli.commands import Command, JsonOption, ModelArg, app, run
from lifecycle.cli.render import show, stdout
from lifecycle.store.approvals import DecisionResult

VersionArg = Annotated[int, typer.Argument(help="The version.", show_default=False, min=1, metavar="VERSION")]
DecisionReason = Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why; recorded in the registry (required).")]


def render_decision(result: DecisionResult) -> None:
    """One line: the decision recorded and where the version stands now."""
    d = result.decision
    verb = "approved" if d.decision == "approve" else "rejected"
    stdout.print(f"{result.model} {d.version}: {verb} by {d.user} ({d.digest[:19]}); now {result.state.describe()}")


@app.command(cls=Command)
def approve(model: ModelArg, version: VersionArg, reason: DecisionReason = "", as_json: JsonOption = False) -> None:
    """Approve a version, so that promote and rollout may use it.

    The registry records who approved (the user this command runs as), when, why and the
    version's content digest (of its manifest). How many distinct approvals a version needs,
    and whether the user who registered it may give one, is `approvals:` in
    configs/<model>.yaml (see docs/governance.md). Each user's latest decision counts.

    Examples:

        mlc approve deeplab 4 --reason "mIoU +2 points on VOC val, checked the failure cases"
    """
    result = run(lambda: api.decide(model, version, "approve", reason))
    show(result, as_json, render_decision)


@app.command(cls=Command)
def reject(model: ModelArg, version: VersionArg, reason: DecisionReason = "", as_json: JsonOption = False) -> None:
    """Reject a version: promote and rollout refuse it.

    Until the same user approves it. Recorded like `mlc approve`: who, when, why and the
    version's content digest.

    Examples:

        mlc reject deeplab 4 --reason "mislabels cats as dogs"
    """
    result = run(lambda: api.decide(model, version, "reject", reason))
    show(result, as_json, render_decision)
