"""The REST transport: the route table (routes), its endpoints, the HTTP handler, connections, and the JSON codec."""
