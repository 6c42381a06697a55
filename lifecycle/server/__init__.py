"""mlc-model-server: an embedded TensorFlow-Serving-compatible model server."""
