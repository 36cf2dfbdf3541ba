"""Backends: one module per engine, each a subclass of `base.BaseBackend`."""
