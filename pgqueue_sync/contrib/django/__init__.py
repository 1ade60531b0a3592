"""Django: a backend of Django's Tasks framework on the queue (``pip install
"pgqueue-sync[django]"``; docs/django.md).

::

    INSTALLED_APPS = [..., "pgqueue_sync.contrib.django"]   # migrate installs the queue
    TASKS = {
        "default": {
            "BACKEND": "pgqueue_sync.contrib.django.PgQueueBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"SCHEMA": "pgqueue"},
        }
    }

    @task(queue_name="emails")        # django.tasks (Django 6), or django_tasks (the backport)
    def send_welcome(user_id: int) -> str: ...

    with transaction.atomic():
        user = User.objects.create(...)
        result = send_welcome.enqueue(user.id)   # a job, committed with the user, or not at all

and ``python manage.py pgq_worker`` runs them; ``python manage.py pgq status|jobs|...`` are
the ``pgq-sync`` commands on the backend's queue.
"""

from __future__ import annotations

from .backend import PgQueueBackend

__all__ = ["PgQueueBackend"]
