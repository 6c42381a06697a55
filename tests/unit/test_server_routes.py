"""The REST route table: which endpoint and servable each TF Serving path names."""

from __future__ import annotations

import pytest

from lifecycle.server.core import ModelRef
from lifecycle.server.rest import endpoints
from lifecycle.server.rest.routes import ROUTES, find_route


@pytest.mark.parametrize(("method", "path", "endpoint", "ref"), [
    ("GET", "/v1/models/m", endpoints.model_status_body, ModelRef("m")),
    ("GET", "/v1/models/m/versions/3", endpoints.model_status_body, ModelRef("m", version=3)),
    ("GET", "/v1/models/m/labels/stable", endpoints.model_status_body, ModelRef("m", label="stable")),
    ("GET", "/v1/models/m/labels/metadata", endpoints.model_status_body, ModelRef("m", label="metadata")),
    ("GET", "/v1/models/metadata", endpoints.model_status_body, ModelRef("metadata")),
    ("GET", "/v1/models/m/metadata", endpoints.model_metadata_body, ModelRef("m")),
    ("GET", "/V1/MODELS/m/VERSIONS/2/METADATA", endpoints.model_metadata_body, ModelRef("m", version=2)),
    ("GET", "/v1/models/a%2Fb/labels/c%20d", endpoints.model_status_body, ModelRef("a/b", label="c d")),
    ("GET", "/v1/models", endpoints.missing_model_name, ModelRef("")),
    ("GET", "/v1/models/versions/3/metadata", endpoints.missing_model_name, ModelRef("")),
    ("POST", "/v1/models/m:predict", endpoints.predict_body, ModelRef("m")),
    ("POST", "/v1/models/m/labels/canary:PREDICT", endpoints.predict_body, ModelRef("m", label="canary")),
    ("POST", "/v1/models/m/versions/0:classify", endpoints.classify_body, ModelRef("m", version=0)),
    ("POST", "/v1/models/m:Regress", endpoints.regress_body, ModelRef("m")),
])
def test_a_path_names_its_endpoint_and_servable(method: str, path: str, endpoint: endpoints.Endpoint, ref: ModelRef) -> None:
    found = find_route(method, path)
    assert found is not None
    route, found_ref = found
    assert (route.endpoint, found_ref) == (endpoint, ref)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/models/m"),  # status is GET only
    ("GET", "/v1/models/m:predict"),  # predict is POST only
    ("PUT", "/v1/models/m"),
    ("POST", "/v1/models/m:explain"),
    ("GET", "/v1/models/m/versions/x"),
    ("GET", "/v1/models/m/versions/1/labels/a"),
    ("GET", "/v1/models/versions/3/versions/4"),
])
def test_other_paths_have_no_route(method: str, path: str) -> None:
    assert find_route(method, path) is None


def test_only_the_inference_routes_are_counted_in_the_request_metrics() -> None:
    assert {route.api for route in ROUTES if route.api} == {"Predict", "Classify", "Regress"}
    assert all(route.method == "POST" for route in ROUTES if route.api)
