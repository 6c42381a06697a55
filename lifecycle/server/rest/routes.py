"""REST routes: TF Serving's ``/v1`` API as one table of (method, path pattern, endpoint).

The handler answers a request with the first row whose method and pattern match the whole path
(case-insensitively, as TF Serving does), and ``400 Malformed request`` when none does. A model
path is ``/v1/models/{model}`` with an optional ``/versions/{n}`` or ``/labels/{l}``.

The rows marked ``admin`` are mlc's private admin path (the traffic split ``mlc rollout`` sets).
They exist only for a request that carries the server's admin token (``--mlc_admin_token_file``);
any other request finds no row there and gets what an unknown path gets.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from lifecycle.server.core import ModelRef
from lifecycle.server.rest import endpoints
from lifecycle.server.rest.endpoints import Endpoint

_MODEL = r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
# GET /v1/models, /v1/models/versions/3/metadata, ...: a status path whose model name is missing
_NO_MODEL = r"/v1/models(?:/versions/\d+|/labels/[^/:]+)?(?:/metadata)?"
_TRAFFIC = r"/v1/mlc/traffic/models/(?P<model>[^/:]+)"


@dataclass(frozen=True)
class Route:
    """One row: a method, a whole-path pattern, its endpoint, and its request-metrics API name."""

    method: str
    pattern: re.Pattern[str]
    endpoint: Endpoint
    api: str | None = None  # Predict, Classify, Regress: counted in the request metrics
    admin: bool = False  # only with the admin token; otherwise an unknown path


def _row(method: str, pattern: str, endpoint: Endpoint, api: str | None = None, admin: bool = False) -> Route:
    return Route(method, re.compile(pattern, re.IGNORECASE), endpoint, api, admin)


ROUTES: tuple[Route, ...] = (
    _row("POST", _MODEL + ":predict", endpoints.predict_body, "Predict"),
    _row("POST", _MODEL + ":classify", endpoints.classify_body, "Classify"),
    _row("POST", _MODEL + ":regress", endpoints.regress_body, "Regress"),
    _row("GET", _MODEL + "/metadata", endpoints.model_metadata_body),
    _row("GET", _MODEL, endpoints.model_status_body),
    _row("GET", _NO_MODEL, endpoints.missing_model_name),
    _row("GET", _TRAFFIC, endpoints.traffic_body, admin=True),
    _row("PUT", _TRAFFIC, endpoints.set_traffic_body, admin=True),
)


def find_route(method: str, path: str, admin: bool = False) -> tuple[Route, ModelRef] | None:
    """The first route for this method and (undecoded) path, and the servable the path names.

    The admin rows count only when ``admin`` (the request carries the admin token).
    """
    for route in ROUTES:
        if route.method == method and (admin or not route.admin):
            match = route.pattern.fullmatch(path)
            if match:
                groups = match.groupdict()
                return route, _ref(groups.get("model") or "", groups.get("version"), groups.get("label"))
    return None


def _ref(name: str, version: str | None, label: str | None) -> ModelRef:
    return ModelRef(
        urllib.parse.unquote(name),
        version=int(version) if version else None,
        label=urllib.parse.unquote(label) if label else None,
    )
