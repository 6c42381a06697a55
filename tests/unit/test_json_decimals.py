"""The vectorised float32 writer prints exactly what format_decimal (WriteDecimal, the spec) prints.

Values: random float32 bit patterns (every exponent, subnormals, NaNs), ordinary logits, and the
edges of %g (the 1e-5 and 1e6 switches to exponent notation, 6 digits against 9, carries such as
999999.5, whole numbers, -0.0, infinities). Layouts: the list-of-tokens writer (small tensors)
against the vectorised one (large), in the row and columnar formats, with several dims and 0-size dims.
"""

from __future__ import annotations

import numpy as np
import pytest

from lifecycle.server.rest import json_codec
from lifecycle.server.rest.json_decimals import float32_text, format_decimal

EDGES = [
    0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 3.0, 100.0, 1e6, -1e6, 999999.0, 999999.4, 999999.5, 999999.6,
    1e7, 16777216.0, 16777215.0, 123456789.0, 1234565.0, 1234575.0, 1e-5, 9.99999e-6, 9.999995e-6,
    1.00001e-5, 1e-4, 0.0001, 0.00012345678, 0.1, 0.2, 0.3, 0.100000024, 1 / 3, 2 / 3, 3.14159265,
    1e-13, 9.9e-14, 1e-14, 1e25, 9.99e25, 1e26, 1e30, 3.4028235e38, 1.17549435e-38, 1e-40, 1e-45,
    5.877472e-39, 65504.0, 6.1035156e-05, 8388608.5, 4194304.25, 1.5e-7, 123456.5, 12345.65,
    float("nan"), float("inf"), float("-inf"),
]


def _texts(values: np.ndarray) -> list[str]:
    text, lengths = float32_text(values)
    return [bytes(text[i, :lengths[i]]).decode() for i in range(len(values))]


def _spec(values: np.ndarray) -> list[str]:
    with np.errstate(invalid="ignore"):  # signalling NaNs among random bit patterns
        return [format_decimal(v, double=False) for v in values.astype(np.float64).tolist()]


def test_edges() -> None:
    values = np.array(EDGES + [-v for v in EDGES], dtype=np.float32)
    with np.errstate(over="ignore"):  # the largest float32's neighbour is inf, also a case
        neighbours = np.concatenate([np.nextafter(values, np.float32(np.inf)),
                                     np.nextafter(values, np.float32(-np.inf))])
    for array in (values, neighbours):
        assert _texts(array) == _spec(array)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bit_patterns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**32, 60_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    assert _texts(values) == _spec(values)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 3.0, 1e3, 1e6, 1e9])
def test_ordinary_values(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 1e6) % 1000)
    values = (rng.normal(0, scale, 40_000)).astype(np.float32)
    values[::7] = np.round(values[::7])  # whole numbers
    values[::11] = np.round(values[::11], 2)  # few digits
    assert _texts(values) == _spec(values)


def test_every_decimal_exponent_and_digit_count() -> None:
    mantissas = np.array([1, 12, 123, 1234, 12345, 123456, 1234567, 12345678, 123456789], dtype=np.float64)
    with np.errstate(over="ignore"):  # the largest become inf, also a case
        values = np.concatenate([mantissas * 10.0**k for k in range(-50, 40)]).astype(np.float32)
    assert _texts(values) == _spec(values)


def _list_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every float32 tensor through the token-list writer, the path small tensors take."""
    monkeypatch.setattr(json_codec, "_FLOAT32S_FROM", 1 << 62)


@pytest.mark.parametrize("shape", [(70,), (1, 70), (3, 40), (2, 3, 4, 5), (1, 9, 9, 3), (4, 1, 1, 20), (80, 1)])
def test_layouts_match_the_token_writer(shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(len(shape))
    logits = rng.normal(0, 2, shape).astype(np.float32)
    logits.reshape(-1)[:4] = [0.0, np.nan, -np.inf, 1e-30]
    classes = rng.integers(0, 5, shape[:1] + (2,))
    answers = [
        json_codec.rows_json({"logits": logits}), json_codec.rows_json({"logits": logits, "classes": classes}),
        json_codec.columns_json({"logits": logits}), json_codec.columns_json({"logits": logits, "classes": classes}),
        json_codec.tensor_json("logits", logits).encode(),
    ]
    _list_writer(monkeypatch)
    assert answers == [
        json_codec.rows_json({"logits": logits}), json_codec.rows_json({"logits": logits, "classes": classes}),
        json_codec.columns_json({"logits": logits}), json_codec.columns_json({"logits": logits, "classes": classes}),
        json_codec.tensor_json("logits", logits).encode(),
    ]


def test_zero_size_and_small_tensors_keep_their_layout() -> None:
    assert json_codec.columns_json({"y": np.zeros((2, 0, 3), np.float32)}) == b'{\n    "outputs": [\n        [],\n        []\n    ]\n}'
    assert json_codec.rows_json({"y": np.zeros((0, 100), np.float32)}) == b'{\n    "predictions": []\n}'
    big = np.full((1, 100), 0.5, np.float32)
    assert json_codec.rows_json({"y": big}) == b'{\n    "predictions": [[' + b", ".join([b"0.5"] * 100) + b"]\n    ]\n}"
