"""The mlc-model-server command line: flag parsing, start-up failures, and a real run.

The real run starts ``python -m lifecycle.server.main`` (what the ``mlc-model-server`` console
script calls) as a child process with a TF Serving-style command line and stops it with SIGTERM.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format

from lifecycle.errors import FlagError, InvalidArgument
from lifecycle.server.config_file import read_model_config_file
from lifecycle.server.flags import FLAGS, options_from_flags, parse_flags, usage
from lifecycle.store.files import atomic_write_text
from tests.support.ports import free_ports


def test_flag_forms() -> None:
    values = parse_flags([
        "--port=9000", "--rest_api_port", "9001", "--enable_model_warmup=false",
        "--allow_version_labels_for_unavailable_models", "--model_config_file=/x.config",
        "--file_system_poll_wait_seconds", "3",
    ])
    assert values == {
        "port": 9000, "rest_api_port": 9001, "enable_model_warmup": False,
        "allow_version_labels_for_unavailable_models": True, "model_config_file": "/x.config",
        "file_system_poll_wait_seconds": 3,
    }
    options = options_from_flags(values)
    assert options.grpc_port == 9000 and options.rest_api_port == 9001 and options.host == "127.0.0.1"
    assert parse_flags(["--enable_model_warmup", "false"]) == {"enable_model_warmup": False}


def test_defaults_are_tf_servings() -> None:
    options = options_from_flags({})
    assert options.grpc_port == 8500
    assert options.rest_api_port is None  # rest_api_port 0 = off
    assert options.rest_api_timeout_in_ms == 30000
    assert options.model_name == "default"
    assert options.model_config_file_poll_wait_seconds == 0
    assert options.file_system_poll_wait_seconds == 1
    assert options.max_num_load_retries == 5
    assert options.enable_model_warmup is True
    assert options.saved_model_tags == "serve"
    assert FLAGS["load_retry_interval_micros"].default == 60_000_000


def test_unknown_flags_and_bad_values_are_refused() -> None:
    with pytest.raises(FlagError, match="unknown argument: --no_such_flag"):
        parse_flags(["--no_such_flag=1"])
    with pytest.raises(FlagError):
        parse_flags(["--port=abc"])
    with pytest.raises(FlagError):
        parse_flags(["positional"])


def test_flags_without_effect_warn_once_and_say_why_in_help(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mlc-model-server")
    options_from_flags(parse_flags(["--thread_pool_factory_config_file=/p.config", "--use_alts_credentials"]))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert all("has no effect in mlc-model-server: " in line for line in warnings)
    text = usage()
    for flag in FLAGS.values():
        assert (f"--{flag.name}=" in text) and ((f"[accepted, no effect here: {flag.no_effect}]" in text) == bool(flag.no_effect))


def _non_default(flag: object) -> object:
    kind, default = flag.kind, flag.default  # type: ignore[attr-defined]
    if kind is bool:
        return not default
    if kind is str:
        return "bfloat16" if flag.name == "mixed_precision" else "/some/file"  # type: ignore[attr-defined]
    return default + 7 if kind is int else 0.5


def test_every_flag_with_an_effect_reaches_the_options() -> None:
    """A flag the help calls effective must change ServerOptions (issue 10: three never did)."""
    baseline = dataclasses.asdict(options_from_flags({}))
    for flag in FLAGS.values():
        if flag.no_effect or flag.name == "version":
            continue
        changed = dataclasses.asdict(options_from_flags({flag.name: _non_default(flag)}))
        assert changed != baseline, f"--{flag.name} never reaches ServerOptions"
    options = options_from_flags(parse_flags(["--rest_api_num_threads=3", "--num_unload_threads=2"]))
    assert (options.rest_api_num_threads, options.num_unload_threads) == (3, 2)


@pytest.mark.parametrize("flag", ["port", "rest_api_port"])
@pytest.mark.parametrize("value", ["99999", "65536", "-1"])
def test_ports_outside_0_65535_are_refused(flag: str, value: str) -> None:
    with pytest.raises(FlagError, match=f"Couldn't interpret value {value} for flag {flag}: a port is 0-65535."):
        parse_flags([f"--{flag}={value}"])
    assert parse_flags([f"--{flag}=65535"]) == {flag: 65535}


def test_help_names_the_bind_address_flag() -> None:
    text = usage()
    assert "--mlc_bind_address" in text and "127.0.0.1" in text
    for name in ("port", "rest_api_port", "model_config_file", "enable_grpc_healthcheck_service"):
        assert f"--{name}=" in text


def test_malformed_config_file_message(tmp_path: Path) -> None:
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(InvalidArgument, match="Error parsing text-format tensorflow.serving.ModelServerConfig"):
        read_model_config_file(bad)


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
                       (["--enable_batching=maybe"], "Couldn't interpret value maybe for flag enable_batching.")]:
        result = _run(python, subprocess_env, *args)
        assert result.returncode == 2
        assert result.stderr == line + "\n"
        assert result.stdout == usage()


@pytest.mark.e2e
def test_console_entry_serves_and_stops_on_sigterm(tmp_path: Path, python: str, subprocess_env: dict[str, str]) -> None:
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
         "--file_system_poll_wait_seconds", "1", "--thread_pool_factory_config_file=/t.config"],
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
