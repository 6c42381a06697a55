"""DeepLab-v3 (Chen et al. 2017, "Rethinking Atrous Convolution"), Pascal VOC classes, and the
procedural segmentation data set the demo trainer and the evaluation use.

(Over 400 lines: the network, its VOC classes and palette, its data set and its trainer are one
reference model; splitting them would scatter what a reader of the demo wants in one place.)

The network is a plain :class:`tf.Module` (no Keras) so that its checkpoint keys are exactly its
attribute paths (``model/backbone/stages/0/conv/kernel``), which lets :mod:`lifecycle.build.export`
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

import colorsys
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lifecycle.errors import CheckpointError, ConfigError

# --- Pascal VOC ----------------------------------------------------------------------------

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette(n: int = 256) -> np.ndarray:
    """The standard Pascal VOC colour map: ``n`` x 3 uint8 (class 0 black, 1 (128,0,0), ...)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def class_name(class_id: int, num_classes: int = len(VOC_CLASSES)) -> str:
    """VOC name of a class id (``class_<id>`` beyond the 21 VOC classes)."""
    return VOC_CLASSES[class_id] if 0 <= class_id < min(num_classes, len(VOC_CLASSES)) else f"class_{class_id}"


# --- network specification -----------------------------------------------------------------

BACKBONES = ("small", "resnet50")
# The names a definition may give this network's builder (see lifecycle.build.networks).
BUILDER_NAMES = ("deeplab_v3", "lifecycle.build.networks.deeplab:build")
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
        self._bn, self._relu, self._stride, self._rate = bn, relu, stride, rate

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if self._rate > 1 and training:  # space-to-batch: CPU conv2d has no dilated gradient
            y = tf.nn.atrous_conv2d(x, self.kernel, self._rate, padding="SAME")
        elif self._rate > 1:
            # Inference (exports, parity, metrics) convolves with native dilations: the same sums,
            # but space-to-batch pads a small feature map to a multiple of the rate (a 4x4 map
            # at rate 18 to 54x54), which made 64x64 images cost 25 times more on a CPU.
            y = tf.nn.conv2d(x, self.kernel, strides=1, padding="SAME", dilations=self._rate)
        else:
            y = tf.nn.conv2d(x, self.kernel, strides=self._stride, padding="SAME")
        if self._bn:
            if training:
                mean, variance = tf.nn.moments(y, axes=[0, 1, 2])
                self.moving_mean.assign(BN_MOMENTUM * self.moving_mean + (1 - BN_MOMENTUM) * mean)
                self.moving_variance.assign(BN_MOMENTUM * self.moving_variance + (1 - BN_MOMENTUM) * variance)
            else:
                mean, variance = self.moving_mean, self.moving_variance
            y = tf.nn.batch_normalization(y, mean, variance, self.beta, self.gamma, BN_EPSILON)
        else:
            y = y + self.bias
        return tf.nn.relu(y) if self._relu else y


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
        backbone_cls = {"small": SmallBackbone, "resnet50": ResNet50}[spec.backbone]
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


def build(spec: NetworkSpec, seed: int = 0, random_init: bool = True) -> DeepLabV3:
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


# --- the procedural data set ---------------------------------------------------------------

# Classes the synthetic scenes draw, each with a fixed shape and hue so that a small network
# can learn them in a few hundred steps.
DEMO_CLASSES: tuple[int, ...] = (1, 3, 7, 8, 12, 15)  # aeroplane, bird, car, cat, dog, person
SHAPES = ("triangle", "disc", "box")


@dataclass(frozen=True)
class SyntheticSet:
    """A deterministic set of shapes-on-textures scenes: image i depends only on (seed, i)."""

    seed: int = 0
    count: int = 8
    size: int = 64
    classes: tuple[int, ...] = DEMO_CLASSES

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for reports)."""
        return {"source": "synthetic", "seed": self.seed, "count": self.count, "size": self.size,
                "classes": list(self.classes)}

    def arrays(self, start: int = 0, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Images float32 [n,s,s,3] in [0,255] and labels int32 [n,s,s] of scenes start..start+n."""
        n = self.count if count is None else count
        pairs = [synthetic_scene(self.seed, start + i, self.size, self.classes) for i in range(n)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _class_colour(class_id: int, classes: tuple[int, ...]) -> np.ndarray:
    hue = classes.index(class_id) / len(classes)
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95), np.float32) * 255.0


def synthetic_scene(
    seed: int, index: int, size: int, classes: tuple[int, ...] = DEMO_CLASSES, objects: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: 1-3 coloured shapes labelled with VOC ids on a low-saturation texture.

    ``objects`` names the classes to draw instead (one shape each): the classifier's images.
    """
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # Background: a grey level, a few oriented sine gratings and noise, slightly tinted.
    texture = np.full((size, size), rng.uniform(70, 180), np.float32)
    for _ in range(3):
        theta, freq, phase = rng.uniform(0, math.pi), rng.uniform(2, 12), rng.uniform(0, 2 * math.pi)
        texture += rng.uniform(8, 25) * np.sin(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
    image = texture[..., None] + rng.uniform(-12, 12, 3).astype(np.float32) + rng.normal(0, 6, (size, size, 3))
    label = np.zeros((size, size), np.int32)
    count = len(objects) if objects is not None else int(rng.integers(1, 4))
    for n in range(count):
        # The draws stay in this order (count, then class and geometry per shape): scenes are fixed by (seed, index).
        cls = objects[n] if objects is not None else int(rng.choice(classes))
        shape = SHAPES[classes.index(cls) % len(SHAPES)]
        cy, cx = rng.uniform(0.2, 0.8, 2)
        r = rng.uniform(0.12, 0.25)
        if shape == "disc":
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif shape == "box":
            ry = r * rng.uniform(0.6, 1.0)
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= r)
        else:  # an upward triangle: below the apex, inside both slanted edges
            mask = (yy <= cy + r) & (yy - (cy - r) >= 2 * np.abs(xx - cx))
        colour = _class_colour(cls, classes) * rng.uniform(0.8, 1.05)
        image[mask] = colour + rng.normal(0, 6, (int(mask.sum()), 3))
        label[mask] = cls
    return np.clip(image, 0, 255).astype(np.float32), label


# --- training ------------------------------------------------------------------------------


class Adam(tf.Module):
    """Adam (Kingma and Ba 2015) with its slots as tracked variables, so checkpoints resume."""

    def __init__(self, variables: list[tf.Variable], learning_rate: float) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def apply(self, grads: list[tf.Tensor], variables: list[tf.Variable], scale: tf.Tensor | float = 1.0) -> None:
        """One update step; ``scale`` multiplies the learning rate (the schedule)."""
        b1, b2, eps = 0.9, 0.999, 1e-7
        self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        lr = scale * self.learning_rate * tf.sqrt(1 - b2**t) / (1 - b1**t)
        for g, var, m, v in zip(grads, variables, self.m, self.v):
            m.assign(b1 * m + (1 - b1) * g)
            v.assign(b2 * v + (1 - b2) * g * g)
            var.assign_sub(lr * m / (tf.sqrt(v) + eps))


@dataclass(frozen=True)
class TrainSettings:
    """How ``mlc train`` trains (the definition's ``training`` section)."""

    image_size: int = 64
    batch_size: int = 8
    learning_rate: float = 0.005
    seed: int = 0
    pool: int = 512  # distinct training scenes, drawn in a fixed shuffled order

    @classmethod
    def from_definition(cls, section: dict[str, Any], where: str = "training") -> TrainSettings:
        """Parse and check a definition's ``training`` mapping."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(section) - known
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        try:
            s = cls(**{k: type(getattr(cls, k))(v) for k, v in section.items()})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from e
        if s.image_size < 16 or s.batch_size < 2 or s.pool < s.batch_size or s.learning_rate <= 0:
            raise ConfigError(f"{where}: need image_size >= 16, batch_size >= 2, pool >= batch_size, learning_rate > 0")
        return s


@dataclass
class SavedCheckpoint:
    """One checkpoint written by :func:`train`."""

    step: int
    prefix: str
    loss: float


@dataclass
class TrainReport:
    """What :func:`train` did."""

    run_dir: str
    network: dict[str, Any]
    start_step: int
    steps: int
    checkpoints: list[SavedCheckpoint] = field(default_factory=list)


CHECKPOINT_NAME = "ckpt"


def train(
    run_dir: Path,
    spec: NetworkSpec,
    settings: TrainSettings,
    steps: int,
    save_every: int,
    on_checkpoint: Callable[[SavedCheckpoint], None] | None = None,
) -> TrainReport:
    """Train on the synthetic set until global step ``steps``, saving every ``save_every`` steps.

    Checkpoints are ordinary TF checkpoints (``tf.train.CheckpointManager``): ``RUN_DIR/checkpoint``
    and ``RUN_DIR/ckpt-<step>.{index,data-*}``, holding ``model`` (the network), ``optimizer``
    and ``step``. A run folder that already has checkpoints is resumed from its latest one.
    """
    net = build(spec, seed=settings.seed)
    variables = list(net.trainable_variables)
    optimizer = Adam(variables, settings.learning_rate)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(model=net, optimizer=optimizer, step=step)
    run_dir.mkdir(parents=True, exist_ok=True)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir), max_to_keep=None, checkpoint_name=CHECKPOINT_NAME)
    if manager.latest_checkpoint:
        try:
            ckpt.restore(manager.latest_checkpoint).assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise CheckpointError(
                f"cannot resume {manager.latest_checkpoint}: it does not match the {spec.backbone} network "
                f"({str(e).splitlines()[0][:200]}); use a new run folder"
            ) from e
    start = int(step.numpy())

    data = SyntheticSet(seed=settings.seed + 1, count=settings.pool, size=settings.image_size)
    images, labels = data.arrays()

    @tf.function(reduce_retracing=True, autograph=False)
    def train_step(x: tf.Tensor, y: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.image.resize(net.logits(x, training=True), tf.shape(x)[1:3], method="bilinear")
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        optimizer.apply(tape.gradient(loss, variables), variables, scale)
        return loss

    report = TrainReport(str(run_dir), spec.to_dict(), start, steps)
    per_epoch = settings.pool // settings.batch_size
    loss_sum, loss_n = 0.0, 0
    for s in range(start, steps):
        epoch, i = divmod(s, per_epoch)
        # Each epoch visits the pool in a fresh order that depends only on (seed, epoch).
        perm = np.random.default_rng([settings.seed, epoch]).permutation(settings.pool)
        idx = perm[i * settings.batch_size:(i + 1) * settings.batch_size]
        # DeepLab's "poly" schedule towards --steps, so later checkpoints settle and score better.
        scale = tf.constant((1.0 - s / steps) ** 0.9, tf.float32)
        loss = float(train_step(tf.constant(images[idx]), tf.constant(labels[idx]), scale))
        loss_sum, loss_n = loss_sum + loss, loss_n + 1
        step.assign(s + 1)
        if (s + 1) % save_every == 0 or s + 1 == steps:
            prefix = manager.save(checkpoint_number=s + 1)
            saved = SavedCheckpoint(step=s + 1, prefix=prefix, loss=loss_sum / loss_n)
            loss_sum, loss_n = 0.0, 0
            report.checkpoints.append(saved)
            if on_checkpoint is not None:
                on_checkpoint(saved)
    return report


def demo_test_image() -> np.ndarray:
    """The image shipped as ``configs/test_image.png``: scene 0 of seed 2017, rows 8..55 (48x64 uint8).

    Not square, so a swapped height and width cannot go unnoticed.
    """
    image, _ = synthetic_scene(seed=2017, index=0, size=64)
    return np.round(image[8:56]).astype(np.uint8)
