#!/usr/bin/env bash
# Build the peers' own environments; neither touches mlc's runtime dependencies.
#   .bench-venv-kserve: kserve 0.21 (needs protobuf < 7) + tensorflow-cpu, serves the
#                       bench's SavedModels through bench/peers/kserve_server.py
#   .bench-venv-mlflow: mlflow-skinny + sqlalchemy + alembic, MLflow's SQLite registry
#                       driven by bench/peers/mlflow_registry.py
# Usage: bench/peers/setup.sh [kserve|mlflow]   (both when no argument)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
want="${1:-all}"
make_env() {
    local dir="$root/$1"; shift
    if [ ! -x "$dir/bin/python" ]; then python3 -m venv "$dir"; fi
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    "$dir/bin/python" -m pip install --quiet "$@"
}
if [ "$want" = all ] || [ "$want" = kserve ]; then
    make_env .bench-venv-kserve 'kserve==0.21.*' 'tensorflow-cpu==2.21.*' 'protobuf<7'
fi
if [ "$want" = all ] || [ "$want" = mlflow ]; then
    make_env .bench-venv-mlflow mlflow-skinny sqlalchemy alembic
fi
