"""A user's own network package, named by import paths in test model definitions.

``build_keras_segmenter`` is a Keras functional model (so Keras checkpoint naming and Keras
tracking are exercised); ``serve_segmenter`` gives it the classic ``predict_images`` signature.
The ``bad_*`` builders return what a builder must not.
"""

from __future__ import annotations

from typing import Any


def build_keras_segmenter(num_classes: int = 21, width: int = 8, seed: int = 0) -> Any:
    """images float32 [N,H,W,3] in [0,255] -> per-pixel logits [N,H,W,num_classes] (two convolutions)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(x)
    logits = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    return keras.Model(inputs, logits, name="keras_segmenter")


def serve_segmenter(net: Any) -> dict[str, Any]:
    """``predict_images``: images, height, width -> segmentation_map (arg-max of resized logits)."""
    import tensorflow as tf

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
        tf.TensorSpec([1], tf.int32, name="height"),
        tf.TensorSpec([1], tf.int32, name="width"),
    ])
    def predict_images(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.image.resize(net(images, training=False), tf.concat([height, width], 0))
        return {"segmentation_map": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    return {"predict_images": predict_images}


def bad_returns_dict(**_: Any) -> dict[str, int]:
    """A builder that returns something other than a network."""
    return {"not": 1}


def bad_serve_returns_string(net: Any) -> str:
    """A serving function that returns something other than functions."""
    return "predict_images"
