#!/usr/bin/env bash
# Bring your own model and data, end to end in a fresh mlc home (./out/byo):
#   1. a Keras model trained by your code and saved with tf.saved_model.save (examples/byo/keras_segmenter.py);
#   2. the seed tutorial's TF1 SavedModelBuilder export with predict_images (examples/byo/seed_export.py);
#   3. checkpoints of the second built-in definition, the shapes classifier (configs/shapes.yaml).
# Each is registered (validated, with metrics on the shipped labelled sets data/voc-mini and
# data/shapes-mini), promoted on the embedded server and asked with mlc predict; then the two
# classifier versions are told apart with mlc diff.
# MLC_BYO_HOME picks another folder; MLC_BYO_GRPC_PORT / MLC_BYO_REST_PORT other ports;
# MLC_BYO_EPOCHS the Keras training epochs (4); MLC_BYO_NO_VENV=1 uses $PYTHON (default python)
# as it is instead of ./.venv.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${MLC_BYO_NO_VENV:-}" ]; then source "$REPO/scripts/_venv.sh"; fi
PYTHON="${PYTHON:-python}"
BYO="${MLC_BYO_HOME:-$REPO/out/byo}"
GRPC_PORT="${MLC_BYO_GRPC_PORT:-8500}"
REST_PORT="${MLC_BYO_REST_PORT:-8501}"
mlc() { "$PYTHON" -m lifecycle "$@"; }

if [ -d "$BYO/.mlc" ]; then (cd "$BYO" && MLC_HOME="$BYO" mlc stop) || true; fi
rm -rf "$BYO"
mkdir -p "$BYO/configs" "$BYO/model_repo"
cp "$REPO/examples/byo/segmenter.yaml" "$REPO/examples/byo/seed.yaml" "$REPO/configs/shapes.yaml" \
   "$REPO/configs/test_image.png" "$REPO/configs/shapes_test.png" "$BYO/configs/"
cp -r "$REPO/data" "$BYO/data"
cd "$BYO"
export MLC_HOME="$BYO"
trap 'mlc stop >/dev/null 2>&1 || true' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# 1. A Keras model, tf.saved_model.save -> model "segmenter" (scored on data/voc-mini)
step "$PYTHON" "$REPO/examples/byo/keras_segmenter.py" exports/keras_segmenter --epochs "${MLC_BYO_EPOCHS:-4}"
step mlc register exports/keras_segmenter --model segmenter
# 2. The seed tutorial's TF1 SavedModelBuilder export -> model "seed" (scored on data/voc-mini)
step "$PYTHON" "$REPO/examples/byo/seed_export.py" exports/seed_deeplab
step mlc register exports/seed_deeplab --model seed
# 3. The shapes classifier's checkpoints -> model "shapes" (scored on data/shapes-mini)
step mlc train runs/shapes --model shapes --steps 3 --save-every 3      # barely trained
step mlc train runs/shapes --model shapes --steps 60 --save-every 60    # resumed, trained on
step mlc register runs/shapes/ckpt-3 --model shapes
step mlc register runs/shapes --model shapes    # the latest: ckpt-60

step mlc serve --detach --grpc-port "$GRPC_PORT" --rest-port "$REST_PORT"
step mlc promote segmenter 1 --reason "a Keras SavedModel"
step mlc promote seed 1 --reason "the seed tutorial's export"
step mlc promote shapes 1 --reason "first classifier"
step mlc promote shapes 2 --reason "trained longer"
step mlc status
step mlc predict segmenter configs/test_image.png --label stable --out out/segmenter
step mlc predict seed configs/test_image.png --label stable --out out/seed
step mlc predict shapes configs/shapes_test.png data/shapes-mini/val/dog/0.png --label stable
step mlc predict shapes configs/shapes_test.png --label stable --rest
step mlc diff shapes 1 2
step mlc stop
trap - EXIT
printf '\nDone. The mlc home is %s\n' "$BYO"
