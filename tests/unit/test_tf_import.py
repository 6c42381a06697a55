"""TensorFlow's CPU-machine start-up noise is dropped; every other stderr line is kept."""

from __future__ import annotations

import subprocess

from lifecycle.tf_import import NATIVE_NOISE


def test_known_start_up_lines_are_noise_and_others_are_not() -> None:
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795551207.254878   31197 cudart_stub.cc:31] Could not find cuda drivers on your "
        "machine, GPU will not be used.",
        "E0000 00:00:1795551210.532215   31197 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
        "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        "I0000 00:00:1795964965.591787   10621 port.cc:153] oneDNN custom operations are on. You may see "
        "slightly different numerical results due to floating-point round-off errors.",
    ]
    kept = [
        "E0000 00:00:1795551210.532215   31197 saved_model_loader.cc:12] SavedModel load failed",
        "Traceback (most recent call last):",
        "Error: no such checkpoint: x",
    ]
    assert all(NATIVE_NOISE.match(line) for line in noise)
    assert not any(NATIVE_NOISE.match(line) for line in kept)


def test_import_drops_the_noise_but_keeps_later_stderr(python: str, subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from lifecycle.tf_import import import_tensorflow\n"
        "tf = import_tensorflow()\n"
        "tf.constant(1) + 1\n"
        "with tf.Graph().as_default():  # a deprecated TF1 call logs a deprecation warning\n"
        "    tf.compat.v1.saved_model.utils.build_tensor_info(tf.compat.v1.placeholder(tf.float32))\n"
        "print('after import', file=sys.stderr)\n"
    )
    out = subprocess.run([python, "-c", code], env=subprocess_env, capture_output=True, text=True, check=True)
    assert "after import" in out.stderr
    assert out.stderr == "after import\n"  # no CUDA probe, no oneDNN notice, no deprecation


def test_verbose_keeps_tensorflow_s_log(python: str, subprocess_env: dict[str, str]) -> None:
    code = "from lifecycle.tf_import import import_tensorflow\nimport_tensorflow()\n"
    env = dict(subprocess_env, MLC_VERBOSE="1")
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "port.cc" in out.stderr, out.stderr
