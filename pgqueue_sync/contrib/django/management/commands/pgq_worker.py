"""``python manage.py pgq_worker [options]``: run workers of a PgQueueBackend's tasks (see
:mod:`pgqueue_sync.contrib.django.cli`)."""

from __future__ import annotations

from pgqueue_sync.contrib.django.cli import ClickCommand, pgq_worker


class Command(ClickCommand):
    help = "Run workers of the tasks of a PgQueueBackend (pgqueue-sync); --help for options."
    click_command = pgq_worker
