"""Builders of small real SavedModels for tests and benchmarks.

Each builder writes one complete version folder (``saved_model.pb`` or ``.pbtxt`` plus
``variables/``) at ``path``, which must not exist yet, and returns ``path``. The models follow
TF Serving's own test model ``half_plus_two``: ``y = a * x + b`` with ``a = 0.5`` and
``b = 2.0`` held in variables, input ``x`` and output ``y`` of shape ``(None, 1)``, float32.
``scale`` and ``offset`` let a test tell versions apart by their answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _tf():  # imported lazily so that collecting tests stays cheap
    import tensorflow as tf

    return tf


def build_half_plus_two_tf1(
    path: str | Path,
    as_text: bool = False,
    scale: float = 0.5,
    offset: float = 2.0,
    signature_name: str = "serving_default",
    method_name: str = "tensorflow/serving/predict",
) -> Path:
    """TF1 graph-mode export through SavedModelBuilder (binary or ``saved_model.pbtxt``)."""
    tf = _tf()
    v1 = tf.compat.v1
    path = Path(path)
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(np.float32(scale), name="a")
        b = v1.Variable(np.float32(offset), name="b")
        x = v1.placeholder(tf.float32, shape=(None, 1), name="x")
        y = tf.add(tf.multiply(a, x), b, name="y")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            signature = v1.saved_model.signature_def_utils.build_signature_def(
                inputs={"x": v1.saved_model.utils.build_tensor_info(x)},
                outputs={"y": v1.saved_model.utils.build_tensor_info(y)},
                method_name=method_name,
            )
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map={signature_name: signature}, strip_default_attrs=True
            )
            builder.save(as_text=as_text)
    return path


def build_half_plus_two_tf2(path: str | Path, scale: float = 0.5, offset: float = 2.0) -> Path:
    """TF2 export of a tf.Module through ``tf.saved_model.save``."""
    tf = _tf()
    path = Path(path)

    class HalfPlusTwo(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(np.float32(scale), name="a")
            self.b = tf.Variable(np.float32(offset), name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x):  # noqa: ANN001
            return {"y": self.a * x + self.b}

    module = HalfPlusTwo()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def build_keras(path: str | Path, scale: float = 0.5, offset: float = 2.0) -> Path:
    """Keras 3 export (``model.export``) of a one-unit Dense layer computing scale*x+offset."""
    import keras

    path = Path(path)
    inputs = keras.Input(shape=(1,), name="x", dtype="float32")
    dense = keras.layers.Dense(1, name="y")
    outputs = dense(inputs)
    model = keras.Model(inputs, outputs)
    dense.set_weights([np.array([[scale]], np.float32), np.array([offset], np.float32)])
    model.export(str(path), verbose=False)
    return path


def build_string_model(path: str | Path) -> Path:
    """TF1 export with a string input ``text`` (None,) and outputs ``length`` and ``echo_bytes``.

    The ``_bytes`` suffix makes TF Serving's REST API answer that output base64-encoded.
    """
    tf = _tf()
    v1 = tf.compat.v1
    path = Path(path)
    graph = tf.Graph()
    with graph.as_default():
        text = v1.placeholder(tf.string, shape=(None,), name="text")
        length = tf.strings.length(text, name="length")
        echo = tf.identity(text, name="echo")
        with v1.Session(graph=graph) as sess:
            builder = v1.saved_model.Builder(str(path))
            info = v1.saved_model.utils.build_tensor_info
            signature = v1.saved_model.signature_def_utils.build_signature_def(
                inputs={"text": info(text)},
                outputs={"length": info(length), "echo_bytes": info(echo)},
                method_name="tensorflow/serving/predict",
            )
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


def build_segmenter(path: str | Path, num_classes: int = 21, width: int = 8) -> Path:
    """A small DeepLab-shaped conv net: uint8 image (None, H, W, 3) -> per-pixel class logits.

    Signature ``serving_default``: input ``images`` (uint8, NHWC), outputs ``logits`` (float32,
    same H and W, ``num_classes`` channels) and ``classes`` (int64, argmax per pixel).
    """
    tf = _tf()
    path = Path(path)
    rng = np.random.default_rng(0)

    class Segmenter(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = tf.Variable(rng.normal(0, 0.2, (3, 3, 3, width)).astype(np.float32))
            self.w2 = tf.Variable(rng.normal(0, 0.2, (3, 3, width, width)).astype(np.float32))
            self.w3 = tf.Variable(rng.normal(0, 0.2, (1, 1, width, num_classes)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def serve(self, images):  # noqa: ANN001
            x = tf.cast(images, tf.float32) / 127.5 - 1.0
            size = tf.shape(x)[1:3]
            x = tf.nn.relu(tf.nn.conv2d(x, self.w1, strides=2, padding="SAME"))
            x = tf.nn.relu(tf.nn.conv2d(x, self.w2, strides=2, padding="SAME", dilations=1))
            x = tf.nn.conv2d(x, self.w3, strides=1, padding="SAME")
            logits = tf.image.resize(x, size, method="bilinear")
            return {"logits": logits, "classes": tf.argmax(logits, axis=-1)}

    module = Segmenter()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def write_warmup_requests(
    version_dir: str | Path,
    requests: list[object] | None = None,
    model_name: str = "half_plus_two",
    raw: bytes | None = None,
) -> Path:
    """Write ``assets.extra/tf_serving_warmup_requests`` as TFRecord of PredictionLog.

    ``requests`` are PredictRequest protos (default: one half_plus_two request); ``raw`` writes
    the given bytes instead, to make a malformed file.
    """
    tf = _tf()
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    target = Path(version_dir) / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        target.write_bytes(raw)
        return target
    if requests is None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
        requests = [request]
    with tf.io.TFRecordWriter(str(target)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return target


def build_half_plus_two_examples(path: str | Path, scale: float = 0.5, offset: float = 2.0) -> Path:
    """TF1 export in the pattern of TF Serving's own test model, with tf.Example signatures.

    Serialized ``tf.Example`` protos (features ``x`` and ``x2``, float, one value each) go in
    through input alias ``inputs``:

    - ``regress_x_to_y``: regress, ``outputs`` = scale * x + offset (shape [N, 1]);
    - ``regress_x2_to_y3``: regress, ``outputs`` = scale * x2 + 3 (shape [N]);
    - ``classify_x_to_y``: classify, ``scores`` only = scale * x + offset (shape [N, 1]);
    - ``classify_labels``: classify, ``classes`` ["neg", "pos"] and ``scores`` [-y, y];
    - ``serving_default``: predict, input ``x`` (float placeholder) to ``y``.
    """
    tf = _tf()
    v1 = tf.compat.v1
    path = Path(path)
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(np.float32(scale), name="a")
        b = v1.Variable(np.float32(offset), name="b")
        serialized = v1.placeholder(tf.string, shape=(None,), name="tf_example")
        features = v1.io.parse_example(serialized, {
            "x": v1.io.FixedLenFeature([1], tf.float32),
            "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
        })
        y = tf.add(tf.multiply(a, features["x"]), b, name="y_from_examples")
        y3 = tf.reshape(tf.multiply(a, features["x2"]) + 3.0, [-1], name="y3")
        scores = tf.concat([-y, y], axis=1, name="scores")
        classes = tf.tile(tf.constant([["neg", "pos"]]), tf.stack([tf.shape(y)[0], 1]), name="classes")
        x = v1.placeholder(tf.float32, shape=(None, 1), name="x")
        y_predict = tf.add(tf.multiply(a, x), b, name="y")
        sig = v1.saved_model.signature_def_utils
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(sess, ["serve"], strip_default_attrs=True, signature_def_map={
                "regress_x_to_y": sig.regression_signature_def(serialized, y),
                "regress_x2_to_y3": sig.regression_signature_def(serialized, y3),
                "classify_x_to_y": sig.classification_signature_def(serialized, None, y),
                "classify_labels": sig.classification_signature_def(serialized, classes, scores),
                "serving_default": sig.predict_signature_def({"x": x}, {"y": y_predict}),
            })
            builder.save()
    return path


def build_examples_tf2(path: str | Path, scale: float = 0.5, offset: float = 2.0) -> Path:
    """TF2 export whose ``classify_x_to_y`` and ``regress_x_to_y`` each have their own input.

    ``tf.saved_model.save`` gives every signature its own placeholder for ``inputs``
    (serialized ``tf.Example`` protos with float feature ``x``): classify returns ``scores`` =
    scale * x + offset, regress ``outputs`` = the same minus one, both of shape [N, 1].
    """
    tf = _tf()
    spec = tf.TensorSpec([None], tf.string, name="inputs")

    class Module(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(np.float32(scale))
            self.b = tf.Variable(np.float32(offset))

        def _y(self, inputs: object) -> object:
            x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
            return self.a * x + self.b

        @tf.function(input_signature=[spec])
        def classify(self, inputs: object) -> dict[str, object]:
            return {"scores": self._y(inputs)}

        @tf.function(input_signature=[spec])
        def regress(self, inputs: object) -> dict[str, object]:
            return {"outputs": self._y(inputs) - 1.0}

    module = Module()
    tf.saved_model.save(module, str(path), signatures={
        "classify_x_to_y": module.classify, "regress_x_to_y": module.regress})
    return Path(path)


def build_spinner(path: str | Path) -> Path:
    """TF1 model whose signature ``serving_default`` spins ``n`` loop iterations, then echoes n.

    Input ``n`` (int64, shape [None]); output ``n`` (int64). With a large ``n`` a request runs
    for seconds, which is how tests see deadlines cut a run short.
    """
    tf = _tf()
    v1 = tf.compat.v1
    path = Path(path)
    graph = tf.Graph()
    with graph.as_default():
        n = v1.placeholder(tf.int64, shape=(None,), name="n")
        loop = tf.while_loop(lambda i: i < tf.reduce_max(n), lambda i: i + 1, [tf.constant(0, tf.int64)])
        count = tf.nest.flatten(loop)[0]
        out = tf.identity(n + 0 * count, name="out")
        with v1.Session(graph=graph) as sess:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={
                "serving_default": v1.saved_model.signature_def_utils.predict_signature_def({"n": n}, {"n": out}),
            })
            builder.save()
    return path


def build_batch_reporter(path: str | Path) -> Path:
    """TF1 half_plus_two that also reports the batch it ran in.

    Input ``x`` (float, [None, 1]); outputs ``y`` = 0.5 * x + 2 and ``batch`` (int32, [None]):
    every row gets the 0th dimension of the tensor the session actually ran on, so a test can
    see requests being merged (and padded) by server-side batching.
    """
    tf = _tf()
    v1 = tf.compat.v1
    path = Path(path)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=(None, 1), name="x")
        y = tf.add(tf.multiply(0.5, x), 2.0, name="y")
        rows = tf.shape(x)[0:1]
        batch = tf.fill(rows, rows[0], name="batch")
        with v1.Session(graph=graph) as sess:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={
                "serving_default": v1.saved_model.signature_def_utils.predict_signature_def(
                    {"x": x}, {"y": y, "batch": batch}),
            })
            builder.save()
    return path


def build_mlp(path: str | Path, width: int = 1024, depth: int = 4) -> Path:
    """TF1 multi-layer perceptron ``x`` (float, [None, width]) -> ``y`` (float, [None, width]).

    ``depth`` dense layers of ``width`` x ``width`` weights: a single row costs a pass over
    every weight, so merging rows into one run (server-side batching) pays off.
    """
    tf = _tf()
    v1 = tf.compat.v1
    path = Path(path)
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=(None, width), name="x")
        h = x
        for i in range(depth):
            w = v1.Variable(rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32), name=f"w{i}")
            h = tf.nn.relu(tf.matmul(h, w))
        y = tf.identity(h, name="y")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={
                "serving_default": v1.saved_model.signature_def_utils.predict_signature_def({"x": x}, {"y": y}),
            })
            builder.save()
    return path


def write_tflite_model(version_dir: str | Path, scale: float = 0.5, offset: float = 2.0,
                       signatures: str = "runners") -> Path:
    """Add ``model.tflite`` (TFLite conversion of half_plus_two with these weights) to a version folder.

    Giving it weights other than the SavedModel's lets a test tell which of the two answered.
    ``signatures``: ``runners`` keeps the converter's signature runners; ``none`` strips them
    (a model with only input and output tensors); ``metadata`` strips them and stores a
    SignatureDef ``predict_y`` (x -> y) in the model's ``signature_defs_metadata`` instead.
    """
    import tempfile

    tf = _tf()
    with tempfile.TemporaryDirectory() as tmp:
        source = build_half_plus_two_tf2(Path(tmp) / "model", scale=scale, offset=offset)
        data = tf.lite.TFLiteConverter.from_saved_model(str(source)).convert()
    if signatures != "runners":
        data = _rewrite_tflite_signatures(data, with_metadata=signatures == "metadata")
    target = Path(version_dir) / "model.tflite"
    target.write_bytes(data)
    return target


def _rewrite_tflite_signatures(data: bytes, with_metadata: bool) -> bytes:
    """Drop a TFLite model's signature runners; optionally store a SignatureDef in its metadata."""
    from flatbuffers import flexbuffers
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    subgraph = model.subgraphs[0]
    names = [t.name.decode() for t in subgraph.tensors]
    input_name, output_name = names[subgraph.inputs[0]], names[subgraph.outputs[0]]
    model.signatureDefs = []
    if with_metadata:
        signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        signature.inputs["x"].name = input_name
        signature.inputs["x"].dtype = 1
        signature.outputs["y"].name = output_name
        signature.outputs["y"].dtype = 1
        builder = flexbuffers.Builder()
        with builder.Map():
            builder.Key("predict_y")
            # A FlexBuffer string holding the serialized proto, as TFLite's SetSignatureDefMap
            # writes it (Builder.String would UTF-8-encode a str; these are raw bytes).
            builder._WriteBlob(signature.SerializeToString(), append_zero=True, type_=flexbuffers.Type.STRING)
        buffer = schema.BufferT()
        buffer.data = list(builder.Finish())
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = "signature_defs_metadata"
        entry.buffer = len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


# --- segmentation SavedModels a user brings (mlc register PATH) -----------------------------


def build_seed_deeplab_tf1(path: str | Path, **knobs: object) -> Path:
    """The classic seed tutorial's export (TF1 ``SavedModelBuilder``, ``predict_images``), written by
    ``examples/byo/seed_export.py``; ``knobs`` (signature_name, images_dtype, method_name, as_text,
    seed) break the contract on purpose for the refusal tests."""
    import importlib.util

    from tests.support.homes import REPO_ROOT

    spec = importlib.util.spec_from_file_location("seed_export", REPO_ROOT / "examples" / "byo" / "seed_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.export(path, **knobs)


def build_keras_segmenter_saved(path: str | Path, num_classes: int = 21, seed: int = 0,
                                track_variables: bool = True) -> Path:
    """A Keras segmenter saved with ``tf.saved_model.save`` and a ``predict_images`` signature.

    With ``track_variables`` the saved root also tracks the backing tf.Variables, without which
    TF Serving's loader cannot restore a Keras 3 model (keras-team/keras#19274).
    """
    tf = _tf()
    from tests.support import usernets

    model = usernets.build_keras_segmenter(num_classes, 8, seed)
    root = tf.Module()
    root.model = model
    if track_variables:
        root.variables_ = [v.value for v in model.variables]
    tf.saved_model.save(root, str(path), signatures=usernets.serve_segmenter(model))
    return Path(path)


def build_keras_segmenter_export(path: str | Path, num_classes: int = 21, seed: int = 0) -> Path:
    """The same Keras segmenter through Keras's own export (``keras.export.ExportArchive``)."""
    import keras

    from tests.support import usernets

    model = usernets.build_keras_segmenter(num_classes, 8, seed)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("predict_images", usernets.serve_segmenter(model)["predict_images"])
    archive.write_out(str(path), verbose=False)
    return Path(path)
