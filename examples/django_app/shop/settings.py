"""Settings of the example. The database is ``PGQUEUE_DSN`` (a libpq conninfo or URI; else
libpq's defaults), its tables in ``SHOP_SCHEMA`` (else ``public``), the queue in
``PGQUEUE_SCHEMA`` (else ``public``)."""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

_params = {
    key: str(value) for key, value in conninfo_to_dict(os.environ.get("PGQUEUE_DSN", "")).items()
}

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
USE_TZ = True
ROOT_URLCONF = "shop.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = ["pgqueue_sync.contrib.django", "shop"]

DATABASES: dict[str, Any] = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _params.get("dbname", os.environ.get("PGDATABASE", "postgres")),
        "USER": _params.get("user", ""),
        "PASSWORD": _params.get("password", ""),
        "HOST": _params.get("host", ""),
        "PORT": _params.get("port", ""),
        "OPTIONS": {"options": f"-c search_path={os.environ.get('SHOP_SCHEMA', 'public')}"},
    }
}

TASKS: dict[str, Any] = {
    "default": {
        "BACKEND": "pgqueue_sync.contrib.django.PgQueueBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {
            "SCHEMA": os.environ.get("PGQUEUE_SCHEMA", "public"),
            "RUN_OPTIONS": {"workers": 2},
        },
    }
}
