"""A web dashboard for the queue (``pip install "pgqueue-sync[web]"``): Flask, server-rendered.

- ``create_blueprint``: mount it in a Flask application, behind its own authentication.
- ``create_app``: the dashboard as a WSGI application of its own, with an optional access
  token; ``pgq-sync web`` serves it with waitress.

Importing ``pgqueue_sync`` never imports this package (nor Flask).
"""

from __future__ import annotations

from .app import create_app
from .blueprint import DashboardOptions, create_blueprint

__all__ = ["DashboardOptions", "create_app", "create_blueprint"]
