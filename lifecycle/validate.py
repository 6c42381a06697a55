"""Validation of staged exports: signature contracts, round trip, parity, metrics, warmup.

The golden record of a version is the digest of the outputs its warmup request produces.
Register computes it; promote recomputes it on live servers and compares.
"""

from __future__ import annotations

import hashlib

import numpy as np


def output_digest(array: np.ndarray) -> str:
    """Canonical digest of an output tensor: dtype, shape and C-order bytes."""
    arr = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}:{','.join(map(str, arr.shape))}:".encode())
    h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()
