"""Lineage recorded by register and ``mlc card``, on real DeepLab versions of ``tiny_run``."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.store import outbox, registry
from lifecycle.store.config import Paths

pytestmark = pytest.mark.e2e
runner = CliRunner()


def lineage(paths: Paths, version: int) -> dict:  # type: ignore[type-arg]
    rec = registry.load(paths).model("deeplab")
    return registry.full_report(paths, "deeplab", rec.version(version))["lineage"]


def test_register_records_the_lineage(registered_home: Paths) -> None:
    got = lineage(registered_home, 1)
    assert got["run"]["written_by"] == "mlc train" and "seed" in got["run"] and got["run"]["network"]
    assert got["step"] == 20
    definition = registered_home.definition_file("deeplab")
    assert got["definition"]["digest"] == "sha256:" + hashlib.sha256(definition.read_bytes()).hexdigest()
    assert got["eval"]["digest"].startswith("sha256:") and got["eval"]["description"]
    assert got["builder"]["module"].endswith("deeplab.py") and got["builder"]["digest"].startswith("sha256:")
    assert got["tf_version"] and got["mlc_version"]
    assert got["git"] is None  # the home is no git repository
    assert lineage(registered_home, 2)["eval"]["digest"] == got["eval"]["digest"]


def test_a_home_in_git_records_its_commit_and_dirty_flag(registered_home: Paths, variant_checkpoints: list[Path]) -> None:
    home = registered_home.home
    git = ["git", "-C", str(home), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "configs"], check=True)
    subprocess.run([*git, "commit", "-qm", "definitions"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (home / "configs" / "hooks.yaml").write_text("receivers:\n  - url: http://127.0.0.1:9/down\n    events: [register]\n")
    clean = api.register(variant_checkpoints[0], paths=registered_home).version
    assert lineage(registered_home, clean)["git"] == {"commit": head, "dirty": False}  # hooks.yaml is untracked
    (queued,) = [e.event for e in outbox.pending(registered_home)]  # the register webhook, queued where it is recorded
    assert (queued["event"], queued["model"], queued["data"]["version"]) == ("register", "deeplab", clean)
    with (home / "configs" / "deeplab.yaml").open("a") as f:
        f.write("# edited\n")
    dirty = api.register(variant_checkpoints[1], paths=registered_home).version
    assert lineage(registered_home, dirty)["git"] == {"commit": head, "dirty": True}


def test_mlc_card_writes_markdown_and_a_self_contained_page(
        registered_home: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLC_HOME", str(registered_home.home))
    assert runner.invoke(app, ["approve", "deeplab", "2", "--reason", "looks right"]).exit_code == 0
    result = runner.invoke(app, ["card", "deeplab", "2", "--out", str(tmp_path / "cards")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "cards" / "deeplab-2.card.md").read_text()
    page = (tmp_path / "cards" / "deeplab-2.card.html").read_text()
    for text in ("## Signature contract", "## Metrics", "## Lineage", "## Approvals", "## History", "looks right",
                 "mlc train", "miou"):
        assert text in md, text
    assert "<svg" in page and 'class="bar"' in page and "IoU per class" in page
    assert page.count('src="data:image/png;base64,') == 2  # mask and overlay
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
