"""Import TensorFlow without its native start-up noise on the user's terminal.

The ``tensorflow`` wheel (which tensorflow-serving-api requires) logs through absl before
logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence it: every mlc command would
print the oneDNN notice (twice: two native libraries load), "Could not find cuda drivers" and
"failed call to cuInit" on a CPU machine, and later Python deprecation warnings.
:func:`import_tensorflow` captures file descriptor 2 while TensorFlow imports and probes its
devices, then replays every line that is not one of those known start-up messages (so real
errors still reach stderr), and keeps TensorFlow's Python logger to errors.

Verbose mode (``mlc --verbose``, or ``MLC_VERBOSE=1`` in the environment, which servers and
sandboxes that mlc starts inherit) replays everything and leaves TensorFlow's logging alone.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from types import ModuleType

VERBOSE_ENV = "MLC_VERBOSE"

# Known, harmless start-up lines of a CPU-only machine; anything else is replayed.
NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ (cudart_stub|cuda_platform|cuda_executor|cuda_diagnostics|cuda_dnn|cuda_fft"
    r"|cuda_blas|cpu_feature_guard|port)\.cc:\d+\] .*"
    r"|To enable the following instructions: .*)$"
)


def verbose() -> bool:
    """True when TensorFlow's own log should reach the terminal (``mlc --verbose``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def import_tensorflow() -> ModuleType:
    """Import TensorFlow (once per process) with its CUDA/CPU start-up messages dropped."""
    loud = verbose()
    if not loud:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Deprecation warnings (tf.compat.v1 loaders, builders) are not the user's business.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe logs here, once
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if line and (loud or not NATIVE_NOISE.match(line)):
                    sys.stderr.write(line + "\n")
            sys.stderr.flush()
    return tf
