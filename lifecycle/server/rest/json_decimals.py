"""Floats as TF Serving's JSON writer prints them: one value (the spec), or a float32 tensor at once.

:func:`format_decimal` is WriteDecimal in tensorflow_serving/util/json_tensor.cc for one value.
:func:`float32_text` gives the same text for a whole float32 array without a Python object per
element (a segmenter's answer holds millions): numpy finds each value's decimal digits and
exponent, and a table of templates (one per sign, notation, exponent and digit count) spells them
out. :func:`join_rows` lays such texts out with the pretty writer's separators.

Why the digits are exact: a float32 is exact in a float64, and scaling it by a power of ten up to
10**22 (itself exact) is one correctly rounded operation; with the two more roundings the digits
take (normalising to nine digits, dividing for six) the scaled value is off by less than 3.3e-7
below 1e9. A value whose rounding that error could flip (a fraction near .5), or whose scale needs
a larger power, is written by :func:`format_decimal` itself. The six-digit round trip is exact:
an integer below 1e6 times or over an exact power of ten is one rounding, as ``float(text)`` is.
"""

from __future__ import annotations

import math

import numpy as np

_CHUNK = 1 << 15  # elements formatted at once: bounded temporaries, still long numpy loops
# 10**k for k in [-22, 22] as (multiplier, divisor), each an exact double, the other 1
_MULTIPLY = np.array([float(10**k) if k >= 0 else 1.0 for k in range(-22, 23)])
_DIVIDE = np.array([float(10**-k) if k < 0 else 1.0 for k in range(-22, 23)])
_LOWEST, _HIGHEST = -13, 25  # decimal exponents whose scaling and round trip stay within 10**22
_TIE = 1e-6  # a scaled fraction this close to .5 may round either way: left to format_decimal

# Source bytes of one value: its nine digits, then the constants and the exponent's sign and digits.
_ZERO, _DOT, _MINUS, _E, _XSIGN, _XTENS, _XONES, _NUL = 9, 10, 11, 12, 13, 14, 15, 16
_SOURCE = 17
_WIDTH = 16  # the longest text: -1.23456789e+25 or -0.000123456789
_SHORT_SEPARATORS = 16  # bytes: separators up to this long are laid out beside each text


def format_decimal(value: float, double: bool) -> str:
    """WriteDecimal: ``%g`` if it round-trips, else full precision; ``.0`` on whole numbers."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    roundtrip = float(text) if double else float(np.float32(float(text)))
    if roundtrip != value:
        text = ("%.17g" if double else "%.9g") % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _templates() -> tuple[np.ndarray, np.ndarray]:
    """Per template, the source bytes its text is made of; by sign, then fixed (exponent, digits), exp, zero."""
    rows: list[list[int]] = []
    for negative in (False, True):
        for exponent in range(-4, 9):  # %g's fixed notation: -4 <= exponent < precision
            for digits in range(1, 10):
                lead = max(0, -exponent)
                whole = max(exponent, 0) + 1
                sequence = [_ZERO] * lead + list(range(9)) + [_ZERO]
                end = max(lead + digits, whole + 1)  # a whole number still gets ".0"
                rows.append(([_MINUS] if negative else []) + sequence[:whole] + [_DOT] + sequence[whole:end])
        for digits in range(1, 10):
            mantissa = [0] + ([_DOT, *range(1, digits)] if digits > 1 else [])
            rows.append(([_MINUS] if negative else []) + mantissa + [_E, _XSIGN, _XTENS, _XONES])
        rows.append(([_MINUS] if negative else []) + [_ZERO, _DOT, _ZERO])
    table = np.full((len(rows), _WIDTH), _NUL, dtype=np.int32)  # texts are NUL-padded
    for i, row in enumerate(rows):
        table[i, :len(row)] = row
    return table, np.array([len(row) for row in rows], dtype=np.int64)


_TABLE, _TABLE_LENGTHS = _templates()
_PER_SIGN = len(_TABLE) // 2
_EXP_TEMPLATES = 13 * 9
_ZERO_TEMPLATE = _EXP_TEMPLATES + 9


def _scale(magnitude: np.ndarray, k: np.ndarray) -> np.ndarray:
    """magnitude * 10**k with one rounding: a multiply by 1 or a divide by 1 is exact."""
    return magnitude * _MULTIPLY[k + 22] / _DIVIDE[k + 22]


def _rounded(scaled: np.ndarray, exponent: np.ndarray, precision: int) -> tuple[np.ndarray, ...]:
    """``scaled`` (in [10**(p-1), 10**p)) rounded to nearest, its exponent after a carry, and where a tie is too close."""
    digits = np.rint(scaled)
    near_tie = np.abs(scaled - np.floor(scaled) - 0.5) < _TIE
    carry = digits >= 10.0**precision  # 999999.7 -> 1e+06
    digits[carry] = 10.0 ** (precision - 1)
    return digits.astype(np.int64), exponent + carry, near_tie


def _round_trips(digits: np.ndarray, exponent: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Whether the six-digit decimal, read back as a double and then a float32 (as format_decimal does), is the value."""
    return _scale(digits.astype(np.float64), exponent - 5).astype(np.float32) == value


def _chunk_text(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The texts of at most a chunk of float32 values: bytes (n, 16), left-aligned and NUL-padded, and lengths."""
    magnitude32 = np.abs(values)
    negative = np.signbit(values)
    finite = np.isfinite(values)
    with np.errstate(all="ignore"):  # NaNs (signalling ones too) are written by format_decimal
        magnitude = magnitude32.astype(np.float64)
        estimate = np.floor(np.log10(np.where(finite & (magnitude > 0), magnitude, 1.0))).astype(np.int64)
    fast = finite & (magnitude > 0) & (estimate >= _LOWEST) & (estimate <= _HIGHEST)
    estimate = np.where(fast, estimate, 0)
    magnitude = np.where(fast, magnitude, 1.0)
    # nine digits before the point; each step rounds once more, three at most: off by < 3.3e-7
    scaled = _scale(magnitude, 8 - estimate)
    up, down = scaled >= 1e9, scaled < 1e8
    scaled = np.where(up, scaled / 10, np.where(down, scaled * 10, scaled))
    estimate = estimate + up - down
    full, full_exp, full_tie = _rounded(scaled, estimate, 9)
    short, short_exp, short_tie = _rounded(scaled / 1000, estimate, 6)
    use_short = _round_trips(short, short_exp, np.where(fast, magnitude32, np.float32(1)))
    unsure = short_tie | (~use_short & full_tie)
    number = np.where(use_short, short * 1000, full)
    exponent = np.where(use_short, short_exp, full_exp)
    precision = np.where(use_short, 6, 9)
    count = len(values)
    source = np.empty((count, _SOURCE), dtype=np.uint8)
    rest = number.astype(np.uint32)
    trailing = np.zeros(count, dtype=np.int64)  # zeros at the end of the nine digits (at most 8)
    zeros = np.ones(count, dtype=bool)
    for i in range(8, -1, -1):  # one division by a constant a digit: numpy's fast path
        quotient = rest // 10
        digit = rest - quotient * 10
        source[:, i] = digit + 48
        zeros &= digit == 0
        trailing += zeros
        rest = quotient
    significant = 9 - trailing
    fixed = (exponent >= -4) & (exponent < precision)
    template = np.where(fixed, (np.clip(exponent, -4, 8) + 4) * 9 + significant - 1, _EXP_TEMPLATES + significant - 1)
    template = np.where(magnitude32 == 0, _ZERO_TEMPLATE, template) + negative * _PER_SIGN
    source[:, _ZERO:_XSIGN] = np.frombuffer(b"0.-e", dtype=np.uint8)
    source[:, _NUL] = 0
    source[:, _XSIGN] = np.where(exponent < 0, 45, 43)
    size = np.abs(exponent)
    source[:, _XTENS] = size // 10 % 10 + 48
    source[:, _XONES] = size % 10 + 48
    index = _TABLE[template]
    index += (np.arange(count, dtype=np.int32) * _SOURCE)[:, None]
    text = source.reshape(-1)[index]
    lengths = _TABLE_LENGTHS[template]
    for i in np.flatnonzero((~fast & (magnitude32 != 0)) | (fast & unsure)).tolist():
        token = format_decimal(float(values[i]), double=False).encode("ascii")
        text[i] = 0
        text[i, :len(token)] = np.frombuffer(token, dtype=np.uint8)
        lengths[i] = len(token)
    return text, lengths


def float32_text(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """format_decimal of every float32 in a 1-D array: bytes (n, 16), left-aligned and NUL-padded, and lengths."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if len(values) <= _CHUNK:
        return _chunk_text(values)
    parts = [_chunk_text(values[i:i + _CHUNK]) for i in range(0, len(values), _CHUNK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def join_rows(text: np.ndarray, lengths: np.ndarray, rolls: np.ndarray, separators: list[bytes]) -> bytes:
    """Each text followed by ``separators[rolls[i]]`` (none where ``rolls[i]`` is -1), as one bytes."""
    widest = max(len(s) for s in separators)
    if widest <= _SHORT_SEPARATORS:  # the row format's single-line arrays: ", ", "], [", ...
        table = np.zeros((len(separators) + 1, widest), dtype=np.uint8)  # the last row: no separator
        for i, separator in enumerate(separators):
            table[i, :len(separator)] = np.frombuffer(separator, dtype=np.uint8)
        rows = np.empty((len(text), text.shape[1] + widest), dtype=np.uint8)
        rows[:, :text.shape[1]] = text
        rows[:, text.shape[1]:] = table[rolls]
        return rows[rows != 0].tobytes()  # texts and separators never hold a NUL
    common = np.frombuffer(separators[0], dtype=np.uint8)
    width = text.shape[1]
    rows = np.empty((len(text), width + len(common)), dtype=np.uint8)
    rows[:, :width] = text
    rows[:, width:] = common
    plain = rolls == 0
    keep = np.empty(rows.shape, dtype=bool)
    keep[:, :width] = np.arange(width) < lengths[:, None]
    keep[:, width:] = plain[:, None]
    joined = rows[keep]
    rare = np.flatnonzero(rolls > 0)
    if not len(rare):
        return joined.tobytes()
    ends = np.cumsum(lengths + plain * len(common))[rare]
    kinds = rolls[rare]
    at = [np.repeat(ends, [len(separators[k]) for k in kinds.tolist()])]
    inserted = np.frombuffer(b"".join(separators[k] for k in kinds.tolist()), dtype=np.uint8)
    return np.insert(joined, at[0], inserted).tobytes()
