"""``mlc rollout``: the progressive promote (parse, one ``api`` call, render). No TensorFlow here."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from lifecycle import api
from lifecycle.cli.commands import Command, JsonOption, ModelArg, app, run
from lifecycle.cli.jsonout import print_json
from lifecycle.cli.lifecycle import ReasonOption, ReplicaTimeoutOption, TimeoutOption
from lifecycle.cli.render import stderr, stdout

if TYPE_CHECKING:
    from lifecycle.rollout.analysis import StepReport
    from lifecycle.rollout.progressive import ProgressiveResult


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def step_line(s: StepReport) -> str:
    """One step for people: its weight, requests, figures and verdict."""
    weight = "shadow" if s.step == "shadow" else f"{100 * s.weight:g}%"
    ratio = "-" if s.p99_ratio is None else f"{s.p99_ratio:.2f}x"
    colour = "green" if s.verdict == "pass" else "red"
    return (f"  {escape(s.step):<8} {weight:>6}  requests {s.requests:<6} error_rate {_share(s.error_rate)}  "
            f"p99_ratio {ratio:<6} agreement {_share(s.agreement)}  [{colour}]{escape(s.verdict)}[/{colour}]")


def render_progressive(result: ProgressiveResult) -> None:
    """Print a rollout's plan, steps and outcome (an abort also goes to stderr)."""
    for note in result.recovered:
        stdout.print(f"[yellow]recovered:[/yellow] {escape(note)}")
    if result.result == "dry-run" and result.plan is not None and result.traffic is not None:
        stdout.print(f"Plan for the rollout of {result.model} {result.version} on {len(result.plan.servers)} server(s) "
                     f"(steps from {escape(result.traffic.source)}):")
        for i, line in enumerate(result.traffic.describe(), 1):
            stdout.print(f"  {i}. {escape(line)}")
        stdout.print("then the promote's commit:")
        for line in result.plan.steps:
            stdout.print(f"     {escape(line)}")
        if result.plan.config_diff:
            sys.stdout.write(result.plan.config_diff)
        return
    for s in result.steps:
        stdout.print(step_line(s))
    if result.result == "promoted":
        stdout.print(f"[green]promoted[/green] {escape(result.model)} {result.version}: {escape(result.reason)} "
                     f"({len(result.steps)} step(s) in {result.seconds:.1f} s)")
    elif result.result != "aborted":
        stdout.print(f"{escape(result.result)}: {escape(result.reason)}")


@app.command(cls=Command)
def rollout(
    model: ModelArg,
    version: Annotated[int | None, typer.Argument(help="The version to roll out (not with --abort, --resume, --revert).",
                                                  show_default=False, min=1, metavar="VERSION")] = None,
    steps: Annotated[str | None, typer.Option(
        "--steps", metavar="STEPS", show_default=False,
        help="The steps, e.g. shadow:30s,5%:30s,25%:30s (then promote); default: rollout.steps of configs/<model>.yaml, "
             "else shadow:60s,5%:60s,25%:60s,50%:60s.")] = None,
    max_error_rate: Annotated[float | None, typer.Option(
        "--max-error-rate", min=0, max=1, metavar="SHARE", show_default=False,
        help="Abort when the candidate's error rate exceeds stable's by more than this (default 0.01).")] = None,
    max_p99_ratio: Annotated[float | None, typer.Option(
        "--max-p99-ratio", min=0, metavar="RATIO", show_default=False,
        help="Abort when the candidate's p99 latency is more than this times stable's (default 1.5).")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        "--min-agreement", min=0, max=1, metavar="SHARE", show_default=False,
        help="Abort when shadowed answers agree with stable's less than this on average (default 0.95).")] = None,
    min_requests: Annotated[int | None, typer.Option(
        "--min-requests", min=0, metavar="N", show_default=False,
        help="Requests a step needs before it is judged (default 20).")] = None,
    too_few: Annotated[str | None, typer.Option(
        "--too-few", metavar="wait|abort", show_default=False,
        help="With fewer requests than --min-requests: wait for them (up to --max-wait), or abort (default wait).")] = None,
    max_wait: Annotated[str | None, typer.Option(
        "--max-wait", metavar="DURATION", show_default=False,
        help="How long a step waits beyond its hold for enough requests (default 120s).")] = None,
    timeout: TimeoutOption = 120.0,
    replica_timeout: ReplicaTimeoutOption = None,
    reason: ReasonOption = "",
    force: Annotated[bool, typer.Option("--force", help="Roll out past a failed quality gate (needs --reason).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Make the running rollout of MODEL abort at its next check.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Resume an interrupted rollout of MODEL at the step it stopped in.")] = False,
    revert: Annotated[bool, typer.Option("--revert", help="Revert an interrupted rollout of MODEL: weight 0, candidate unloaded.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Promote a version progressively, judged on live traffic.

    The same preconditions, journal, sandbox check and commit as `mlc promote`, with traffic
    steps between loading VERSION beside stable and moving the stable label. Each step sets the
    split on every replica (a shadow step copies stable's default-route requests to VERSION and
    compares the answers; N% sends that share of the requests that name no version and no label
    to VERSION, sticky by the mlc-route-key header or metadata), waits until every replica
    reports it, holds, scrapes every replica's metrics and judges VERSION against stable over
    the same interval: error rate, p99 latency ratio, agreement, enough requests. Requests that
    name a version or a label are never split. When every step passes, stable moves to VERSION
    as with `mlc promote`; when one fails, the split goes to weight 0 everywhere, VERSION is
    unloaded, stable is untouched, the history records the step, metric, value and threshold,
    and the exit is 1. Ctrl-C aborts the same way.

    The plan comes from the rollout: section of configs/<model>.yaml (docs/rollout.md); the
    flags override it. Every step is journaled: after a crash the next command reports the
    rollout, and `--resume` or `--revert` finishes it. `--abort`, from another terminal, makes
    a running rollout abort at its next check. Needs mlc-model-server (`mlc serve`):
    tensorflow_model_server has no split, and rollout refuses with it. --json prints {"model",
    "version", "result": "promoted" | "aborted", "reason", "steps": [{"step", "weight",
    "requests", "error_rate", "p99_ratio", "agreement", "verdict"}]}.

    Examples:

        mlc rollout deeplab 4 --steps shadow:30s,5%:30s,25%:30s

        mlc rollout deeplab 4 --dry-run

        mlc rollout deeplab --abort
    """
    chosen = [name for name, on in (("abort", abort), ("resume", resume), ("revert", revert)) if on]
    if len(chosen) > 1:
        raise typer.BadParameter(f"--{' and --'.join(chosen)} exclude each other")
    if too_few is not None and too_few not in ("wait", "abort"):
        raise typer.BadParameter("--too-few must be wait or abort")
    limits = {"max_error_rate": max_error_rate, "max_p99_ratio": max_p99_ratio, "min_agreement": min_agreement,
              "min_requests": min_requests, "too_few": too_few, "max_wait": max_wait}
    result = run(lambda: api.rollout(model, version, steps=steps, limits=limits, timeout=timeout, reason=reason,
                                     dry_run=dry_run, force=force, action=chosen[0] if chosen else "run",
                                     replica_timeout=replica_timeout))
    if as_json:
        print_json(result.to_dict())
    else:
        render_progressive(result)
    if result.result == "aborted":
        if not as_json:
            stderr.print(f"[red]Error:[/red] {escape(result.reason)}", markup=True, highlight=False)
        raise typer.Exit(1)
