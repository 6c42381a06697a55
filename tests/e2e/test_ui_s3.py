"""mlc ui on a home whose repository is an ``s3://`` prefix on a real SeaweedFS: the same pages, no credentials."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lifecycle.ui import create_server
from tests.support.browser import wait_until
from tests.support.seaweed import Seaweed
from tests.support.ui_homes import MODEL, registry_home

pytestmark = pytest.mark.e2e


def test_a_remote_repository_shows_like_a_local_one_and_never_its_credentials(
    browser: Any, tmp_path: Path, seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**seaweed.env(), "MLC_REPOSITORY": f"s3://{s3_bucket}/ui/repo"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    secret, key_id = env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]
    # A reason that quotes the credentials, as a careless user might: the page must not repeat them.
    paths = registry_home(tmp_path / "home", reason=f"uploaded with {key_id} / {secret}")
    assert not paths.registry_file.exists()  # the registry lives in the bucket, not in model_repo/
    ui = create_server(paths)
    try:
        browser.get(ui.url)
        wait_until(browser, lambda d: d.find_elements("css selector", f'tr.model[data-model="{MODEL}"]'), what="the model")
        header = browser.find_element("tag name", "header").text
        assert f"repository s3://{s3_bucket}/ui/repo" in header
        browser.get(ui.url + f"models/{MODEL}")
        rows = wait_until(browser, lambda d: d.find_elements("css selector", "table#versions tr.version"), what="versions")
        assert len(rows) == 3 and len(browser.find_elements("css selector", "svg.chart circle.point")) == 3
        reason = browser.find_element("css selector", "ol.timeline .reason").text
        assert reason == "reason: uploaded with *** / ***"
        with urllib.request.urlopen(ui.url + f"api/models/{MODEL}", timeout=30) as r:
            data = r.read().decode()
        for text in (browser.page_source, data):
            assert secret not in text and key_id not in text
    finally:
        ui.stop()
