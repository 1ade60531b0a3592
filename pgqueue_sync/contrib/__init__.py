"""Integrations with web frameworks: :mod:`pgqueue_sync.contrib.flask` (the ``flask`` extra)."""
