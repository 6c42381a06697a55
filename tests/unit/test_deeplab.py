"""DeepLab-v3 network, VOC classes and palette, and the procedural data set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lifecycle.errors import ConfigError
from lifecycle.networks import deeplab, voc
from lifecycle.register import export
from lifecycle.train import scenes
from tests.support.homes import CONFIGS


def test_voc_classes_and_palette() -> None:
    assert len(voc.VOC_CLASSES) == 21
    assert voc.VOC_CLASSES[15] == "person" and voc.VOC_CLASSES[20] == "tvmonitor"
    p = voc.voc_palette()
    assert p.shape == (256, 3)
    assert p[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert p[15].tolist() == [192, 128, 128]
    assert p[255].tolist() == [224, 224, 192]
    assert voc.class_name(21, 25) == "class_21"


def test_synthetic_scenes_are_deterministic() -> None:
    s = scenes.SyntheticSet(seed=3, count=4, size=32)
    a_img, a_lab = s.arrays()
    b_img, b_lab = s.arrays()
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    # Scene i depends only on (seed, i), not on how many are drawn.
    one_img, _ = scenes.SyntheticSet(seed=3, count=1, size=32).arrays(start=2)
    assert np.array_equal(one_img[0], a_img[2])
    assert a_img.dtype == np.float32 and 0 <= a_img.min() and a_img.max() <= 255
    assert set(np.unique(a_lab)) <= {0, *voc.DEMO_CLASSES}
    assert not np.array_equal(scenes.SyntheticSet(seed=4, count=4, size=32).arrays()[0], a_img)


def test_shipped_test_image_is_the_generated_one() -> None:
    shipped = np.asarray(Image.open(CONFIGS / "test_image.png").convert("RGB"))
    assert np.array_equal(shipped, scenes.demo_test_image())


def test_network_spec_from_definition() -> None:
    spec = deeplab.NetworkSpec.from_definition({"backbone": "small", "atrous_rates": [6, 12, 18]})
    assert spec.aspp_depth == 48 and spec.output_stride == 16 and spec.num_classes == 21
    assert deeplab.NetworkSpec.from_definition({}, backbone="resnet50").aspp_depth == 256
    for bad, words in (({"backbone": "vgg"}, "unknown backbone"), ({"output_stride": 12}, "output_stride"),
                       ({"builder": "unet"}, "not a DeepLab-v3 builder"), ({"num_classes": "x"}, "network")):
        with pytest.raises(ConfigError, match=words):
            deeplab.NetworkSpec.from_definition(bad)


@pytest.mark.parametrize("backbone, stride", [("small", 16), ("small", 8)])
def test_output_stride_and_upsampled_map(backbone: str, stride: int) -> None:
    import tensorflow as tf

    net = deeplab.create(deeplab.NetworkSpec(backbone=backbone, output_stride=stride,
                                            aspp_depth=deeplab.DEFAULT_ASPP_DEPTH[backbone]))
    images = tf.zeros([2, 64, 96, 3])
    assert net.logits(images).shape == (2, 64 // stride, 96 // stride, 21)
    serving = deeplab.ServingModel(net)
    mask = serving.predict_images(images, tf.constant([50]), tf.constant([70]))["segmentation_map"]
    assert mask.shape == (2, 50, 70) and mask.dtype == tf.int32


def test_resnet50_uses_atrous_rates_after_output_stride() -> None:
    import tensorflow as tf

    net = deeplab.create(deeplab.NetworkSpec(backbone="resnet50", aspp_depth=256))
    # Block4 (the last three bottlenecks) gives up its stride for rate 2, as in the paper.
    assert [b.conv.rate for b in net.backbone.blocks] == [1] * 13 + [2, 2, 2]
    assert net.logits(tf.zeros([1, 64, 96, 3])).shape == (1, 4, 6, 21)
    assert len(net.variables) == len(export.variable_keys(net))


def test_inference_convolves_with_native_dilations_and_answers_as_space_to_batch() -> None:
    """Exports use Conv2D's own dilations; training keeps space-to-batch (CPU has no dilated gradient)."""
    import tensorflow as tf

    net = deeplab.create(deeplab.NetworkSpec(backbone="small", aspp_depth=deeplab.DEFAULT_ASPP_DEPTH["small"]), seed=3)
    fn = deeplab.ServingModel(net).signatures()[deeplab.SIGNATURE_KEY]
    ops = {op.type for op in fn.graph.get_operations()}
    assert "SpaceToBatchND" not in ops and "Conv2D" in ops
    dilated = [op for op in fn.graph.get_operations() if op.type == "Conv2D" and op.get_attr("dilations")[1] > 1]
    assert len(dilated) == 1 + len(net.spec.atrous_rates)  # the backbone's atrous layer and the ASPP branches

    @tf.function(autograph=False)
    def trained(x: tf.Tensor) -> tf.Tensor:
        return net.logits(x, training=True)

    assert "SpaceToBatchND" in {op.type for op in trained.get_concrete_function(tf.TensorSpec([1, 64, 64, 3])).graph.get_operations()}
    # The same sums: on images at the evaluation size and at the test-image size, the map is the
    # one space-to-batch gives.
    rng = np.random.default_rng(0)
    for size in (64, 129):
        images = rng.uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        native = net.logits(tf.constant(images)).numpy()
        reference = _logits_with_space_to_batch(net, tf.constant(images)).numpy()
        np.testing.assert_allclose(native, reference, rtol=1e-4, atol=1e-4)
        assert np.array_equal(native.argmax(-1), reference.argmax(-1))


def _logits_with_space_to_batch(net: deeplab.DeepLabV3, images):
    """The network's inference logits with every atrous layer as tf.nn.atrous_conv2d (the old graph)."""
    import tensorflow as tf

    def call(layer: deeplab.ConvBN, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if layer.rate == 1:
            return original(layer, x, training)
        y = tf.nn.atrous_conv2d(x, layer.kernel, layer.rate, padding="SAME")
        y = tf.nn.batch_normalization(y, layer.moving_mean, layer.moving_variance, layer.beta, layer.gamma,
                                      deeplab.BN_EPSILON)
        return tf.nn.relu(y) if layer.relu else y

    original = deeplab.ConvBN.__call__
    deeplab.ConvBN.__call__ = call
    try:
        return net.logits(images)
    finally:
        deeplab.ConvBN.__call__ = original


def test_a_network_built_for_a_restore_has_zero_kernels_until_restored(tmp_path) -> None:
    import tensorflow as tf

    from lifecycle.networks import builders as networks

    p = networks.plan({"builder": "deeplab_v3", "backbone": "small"}, None, "network")
    trained = networks.build(p)
    assert any(np.any(v.numpy()) for v in trained.variables if "kernel" in v.name)
    prefix = tf.train.Checkpoint(model=trained).write(str(tmp_path / "ckpt-1"))
    blank = networks.build(p, restoring=True)
    assert not networks.restoring()  # only while the builder runs
    assert all(not np.any(v.numpy()) for v in blank.variables if "kernel" in v.name)
    export.restore_strict(blank, tmp_path / "ckpt-1")
    assert prefix and all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(trained.variables, blank.variables, strict=True))
