"""The test suite's own layout: tests sit in a layer folder and share code through tests/support/."""

from __future__ import annotations

import re

from tests.support.homes import REPO_ROOT

TESTS = REPO_ROOT / "tests"
LAYERS = ("unit", "cli", "e2e", "faults")


def test_every_test_module_sits_in_a_layer_folder() -> None:
    misplaced = [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py") if p.relative_to(TESTS).parts[0] not in LAYERS]
    assert misplaced == [], f"test modules outside tests/{{{','.join(LAYERS)}}}/: {misplaced}"


def test_nothing_imports_from_conftest() -> None:
    """conftest.py holds fixtures; what tests import lives in tests/support/."""
    offenders = [str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py")
                 if re.search(r"^\s*(from tests\.conftest import|import tests\.conftest)", p.read_text(), re.M)]
    assert offenders == [], f"import these names from tests/support/ instead of tests.conftest: {offenders}"
