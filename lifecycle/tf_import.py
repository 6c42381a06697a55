"""Import TensorFlow without its native start-up noise on the user's terminal.

The ``tensorflow`` wheel (which tensorflow-serving-api requires) probes for CUDA at import and
logs through absl before logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence
it: every mlc command would print "Could not find cuda drivers" and "failed call to cuInit"
on a CPU machine. :func:`import_tensorflow` captures file descriptor 2 while TensorFlow
imports and probes its devices, then replays every line that is not one of those known
start-up messages, so real errors still reach stderr.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from types import ModuleType

# Known, harmless start-up lines of a CPU-only machine; anything else is replayed.
NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ (cudart_stub|cuda_platform|cuda_executor|cuda_diagnostics|cuda_dnn|cuda_fft"
    r"|cuda_blas|cpu_feature_guard)\.cc:\d+\] .*"
    r"|To enable the following instructions: .*)$"
)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow (once per process) with its CUDA/CPU start-up messages dropped."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
                if line and not NATIVE_NOISE.match(line):
                    sys.stderr.write(line + "\n")
            sys.stderr.flush()
    return tf
