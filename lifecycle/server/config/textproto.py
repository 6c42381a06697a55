"""The one reader of text-format protobuf files (``.pbtxt``, ``*.config``) in the server.

Model config, batching parameters, monitoring, SSL, session and platform configs all go through
:func:`read_textproto`, so a bad file always fails the same way: ``INVALID_ARGUMENT`` with TF
Serving's ``Invalid protobuf file: '<path>'`` (server.cc ``ParseProtoTextFile``) followed by
protobuf's own ``line:column : reason`` where it gives one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from lifecycle.errors import InvalidArgument

M = TypeVar("M")


def read_textproto(path: str | Path, message: M) -> M:
    """Parse the text-format file at ``path`` into ``message`` (cleared first) and return it."""
    from google.protobuf import text_format

    path = Path(path)
    # protos/ holds copies of TF Serving's config protos in package mlc.serving (so they cannot
    # clash with tensorflow-serving-api's); errors name them as TF Serving does.
    name = message.DESCRIPTOR.full_name.replace("mlc.serving.", "tensorflow.serving.", 1)  # type: ignore[attr-defined]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"Could not read {name} file '{path}': {e}") from e
    try:
        text_format.Parse(text, message)  # Parse clears the message first
    except text_format.ParseError as e:
        raise InvalidArgument(f"Invalid protobuf file: '{path}'. Error parsing text-format {name}: {e}") from e
    return message
