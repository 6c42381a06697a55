"""The gRPC transport: the official servicers (thin over the core) and the endpoint (TCP, Unix socket, health)."""
