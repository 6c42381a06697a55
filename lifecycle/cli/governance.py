"""Release governance commands: approve, reject, card, verify, and the webhooks (hooks deliver, status, test).

Each parses, makes one ``api`` call and renders; none imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lifecycle import api
from lifecycle.cli.commands import HELP_OPTIONS, Command, JsonOption, ModelArg, app, run
from lifecycle.cli.render import print_json, show, stderr, stdout
from lifecycle.hooks.sender import DeliveryReport
from lifecycle.store import verify as verifier
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


@app.command(cls=Command)
def card(
    model: ModelArg, version: VersionArg,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder to write the card into.")] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Write a version's model card (Markdown and one HTML page).

    MODEL-VERSION.card.md and MODEL-VERSION.card.html hold the signature contract, the metrics
    with per-class IoU (or accuracy) as a chart, the test image's mask and overlay (the version
    is loaded in this process), the lineage register recorded (run record, git commit, digests
    of the definition, evaluation set and builder, TF and mlc versions), approvals and history.

    Examples:

        mlc card deeplab 4 --out cards/
    """
    result = run(lambda: api.card(model, version, out))
    show(result, as_json, lambda r: stdout.print(f"wrote {r.markdown} and {r.html}"))


@app.command(cls=Command)
def verify(
    model: Annotated[str | None, typer.Argument(help="Only this model (default: every model).", show_default=False,
                                                metavar="[MODEL]")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check that the registry and the versions are what mlc wrote.

    The chain (each history, attempt and approval record holds the hash of the one before
    it), the registry's pages against its head, every published version's files against its
    manifest, and that stable and canary point at registered, validated, present versions.
    Exits 1 naming the first broken link, changed file or dangling label. Works on a local
    folder and on an S3 repository alike.

    Examples:

        mlc verify

        mlc verify deeplab --json
    """
    report = run(lambda: api.verify(model))
    if as_json:
        print_json(report.to_dict())
    else:
        for note in report.notes:
            stdout.print(f"note: {note}")
        stdout.print(verifier.describe(report) + (": ok" if report.ok else f": {len(report.problems)} problem(s)"))
    if not report.ok:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        stderr.print(f"[red]Error:[/red] {report.problems[0]}{more}", markup=True, highlight=False)
        raise typer.Exit(1)


hooks_app = typer.Typer(
    help="""Signed webhooks to the receivers of configs/hooks.yaml.

    Each event (register, register-failed, approve, reject, promote, rollback,
    rollout-step/abort/finish, gc) is queued in the repository's outbox where it is recorded,
    then POSTed as JSON with a unique id, signed with HMAC-SHA256 in X-Mlc-Signature-256
    (sha256=<hex>) like GitHub's. A command sends what is due when it ends and waits at most the
    receivers' timeout; what could not be sent is retried with backoff by later commands and by
    `mlc hooks deliver`. See docs/governance.md.

    Examples:

        mlc hooks test

        mlc hooks status
    """,
    no_args_is_help=True,
    context_settings=HELP_OPTIONS,
)
app.add_typer(hooks_app, name="hooks")


def render_delivery(report: DeliveryReport) -> None:
    """Sent and failed counts, then each pending delivery."""
    stdout.print(f"sent {report.sent}, failed {report.failed}, pending {len(report.pending)}")
    render_pending(report.pending)


def render_pending(pending: list[dict[str, object]]) -> None:
    """One line per pending delivery."""
    for p in pending:
        error = f": {p['error']}" if p["error"] else ""
        stdout.print(f"{p['id']} {p['event']} {p['model'] or '-'} -> {p['receiver']} ({p['attempts']} attempts{error})")


@hooks_app.command("deliver", cls=Command)
def hooks_deliver(as_json: JsonOption = False) -> None:
    """Send every pending webhook now, including those backing off.

    Examples:

        mlc hooks deliver
    """
    show(run(lambda: api.hooks("deliver")), as_json, render_delivery)


@hooks_app.command("status", cls=Command)
def hooks_status(as_json: JsonOption = False) -> None:
    """List the webhooks not yet delivered: event, receiver, attempts, last error.

    Examples:

        mlc hooks status --json
    """
    report = run(lambda: api.hooks("status"))
    if as_json:
        print_json(report.to_dict())
    elif not report.pending:
        stdout.print("no webhooks pending")
    else:
        render_pending(report.pending)


@hooks_app.command("test", cls=Command)
def hooks_test(as_json: JsonOption = False) -> None:
    """Send a test event to every receiver now.

    Examples:

        mlc hooks test
    """
    show(run(lambda: api.hooks("test")), as_json, render_delivery)
