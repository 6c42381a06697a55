"""The client side of mlc-model-server's traffic split: set and read a model's split over REST.

A split (``{"stable": S, "candidate": C, "weight": W, "shadow": H, "compare": {...}}``) sends
the share W of a model's default-route requests (no version, no label) to C and copies the
share H of those S answers to C for comparison. It is set on the server's private admin path,
``PUT /v1/mlc/traffic/models/<m>`` on the REST port, with the header ``mlc-admin-token``
carrying the content of the file ``mlc serve`` passes as ``--mlc_admin_token_file``. A server
without that path (tensorflow_model_server, or an mlc-model-server started without the token)
answers as TF Serving answers an unknown path; that is :class:`NoTrafficSplit` here.

mlc also records every split it sets in ``configs/traffic.json`` (``{"<model>": <split>}``,
written atomically), which ``mlc serve`` passes as ``--mlc_traffic_file`` so that a restarted
server gets its split back before it takes traffic. No TensorFlow, no grpc here.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError, LifecycleError, ModelNotFound, NoTrafficSplit, ServingError
from lifecycle.serving.client import DEFAULT_TIMEOUT_S, rest_request
from lifecycle.serving.fleet import ServerSpec
from lifecycle.store.config import Paths
from lifecycle.store.files import atomic_write_text

ADMIN_PATH = "/v1/mlc/traffic/models/{model}"
TOKEN_HEADER = "mlc-admin-token"
ROUTE_KEY_HEADER = "mlc-route-key"  # also the gRPC metadata key
TOKEN_ENV = "MLC_ADMIN_TOKEN"  # the token of servers mlc did not start (configs/servers.yaml)


# A split at weight 0 and shadow 0 is no split at all (the admin path clears it), and without a
# split the default route goes to the highest available version: the candidate, once it loads.
# A split that sends nothing to the candidate but stays in place ("pinned") keeps a shadow share
# this small instead (one request in 10^12 copied).
PIN_SHADOW = 1e-12


@dataclass(frozen=True)
class Split:
    """One model's split on a server (weights are shares in [0, 1])."""

    stable: int
    candidate: int
    weight: float = 0.0
    shadow: float = 0.0
    compare: dict[str, str] = field(default_factory=dict)

    def to_body(self) -> dict[str, Any]:
        """The JSON body of the admin path."""
        body = asdict(self)
        if not self.compare:
            del body["compare"]
        return body

    @classmethod
    def from_body(cls, body: Any) -> Split | None:
        """A split from the admin path's answer (None for no split)."""
        if not isinstance(body, dict) or not body or "candidate" not in body:
            return None
        return cls(int(body["stable"]), int(body["candidate"]), float(body.get("weight", 0.0)),
                   float(body.get("shadow", 0.0)), dict(body.get("compare") or {}))

    @classmethod
    def pinned(cls, stable: int, candidate: int, compare: dict[str, str] | None = None) -> Split:
        """Every default-route request to stable while both are loaded (see :data:`PIN_SHADOW`)."""
        return cls(stable, candidate, 0.0, PIN_SHADOW, dict(compare or {}))

    def same_weights(self, other: Split | None) -> bool:
        """Whether ``other`` routes as this split does (versions, weight and shadow share)."""
        return other is not None and (other.stable, other.candidate) == (self.stable, self.candidate) and \
            abs(other.weight - self.weight) < 1e-9 and abs(other.shadow - self.shadow) < 1e-15

    def describe(self) -> str:
        """For people: ``stable 2 95% / candidate 3 5%, shadow 0%``."""
        return (f"stable {self.stable} {100 * (1 - self.weight):g}% / candidate {self.candidate} {100 * self.weight:g}%"
                + (f", shadow {100 * self.shadow:g}%" if self.shadow > PIN_SHADOW else ""))


def token_file(paths: Paths) -> Path:
    """Where ``mlc serve`` keeps the admin token it passes to its servers (mode 0600)."""
    return paths.state_dir / "admin-token"


def read_token(paths: Paths) -> str | None:
    """The admin token: $MLC_ADMIN_TOKEN, else the home's token file; None when there is none."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    try:
        return token_file(paths).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def traffic_file(paths: Paths) -> Path:
    """configs/traffic.json, beside configs/models.config: the splits mlc has set."""
    return paths.serving_config.parent / "traffic.json"


def read_traffic_file(paths: Paths) -> dict[str, Split]:
    """The splits recorded in configs/traffic.json (none when it does not exist)."""
    file = traffic_file(paths)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise ConfigError(f"malformed traffic file {file}: {e}; delete it or run `mlc rollout MODEL --revert`") from e
    out = {}
    for model, body in (data.items() if isinstance(data, dict) else []):
        split = Split.from_body(body)
        if split is not None:
            out[str(model)] = split
    return out


def record_split(paths: Paths, model: str, split: Split | None) -> None:
    """Record (or with None forget) ``model``'s split in configs/traffic.json, atomically."""
    splits = {m: s.to_body() for m, s in read_traffic_file(paths).items()}
    if split is None:
        splits.pop(model, None)
    else:
        splits[model] = split.to_body()
    atomic_write_text(traffic_file(paths), json.dumps(splits, indent=2, sort_keys=True) + "\n")


def _admin(spec: ServerSpec, method: str, model: str, token: str | None, timeout: float, body: Any = None) -> Any:
    if not spec.rest:
        raise NoTrafficSplit(f"server {spec.name} has no REST address in configs/servers.yaml; the split is set over REST")
    try:
        return rest_request(spec.rest, method, ADMIN_PATH.format(model=model), timeout, body=body, tls=spec.tls,
                            headers={TOKEN_HEADER: token or ""})
    except (ModelNotFound, ServingError) as e:
        if isinstance(e, ModelNotFound) or e.grpc_code == "INVALID_ARGUMENT":
            # What TF Serving answers for an unknown path: no admin path here, or not for this token.
            raise NoTrafficSplit(
                f"server {spec.name} has no traffic split (tensorflow_model_server has none; an mlc-model-server "
                f"needs the admin token `mlc serve` gives it): {e.message}"
            ) from e
        raise


def set_split(spec: ServerSpec, model: str, split: Split | None, token: str | None,
              timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """Set (or with None clear) ``model``'s split on one server; the server's split generation."""
    answer = _admin(spec, "PUT", model, token, timeout, body={} if split is None else split.to_body())
    return int(answer.get("generation", 0)) if isinstance(answer, dict) else 0


def get_split(spec: ServerSpec, model: str, token: str | None, timeout: float = DEFAULT_TIMEOUT_S) -> Split | None:
    """``model``'s split on one server (None when it has none)."""
    answer = _admin(spec, "GET", model, token, timeout)
    return Split.from_body(answer.get("split") if isinstance(answer, dict) else None)


def supports_split(spec: ServerSpec, model: str, token: str | None, timeout: float = 2.0) -> str | None:
    """None when the server has the admin path for this token, else why not (one line)."""
    try:
        get_split(spec, model, token, timeout)
    except NoTrafficSplit as e:
        return e.message
    except LifecycleError as e:
        return e.message
    return None
