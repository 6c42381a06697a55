"""Signed webhooks: sending the events of the store's outbox to the receivers of configs/hooks.yaml.

Events are queued by :mod:`lifecycle.store.outbox` where each action is recorded; this package
sends them (:mod:`lifecycle.hooks.sender`): a JSON POST per event and receiver, signed like
GitHub's (``X-Mlc-Signature-256: sha256=<HMAC-SHA256 of the body>``), with a short timeout,
retried with backoff by later commands and by ``mlc hooks deliver``.
"""
