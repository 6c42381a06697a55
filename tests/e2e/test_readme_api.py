"""The Python API example of docs/api.md runs as written, on a tmp home with the small DeepLab backbone.

The code is read from docs/api.md (the ```python block of "# Python API"); only what must differ
in a test is replaced, each replacement checked to apply exactly once so that an edit of the
page cannot silently skip it: the home and run folder live under tmp_path, training is short,
the server runs on free ports with the embedded engine, and the photo is the test image.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from lifecycle.serving import fleet
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.deeplab_runs import TINY_SAVE_EVERY
from tests.support.homes import REPO_ROOT, new_home
from tests.support.ports import free_ports

pytestmark = pytest.mark.e2e


def readme_example() -> str:
    """The Python block of docs/api.md's "Python API" section."""
    page = (REPO_ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = page[page.index("# Python API"):]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "docs/api.md: no ```python block under # Python API"
    return match.group(1)


def replace_once(code: str, old: str, new: str) -> str:
    assert code.count(old) == 1, f"the docs/api.md example no longer contains {old!r} exactly once"
    return code.replace(old, new)


def test_the_readme_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path / "demo")
    run_dir = tmp_path / "ckpt" / "16645"
    grpc_port, rest_port = free_ports(2)
    code = readme_example()
    code = replace_once(code, '"out/demo"', repr(str(home.home)))
    code = code.replace('"ckpt/16645"', repr(str(run_dir)))
    code = replace_once(code, "steps=300, save_every=100", f"steps={2 * TINY_SAVE_EVERY}, save_every={TINY_SAVE_EVERY}")
    code = replace_once(
        code, "api.serve(detach=True, paths=home)",
        f'api.serve(engine="embedded", grpc_port={grpc_port}, rest_port={rest_port}, detach=True, paths=home)',
    )
    code = replace_once(code, '"photo.jpg"', repr(str(home.configs / "test_image.png")))
    monkeypatch.chdir(tmp_path)  # out="masks" and out="diffs" are relative

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/api.md (Python API)", "exec"), {"__name__": "readme_example"})  # noqa: S102 - the documented code is the test subject
    output = printed.getvalue()

    assert "exit code" not in output, output  # the example's except clause did not run
    paths = Paths.from_env(home.home)
    rec = registry.load(paths).model("deeplab")
    assert [v.version for v in rec.versions] == [1, 2]
    assert [(e.action, e.to_version, e.result) for e in rec.history] == [
        ("promote", 1, "ok"), ("promote", 2, "ok"), ("rollback", 1, "ok"),
    ]
    assert rec.stable == 1
    assert (tmp_path / "masks" / "test_image.v2.mask.png").is_file()  # named by the version that answered (stable 2 then)
    assert (tmp_path / "masks" / "test_image.v2.overlay.png").is_file()
    assert (tmp_path / "diffs" / "deeplab-1-vs-2.test_image.png").is_file()
    assert fleet.live_records(paths) == [], "api.stop stopped the server the example started"
    assert "2 False" in output.splitlines()[0]  # print(result.version, result.reused)
