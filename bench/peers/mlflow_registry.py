"""The MLflow Model Registry side of bench/bench_peers.py: run in .bench-venv-mlflow, never in mlc's.

It opens MLflow's SQLite registry through ``MlflowClient`` in ``DIR`` and answers one JSON
command per stdin line with one JSON line on stdout, so the bench can interleave its own rounds
with this process's:

- ``{"fill": N}``: grow the model to N versions (the first 200 through ``create_model_version``,
  the rest as copies of the last one's row in MLflow's own ``model_versions`` table: set-up,
  not measured, and minutes faster);
- ``{"op": OP, "reps": K}``: time OP K times; answers ``{"ms": [...]}``. OP is one of
  ``register`` (create_model_version), ``move`` (set_registered_model_alias, alternating the
  ``stable`` alias between the two newest versions), ``resolve`` (get_model_version_by_alias),
  ``list`` (search_model_versions, the 20 newest).

    .bench-venv-mlflow/bin/python bench/peers/mlflow_registry.py DIR
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL = "deeplab"


REAL_FILL = 200  # versions made through create_model_version; the rest are copies of the last one's row


def bulk_copy(db: Path, have: int, target: int) -> None:
    """Set-up only: rows of versions have+1..target, copies of version ``have``'s row (a client call each takes minutes)."""
    import sqlite3

    with sqlite3.connect(db) as con:
        columns = [row[1] for row in con.execute("PRAGMA table_info(model_versions)")]
        template = dict(zip(columns, con.execute("SELECT * FROM model_versions WHERE name = ? AND version = ?",
                                                  (MODEL, have)).fetchone(), strict=True))
        rows = []
        for number in range(have + 1, target + 1):
            row = dict(template, version=number, source=f"{template['source'].rsplit('/', 1)[0]}/{number}")
            rows.append(tuple(row[c] for c in columns))
        marks = ", ".join("?" for _ in columns)
        con.executemany(f"INSERT INTO model_versions ({', '.join(columns)}) VALUES ({marks})", rows)


def main() -> None:
    """Serve timing commands over stdin/stdout against a SQLite registry in argv[1]."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from mlflow.tracking import MlflowClient

    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    count = [0]
    flip = [0]

    def register() -> object:
        count[0] += 1
        return client.create_model_version(MODEL, f"file://{root}/artifacts/{count[0]}", run_id=None)

    def move() -> object:
        flip[0] ^= 1
        return client.set_registered_model_alias(MODEL, "stable", str(count[0] - flip[0]))

    def resolve() -> object:
        return client.get_model_version_by_alias(MODEL, "stable")

    def listing() -> object:
        return client.search_model_versions(f"name = '{MODEL}'", max_results=20, order_by=["version_number DESC"])

    ops: dict[str, Callable[[], object]] = {"register": register, "move": move, "resolve": resolve, "list": listing}
    for line in sys.stdin:
        command: dict[str, Any] = json.loads(line)
        if "fill" in command:
            target = int(command["fill"])
            while count[0] < min(target, REAL_FILL):
                register()
            if count[0] < target:
                bulk_copy(root / "mlflow.db", count[0], target)
                count[0] = target
            client.set_registered_model_alias(MODEL, "stable", str(count[0]))
            answer: dict[str, Any] = {"versions": count[0]}
        else:
            call = ops[command["op"]]
            times = []
            for _ in range(int(command["reps"])):
                t0 = time.perf_counter()
                call()
                times.append((time.perf_counter() - t0) * 1000)
            answer = {"ms": times}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
