"""TFRecord files read without TensorFlow (warmup records of a version).

A TFRecord file is a sequence of records, each::

    uint64 length (little-endian) | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)

with TensorFlow's mask ``((crc >> 15 | crc << 17) + 0xa282ead8) mod 2**32``
(tensorflow/core/lib/hash/crc32c.h). Both checksums are verified, so a torn or damaged file is
refused as TensorFlow's reader refuses it. The CRC-32C comes from ``google-crc32c`` (Google's
C implementation, hardware accelerated; a table-driven one in Python would cost milliseconds per
megabyte).
"""

from __future__ import annotations

import struct
from pathlib import Path

import google_crc32c

from lifecycle.errors import CorruptRecord

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def masked_crc(data: bytes | memoryview) -> int:
    """TensorFlow's masked CRC-32C of ``data``."""
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: str | Path) -> list[bytes]:
    """Every record of a TFRecord file (uncompressed); CorruptRecord naming the offset if damaged."""
    raw = memoryview(Path(path).read_bytes())
    records = []
    offset = 0
    while offset < len(raw):
        if len(raw) - offset < _HEADER.size:
            raise CorruptRecord(f"truncated record header at offset {offset}")
        length, length_crc = _HEADER.unpack_from(raw, offset)
        if masked_crc(raw[offset:offset + 8]) != length_crc:
            raise CorruptRecord(f"corrupted record length at offset {offset}")
        start = offset + _HEADER.size
        end = start + length
        if end + _FOOTER.size > len(raw):
            raise CorruptRecord(f"truncated record at offset {offset}")
        data = raw[start:end]
        (data_crc,) = _FOOTER.unpack_from(raw, end)
        if masked_crc(data) != data_crc:
            raise CorruptRecord(f"corrupted record data at offset {offset}")
        records.append(bytes(data))
        offset = end + _FOOTER.size
    return records
