"""Driving servers: the TF Serving model config, the client, the fleet of processes."""
