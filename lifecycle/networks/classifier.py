"""A small image classifier served through TF Serving's Classify and Predict APIs.

The second built-in definition (``configs/shapes.yaml``) uses it to exercise the contracts
DeepLab does not: ``serve`` gives

- ``serving_default`` (``tensorflow/serving/classify``): input ``inputs``, a 1-D string tensor of
  serialized ``tf.Example`` whose ``image/encoded`` feature holds a PNG or JPEG; outputs
  ``classes`` (the class names, string [N,C]) and ``scores`` (softmax, float32 [N,C]);
- ``predict`` (``tensorflow/serving/predict``): input ``images`` float32 [N,H,W,3] in [0, 255];
  outputs ``scores`` float32 [N,C] and ``class_ids`` (the top-1 class, int32 [N]).

The network resizes any image to ``image_size`` and runs three stride-2 convolutions, global
average pooling and a dense layer. Its demo trainer is :mod:`lifecycle.train.classifier`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import tensorflow as tf

from lifecycle.errors import ConfigError
from lifecycle.networks.voc import DEMO_CLASSES, class_name

EXAMPLE_FEATURE = "image/encoded"


class ShapesClassifier(tf.Module):
    """Resize, three stride-2 3x3 convolutions with ReLU, global average pooling, dense logits."""

    def __init__(self, classes: list[str], image_size: int = 32, width: int = 16, seed: int = 0) -> None:
        super().__init__(name="shapes_classifier")
        rng = np.random.default_rng(seed)
        self.classes = list(classes)
        self.image_size = int(image_size)
        widths = (3, width, 2 * width, 2 * width)
        self.kernels = [
            tf.Variable(rng.normal(0, math.sqrt(2.0 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32), name="kernel")
            for cin, cout in itertools.pairwise(widths)
        ]
        self.biases = [tf.Variable(np.zeros(cout, np.float32), name="bias") for cout in widths[1:]]
        self.dense = tf.Variable(rng.normal(0, math.sqrt(1.0 / widths[-1]), (widths[-1], len(classes))).astype(np.float32))
        self.dense_bias = tf.Variable(np.zeros(len(classes), np.float32))

    def describe(self) -> str:
        """How errors name this network."""
        return f"shapes classifier ({len(self.classes)} classes)"

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        """Class logits [N, C] for float32 RGB images [N, H, W, 3] in [0, 255], any H and W."""
        x = tf.image.resize(images, [self.image_size, self.image_size], method="bilinear") / 127.5 - 1.0
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=2, padding="SAME") + bias)
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.dense) + self.dense_bias


def build(num_classes: int | None = None, classes: list[str] | None = None, image_size: int = 32, width: int = 16,
          seed: int = 0) -> ShapesClassifier:
    """A freshly initialised classifier over ``classes`` (default: the synthetic scenes' six)."""
    names = list(classes) if classes else [class_name(c) for c in DEMO_CLASSES]
    if num_classes is not None and int(num_classes) != len(names):
        raise ConfigError(f"num_classes {num_classes} does not match the {len(names)} classes {names}")
    return ShapesClassifier(names, image_size, width, seed)


def serve(net: ShapesClassifier) -> dict[str, Any]:
    """The Classify signature (``serving_default``) and the Predict signature (``predict``)."""
    names = tf.constant(net.classes)

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def predict(images: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.nn.softmax(net.logits(images))
        return {"scores": scores, "class_ids": tf.argmax(scores, axis=-1, output_type=tf.int32)}

    def decode(serialized: tf.Tensor) -> tf.Tensor:
        features = tf.io.parse_single_example(serialized, {EXAMPLE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
        image = tf.io.decode_image(features[EXAMPLE_FEATURE], channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        return tf.image.resize(image, [net.image_size, net.image_size], method="bilinear")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(decode, inputs, fn_output_signature=tf.TensorSpec([net.image_size, net.image_size, 3], tf.float32))
        scores = tf.nn.softmax(net.logits(images))
        return {"classes": tf.tile(names[None], [tf.shape(inputs)[0], 1]), "scores": scores}

    return {"predict": predict, "serving_default": classify}
