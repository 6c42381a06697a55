"""Checkpoint -> version: checkpoints, networks, export, validation, metrics, warmup, watch."""
