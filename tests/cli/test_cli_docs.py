"""docs/cli.md is what scripts/gen_cli_docs.py writes from the commands' --help today."""

from __future__ import annotations

import runpy

from tests.support.homes import REPO_ROOT


def test_the_cli_reference_is_current() -> None:
    generator = runpy.run_path(str(REPO_ROOT / "scripts" / "gen_cli_docs.py"))
    written = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert written == generator["render"](), "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
