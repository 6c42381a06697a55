"""A stand-in ``tensorflow_model_server`` for tests of ``mlc serve --engine tfserving``.

It accepts exactly tensorflow_model_server's flags (the names in tensorflow_serving/
model_servers/main.cc, in TensorFlow's ``--name=value`` form; booleans also as a bare
``--name``), refuses anything else as the real parser would not take it (exit 1, the offending
argument on stderr), appends its argv to ``$TFSERVING_STANDIN_LOG`` if set, and then runs
``mlc-model-server`` on the same flags bound to every interface, as the real server binds gRPC.

``install(bin_dir)`` writes the executable; put ``bin_dir`` first on PATH.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

# tensorflow_model_server's flags (main.cc), value flags and boolean flags.
VALUE_FLAGS = frozenset("""
port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms batching_parameters_file
model_config_file model_config_file_poll_wait_seconds model_name model_base_path num_load_threads
num_unload_threads max_num_load_retries load_retry_interval_micros file_system_poll_wait_seconds
tensorflow_session_parallelism tensorflow_session_config_file tensorflow_intra_op_parallelism
tensorflow_inter_op_parallelism ssl_config_file platform_config_file per_process_gpu_memory_fraction
saved_model_tags grpc_channel_arguments grpc_max_threads num_request_iterations_for_warmup
monitoring_config_file num_tflite_pools num_tflite_interpreters_per_pool thread_pool_factory_config_file
mixed_precision
""".split())
BOOL_FLAGS = frozenset("""
rest_api_enable_cors_support enable_batching allow_version_labels_for_unavailable_models
enable_per_model_batching_parameters flush_filesystem_caches use_alts_credentials enable_model_warmup
version remove_unused_fields_from_bundle_metagraph prefer_tflite_model enable_signature_method_name_check
xla_cpu_compilation_enabled xla_gpu_compilation_enabled enable_profiler skip_initialize_tpu
enable_grpc_healthcheck_service enable_serialization_as_tensor_content
""".split())


def refused(args: list[str]) -> str | None:
    """The first argument tensorflow_model_server would not take, or None."""
    for arg in args:
        if not arg.startswith("--"):
            return arg
        name, eq, _ = arg[2:].partition("=")
        if name in VALUE_FLAGS and eq:
            continue
        if name in BOOL_FLAGS:
            continue
        return arg
    return None


def main() -> None:
    """Check the command line, log it, then become mlc-model-server on every interface."""
    args = sys.argv[1:]
    log = os.environ.get("TFSERVING_STANDIN_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(" ".join(args) + "\n")
    bad = refused(args)
    if bad is not None:
        sys.stderr.write(f"tensorflow_model_server stand-in: unknown argument: {bad}\n")
        sys.exit(1)
    os.execv(sys.executable, [sys.executable, "-m", "lifecycle.server.main", "--mlc_bind_address=0.0.0.0", *args])


def install(bin_dir: Path) -> Path:
    """Write an executable ``tensorflow_model_server`` into ``bin_dir`` (this Python, this repo)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "tensorflow_model_server"
    repo = Path(__file__).resolve().parents[2]
    target.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(repo)!r})\n"
        "from tests.support.tfserving_standin import main\nmain()\n"
    )
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target


if __name__ == "__main__":
    main()
