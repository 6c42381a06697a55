"""Model management: the manager (versions, states, labels), loaders (SavedModel, TFLite, remote), plans,
batching, tf.Example inputs and tensors."""
