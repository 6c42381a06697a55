"""Helpers for the traffic-split tests: raw HTTP exchanges, the admin path, scraping metrics."""

from __future__ import annotations

import http.client
import json
import re

from lifecycle.server import RunningServer
from lifecycle.server.monitoring import DEFAULT_PATH

TOKEN = "s3cret-token"
TRAFFIC = "/v1/mlc/traffic/models/"


def exchange(server: RunningServer, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP exchange: status, headers (without Date) and body bytes."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        answer = {k: v for k, v in response.getheaders() if k.lower() != "date"}
        return response.status, answer, response.read()
    finally:
        connection.close()


def set_split(server: RunningServer, model: str, split: dict[str, object]) -> dict[str, object]:
    """PUT a model's split with the admin token; the answer's JSON."""
    status, _, body = exchange(server, "PUT", TRAFFIC + model, json.dumps(split).encode(), {"mlc-admin-token": TOKEN})
    assert status == 200, body
    return json.loads(body)


def scrape(server: RunningServer) -> str:
    """The monitoring endpoint's Prometheus text."""
    return exchange(server, "GET", DEFAULT_PATH)[2].decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series (labels in any order); 0 when absent."""
    for line in text.splitlines():
        match = re.fullmatch(re.escape(name) + r"\{(.*)\} (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))) == labels:
            return float(match.group(2))
    return 0.0
