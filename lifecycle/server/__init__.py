"""mlc-model-server: an embedded TensorFlow-Serving-compatible model server.

Layers, from the bottom up:

- ``loader``   one SavedModel version (TF1, ``.pbtxt``, TF2, Keras) in a TF1 session, its
               signatures, warmup replay; ``Servable.run`` is the one place a signature runs
               (batching, issue 4, wraps it per servable as TF Serving's BatchingSession does);
- ``manager``  file-system source, version policies, aspired versions, availability-preserving
               load/unload, retries, states, labels, reload;
- ``core``     TF Serving's Predict / GetModelMetadata / GetModelStatus / ReloadConfig semantics
               and messages, raising ``lifecycle.errors`` exceptions;
- ``grpc_api`` and ``rest_api``   thin transports, each mapping errors to codes in one place;
- ``main``     tensorflow_model_server's command line and ``create_server`` for code.

Run it as ``mlc-model-server --model_config_file=configs/models.config --rest_api_port=8501``
(or ``python -m lifecycle.server.main ...``); embed it with
``lifecycle.server.main.create_server(ServerOptions(...))``.
"""
