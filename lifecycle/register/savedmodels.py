"""SavedModel folders as a source of versions: recognise, fingerprint, read and copy them.

``mlc register PATH`` takes a SavedModel folder (``saved_model.pb`` or ``saved_model.pbtxt``,
plus ``variables/``) as readily as a checkpoint. mlc never changes that folder: it copies it into
a staging folder, validates the copy exactly as it validates its own exports (contract, round
trip through TensorProtos, golden digest, metrics, warmup records written into the copy), and
publishes the copy. Its identity is the digest of every file (relative path and content), so
the same content registered twice gives back the existing version.

The kind of export is read from the SavedModel itself:

- ``savedmodel-tf1``: a TF1 graph (``SavedModelBuilder``; no object graph);
- ``savedmodel-keras``: Keras ``model.export()`` (an ExportArchive root) or a tf.keras 2
  SavedModel (``keras_metadata.pb``);
- ``savedmodel-tf2``: any other ``tf.saved_model.save`` export.

This module reads protos with TensorFlow's generated classes (``tensorflow.core``), so it is
imported only by commands that load TensorFlow anyway.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import CheckpointError
from lifecycle.store.files import atomic_write_bytes

PROTO_FILES = ("saved_model.pb", "saved_model.pbtxt")
# Attributes Keras 3's ExportArchive gives the root object of model.export().
_KERAS_EXPORT_ROOT = {"_all_variables", "non_trainable_variables", "_misc_assets"}


def is_saved_model(path: Path) -> bool:
    """A folder holding ``saved_model.pb`` or ``saved_model.pbtxt``."""
    return path.is_dir() and any((path / name).is_file() for name in PROTO_FILES)


@dataclass(frozen=True)
class SavedModelRef:
    """A SavedModel folder the user named: where, its content digest and its kind."""

    path: Path
    digest: str
    kind: str
    files: int


def read_proto(folder: Path) -> Any:
    """The SavedModel proto of a folder (binary or text format); CheckpointError if unreadable."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    binary, text = folder / PROTO_FILES[0], folder / PROTO_FILES[1]
    try:
        if binary.is_file():
            sm.ParseFromString(binary.read_bytes())
        else:
            text_format.Parse(text.read_text(encoding="utf-8"), sm)
    except Exception as e:  # DecodeError, ParseError, UnicodeDecodeError, OSError: not a SavedModel
        name = binary.name if binary.is_file() else text.name
        raise CheckpointError(f"{folder / name} is not a readable SavedModel: {str(e).splitlines()[0][:200]}") from e
    return sm


def _kind(folder: Path, sm: Any) -> str:
    graphs = [mg for mg in sm.meta_graphs if "serve" in mg.meta_info_def.tags] or list(sm.meta_graphs)
    if not graphs or not graphs[0].object_graph_def.nodes:
        return "savedmodel-tf1"
    root = {c.local_name for c in graphs[0].object_graph_def.nodes[0].children}
    if (folder / "keras_metadata.pb").is_file() or _KERAS_EXPORT_ROOT <= root:
        return "savedmodel-keras"
    return "savedmodel-tf2"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def digest(folder: Path) -> tuple[str, int]:
    """sha256 over every file's relative path and content; and the number of files."""
    h = hashlib.sha256()
    files = _files(folder)
    for f in files:
        h.update(str(f.relative_to(folder)).encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return "sha256:" + h.hexdigest(), len(files)


def resolve(path: str | Path) -> SavedModelRef:
    """Check a SavedModel folder and fingerprint it (without changing it)."""
    folder = Path(path).resolve()
    sm = read_proto(folder)
    if not sm.meta_graphs:
        raise CheckpointError(f"SavedModel {folder} holds no meta graph")
    d, n = digest(folder)
    return SavedModelRef(folder, d, _kind(folder, sm), n)


def copy_into(ref: SavedModelRef, staged: Path) -> None:
    """Copy every file of the SavedModel into the (existing, empty) staging folder."""
    for entry in sorted(ref.path.iterdir()):
        target = staged / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)
    for folder, dirs, files in os.walk(staged):  # a read-only source must not make a read-only version
        for name in dirs + files:
            p = Path(folder) / name
            p.chmod(p.stat().st_mode | 0o200)


def set_method_names(target: Path, methods: dict[str, str]) -> None:
    """Give signatures TF Serving's Classify or Regress method names in a saved ``saved_model.pb``.

    ``tf.saved_model.save`` writes every signature as a Predict; TF Serving (with
    ``--enable_signature_method_name_check``) and clients that read the method expect a Classify
    signature to say so. The fingerprint is rewritten to match the changed file.
    """
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.saved_model import fingerprinting_utils

    pb = target / "saved_model.pb"
    sm = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    for graph in sm.meta_graphs:
        for key, method in methods.items():
            if key in graph.signature_def:
                graph.signature_def[key].method_name = method
    atomic_write_bytes(pb, sm.SerializeToString())
    if (target / "fingerprint.pb").exists():
        (target / "fingerprint.pb").unlink()
        fingerprinting_utils.write_fingerprint(str(target))


# --- the register flow of a SavedModel folder ---------------------------------------------
