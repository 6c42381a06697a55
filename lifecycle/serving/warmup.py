"""A version's warmup records and golden digest, as TF Serving and mlc's live checks read them.

``assets.extra/tf_serving_warmup_requests`` is TF Serving's warmup file: a TFRecord of
PredictionLog. Register writes it (:mod:`lifecycle.register.validate`); promote replays its
requests on live servers and compares :func:`output_digest` of the answers with the version's
golden digest. No TensorFlow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from lifecycle.errors import ValidationFailed
from lifecycle.serving.wire import messages
from lifecycle.serving.wire.tfrecord import CorruptRecord, read_records

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"


def output_digest(array: np.ndarray) -> str:
    """Canonical digest of an output tensor: dtype, shape and C-order bytes."""
    arr = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}:{','.join(map(str, arr.shape))}:".encode())
    h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


def warmup_file(version_dir: Path) -> Path:
    """Where TF Serving looks for a version's warmup records."""
    return Path(version_dir) / WARMUP_DIR / WARMUP_FILE


def read_warmup_requests(version_dir: Path) -> list[Any]:
    """The PredictRequests in a version's warmup file (to replay against a live server).

    Read without TensorFlow (``mlc promote`` replays them): the TFRecord framing and its
    checksums by :mod:`lifecycle.serving.wire.tfrecord`, the PredictionLogs as mlc's
    wire-compatible messages (:mod:`lifecycle.serving.wire`), whose bytes are TF Serving's.
    """
    path = warmup_file(version_dir)
    if not path.is_file():
        raise ValidationFailed(f"{path} is missing", check="warmup")
    requests = []
    try:
        for record in read_records(path):
            log = messages.PredictionLog.FromString(record)
            if log.WhichOneof("log_type") == "predict_log":
                requests.append(log.predict_log.request)
    except (OSError, CorruptRecord, DecodeError) as e:  # a torn record, or not a PredictionLog
        raise ValidationFailed(f"{path} is unreadable: {str(e).splitlines()[0]}", check="warmup") from e
    return requests
