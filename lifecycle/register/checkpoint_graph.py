"""A checkpoint's network variables, found through its object graph rather than by key name.

TensorFlow names each saved variable by the first path a breadth-first walk from the
checkpoint's root reaches it by. A network alone (``tf.train.Checkpoint(model=net)``) names its
kernel ``model/encoder/conv/kernel``; a trainer that also saves a Keras 3 optimizer
(``Checkpoint(model=net, optimizer=opt)``) tracks the same variable as
``optimizer/_trainable_variables/0``, a shorter path, and that becomes its key. The object graph
still records the edge ``model -> encoder -> conv -> kernel``, so walking it from the network's
own node gives every variable the name it has in a checkpoint of the network alone, beside the
key it was stored under.

Checkpoints without an object graph (TF1 name-based ones) fall back to the key names.
This module imports TensorFlow lazily.
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: The suffix of a variable's value in a checkpoint key.
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def network_keys(reader: Any, root: str) -> dict[str, str]:
    """Name in a checkpoint of the network alone -> the key it is stored under, for every
    variable reachable from the root's child ``root`` (``reader``: ``tf.train.load_checkpoint``)."""
    shapes = reader.get_variable_to_shape_map()
    if _GRAPH_KEY not in shapes:
        return {k: k for k in shapes if k.startswith(root + "/") and k.endswith(VALUE_SUFFIX)}
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_GRAPH_KEY))
    start = next((c.node_id for c in graph.nodes[0].children if c.local_name == root), None)
    if start is None:
        return {}
    names: dict[str, str] = {}
    seen = {start}
    queue: deque[tuple[int, str]] = deque([(start, root)])
    while queue:  # breadth first, children in their recorded order: TensorFlow's own naming
        node_id, path = queue.popleft()
        node = graph.nodes[node_id]
        for attribute in node.attributes:
            if attribute.name == "VARIABLE_VALUE":
                names[path + VALUE_SUFFIX] = attribute.checkpoint_key
        for child in node.children:
            if child.node_id not in seen:
                seen.add(child.node_id)
                queue.append((child.node_id, f"{path}/{_escape(child.local_name)}"))
    return names


def _escape(name: str) -> str:
    # As TensorFlow escapes a local name inside a key: "." doubled, "/" as ".S".
    return name.replace(".", "..").replace("/", ".S")
