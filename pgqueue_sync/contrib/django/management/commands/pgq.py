"""``python manage.py pgq COMMAND``: the pgq-sync commands on a PgQueueBackend's queue (see
:mod:`pgqueue_sync.contrib.django.cli`)."""

from __future__ import annotations

from pgqueue_sync.contrib.django.cli import ClickCommand, pgq


class Command(ClickCommand):
    help = "The pgq-sync commands (status, jobs, requeue, ...) on a PgQueueBackend's queue."
    click_command = pgq
