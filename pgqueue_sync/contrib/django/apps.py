"""The Django app of the queue: its migrations install and upgrade the queue's schema, its
management commands run workers (``pgq_worker``) and operate the queue (``pgq``)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["PgQueueConfig"]


class PgQueueConfig(AppConfig):
    """``pgqueue_sync.contrib.django`` in ``INSTALLED_APPS`` (app label ``pgqueue_sync``)."""

    name = "pgqueue_sync.contrib.django"
    label = "pgqueue_sync"
    verbose_name = "pgqueue-sync"
