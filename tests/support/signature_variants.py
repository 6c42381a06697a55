"""half_plus_two SavedModels whose serving signature differs from the plain one, for the
signature-compatibility gate: an input renamed, another dtype or shape, or an output added."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_signature_variant(
    path: str | Path,
    offset: float = 2.0,
    input_name: str = "x",
    input_dtype: str = "float32",
    input_shape: tuple[int | None, ...] | None = (None, 1),
    extra_output: str | None = None,
) -> Path:
    """``y = 0.5 * x + offset`` (TF1, signature ``serving_default``) with the input's name, dtype
    or shape changed, or one more output (``extra_output``: ``y`` doubled)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    path = Path(path)
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(np.float32(0.5), name="a")
        b = v1.Variable(np.float32(offset), name="b")
        x = v1.placeholder(tf.as_dtype(input_dtype), shape=input_shape, name=input_name)
        y = tf.add(tf.multiply(a, tf.cast(x, tf.float32)), b, name="y")
        outputs = {"y": v1.saved_model.utils.build_tensor_info(y)}
        if extra_output:
            outputs[extra_output] = v1.saved_model.utils.build_tensor_info(tf.multiply(y, 2.0, name=extra_output))
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            signature = v1.saved_model.signature_def_utils.build_signature_def(
                inputs={input_name: v1.saved_model.utils.build_tensor_info(x)}, outputs=outputs,
                method_name="tensorflow/serving/predict",
            )
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map={"serving_default": signature}, strip_default_attrs=True
            )
            builder.save()
    return path
