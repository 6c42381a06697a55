"""Train a small Keras segmenter and save it with ``tf.saved_model.save`` and a ``predict_images`` signature.

    python examples/byo/keras_segmenter.py EXPORT_DIR [--epochs 4]

Your own code, as mlc sees it: a Keras model trained on anything (here the synthetic shapes
scenes of ``lifecycle.networks.deeplab``, labelled with Pascal VOC class ids), exported as a
SavedModel whose ``predict_images`` signature keeps the classic contract (``images`` float32
[-1,-1,-1,3], ``height``/``width`` int32 [1] -> ``segmentation_map`` int32 [-1,-1,-1]).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import tensorflow as tf

from lifecycle.train.scenes import SyntheticSet


def build(num_classes: int = 21) -> keras.Model:
    """Three dilated convolutions at full resolution, then 1x1 logits."""
    inputs = keras.Input((None, None, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(24, 3, padding="same", activation="relu", dilation_rate=2)(x)
    x = keras.layers.Conv2D(24, 3, padding="same", activation="relu", dilation_rate=4)(x)
    logits = keras.layers.Conv2D(num_classes, 1)(x)
    return keras.Model(inputs, logits, name="keras_segmenter")


def export(model: keras.Model, path: str | Path) -> Path:
    """``tf.saved_model.save`` with the ``predict_images`` signature, servable by TF Serving."""

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
        tf.TensorSpec([1], tf.int32, name="height"),
        tf.TensorSpec([1], tf.int32, name="width"),
    ])
    def predict_images(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.image.resize(model(images, training=False), tf.concat([height, width], 0), method="bilinear")
        return {"segmentation_map": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    # TF Serving restores a Keras 3 model's variables only when the saved object tracks the backing
    # tf.Variables itself (keras-team/keras#19274): save a tf.Module holding the model and them.
    root = tf.Module()
    root.model = model
    root.variables_ = [v.value for v in model.variables]
    tf.saved_model.save(root, str(path), signatures={"predict_images": predict_images})
    return Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help="Folder to write the SavedModel into (must not exist).")
    parser.add_argument("--epochs", type=int, default=4, help="Training epochs over 256 scenes.")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    images, labels = SyntheticSet(seed=7, count=256, size=64).arrays()
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=16, epochs=args.epochs, verbose=0)
    print(export(model, args.export_dir))


if __name__ == "__main__":
    main()
