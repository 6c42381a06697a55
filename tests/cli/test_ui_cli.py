"""`mlc ui` as a command: it binds loopback, answers GET and HEAD only, changes nothing, needs no TensorFlow."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent, VersionRecord
from tests.support.homes import tree_state
from tests.support.no_tensorflow import assert_no_tensorflow
from tests.support.ui_homes import MODEL, registry_home


def request(url: str, method: str = "GET", host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def running_ui(tmp_path: Path, python: str, subprocess_env: dict[str, str]) -> Iterator[tuple[str, Paths, subprocess.Popen[str]]]:
    """``mlc ui --port 0`` in a child process on a registry-only home; yields (url, paths, process)."""
    paths = registry_home(tmp_path / "home")
    proc = subprocess.Popen(
        [python, "-m", "lifecycle", "ui", "--port", "0"], env=dict(subprocess_env, MLC_HOME=str(paths.home)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    reader.join(60)
    try:
        assert first and first[0].startswith("mlc ui: http://127.0.0.1:"), (first, proc.poll())
        yield first[0].split()[2], paths, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_mlc_ui_serves_pages_and_json_read_only_and_stops_on_sigterm(
    running_ui: tuple[str, Paths, subprocess.Popen[str]],
) -> None:
    url, paths, proc = running_ui
    before = tree_state(paths.home)
    status, headers, body = request(url)
    assert status == 200 and b'href="/models/hpt"' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, _, body = request(url + "models/hpt")
    assert status == 200 and b'id="versions"' in body and body.count(b'class="point') == 3
    status, _, body = request(url + "api/models/hpt")
    data = json.loads(body)
    assert data["status"]["models"][0]["stable"] == 2 and data["history"]["events"][0]["reason"] == "first"
    assert set(data["sections"]) >= {"versions", "chart", "timeline"}
    assert request(url + "models/nope")[0] == 404
    assert request(url + "no/such/page")[0] == 404
    assert request(url + "models/hpt/diff?a=x")[0] == 400
    assert request(url + "models/hpt", method="HEAD")[0] == 200
    for method in ("POST", "PUT", "DELETE"):
        assert request(url + "models/hpt", method=method)[0] == 405
    # Bound to loopback, it answers only requests addressed to loopback (no DNS rebinding).
    assert request(url, host="attacker.example:8600")[0] == 403
    assert tree_state(paths.home) == before
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path, python: str, subprocess_env: dict[str, str]) -> None:
    paths = registry_home(tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [python, "-m", "lifecycle", "ui", "--port", str(port)],
            env=dict(subprocess_env, MLC_HOME=str(paths.home)), capture_output=True, text=True, timeout=60, check=False,
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on 127.0.0.1" in lines[0] and "--port" in lines[0]


def test_pages_do_not_import_tensorflow(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    paths = registry_home(tmp_path / "home")
    code = (
        "import urllib.request\n"
        "import lifecycle.cli\n"
        "from lifecycle.store.config import Paths\n"
        "from lifecycle.ui import create_server\n"
        "ui = create_server(Paths.from_env())\n"
        "for p in ('', 'models/hpt', 'api/status', 'api/models/hpt', 'static/ui.js'):\n"
        "    urllib.request.urlopen(ui.url + p, timeout=30).read()\n"
        "ui.stop()\n"
    )
    assert_no_tensorflow(code, dict(subprocess_env, MLC_HOME=str(paths.home)))


def test_a_new_version_and_a_new_stable_change_the_polled_sections(tmp_path: Path) -> None:
    from lifecycle.ui import create_server

    paths = registry_home(tmp_path / "home")
    ui = create_server(paths)
    try:
        first = json.loads(request(ui.url + "api/models/hpt")[2])
        again = json.loads(request(ui.url + "api/models/hpt")[2])
        assert {k: v["digest"] for k, v in first["sections"].items()} == {k: v["digest"] for k, v in again["sections"].items()}
        with registry.transaction(paths) as reg:
            rec = reg.model(MODEL)
            rec.versions.append(VersionRecord(4, "d4", "ckpt/run/ckpt-4", 40, True, {"metrics": {"miou": 0.9}}))
            rec.stable = 4
            rec.history.append(HistoryEvent("promote", 2, 4, "ok", reason="better"))
        after = json.loads(request(ui.url + "api/models/hpt")[2])
        changed = {k for k in first["sections"] if first["sections"][k]["digest"] != after["sections"][k]["digest"]}
        assert {"summary", "versions", "chart", "timeline"} <= changed
        assert 'data-version="4"' in after["sections"]["chart"]["html"]
        assert 'class="point stable" data-version="4"' in after["sections"]["chart"]["html"]
    finally:
        ui.stop()
