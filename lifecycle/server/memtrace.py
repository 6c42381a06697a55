"""``MLC_TRACEMALLOC=FILE``: trace the server's Python allocations and report their growth on SIGUSR2.

For finding what holds memory across reloads (bench/bench_soak.py): with the variable set, the
server starts ``tracemalloc`` once it serves (tracing TensorFlow's import and the first loads
would take minutes), takes a baseline, and on
each SIGUSR2 appends to FILE the 25 call sites whose live allocations grew most since that
baseline (with a short traceback each), the traced total and the process's RSS, then both
again after a full ``gc.collect()``. Off (and free)
when the variable is unset.
"""

from __future__ import annotations

import gc
import os
import signal
import time
import tracemalloc
from pathlib import Path
from typing import Any

ENV = "MLC_TRACEMALLOC"
FRAMES = 12
TOP = 25


def rss_mib() -> int:
    """This process's resident set in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return -1


def arm() -> None:
    """With ``MLC_TRACEMALLOC`` set: start tracing, take the baseline, report growth on SIGUSR2."""
    target = os.environ.get(ENV)
    if not target:
        return
    tracemalloc.start(FRAMES)
    baseline = tracemalloc.take_snapshot()

    def report(_signum: int, _frame: Any) -> None:
        now = tracemalloc.take_snapshot()
        stats = now.compare_to(baseline, "traceback")
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"=== {time.strftime('%H:%M:%S')} RSS {rss_mib()} MiB, traced {current / 2**20:.1f} MiB (peak {peak / 2**20:.1f})"]
        for stat in stats[:TOP]:
            lines.append(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+7d} blocks")
            lines.extend(f"      {frame.filename}:{frame.lineno}" for frame in stat.traceback[-FRAMES:])
        # Then a full collection: what it frees was garbage in cycles, what stays is referenced.
        found = gc.collect()
        current, _ = tracemalloc.get_traced_memory()
        lines.append(f"=== after gc.collect() ({found} unreachable): RSS {rss_mib()} MiB, traced {current / 2**20:.1f} MiB")
        with open(target, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR2, report)
