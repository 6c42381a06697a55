"""CPU of the REST JSON a segmenter's :predict costs mlc-model-server, beside its scalar baseline.

The answer of bench_server's 513x513 segmenter (21 classes) is 5.5 M float32 logits and 263 K
int64 classes in the row format, ~75 MB of JSON. This measures, in process CPU seconds:

- ``encode``: ``json_codec.rows_json`` on such outputs (random logits: nearly all need 7-9 digits);
- ``spec``: ``format_decimal`` called on every logit, the scalar rule that encode must match byte
  for byte (the baseline; the layout is not even included);
- ``parse``: ``json.loads`` of the 513x513x3 request body and its conversion to a uint8 array
  (``json_tensor.arrays_from_instances``), with the cyclic collector on and paused, after
  importing TensorFlow so that the heap holds what a server's does.

    python bench/bench_rest_json.py            # last line: rest json: encode X.XX s, spec Y.YY s, ...
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable

import numpy as np


def cpu(call: Callable[[], object], repeat: int) -> float:
    """The smallest process CPU seconds of ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        call()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    """Print the three figures and their ratio."""
    import tensorflow as tf  # noqa: F401 - the server's heap, for the collector's cost

    from lifecycle.server.rest import json_codec, json_tensor
    from lifecycle.server.rest.json_decimals import format_decimal

    rng = np.random.default_rng(0)
    outputs = {"logits": rng.normal(0, 2, (1, 513, 513, 21)).astype(np.float32),
               "classes": rng.integers(0, 21, (1, 513, 513))}
    logits = outputs["logits"].reshape(-1).astype(np.float64).tolist()
    encode = cpu(lambda: json_codec.rows_json(outputs), 2)
    spec = cpu(lambda: [format_decimal(v, False) for v in logits], 1)
    body = json.dumps({"instances": rng.integers(0, 255, (1, 513, 513, 3)).tolist()}).encode()
    infos = {"images": type("Info", (), {"dtype": 4})()}  # DT_UINT8

    def parse() -> object:
        return json_tensor.arrays_from_instances(json.loads(body)["instances"], infos, False)

    parse_on = cpu(parse, 3)
    gc.disable()
    parse_off = cpu(parse, 3)
    gc.enable()
    print(f"encode {encode:.2f} s ({len(json_codec.rows_json(outputs)) / 1e6:.1f} MB), spec {spec:.2f} s")
    print(f"parse {parse_on:.2f} s with the collector, {parse_off:.2f} s paused ({len(body) / 1e6:.1f} MB)")
    print(f"rest json: encode {encode:.2f} s, spec {spec:.2f} s (spec / encode {spec / encode:.1f}), "
          f"parse {parse_on:.2f} -> {parse_off:.2f} s")


if __name__ == "__main__":
    main()
