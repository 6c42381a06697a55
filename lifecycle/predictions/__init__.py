"""Asking served or registered versions: predict, diff, and the pictures of both."""
