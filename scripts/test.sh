#!/usr/bin/env bash
# Run mlc's test suite (unit, CLI and end-to-end with real TensorFlow and servers on 127.0.0.1).
# Extra arguments go to pytest, e.g. scripts/test.sh -k registry
source "$(dirname "$0")/_venv.sh"
exec "$PY" -m pytest "$@"
