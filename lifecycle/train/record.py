"""The run record: ``RUN_DIR/mlc-run.json``, which model ``mlc train`` trained in a run folder.

``mlc register RUN`` and ``mlc watch RUN`` read it back, so a home with several definitions needs
no ``--model`` for runs that mlc wrote. No TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lifecycle.store.files import atomic_write_text

RECORD_NAME = "mlc-run.json"


def write(run_dir: Path, definition: Any) -> None:
    """Record (atomically) that ``definition``'s model was trained in ``run_dir``."""
    training = dict(definition.raw.get("training") or {})
    data = {"model": definition.name, "written_by": "mlc train", "seed": training.get("seed"),
            "network": dict(definition.network)}
    atomic_write_text(run_dir / RECORD_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")


def model_of(path: Path) -> str | None:
    """The model named by the run record of ``path`` (a run folder or a checkpoint prefix in one), if any."""
    folder = path if path.is_dir() else path.parent
    try:
        data = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None  # no record (a run mlc did not write) or an unreadable one: not a fact to rely on
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None
