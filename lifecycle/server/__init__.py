"""mlc-model-server: an embedded TensorFlow-Serving-compatible model server.

The public API is :func:`create_server` with :class:`ServerOptions`, returning a
:class:`RunningServer` (bound ``grpc_port`` / ``rest_port``, ``stop()``)::

    from lifecycle.server import ServerOptions, create_server

Layers, from the bottom up:

- ``config.textproto``  the one reader of text-format protobuf files; ``config.model_configs``
               the model list's checks, its labels and each model's aspired versions;
- ``models.loader``   one SavedModel version (TF1, ``.pbtxt``, TF2, Keras) in a TF1 session, its
               signatures, warmup replay; ``Servable.run`` is the one place a signature runs
               (``models.batching`` wraps it per servable as TF Serving's BatchingSession does);
               ``models.tflite`` the same for a version's ``model.tflite``;
- ``models.manager``  file-system source, version policies, aspired versions, availability-preserving
               load/unload, retries, states (``ServableState``), labels, reload;
- ``core``     TF Serving's Predict / GetModelMetadata / GetModelStatus / ReloadConfig semantics
               and messages, raising ``lifecycle.errors`` exceptions;
- ``grpc`` and ``rest``   thin transports, each mapping errors to codes in one place; REST's
               paths are one table, ``rest.routes.ROUTES``;
- ``app``      ``create_server``: options to a running server; ``config.config_file`` reads and
               watches ``--model_config_file``;
- ``config.flags``    tensorflow_model_server's command line; ``main`` the console entry point.

Run it as ``mlc-model-server --model_config_file=configs/models.config --rest_api_port=8501``
(or ``python -m lifecycle.server.main ...``).
"""

from lifecycle.server.app import RunningServer, ServerOptions, create_server

__all__ = ["RunningServer", "ServerOptions", "create_server"]
