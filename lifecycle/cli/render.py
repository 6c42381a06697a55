"""Rendering for the mlc command line: rich tables and lines for people, JSON for scripts.

Every function here takes an ``api`` result and prints it; none calls the api. This module must
not import TensorFlow.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lifecycle.cli.jsonout import print_json
from lifecycle.cli.wording import event_change
from lifecycle.cli.wording import version_text as _v
from lifecycle.operations.status import state_words

if TYPE_CHECKING:
    from lifecycle.api import (
        HistoryReport,
        RegisterResult,
        ServeResult,
        StatusReport,
        StopResult,
        TrainResult,
    )
    from lifecycle.errors import LifecycleError
    from lifecycle.operations.retention import GcResult, PinResult
    from lifecycle.operations.sync import SyncResult
    from lifecycle.register.watch import WatchEvent, WatchSummary
    from lifecycle.rollout import RolloutResult
    from lifecycle.rollout.reconcile import ReconcileResult

R = TypeVar("R")

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def show(result: R, as_json: bool, render: Callable[[R], None]) -> None:
    """Print an api result: its ``to_dict()`` as JSON with ``--json``, else ``render`` for people."""
    if as_json:
        print_json(result.to_dict())  # type: ignore[attr-defined]
    else:
        render(result)


# Below this many columns (a pipe gets 80) status leaves out the created time and the golden
# digest, names servers "srv1".. with a legend, and shortens checkpoints, so that every version
# stays on one line.
WIDE_STATUS = 120
METRIC_HEADS = {"miou": "mIoU", "accuracy": "acc"}  # the status column of ModelStatus.metric


def render_status(report: StatusReport) -> None:
    """Print a status report as one table per model, one line per version."""
    if not report.models:
        stdout.print("No models registered yet. Register a checkpoint with: mlc register RUN_DIR")
    servers = list(report.servers)
    wide = stdout.width >= WIDE_STATUS
    names = servers if wide else [f"srv{i}" for i in range(1, len(servers) + 1)]
    for m in report.models:
        title = f"{m.name}  (stable: {m.stable if m.stable is not None else '-'}"
        title += (f", canary: {m.canary}" if m.canary is not None else "") + ")"
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      padding=(0, 1, 0, 0))
        approvals = any(v.approval for v in m.versions)
        columns = ["ver", "labels", "step", *(["created"] if wide else []), "valid", METRIC_HEADS[m.metric],
                   *(["golden"] if wide else []), *(["approval"] if approvals else []), "cfg", "checkpoint", *names]
        for col in columns:
            # A cell too long for the width wraps onto more lines (fold), never cut with an ellipsis.
            table.add_column(col, no_wrap=False, overflow="fold", min_width=len(col) if col != "checkpoint" else 8)
        for v in m.versions:
            table.add_row(
                str(v.version),
                ",".join(v.labels),
                "" if v.step is None else str(v.step),
                *([v.created[5:16].replace("T", " ")] if wide else []),
                "yes" if v.validated else "NO",
                "" if (score := v.score(m.metric)) is None else f"{score:.3f}",
                *([(v.golden_digest or "").removeprefix("sha256:")[:8]] if wide else []),
                *([v.approval] if approvals else []),
                "yes" if v.in_config else "",
                v.checkpoint if wide else _short_path(v.checkpoint),
                *[_state_markup(v.servers.get(addr, "")) for addr in servers],
            )
        stdout.print(table)
        if m.versions_omitted:
            stdout.print(f"{m.versions_omitted} of {m.versions_total} versions not shown (older, not labelled, "
                         f"configured or loaded): mlc status {m.name} --all")
        for addr, generation in m.generations.items():
            if report.generation and generation != report.generation:
                shown = "a state mlc did not record" if generation is None else f"recorded state #{generation}"
                stdout.print(f"server {addr} serves {shown}, not the newest #{report.generation}: run mlc reconcile")
        for d in m.drift:
            stdout.print(f"[red]drift:[/red] {escape(d)}")
        for w in m.warnings:
            stdout.print(f"[yellow]warning:[/yellow] {escape(w)}")
        if m.last_event:
            e = m.last_event
            stdout.print(f"last rollout: {e.time[:19].replace('T', ' ')} {escape(event_change(e))}: {e.result}")
    if report.servers:
        for name, (addr, state) in zip(names, report.servers.items(), strict=True):
            stdout.print(f"server {addr}{'' if wide else f' ({name})'}: {escape(state)}")
    else:
        stdout.print("servers: none running or listed in configs/servers.yaml (start one with: mlc serve --detach)")
    for w in report.warnings:
        stdout.print(f"[yellow]warning:[/yellow] {escape(w)}")
    if report.rollout:
        _render_rollout_progress(report.rollout)


def _render_rollout_progress(r: dict[str, Any]) -> None:
    """A progressive rollout in progress: its step, the weights and per version the step's figures so far."""
    weights = " / ".join(f"{v} {100 * w:g}%" for v, w in r["weights"].items())
    state = "in progress" if r["running"] else "interrupted"
    stdout.print(f"rollout {state}: {escape(r['model'])} {r['stable']} -> {r['candidate']}, step {escape(str(r['step']))} "
                 f"({weights}{', shadow ' + format(100 * r['shadow'], 'g') + '%' if r['shadow'] else ''})")
    for v, f in sorted(r["versions"].items()):
        def show(x: float | None, fmt: str) -> str:
            return "-" if x is None else format(x, fmt)
        stdout.print(f"  version {v}: {f['requests']} requests, error rate {show(f['error_rate'], '.3f')}, "
                     f"p99 {show(f['p99_ms'], '.1f')} ms, agreement {show(f['agreement'], '.3f')}")


def _short_path(path: str) -> str:
    """The last two parts of a checkpoint path (run folder and checkpoint), for narrow tables."""
    parts = Path(path).parts
    return str(Path(*parts[-2:])) if len(parts) > 2 else path


def _state_markup(state: str) -> str:
    """A server's state of a version in words (TF Serving's END reads failed: <error> or unloaded)."""
    if state == "AVAILABLE":
        return "[green]AVAILABLE[/green]"
    words = state_words(state)
    if words.startswith("failed:") or state == "unreachable":
        return f"[red]{escape(words)}[/red]"
    return escape(words)


def render_history(report: HistoryReport) -> None:
    """Print a model's rollout history, one row per event (a note too long for the width wraps), then approvals."""
    if not report.events:
        stdout.print(f"{report.model}: no promotions or rollbacks yet")
    else:
        _history_table(report)
    for state in report.approvals:
        stdout.print(f"{report.model} {state.version}: {escape(state.describe())}")


def _history_table(report: HistoryReport) -> None:
    wide = stdout.width >= WIDE_STATUS
    title = f"{report.model} rollout history (stable: {report.stable if report.stable is not None else '-'})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 1, 0, 0))
    rows = []
    for e in report.events:
        result = e.result + (" (forced)" if e.forced else "")
        rows.append((
            e.time if wide else e.time[:16].replace("T", " "), e.user, event_change(e), result,
            " / ".join(p for p in (e.reason, e.detail) if p),
        ))
    columns = ("time", "user", "change", "result", "reason / detail")
    for col in columns:
        # The note wraps (fold) to fit the width; the other columns keep their text. Nothing is cut.
        note = col == "reason / detail"
        table.add_column(col, no_wrap=not note, overflow="fold", min_width=8 if note else len(col))
    for row, e in zip(rows, report.events, strict=True):
        colour = "green" if e.result in ("ok", "recovered") else "red"
        table.add_row(*(escape(c) for c in row[:3]), f"[{colour}]{escape(row[3])}[/{colour}]", escape(row[4]))
    stdout.print(table)


def render_rollout(result: RolloutResult, as_json: bool) -> None:
    """Print a promote or rollback result (JSON with ``as_json``); its warnings go to stderr either way."""
    for warning in result.warnings:
        stderr.print(f"[yellow]warning:[/yellow] {escape(warning)}", markup=True, highlight=False)
    if as_json:
        print_json(result.to_dict())
        return
    plan = result.plan
    for note in result.recovered:
        stdout.print(f"[yellow]recovered:[/yellow] {escape(note)}")
    if result.result == "dry-run":
        stdout.print(f"Plan for {plan.action} of {plan.model} {plan.version} on {len(plan.servers)} server(s):")
        for i, step in enumerate(plan.steps, 1):
            stdout.print(f"  {i}. {escape(step)}")
        for note in plan.notes:
            stdout.print(f"[yellow]note:[/yellow] {escape(note)}")
        if plan.config_diff:
            sys.stdout.write(plan.config_diff)
        else:
            stdout.print("configs/models.config would not change")
        return
    if result.result == "noop":
        stdout.print(escape(result.message))
        return
    after = plan.after
    what = f"{plan.model}: stable {_v(plan.before['stable'])} -> {_v(after['stable'])}"
    if plan.before["stable"] is None:
        what = f"{plan.model}: stable {_v(after['stable'])} (first)"
    if plan.action == "withdraw":
        what = f"{plan.model}: canary {_v(plan.before['canary'])} withdrawn, stable stays {_v(after['stable'])}"
    elif plan.action == "canary":
        what = f"{plan.model}: canary {_v(after['canary'])} beside stable {_v(after['stable'])}"
    elif after["canary"] != plan.before["canary"]:
        was, now = plan.before["canary"], after["canary"]
        what += f", canary {_v(was)} -> {_v(now)}" if was is not None and now is not None else \
            (f", canary {was} cleared" if was is not None else f", canary {now}")
    stdout.print(f"[green]{plan.action} ok[/green] {escape(what)} on {len(plan.servers)} server(s) in {result.seconds:.1f} s")
    for note in plan.notes:
        stdout.print(f"[yellow]note:[/yellow] {escape(note)}")


def render_serve(result: ServeResult) -> None:
    """Print the servers mlc serve started."""
    if result.recovered:
        stdout.print(f"[yellow]recovered:[/yellow] {escape(result.recovered)}")
    for s in result.servers:
        rest = f", REST {s.rest if '://' in s.rest else 'http://' + s.rest}" if s.rest else ""
        log = f", log {s.log}" if s.log else ""
        stdout.print(f"{result.engine} server pid {s.pid}: gRPC {s.grpc}{rest} on {result.config_file}{log}")


def render_reconcile(result: ReconcileResult) -> None:
    """Print what ``mlc reconcile`` changed on each replica."""
    stdout.print(f"recorded serving state #{result.generation} (servers from {result.servers_source})")
    if result.recovered:
        stdout.print(f"[yellow]recovered:[/yellow] {escape(result.recovered)}")
    if not result.replicas:
        stdout.print("no servers listed in configs/servers.yaml or started by mlc serve")
    for r in result.replicas:
        where = f"{r.server}" + (f" ({r.found_by})" if r.found_by else "")
        if r.error:
            stdout.print(f"[red]{escape(where)}: not reconciled:[/red] {escape(r.error)}")
        elif r.changes:
            how = " (it read them from configs/models.config by polling)" if r.via == "poll" else ""
            stdout.print(f"{escape(where)}: {escape('; '.join(r.changes))}{how}")
        else:
            stdout.print(f"{escape(where)}: in sync")


def render_stop(result: StopResult) -> None:
    """Print the servers ``mlc stop`` stopped."""
    if not result.stopped:
        stdout.print("No running server started by mlc serve.")
    for s in result.stopped:
        stdout.print(f"stopped server pid {s.pid} (gRPC {s.grpc})")


def render_register(result: RegisterResult) -> None:
    """Print the registered (or already known) version, then the bare number on its own line."""
    step = "" if result.step is None else f" (step {result.step})"
    if result.reused:
        stdout.print(f"{result.checkpoint}{step} is already {result.model} version {result.version}")
    else:
        score = "" if result.miou is None else f", eval mIoU {result.miou:.3f}"
        if result.accuracy is not None:
            score = f", eval accuracy {result.accuracy:.3f}"
        what = "" if result.source_kind == "checkpoint" else f" ({result.source_kind})"
        stdout.print(f"Registered {result.checkpoint}{what}{step} as {result.model} version {result.version}{score}")
    stdout.print(str(result.version))


def render_train(result: TrainResult) -> None:
    """Print what ``mlc train`` wrote."""
    if not result.checkpoints:
        stdout.print(f"{result.run_dir} is already at step {result.start_step}; nothing to do (raise --steps)")
    else:
        stdout.print(f"Wrote {len(result.checkpoints)} checkpoints to {result.run_dir}. "
                     f"Register the latest with: mlc register {result.run_dir}")


_EVENT_STYLES = {
    "watching": "cyan", "waiting": "yellow", "gone": "yellow", "seen": "dim", "incomplete": "dim",
    "registered": "green", "known": "dim", "failed": "red", "skipped": "yellow",
    "promoted": "bold green", "kept": "yellow", "promote-failed": "red", "stopped": "cyan",
}


class WatchDisplay:
    """``mlc watch`` output: one line per event and a progress spinner, or one JSON object per event."""

    QUIET = frozenset({"registering", "promoting"})  # shown in the progress line only

    def __init__(self, folders: int, as_json: bool) -> None:
        self.folders = folders
        self.as_json = as_json
        self.counts = {"registered": 0, "known": 0, "failed": 0, "promoted": 0}
        self.spinner = None if as_json else stdout.status("watching ...", spinner="dots")

    def __enter__(self) -> WatchDisplay:
        if self.spinner is not None:
            self.spinner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.spinner is not None:
            self.spinner.stop()

    def event(self, e: WatchEvent) -> None:
        """Show one watch event."""
        if self.as_json:
            sys.stdout.write(json.dumps(e.to_dict(), default=str) + "\n")
            sys.stdout.flush()
            return
        kind = "failed" if e.kind == "skipped" else e.kind
        if kind in self.counts:
            self.counts[kind] += 1
        if e.kind not in self.QUIET:
            style = _EVENT_STYLES.get(e.kind, "")
            stdout.print(f"{e.time[11:19]}  [{style}]{e.kind:<14}[/{style}] {escape(e.message)}" if style
                         else f"{e.time[11:19]}  {e.kind:<14} {escape(e.message)}", markup=True, highlight=False)
        if self.spinner is not None:
            doing = f"{e.message} ... " if e.kind in self.QUIET else ""
            c, n = self.counts, self.folders
            self.spinner.update(f"{doing}{n} folder{'s' if n != 1 else ''}, {e.pending} pending, "
                                f"{c['registered']} registered, {c['known']} known, {c['failed']} failed, "
                                f"{c['promoted']} promoted (Ctrl-C to stop)")

    def summary(self, summary: WatchSummary) -> None:
        """Show the summary of a watch session."""
        if self.as_json:
            sys.stdout.write(json.dumps({"kind": "summary", **summary.to_dict()}, default=str) + "\n")
            return
        stdout.print(
            f"Watched {len(summary.run_dirs)} folder{'s' if len(summary.run_dirs) != 1 else ''}: "
            f"{len(summary.registered)} registered, {len(summary.known)} already known, {len(summary.failed)} failed, "
            f"{len(summary.promoted)} promoted, {len(summary.kept)} kept back by the gate."
        )


def render_sync(result: SyncResult | LifecycleError) -> None:
    """One pass of ``mlc sync``: what was copied, removed and kept; or a later pass's error line."""
    from lifecycle.errors import LifecycleError

    if isinstance(result, LifecycleError):
        stderr.print(f"[red]Error:[/red] {escape(result.message)} (retrying)", markup=True, highlight=False)
        return
    changes = [f"removed {x}, the copy of an interrupted sync" for x in result.interrupted]
    changes += [f"copied {x}" for x in result.copied] + [f"removed {x}" for x in result.removed]
    changes += [f"kept {x}" for x in result.kept]
    if result.config_changed:
        changes.append(f"wrote {result.target}/models.config")
    stdout.print(f"{result.target}: " + ("; ".join(changes) if changes else "up to date"))


def render_gc(result: GcResult) -> None:
    """``mlc gc``: each deletion (or planned one with --dry-run), then what was kept and why."""
    verb = "would delete" if result.dry_run else "deleted"
    if result.interrupted:
        stdout.print(f"finished an interrupted {escape(result.interrupted)}")
    for r in result.removed:
        stdout.print(f"{verb} {r.model} {r.kind} {r.version}" + (f" ({r.detail})" if r.detail else ""))
    if not result.removed:
        stdout.print("nothing to delete")
    for line in result.kept:
        stdout.print(f"kept {escape(line)}")


def render_pin(result: PinResult) -> None:
    """``mlc pin`` / ``mlc unpin``: the model's pinned versions now."""
    pinned = ", ".join(str(v) for v in result.pinned) or "none"
    stdout.print(f"{result.model}: pinned {pinned}")
