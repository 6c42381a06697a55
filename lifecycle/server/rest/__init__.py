"""The REST transport: the route table and handler, connections, and the JSON codec (tensors in and out)."""
