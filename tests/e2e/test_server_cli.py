"""The mlc-model-server command line in real processes: start-up failures, and a real run.

The real run starts ``python -m lifecycle.server.main`` (what the ``mlc-model-server`` console
script calls) as a child process with a TF Serving-style command line and stops it with SIGTERM.
Flag parsing without a process is in tests/unit/test_server_flags.py.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format

from lifecycle.server.config.flags import usage
from lifecycle.store.files import atomic_write_text
from tests.support.ports import free_ports

pytestmark = pytest.mark.e2e


def _run(python: str, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "lifecycle.server.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_start_up_failures_print_tf_servings_line(tmp_path: Path, python: str, subprocess_env: dict[str, str]) -> None:
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { nme: 'x' } }")
    result = _run(python, subprocess_env, f"--model_config_file={bad}")
    assert result.returncode != 0
    assert "Failed to start server. Error: INVALID_ARGUMENT: " in result.stderr
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in result.stderr

    result = _run(python, subprocess_env, "--port=0")
    assert result.returncode != 0
    assert ("Failed to start server. Error: INVALID_ARGUMENT: Both server_options.model_base_path and "
            "server_options.model_config_file are empty!") in result.stderr

    # Flag errors as tensorflow_model_server: one line on stderr, usage on stdout (issue 14.7).
    for args, line in [(["--bogus_flag=1"], "unknown argument: --bogus_flag=1"),
                       (["--port=99999"], "Couldn't interpret value 99999 for flag port: a port is 0-65535."),
                       (["--enable_batching=maybe"], "Couldn't interpret value maybe for flag enable_batching."),
                       (["--mlc_grpc_transport=fibers"],
                        "Couldn't interpret value fibers for flag mlc_grpc_transport: use one of threads, asyncio.")]:
        result = _run(python, subprocess_env, *args)
        assert result.returncode == 2
        assert result.stderr == line + "\n"
        assert result.stdout == usage()


@pytest.mark.parametrize("transport", ["threads", "asyncio"])
def test_console_entry_serves_and_stops_on_sigterm(tmp_path: Path, python: str, subprocess_env: dict[str, str],
                                                    transport: str) -> None:
    from tests.support.polling import wait_until
    from tests.support.server_support import (
        Client,
        add_version,
        model_config,
        server_config,
        value,
    )

    base = tmp_path / "m"
    add_version(base, 1)
    config_file = tmp_path / "models.config"
    atomic_write_text(config_file, text_format.MessageToString(server_config(model_config("m", base))))
    grpc_port, rest_port = free_ports(2)
    process = subprocess.Popen(
        [python, "-m", "lifecycle.server.main", f"--port={grpc_port}", "--rest_api_port", str(rest_port),
         f"--model_config_file={config_file}", "--model_config_file_poll_wait_seconds=1",
         "--file_system_poll_wait_seconds", "1", "--thread_pool_factory_config_file=/t.config",
         f"--mlc_grpc_transport={transport}"],
        env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    client = Client(f"127.0.0.1:{grpc_port}")
    try:
        wait_until(lambda: process.poll() is not None or client.status("m") == {1: ("AVAILABLE", 0, "")}, timeout=90,
                   what="the server to serve m 1", ignore=(grpc.RpcError,))
        assert process.poll() is None
        assert float(value(client.predict("m", [[2.0]]))[0][0]) == 2.0
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/m", timeout=10) as response:
            assert b'"state": "AVAILABLE"' in response.read()
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, err
    assert "flag --thread_pool_factory_config_file has no effect in mlc-model-server" in err
    assert f"Running gRPC ModelServer at 127.0.0.1:{grpc_port}" in err
    assert f"gRPC transport: {transport}" in err


def test_the_server_keeps_its_start_up_objects_out_of_garbage_collection(
    tmp_path: Path, python: str, subprocess_env: dict[str, str],
) -> None:
    """A full collection would walk everything TensorFlow and the models left behind (about 150 ms
    for every request in flight); once serving, the server has frozen them, so a collection
    walks only what requests made since."""
    from tests.support.server_support import add_version

    base = tmp_path / "m"
    add_version(base, 1)
    (grpc_port,) = free_ports(1)
    probe = (
        "import gc, os, socket, sys, threading, time\n"
        "from lifecycle.server.main import main\n"
        "def look():\n"
        "    deadline = time.monotonic() + 90\n"
        "    while time.monotonic() < deadline and not gc.get_freeze_count():\n"
        "        time.sleep(0.05)\n"
        f"    socket.create_connection(('127.0.0.1', {grpc_port}), timeout=5).close()\n"
        "    print(gc.get_freeze_count(), len(gc.get_objects()), flush=True)\n"
        "    os._exit(0)\n"
        "threading.Thread(target=look, daemon=True).start()\n"
        f"sys.exit(main(['--port={grpc_port}', '--model_name=m', '--model_base_path={base}']))\n"
    )
    result = subprocess.run([python, "-c", probe], env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    frozen, tracked = map(int, result.stdout.split())
    assert frozen > 50_000, (frozen, tracked)  # TensorFlow's modules and the loaded model
    assert tracked < frozen // 10, (frozen, tracked)
