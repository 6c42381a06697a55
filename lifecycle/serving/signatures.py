"""A SavedModel's serving signatures as plain data, read without TensorFlow.

``saved_model.pb`` is parsed with mlc's wire-compatible copy of the few SavedModel messages
that carry signatures (:mod:`lifecycle.serving.wire`), so ``mlc promote`` can compare a
candidate's signatures with stable's without the 3 s TensorFlow import. The result has the
shape :func:`lifecycle.register.validate.read_signatures` gives: ``{key: {"key", "method",
"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}}`` with TensorFlow's dtype names and
``None`` for a shape of unknown rank.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message, text_format

from lifecycle.errors import CorruptVersion
from lifecycle.serving.wire import messages

#: TensorFlow's names of the DataType values (``tf.dtypes.as_dtype(n).name``).
DTYPE_NAMES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 8: "complex64",
    9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128", 19: "float16", 22: "uint32", 23: "uint64",
}


def parse(data: bytes, where: str, text: bool = False) -> dict[str, dict[str, Any]]:
    """The signatures of the ``serve`` meta graph in ``saved_model.pb`` bytes (``text``: a .pbtxt)."""
    sm = messages.SavedModel()
    try:
        if text:
            text_format.Parse(data.decode("utf-8"), sm, allow_unknown_field=True, allow_unknown_extension=True)
        else:
            sm.ParseFromString(data)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as e:
        raise CorruptVersion(f"{where} is not a SavedModel: {e}") from e
    graphs = [mg for mg in sm.meta_graphs if "serve" in mg.meta_info_def.tags]
    if not graphs:
        raise CorruptVersion(f"{where} has no meta graph tagged 'serve'")
    out: dict[str, dict[str, Any]] = {}
    for key, sig in sorted(graphs[0].signature_def.items()):
        if key.startswith("__"):  # __saved_model_init_op and friends
            continue
        out[key] = {"key": key, "method": sig.method_name, "inputs": _specs(sig.inputs), "outputs": _specs(sig.outputs)}
    return out


def _specs(infos: Any) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "dtype": DTYPE_NAMES.get(info.dtype, f"dtype{info.dtype}"),
            "shape": None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim],
        }
        for name, info in sorted(infos.items())
    }
