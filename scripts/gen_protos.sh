#!/usr/bin/env bash
# Regenerate lifecycle/server/protos/*_pb2.py (and their *_pb2.pyi stubs) and lifecycle/serving/wire/tfs_wire_pb2.py from the
# .proto files next to them:
#   PYTHON=.venv/bin/python scripts/gen_protos.sh
# The generated modules are committed so that the server needs only the protobuf runtime;
# grpcio-tools (a test extra) is needed only to run this script, and
# tests/unit/test_batch_scheduler.py (test_generated_protos_match_their_sources) checks that the committed files match a fresh generation.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python3}" -m grpc_tools.protoc -I . --python_out=. \
  lifecycle/server/protos/batching.proto lifecycle/server/protos/monitoring.proto lifecycle/server/protos/ssl.proto \
  lifecycle/server/protos/profiler.proto lifecycle/serving/wire/tfs_wire.proto
# Type stubs (*_pb2.pyi) for the server's own messages, so that mypy knows their fields.
"${PYTHON:-python3}" -m grpc_tools.protoc -I . --pyi_out=. \
  lifecycle/server/protos/batching.proto lifecycle/server/protos/monitoring.proto lifecycle/server/protos/ssl.proto \
  lifecycle/server/protos/profiler.proto
