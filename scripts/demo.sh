#!/usr/bin/env bash
# The main job end to end on the embedded defaults, in a fresh mlc home (./out/demo):
# train DeepLab (small backbone) -> register three checkpoints -> serve -> promote -> canary
# -> promote -> rollback -> status and history -> predict the test image (mask + overlay)
# -> stop the server.
# MLC_DEMO_HOME picks another folder; MLC_DEMO_GRPC_PORT / MLC_DEMO_REST_PORT other ports.
source "$(dirname "$0")/_venv.sh"
REPO="$PWD"
DEMO="${MLC_DEMO_HOME:-$REPO/out/demo}"
GRPC_PORT="${MLC_DEMO_GRPC_PORT:-8500}"
REST_PORT="${MLC_DEMO_REST_PORT:-8501}"

if [ -d "$DEMO/.mlc" ]; then (cd "$DEMO" && MLC_HOME="$DEMO" mlc stop) || true; fi
rm -rf "$DEMO"
mkdir -p "$DEMO/configs" "$DEMO/model_repo"
cp "$REPO/configs/deeplab.yaml" "$REPO/configs/test_image.png" "$DEMO/configs/"
cd "$DEMO"
export MLC_HOME="$DEMO"
trap 'mlc stop >/dev/null 2>&1 || true' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step mlc train ckpt/16645 --steps 60 --save-every 20
step mlc register ckpt/16645/ckpt-20
step mlc register ckpt/16645/ckpt-40
step mlc register ckpt/16645
step mlc serve --detach --grpc-port "$GRPC_PORT" --rest-port "$REST_PORT"
step mlc promote deeplab 1 --reason "first version"
step mlc promote deeplab 2 --dry-run
step mlc promote deeplab 2 --expect-current 1 --reason "more training"
step mlc promote deeplab 3 --canary --reason "try the latest checkpoint"
step mlc status
step mlc promote deeplab 3 --reason "canary looks good"
step mlc rollback deeplab --reason "demo: back to the previous stable"
step mlc status
step mlc history deeplab
step mlc predict deeplab configs/test_image.png --label stable --out out
step mlc stop
trap - EXIT
printf '\nDone. The mlc home is %s\n' "$DEMO"
printf 'Mask and overlay of the test image from the stable version (2, after the rollback):\n  %s/out/test_image.v2.mask.png\n  %s/out/test_image.v2.overlay.png\n' "$DEMO" "$DEMO"
