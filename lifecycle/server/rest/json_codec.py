"""TF Serving's REST JSON: tensors and results out as its rapidjson writer prints them, tensors in.

Output follows tensorflow_serving/util/json_tensor.cc byte for byte:

- rapidjson's ``PrettyWriter`` (4-space indent) with ``kFormatSingleLineArray`` switched on for
  each row, so ``{"instances": [1.0, 2.0]}`` on half_plus_two answers
  ``{\\n    "predictions": [2.5, 3.0\\n    ]\\n}``;
- floats printed like ``absl::StrCat`` (``%g``), at full precision (``%.9g``/``%.17g``) only
  when six digits do not round-trip, with ``.0`` added to whole numbers, and ``NaN``,
  ``Infinity``, ``-Infinity`` for non-finite values;
- string outputs whose alias ends in ``_bytes`` as ``{"b64": "..."}``.

Input follows the same file's rules: a JSON array's shape is read from its first elements, every
value must have the signature's dtype (a float is not an int, a bool is not a number), strings
may be ``{"b64": ...}``, and a float that does not fit a float32 is refused.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lifecycle.errors import InvalidArgument
from lifecycle.server.rest.json_decimals import float32_text, format_decimal, join_rows

__all__ = ["format_decimal"]  # the spec of every float this module writes

_INDENT = b"    "
_ESCAPES = {i: f"\\u{i:04X}".encode() for i in range(0x20)}
_ESCAPES.update({0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r",
                 0x22: b'\\"', 0x5C: b"\\\\"})
_ESCAPE_TABLE = {k: v.decode() for k, v in _ESCAPES.items()}


class PrettyWriter:
    """rapidjson::PrettyWriter: the same separators, indents and single-line-array mode."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self._levels: list[list[Any]] = []  # [in_array, value_count]
        self.single_line = False

    def _prefix(self) -> None:
        if not self._levels:
            return
        level = self._levels[-1]
        out = self.out
        if level[0]:
            if level[1] > 0:
                out.append(b", " if self.single_line else b",")
            if not self.single_line:
                out.append(b"\n" + _INDENT * len(self._levels))
        else:
            if level[1] > 0:
                out.append(b",\n" if level[1] % 2 == 0 else b": ")
            else:
                out.append(b"\n")
            if level[1] % 2 == 0:
                out.append(_INDENT * len(self._levels))
        level[1] += 1

    def start_array(self) -> None:
        """``[``"""
        self._prefix()
        self._levels.append([True, 0])
        self.out.append(b"[")

    def end_array(self) -> None:
        """``]``"""
        count = self._levels.pop()[1]
        if count and not self.single_line:
            self.out.append(b"\n" + _INDENT * len(self._levels))
        self.out.append(b"]")

    def start_object(self) -> None:
        """``{``"""
        self._prefix()
        self._levels.append([False, 0])
        self.out.append(b"{")

    def end_object(self) -> None:
        """``}``"""
        count = self._levels.pop()[1]
        if count:
            self.out.append(b"\n" + _INDENT * len(self._levels))
        self.out.append(b"}")

    def string(self, value: str | bytes) -> None:
        """A JSON string; bytes are written as they are (rapidjson does not validate UTF-8)."""
        self._prefix()
        self.out.append(quote(value))

    key = string

    def raw(self, text: str) -> None:
        """A number or literal already formatted."""
        self._prefix()
        self.out.append(text.encode("ascii"))

    def getvalue(self) -> bytes:
        """Everything written so far."""
        return b"".join(self.out)


def quote(value: str | bytes) -> bytes:
    """A JSON string literal escaped as rapidjson escapes it."""
    if isinstance(value, bytes):
        data = value
        if any(b < 0x20 or b in (0x22, 0x5C) for b in data):
            data = b"".join(_ESCAPES.get(b, bytes((b,))) for b in data)
        return b'"' + data + b'"'
    return b'"' + value.translate(_ESCAPE_TABLE).encode("utf-8", errors="surrogateescape") + b'"'


def _format_all(pattern: str, values: list[float]) -> list[str]:
    # One %-format over the whole list runs in C; a per-element loop would cost ~1 us each.
    if not values:
        return []
    return ((pattern + "\x00") * len(values) % tuple(values)).split("\x00")[:-1]


def _decimal_tokens(flat: np.ndarray, double: bool) -> list[str]:
    """format_decimal over a 1-D float array, vectorised (outputs can hold millions of values)."""
    kind = np.float64 if double else np.float32
    flat = flat.astype(kind, copy=False)
    values = flat.astype(np.float64).tolist()
    if len(values) <= 8:  # a few values (half_plus_two): numpy's set-up would cost more than they do
        return [format_decimal(v, double) for v in values]
    tokens = _format_all("%g", values)
    finite = np.isfinite(flat)
    with np.errstate(all="ignore"):
        back = np.array(tokens, dtype=object).astype(np.float64) if tokens else np.zeros(0)
        lossy = finite & (back.astype(kind) != flat)
        # %g prints neither "." nor "e" exactly for whole numbers below 1e6: those get ".0".
        whole = finite & ~lossy & (np.floor(back) == back) & (np.abs(back) < 1e6)
    for i in np.flatnonzero(whole).tolist():
        tokens[i] += ".0"
    lossy_at = np.flatnonzero(lossy).tolist()
    if lossy_at:
        full = _format_all("%.17g" if double else "%.9g", [values[i] for i in lossy_at])
        for i, token in zip(lossy_at, full, strict=True):
            tokens[i] = token if ("." in token or "e" in token) else token + ".0"
    for i in np.flatnonzero(~finite).tolist():
        tokens[i] = format_decimal(values[i], double)
    return tokens


class _Float32s:
    """A float32 tensor's flat values, written by json_decimals without a Python object per value."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, part: slice) -> _Float32s:
        return _Float32s(self.values[part])


_FLOAT32S_FROM = 64  # elements: below this, a token list is cheaper than numpy's set-up


def _tokens(value: np.ndarray, as_bytes: bool) -> list[str] | _Float32s:
    """Every element of ``value`` (flattened, C order) as its JSON text (a float32 tensor: lazily)."""
    flat = value.reshape(-1)
    kind = value.dtype
    if kind in (np.float32, np.float16):
        if len(flat) >= _FLOAT32S_FROM:
            return _Float32s(flat.astype(np.float32, copy=False))
        return _decimal_tokens(flat, double=False)
    if kind == np.float64:
        return _decimal_tokens(flat, double=True)
    if kind == np.bool_:
        return ["true" if v else "false" for v in flat.tolist()]
    if kind.kind in "iu":
        return _format_all("%d", flat.tolist())
    if kind == object or kind.kind in "SU":
        if as_bytes:
            return ['"' + base64.b64encode(_as_bytes(v)).decode("ascii") + '"' for v in flat]
        return [quote(_as_bytes(v)).decode("utf-8", errors="surrogateescape") for v in flat]
    raise InvalidArgument(f"Failed to write JSON value for tensor type: {kind}")


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _pad(n: int) -> str:
    return "    " * n


def _render(tokens: list[str], shape: tuple[int, ...], depth: int, single_line: bool, b64: bool) -> str:
    """Nested arrays of ``tokens`` laid out as the pretty writer lays them out at ``depth``.

    The separator between two neighbours only depends on how many dimensions roll over
    between them, so the text is one join of tokens and precomputed separators.
    """
    ndim = len(shape)
    inner_depth = depth + ndim
    if b64:
        tokens = ["{\n" + _pad(inner_depth + 1) + '"b64": ' + t + "\n" + _pad(inner_depth) + "}" for t in tokens]
    if ndim == 0:
        return tokens[0]
    if 0 in shape:
        if shape[0] == 0:
            return "[]"
        step = len(tokens) // shape[0] if tokens else 0
        children = [_render(tokens[i * step:(i + 1) * step], shape[1:], depth + 1, single_line, False)
                    for i in range(shape[0])]
        if single_line:
            return "[" + ", ".join(children) + "]"
        return "[" + ",".join("\n" + _pad(depth + 1) + c for c in children) + "\n" + _pad(depth) + "]"
    opening, closing, separators = _layout(shape, depth, single_line)
    count = len(tokens)
    if count == 1:
        return opening + tokens[0] + closing
    parts: list[str] = [""] * (2 * count - 1)
    parts[0::2] = tokens
    parts[1::2] = np.array(separators, dtype=object)[_rolls(1, count, shape)].tolist()
    return opening + "".join(parts) + closing


def _layout(shape: tuple[int, ...], depth: int, single_line: bool) -> tuple[str, str, list[str]]:
    """A non-empty tensor's opening and closing text, and its separators by how many dimensions roll over."""
    ndim = len(shape)
    inner_depth = depth + ndim
    if single_line:
        return "[" * ndim, "]" * ndim, ["]" * r + ", " + "[" * r for r in range(ndim)]
    opening = "[" + "".join("\n" + _pad(depth + i) + "[" for i in range(1, ndim)) + "\n" + _pad(inner_depth)
    closing = "".join("\n" + _pad(inner_depth - 1 - i) + "]" for i in range(ndim))
    separators = [
        "".join("\n" + _pad(inner_depth - 1 - i) + "]" for i in range(r)) + ","
        + "".join("\n" + _pad(inner_depth - r + i) + "[" for i in range(r)) + "\n" + _pad(inner_depth)
        for r in range(ndim)
    ]
    return opening, closing, separators


def _rolls(start: int, stop: int, shape: tuple[int, ...]) -> np.ndarray:
    """For each position in [start, stop), how many dimensions roll over just before it."""
    positions = np.arange(start, stop)
    rolls = np.zeros(len(positions), dtype=np.int64)
    stride = 1
    for size in reversed(shape[1:]):
        stride *= size
        rolls += positions % stride == 0
    return rolls


_CHUNK = 1 << 15  # float32 values formatted and joined at once


def _render_float32s(values: np.ndarray, shape: tuple[int, ...], depth: int, single_line: bool) -> bytes:
    """_render of float32 values (at least one, no 0 dimension) through json_decimals, a chunk at a time."""
    opening, closing, separators = _layout(shape, depth, single_line)
    encoded = [s.encode("ascii") for s in separators]
    parts = [opening.encode("ascii")]
    count = len(values)
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        rolls = _rolls(start + 1, stop + 1, shape)
        if stop == count:
            rolls[-1] = -1  # the last value: no separator
        text, lengths = float32_text(values[start:stop])
        parts.append(join_rows(text, lengths, rolls, encoded))
    parts.append(closing.encode("ascii"))
    return b"".join(parts)


def _write_values(writer: PrettyWriter, tokens: list[str] | _Float32s, shape: tuple[int, ...],
                  as_bytes: bool) -> None:
    """AddTensorValues: a tensor's tokens as nested arrays, written at the writer's position."""
    writer._prefix()
    depth = len(writer._levels)
    if isinstance(tokens, _Float32s):
        if len(tokens) >= _FLOAT32S_FROM and shape:
            writer.out.append(_render_float32s(tokens.values, shape, depth, writer.single_line))
            return
        tokens = _decimal_tokens(tokens.values, double=False)  # a row of the row format may be small
    text = _render(tokens, shape, depth, writer.single_line, as_bytes)
    writer.out.append(text.encode("utf-8", errors="surrogateescape"))


def _is_bytes_alias(alias: str, value: np.ndarray) -> bool:
    return alias.endswith("_bytes") and (value.dtype == object or value.dtype.kind == "S")


def rows_json(outputs: Mapping[str, np.ndarray]) -> bytes:
    """MakeRowFormatJsonFromTensors: ``{"predictions": [...]}``, one entry per batch row."""
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    batch = -1
    for alias, value in outputs.items():
        if value.ndim == 0:
            raise InvalidArgument(f"Tensor name: {alias} has no shape information ")
        if batch >= 0 and value.shape[0] != batch:
            raise InvalidArgument(
                f"Tensor name: {alias} has inconsistent batch size: {value.shape[0]} expecting: {batch}"
            )
        batch = value.shape[0]
    prepared = {}
    for alias, value in outputs.items():
        step = math.prod(value.shape[1:])
        prepared[alias] = (_tokens(value, _is_bytes_alias(alias, value)), step, value.shape[1:], _is_bytes_alias(alias, value))
    writer = PrettyWriter()
    writer.start_object()
    writer.key("predictions")
    writer.start_array()
    objects = len(outputs) > 1
    for row in range(batch):
        if objects:
            writer.start_object()
        writer.single_line = True
        for alias, (tokens, step, shape, as_bytes) in prepared.items():
            if objects:
                writer.key(alias)
            _write_values(writer, tokens[row * step:(row + 1) * step], shape, as_bytes)
        writer.single_line = False
        if objects:
            writer.end_object()
    writer.end_array()
    writer.end_object()
    return writer.getvalue()


def columns_json(outputs: Mapping[str, np.ndarray]) -> bytes:
    """MakeColumnarFormatJsonFromTensors: ``{"outputs": ...}`` (an object if several outputs)."""
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    writer = PrettyWriter()
    writer.start_object()
    writer.key("outputs")
    objects = len(outputs) > 1
    if objects:
        writer.start_object()
    for alias, value in outputs.items():
        if objects:
            writer.key(alias)
        as_bytes = _is_bytes_alias(alias, value)
        _write_values(writer, _tokens(value, as_bytes), value.shape, as_bytes)
    if objects:
        writer.end_object()
    writer.end_object()
    return writer.getvalue()


def classification_json(result: Any) -> bytes:
    """MakeJsonFromClassificationResult: ``{"results": [[[label, score], ...], ...]}``."""
    if not result.classifications:
        raise InvalidArgument("Cannot convert empty ClassificationResults to JSON")
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.start_array()
    for classifications in result.classifications:
        writer.single_line = True
        writer.start_array()
        for entry in classifications.classes:
            writer.start_array()
            writer.string(entry.label)
            writer.raw(format_decimal(entry.score, double=False))
            writer.end_array()
        writer.end_array()
        writer.single_line = False
    writer.end_array()
    writer.end_object()
    return writer.getvalue()


def regression_json(result: Any) -> bytes:
    """MakeJsonFromRegressionResult: ``{"results": [v, ...]}``."""
    if not result.regressions:
        raise InvalidArgument("Cannot convert empty RegressionResults to JSON")
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.single_line = True
    writer.start_array()
    for regression in result.regressions:
        writer.raw(format_decimal(regression.value, double=False))
    writer.end_array()
    writer.end_object()
    return writer.getvalue()


def error_json(message: str) -> bytes:
    """MakeJsonFromStatus: ``{"error": "..."}`` as the pretty writer prints it."""
    writer = PrettyWriter()
    writer.start_object()
    writer.key("error")
    writer.string(message)
    writer.end_object()
    return writer.getvalue()


# --- JSON -> arrays (FillPredictRequestFromJson) ------------------------------------------


def value_text(value: Any) -> str:
    """A JSON value for an error message (shortened: requests can be megabytes)."""
    writer = PrettyWriter()
    _write_plain(writer, value, 0)
    text = writer.getvalue().decode("utf-8", errors="replace")
    return text if len(text) <= 200 else text[:200] + "..."


def _write_plain(writer: PrettyWriter, value: Any, depth: int) -> None:
    if depth > 20:
        writer.raw("...")
    elif isinstance(value, bool):
        writer.raw("true" if value else "false")
    elif value is None:
        writer.raw("null")
    elif isinstance(value, float):
        writer.raw(format_decimal(value, double=True))
    elif isinstance(value, int):
        writer.raw(str(value))
    elif isinstance(value, str):
        writer.string(value)
    elif isinstance(value, list):
        writer.start_array()
        for item in value[:20]:
            _write_plain(writer, item, depth + 1)
        writer.end_array()
    elif isinstance(value, dict):
        writer.start_object()
        for key, item in list(value.items())[:20]:
            writer.key(str(key))
            _write_plain(writer, item, depth + 1)
        writer.end_object()


def tensor_json(alias: str, value: np.ndarray) -> str:
    """One tensor as a single-line JSON value (a row of the row format), e.g. ``[0.1, 2.0]``."""
    writer = PrettyWriter()
    writer.single_line = True
    value = np.asarray(value)
    as_bytes = _is_bytes_alias(alias, value)
    _write_values(writer, _tokens(value, as_bytes), value.shape, as_bytes)
    return writer.getvalue().decode("utf-8", errors="replace")
