"""Rendering of predict and diff results for the mlc command line (rich; --json goes through show).

This module must not import TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from lifecycle.cli.render import stdout

if TYPE_CHECKING:
    from lifecycle.predictions.diff import DiffResult
    from lifecycle.predictions.predict import PredictResult


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%" if share >= 0.001 else "<0.1%"


def render_predict(result: PredictResult) -> None:
    """Print each photo's answering version, class shares and picture paths."""
    stdout.print(
        f"{result.model}: asked for {result.asked} over {result.transport} ({result.call}) at {result.server}"
    )
    for p in result.images:
        answered = f"version {p.version}" if p.version is not None else "an unreported version"
        stdout.print(f"\n{p.image}  {p.width}x{p.height}  answered by {answered}")
        if result.task == "classification":
            table = Table("rank", "class", "score", box=None)
            for rank, (name, score) in enumerate(p.classes.items(), 1):
                table.add_row(str(rank), name, f"{score:.4f}")
            stdout.print(table)
            continue
        stdout.print("  " + "  ".join(f"{name} {_percent(share)}" for name, share in p.classes.items()))
        stdout.print(f"  mask     {p.mask}")
        stdout.print(f"  overlay  {p.overlay}")


def render_diff(result: DiffResult) -> None:
    """Print signature changes, then agreement per image and on the evaluation set."""
    stdout.print(f"{result.model}: version {result.a} (A) vs version {result.b} (B)")
    if result.signature_changes:
        stdout.print("Signatures:")
        for change in result.signature_changes:
            stdout.print(f"  {change['description']}")
    else:
        stdout.print("Signatures: identical")
    verdict = result.compatibility or {}
    breaking = [d["description"] for d in verdict.get("differences", []) if d["breaking"]]
    if verdict:
        stdout.print(f"Compatibility (A as stable): {'breaks clients of A' if breaking else 'compatible'}")
        for line in breaking:
            stdout.print(f"  {line}")
    if result.classification is not None:
        render_class_diff(result)
        return
    table = Table(title="Masks of B against A")
    for col in ("image", "size", "agreement", "mIoU", "differing px"):
        table.add_column(col, overflow="fold")
    for d in result.images:
        table.add_row(Path(d.image).name, f"{d.width}x{d.height}", f"{100 * d.agreement:.2f}%", f"{d.miou:.3f}",
                      str(d.differing_pixels))
    if result.eval is not None:
        e = result.eval
        table.add_row(f"eval set ({e.images} scenes)", f"{e.size}x{e.size}", f"{100 * e.agreement:.2f}%",
                      f"{e.miou:.3f}", str(e.differing_pixels))
    stdout.print(table)
    if result.eval is not None:
        stdout.print(
            f"Eval mIoU against ground truth: version {result.a} {result.eval.miou_a:.3f}, "
            f"version {result.b} {result.eval.miou_b:.3f}"
        )
    stdout.print("Pictures (photo | mask A | mask B | disagreement in white):")
    for d in result.images:
        stdout.print(f"  {d.picture}")
    if result.identical:
        stdout.print("The two versions give the same masks.")


def render_class_diff(result: DiffResult) -> None:
    """A classifier's diff: top classes of A and B per photo, agreement and accuracy on the evaluation set."""
    c = result.classification
    assert c is not None
    table = Table(title="Top classes of A and B")
    for col in ("image", f"A (version {result.a})", f"B (version {result.b})", "same class"):
        table.add_column(col, overflow="fold")
    for i in c.images:
        table.add_row(Path(i["image"]).name, ", ".join(f"{n} {s:.3f}" for n, s in i["a"][:3]),
                      ", ".join(f"{n} {s:.3f}" for n, s in i["b"][:3]), "yes" if i["agree"] else "NO")
    stdout.print(table)
    changed = f": {', '.join(c.changed[:5])}" if c.changed else ""
    stdout.print(f"Eval set ({c.eval_images} images): B gives A's class on {100 * c.agreement:.2f}% "
                 f"({c.changed_count} changed{changed})")
    stdout.print(f"Eval accuracy against the labels: version {result.a} {c.accuracy_a:.3f} (top-5 {c.top5_a:.3f}), "
                 f"version {result.b} {c.accuracy_b:.3f} (top-5 {c.top5_b:.3f})")
    if result.identical:
        stdout.print("The two versions give the same classes.")


# --- many machines: sync, gc, pin --------------------------------------------------------------
