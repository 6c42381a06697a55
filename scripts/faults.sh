#!/usr/bin/env bash
# The fault matrix (tests/faults): the object store, the disk, the network, the servers and mlc
# itself fail mid-operation. Runs every cell and prints a table: passed, skipped (and why) or
# failed, with the label-addressed requests each cell's client sent and how many failed; the
# last line is `faults: P passed, S skipped, F failed of N`. Exit status 1 if any cell failed.
# Extra arguments go to pytest (e.g. -k disk). MLC_PYTHON picks an interpreter with mlc and
# its test extras installed (default: ./.venv, made by scripts/_venv.sh). Needs root for the
# network-namespace and tmpfs cells; without it they skip and say so.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${MLC_PYTHON:-}" ]; then
  PY="$MLC_PYTHON"
else
  # shellcheck source=scripts/_venv.sh
  source scripts/_venv.sh
  PY=python
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pytest tests/faults -q -p no:cacheprovider -rA \
  -o junit_family=xunit1 --junitxml="$OUT/faults.xml" "$@" >"$OUT/pytest.log" 2>&1
status=$?
if [ ! -s "$OUT/faults.xml" ]; then
  cat "$OUT/pytest.log"
  echo "faults: pytest did not run (exit $status)"
  exit 1
fi
"$PY" - "$OUT/faults.xml" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET

rows, counts = [], {"passed": 0, "skipped": 0, "failed": 0}
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    module = case.get("classname", "").rpartition(".")[2].removeprefix("test_").replace("_", " ")
    cell = case.get("name", "").removeprefix("test_").replace("_", " ")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    skipped, failed = case.find("skipped"), case.find("failure")
    if failed is None:
        failed = case.find("error")
    if skipped is not None:
        outcome = "skipped (" + (skipped.get("message") or "").removeprefix("Skipped: ") + ")"
        counts["skipped"] += 1
    elif failed is not None:
        outcome = "FAILED: " + ((failed.get("message") or "").strip().splitlines() or [""])[0][:100]
        counts["failed"] += 1
    else:
        outcome = "passed"
        counts["passed"] += 1
    load = f"{props['failed_requests']}/{props['requests']}" if "requests" in props else "-"
    rows.append((module, cell, load, f"{float(case.get('time', 0)):.0f}s", outcome))
head = ("group", "cell", "failed/requests", "time", "result")
widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
for r in [head, tuple("-" * w for w in widths) + ("-" * 6,), *rows]:
    print("  ".join(x.ljust(w) for x, w in zip(r, widths)) + "  " + r[4])
total = sum(counts.values())
print(f"faults: {counts['passed']} passed, {counts['skipped']} skipped, {counts['failed']} failed of {total}")
sys.exit(1 if counts["failed"] else 0)
PYEOF
