"""DeepLab-v3 network, VOC classes and palette, and the procedural data set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lifecycle.build import deeplab, export
from lifecycle.errors import ConfigError
from tests.support.homes import CONFIGS


def test_voc_classes_and_palette() -> None:
    assert len(deeplab.VOC_CLASSES) == 21
    assert deeplab.VOC_CLASSES[15] == "person" and deeplab.VOC_CLASSES[20] == "tvmonitor"
    p = deeplab.voc_palette()
    assert p.shape == (256, 3)
    assert p[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert p[15].tolist() == [192, 128, 128]
    assert p[255].tolist() == [224, 224, 192]
    assert deeplab.class_name(21, 25) == "class_21"


def test_synthetic_scenes_are_deterministic() -> None:
    s = deeplab.SyntheticSet(seed=3, count=4, size=32)
    a_img, a_lab = s.arrays()
    b_img, b_lab = s.arrays()
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    # Scene i depends only on (seed, i), not on how many are drawn.
    one_img, _ = deeplab.SyntheticSet(seed=3, count=1, size=32).arrays(start=2)
    assert np.array_equal(one_img[0], a_img[2])
    assert a_img.dtype == np.float32 and 0 <= a_img.min() and a_img.max() <= 255
    assert set(np.unique(a_lab)) <= {0, *deeplab.DEMO_CLASSES}
    assert not np.array_equal(deeplab.SyntheticSet(seed=4, count=4, size=32).arrays()[0], a_img)


def test_shipped_test_image_is_the_generated_one() -> None:
    shipped = np.asarray(Image.open(CONFIGS / "test_image.png").convert("RGB"))
    assert np.array_equal(shipped, deeplab.demo_test_image())


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

    net = deeplab.build(deeplab.NetworkSpec(backbone=backbone, output_stride=stride,
                                            aspp_depth=deeplab.DEFAULT_ASPP_DEPTH[backbone]))
    images = tf.zeros([2, 64, 96, 3])
    assert net.logits(images).shape == (2, 64 // stride, 96 // stride, 21)
    serving = deeplab.ServingModel(net)
    mask = serving.predict_images(images, tf.constant([50]), tf.constant([70]))["segmentation_map"]
    assert mask.shape == (2, 50, 70) and mask.dtype == tf.int32


def test_resnet50_uses_atrous_rates_after_output_stride() -> None:
    import tensorflow as tf

    net = deeplab.build(deeplab.NetworkSpec(backbone="resnet50", aspp_depth=256))
    # Block4 (the last three bottlenecks) gives up its stride for rate 2, as in the paper.
    assert [b.conv._rate for b in net.backbone.blocks] == [1] * 13 + [2, 2, 2]
    assert net.logits(tf.zeros([1, 64, 96, 3])).shape == (1, 4, 6, 21)
    assert len(net.variables) == len(export.variable_keys(net))
