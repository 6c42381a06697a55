"""The mlc home: paths, definitions and the repository behind one :class:`~lifecycle.store.base.Store`.

The package holds no code of its own, so importing one of its modules loads only what that
module needs. :func:`lifecycle.store.backends.open_store` chooses the implementation.
"""
