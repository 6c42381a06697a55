"""DeepLab-v3 (Chen et al. 2017, "Rethinking Atrous Convolution") and its builder.

Its VOC classes and palette are :mod:`lifecycle.networks.voc`; its demo trainer and data set
are :mod:`lifecycle.train`.

The network is a plain :class:`tf.Module` (no Keras) so that its checkpoint keys are exactly its
attribute paths (``model/backbone/stages/0/conv/kernel``), which lets :mod:`lifecycle.register.export`
compare a checkpoint's variables with the network's one by one.

- Backbone: ``resnet50`` (bottleneck blocks 3-4-6-3) for real use, or ``small`` (a five-layer
  conv stack) for tests and the demo. Both reach the output stride (16 by default) with strided
  convolutions and replace the remaining strides by atrous rates.
- ASPP: a 1x1 branch, one 3x3 branch per atrous rate (6, 12, 18), and image-level pooling,
  concatenated and projected by a 1x1 convolution; then a 1x1 classifier.
- :meth:`DeepLabV3.predict` upsamples the logits bilinearly to the requested height and width
  and takes the arg-max: the ``segmentation_map`` of the serving signature.

Images are float32 RGB in [0, 255], NHWC. This module imports TensorFlow; fast paths must not
import it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from lifecycle.errors import ConfigError
from lifecycle.networks import builders as networks

# --- network specification -----------------------------------------------------------------

BACKBONES = ("small", "resnet50")
# The names a definition may give this network's builder (see lifecycle.networks.builders).
BUILDER_NAMES = ("deeplab_v3", "lifecycle.networks.deeplab:build")
# ASPP width per backbone unless the definition sets aspp_depth (the paper uses 256).
DEFAULT_ASPP_DEPTH = {"small": 48, "resnet50": 256}


@dataclass(frozen=True)
class NetworkSpec:
    """The ``network`` section of a model definition, checked."""

    backbone: str = "small"
    num_classes: int = 21
    output_stride: int = 16
    atrous_rates: tuple[int, ...] = (6, 12, 18)
    aspp_depth: int = 48
    builder: str = "deeplab_v3"

    @classmethod
    def from_definition(cls, network: dict[str, Any], where: str = "network", backbone: str | None = None) -> NetworkSpec:
        """Parse and check a definition's ``network`` mapping; ``backbone`` overrides its choice."""
        builder = str(network.get("builder", "deeplab_v3"))
        if builder not in BUILDER_NAMES:
            raise ConfigError(f"{where}.builder: {builder!r} is not a DeepLab-v3 builder (known: {', '.join(BUILDER_NAMES)})")
        chosen = str(backbone or network.get("backbone", "small"))
        if chosen not in BACKBONES:
            raise ConfigError(f"{where}.backbone: unknown backbone {chosen!r} (known: {', '.join(BACKBONES)})")
        try:
            num_classes = int(network.get("num_classes", 21))
            output_stride = int(network.get("output_stride", 16))
            rates = tuple(int(r) for r in network.get("atrous_rates", (6, 12, 18)))
            depth = int(network.get("aspp_depth") or DEFAULT_ASPP_DEPTH[chosen])
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from e
        if num_classes < 2:
            raise ConfigError(f"{where}.num_classes must be at least 2, not {num_classes}")
        if output_stride not in (8, 16, 32):
            raise ConfigError(f"{where}.output_stride must be 8, 16 or 32, not {output_stride}")
        if not rates or any(r < 1 for r in rates):
            raise ConfigError(f"{where}.atrous_rates must be positive integers, not {list(rates)}")
        return cls(chosen, num_classes, output_stride, rates, depth, builder)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for reports)."""
        d = asdict(self)
        d["atrous_rates"] = list(self.atrous_rates)
        return d


# --- layers --------------------------------------------------------------------------------

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


class ConvBN(tf.Module):
    """Convolution (optionally atrous or strided), batch normalisation, optional ReLU."""

    def __init__(
        self, rng: np.random.Generator | None, cin: int, cout: int, k: int, *,
        stride: int = 1, rate: int = 1, relu: bool = True, bn: bool = True, name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        std = math.sqrt(2.0 / (k * k * cin))
        shape = (k, k, cin, cout)
        # He initialisation; zeros when no generator is given (a checkpoint overwrites them).
        initial = rng.normal(0.0, std, shape).astype(np.float32) if rng is not None else np.zeros(shape, np.float32)
        self.kernel = tf.Variable(initial, name="kernel")
        if bn:
            self.gamma = tf.Variable(np.ones(cout, np.float32), name="gamma")
            self.beta = tf.Variable(np.zeros(cout, np.float32), name="beta")
            self.moving_mean = tf.Variable(np.zeros(cout, np.float32), trainable=False, name="moving_mean")
            self.moving_variance = tf.Variable(np.ones(cout, np.float32), trainable=False, name="moving_variance")
        else:
            self.bias = tf.Variable(np.zeros(cout, np.float32), name="bias")
        # Plain settings, not tracked: checkpoints hold only the variables.
        self.bn, self.relu, self.stride, self.rate = bn, relu, stride, rate

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if self.rate > 1 and training:  # space-to-batch: CPU conv2d has no dilated gradient
            y = tf.nn.atrous_conv2d(x, self.kernel, self.rate, padding="SAME")
        elif self.rate > 1:
            # Inference (exports, parity, metrics) convolves with native dilations: the same sums,
            # but space-to-batch pads a small feature map to a multiple of the rate (a 4x4 map
            # at rate 18 to 54x54), which made 64x64 images cost 25 times more on a CPU.
            y = tf.nn.conv2d(x, self.kernel, strides=1, padding="SAME", dilations=self.rate)
        else:
            y = tf.nn.conv2d(x, self.kernel, strides=self.stride, padding="SAME")
        if self.bn:
            if training:
                mean, variance = tf.nn.moments(y, axes=[0, 1, 2])
                self.moving_mean.assign(BN_MOMENTUM * self.moving_mean + (1 - BN_MOMENTUM) * mean)
                self.moving_variance.assign(BN_MOMENTUM * self.moving_variance + (1 - BN_MOMENTUM) * variance)
            else:
                mean, variance = self.moving_mean, self.moving_variance
            y = tf.nn.batch_normalization(y, mean, variance, self.beta, self.gamma, BN_EPSILON)
        else:
            y = y + self.bias
        return tf.nn.relu(y) if self.relu else y


class Bottleneck(tf.Module):
    """ResNet bottleneck: 1x1 reduce, 3x3 (strided or atrous), 1x1 expand, plus the shortcut."""

    def __init__(self, rng: np.random.Generator | None, cin: int, width: int, stride: int, rate: int) -> None:
        super().__init__()
        cout = 4 * width
        self.reduce = ConvBN(rng, cin, width, 1)
        self.conv = ConvBN(rng, width, width, 3, stride=stride, rate=rate)
        self.expand = ConvBN(rng, width, cout, 1, relu=False)
        self.shortcut = ConvBN(rng, cin, cout, 1, stride=stride, relu=False) if (cin != cout or stride != 1) else None

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        y = self.expand(self.conv(self.reduce(x, training), training), training)
        s = self.shortcut(x, training) if self.shortcut is not None else x
        return tf.nn.relu(y + s)


class _Strider:
    """Turns strides into atrous rates once the output stride is reached (the DeepLab trick)."""

    def __init__(self, output_stride: int) -> None:
        self.output_stride, self.current, self.rate = output_stride, 1, 1

    def __call__(self, stride: int) -> tuple[int, int]:
        """(stride, rate) for a layer that would have ``stride``."""
        if self.current >= self.output_stride:
            # As in the paper (block4 at rate 2 for output stride 16): the layer that gives up
            # its stride already uses the larger rate, and so do the layers after it.
            self.rate *= stride
            return 1, self.rate
        self.current *= stride
        return stride, 1


class ResNet50(tf.Module):
    """ResNet-50 v1 with atrous convolution after the output stride."""

    channels = 2048

    def __init__(self, rng: np.random.Generator | None, output_stride: int) -> None:
        super().__init__()
        strider = _Strider(output_stride)
        self.stem = ConvBN(rng, 3, 64, 7, stride=strider(2)[0])
        self._pool_stride = strider(2)[0]
        blocks: list[Bottleneck] = []
        cin = 64
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            s, rate = strider(stride)
            for i in range(count):
                blocks.append(Bottleneck(rng, cin, width, s if i == 0 else 1, rate if i == 0 else strider.rate))
                cin = 4 * width
        self.blocks = blocks

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = self.stem(x, training)
        x = tf.nn.max_pool2d(x, 3, self._pool_stride, "SAME")
        for block in self.blocks:
            x = block(x, training)
        return x


class SmallBackbone(tf.Module):
    """A five-layer conv stack for tests and demos: four stride-2 layers, then an atrous one."""

    widths = (16, 24, 48, 64, 64)
    channels = widths[-1]

    def __init__(self, rng: np.random.Generator | None, output_stride: int) -> None:
        super().__init__()
        strider = _Strider(output_stride)
        layers, cin = [], 3
        for width in self.widths:
            stride, rate = strider(2)
            layers.append(ConvBN(rng, cin, width, 3, stride=stride, rate=rate))
            cin = width
        # The last layer would reach stride 32; at output stride 16 it becomes atrous (rate 2).
        self.layers = layers

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        for layer in self.layers:
            x = layer(x, training)
        return x


class ASPP(tf.Module):
    """Atrous spatial pyramid pooling with image-level features (DeepLab-v3 section 3.3)."""

    def __init__(self, rng: np.random.Generator | None, cin: int, depth: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.conv1x1 = ConvBN(rng, cin, depth, 1)
        self.atrous = [ConvBN(rng, cin, depth, 3, rate=r) for r in rates]
        self.image_pool = ConvBN(rng, cin, depth, 1)
        self.project = ConvBN(rng, depth * (2 + len(rates)), depth, 1)

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        size = tf.shape(x)[1:3]
        pooled = self.image_pool(tf.reduce_mean(x, axis=[1, 2], keepdims=True), training)
        branches = [self.conv1x1(x, training)] + [b(x, training) for b in self.atrous]
        branches.append(tf.image.resize(pooled, size, method="bilinear"))
        return self.project(tf.concat(branches, axis=-1), training)


class DeepLabV3(tf.Module):
    """DeepLab-v3: backbone, ASPP, 1x1 classifier; :meth:`predict` gives the segmentation map."""

    def __init__(self, spec: NetworkSpec, seed: int = 0, random_init: bool = True) -> None:
        super().__init__(name="deeplab_v3")
        rng = np.random.default_rng(seed) if random_init else None
        backbones: dict[str, type[SmallBackbone] | type[ResNet50]] = {"small": SmallBackbone, "resnet50": ResNet50}
        backbone_cls = backbones[spec.backbone]
        self.backbone = backbone_cls(rng, spec.output_stride)
        self.aspp = ASPP(rng, backbone_cls.channels, spec.aspp_depth, spec.atrous_rates)
        self.classifier = ConvBN(rng, spec.aspp_depth, spec.num_classes, 1, relu=False, bn=False)
        self.spec = spec

    def describe(self) -> str:
        """How errors name this network (``small DeepLab-v3``)."""
        return f"{self.spec.backbone} DeepLab-v3"

    def logits(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Class logits at the output stride for float32 RGB images in [0, 255]."""
        x = images / 127.5 - 1.0
        return self.classifier(self.aspp(self.backbone(x, training), training), training)

    def predict(self, images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
        """The int32 segmentation map [N, height, width]: logits upsampled bilinearly, arg-max."""
        logits = tf.image.resize(self.logits(images), tf.concat([height, width], 0), method="bilinear")
        return tf.argmax(logits, axis=-1, output_type=tf.int32)


def create(spec: NetworkSpec, seed: int = 0, random_init: bool = True) -> DeepLabV3:
    """A freshly initialised DeepLab-v3 (deterministic given ``seed``; zero kernels without ``random_init``)."""
    return DeepLabV3(spec, seed, random_init)


# --- the serving signature -----------------------------------------------------------------

SIGNATURE_KEY = "predict_images"
OUTPUT_NAME = "segmentation_map"


SERVING_INPUTS = (
    tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
    tf.TensorSpec([1], tf.int32, name="height"),
    tf.TensorSpec([1], tf.int32, name="width"),
)


class ServingModel:
    """What is exported: ``root`` (a module holding the network) and the ``predict_images`` signature.

    The signature function is deliberately not an attribute of ``root``: ``tf.saved_model.save``
    would trace a tf.function attribute a second time. ``autograph=False``: the network has no
    tensor-dependent Python control flow, and skipping the conversion halves the export time.
    """

    def __init__(self, net: DeepLabV3) -> None:
        self.net = net
        self.root = tf.Module()
        self.root.net = net

        @tf.function(autograph=False, input_signature=list(SERVING_INPUTS))
        def predict_images(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> dict[str, tf.Tensor]:
            """images float32 [-1,-1,-1,3], height/width int32 [1] -> segmentation_map int32 [-1,-1,-1]."""
            return {OUTPUT_NAME: net.predict(images, height, width)}

        self.predict_images = predict_images

    def signatures(self) -> dict[str, Any]:
        """The signatures to pass to ``tf.saved_model.save(self.root, ...)``."""
        return {SIGNATURE_KEY: self.predict_images.get_concrete_function()}


def build(**network: Any) -> DeepLabV3:
    """The builder (``builder: deeplab_v3``): a DeepLab-v3 from the definition's ``network`` keyword arguments.

    Its weights are zeros, not random draws, when a checkpoint is restored into it next.
    """
    return create(NetworkSpec.from_definition(network), random_init=not networks.restoring())


def serve(net: DeepLabV3) -> dict[str, Any]:
    """The classic ``predict_images`` signature (images, height, width -> segmentation_map)."""
    return ServingModel(net).signatures()
