"""Keep credentials off the page: every string the UI shows or serves passes through :func:`redact`.

A repository URL may carry keys (``s3://KEY:SECRET@host/bucket``, a presigned URL's
``X-Amz-Signature=...``), an error message may quote one, and a history reason is free text.
The UI cannot know every place a secret might hide, so it removes the shapes secrets take:

- the user-info part of any URL (``scheme://user:password@host`` -> ``scheme://***@host``);
- the value of any ``key=value`` or ``key: value`` whose key names a secret (``secret``,
  ``password``, ``token``, ``signature``, ``credential``, ``access_key``, ...);
- the literal value of every environment variable whose name names a secret
  (``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``*_PASSWORD``, ...), wherever it appears.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"

SECRET_NAME = re.compile(r"secret|passw(or)?d|token|signature|credential|access[_-]?key|api[_-]?key", re.IGNORECASE)
USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@<>\"']+)@")
KEY_VALUE = re.compile(
    r"(?P<key>[A-Za-z0-9_.-]*(?:secret|passw(?:or)?d|token|signature|credential|access[_-]?key|api[_-]?key)[A-Za-z0-9_.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>[\"']?)(?P<value>[^\s&\"',;<>]+)",
    re.IGNORECASE,
)
MIN_SECRET_LENGTH = 4  # shorter environment values ("1", "yes") would mask ordinary words


def _secret_values() -> list[str]:
    """Values of the environment variables whose names name a secret, longest first."""
    values = {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with URL user-info, secret-named values and secret environment values masked."""
    for value in _secret_values():
        text = text.replace(value, MASK)
    text = USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{m['quote']}{MASK}", text)


def redact_data(data: Any) -> Any:
    """Plain data (dicts, lists, strings) with every string, key or value, redacted."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_data(k): redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v) for v in data]
    return data
