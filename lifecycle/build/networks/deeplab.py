"""The built-in DeepLab-v3 as a builder (``builder: deeplab_v3`` is an alias of this module's ``build``).

The network itself, its training and its data live in :mod:`lifecycle.build.deeplab`.
"""

from __future__ import annotations

from typing import Any

from lifecycle.build import deeplab, networks


def build(**network: Any) -> deeplab.DeepLabV3:
    """A freshly initialised DeepLab-v3 from the definition's ``network`` keyword arguments.

    Its weights are zeros, not random draws, when a checkpoint is restored into it next.
    """
    return deeplab.build(deeplab.NetworkSpec.from_definition(network), random_init=not networks.restoring())


def serve(net: deeplab.DeepLabV3) -> dict[str, Any]:
    """The classic ``predict_images`` signature (images, height, width -> segmentation_map)."""
    return deeplab.ServingModel(net).signatures()
