"""mlc: a model-version lifecycle manager for TensorFlow Serving."""

__version__ = "0.1.0"
