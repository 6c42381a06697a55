"""Model names: what may become a folder under ``model_repo/``, a key prefix and a TF Serving name."""

from __future__ import annotations

import re

from lifecycle.errors import UsageError

# A model name becomes a folder name under model_repo/ and a TF Serving model name.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a safe model name, else raise UsageError."""
    if not MODEL_NAME_RE.match(name) or name in {".", ".."}:
        raise UsageError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (no path characters)"
        )
    return name
