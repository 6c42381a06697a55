"""Export a segmentation network the way the classic seed tutorial did: TF1 ``SavedModelBuilder``.

    python examples/byo/seed_export.py EXPORT_DIR

Signature ``predict_images`` (method ``tensorflow/serving/predict``): inputs ``images`` float32
[-1,-1,-1,3] (RGB in [0, 255]), ``height`` and ``width`` int32 [1]; output ``segmentation_map``
int32 [-1,-1,-1] (class ids at the requested size). The network here is two convolutions with
seeded random weights; in the tutorial it is DeepLab restored from a trained checkpoint with
``tf.compat.v1.train.Saver().restore(sess, ckpt)`` before ``builder.save()``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tensorflow as tf


def export(
    path: str | Path,
    as_text: bool = False,
    num_classes: int = 21,
    seed: int = 0,
    signature_name: str = "predict_images",
    images_dtype: str = "float32",
    method_name: str = "tensorflow/serving/predict",
) -> Path:
    """Write the SavedModel to ``path`` (which must not exist); returns ``path``."""
    v1 = tf.compat.v1
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.as_dtype(images_dtype), shape=(None, None, None, 3), name="images")
        height = v1.placeholder(tf.int32, shape=(1,), name="height")
        width = v1.placeholder(tf.int32, shape=(1,), name="width")
        w1 = v1.Variable(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32), name="conv1/weights")
        w2 = v1.Variable(rng.normal(0, 0.3, (1, 1, 8, num_classes)).astype(np.float32), name="logits/weights")
        x = tf.cast(images, tf.float32) / 127.5 - 1.0
        x = tf.nn.relu(tf.nn.conv2d(x, w1, strides=2, padding="SAME"))
        logits = tf.nn.conv2d(x, w2, strides=1, padding="SAME")
        logits = tf.image.resize(logits, tf.concat([height, width], 0), method="bilinear")
        segmentation_map = tf.argmax(logits, axis=3, output_type=tf.int32, name="segmentation_map")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            info = v1.saved_model.utils.build_tensor_info
            signature = v1.saved_model.signature_def_utils.build_signature_def(
                inputs={"images": info(images), "height": info(height), "width": info(width)},
                outputs={"segmentation_map": info(segmentation_map)},
                method_name=method_name,
            )
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={signature_name: signature},
                                                 strip_default_attrs=True)
            builder.save(as_text=as_text)
    return Path(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help="Folder to write the SavedModel into (must not exist).")
    print(export(parser.parse_args().export_dir))
