"""The example's tasks: Django's ``@task`` functions (``django.tasks`` in Django 6, the
``django-tasks`` backport before), run by ``manage.py pgq_worker``."""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:  # Django 4.2 to 5.2: the backport
    from django_tasks import task  # type: ignore[no-redef]

from .models import Signup


@task(queue_name="emails", priority=10)
def send_welcome(signup_id: int) -> str:
    """Mark the signup welcomed (an email would be sent here); return what was sent."""
    signup = Signup.objects.get(pk=signup_id)
    signup.welcomed = True
    signup.save(update_fields=["welcomed"])
    return f"welcome, {signup.email}"


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def refuse(reason: str) -> None:
    raise ValueError(reason)
