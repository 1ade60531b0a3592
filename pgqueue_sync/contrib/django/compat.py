"""Django's Tasks framework, from wherever this Django has it: ``django.tasks`` (Django 6 and
later), else the ``django-tasks`` backport (module ``django_tasks``, for Django 4.2 to 5.2).

Both have the same API; only the name of the invalid-task error differs (``InvalidTask``,
``InvalidTaskError`` in the backport), exported here as ``InvalidTask``. Types are checked
against ``django.tasks`` (django-stubs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "DEFAULT_TASK_BACKEND_ALIAS",
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

if TYPE_CHECKING:
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    FRAMEWORK = "django.tasks"
else:
    try:
        from django.tasks import (
            DEFAULT_TASK_BACKEND_ALIAS,
            Task,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            task_backends,
        )
    except ImportError:
        try:
            from django_tasks import (
                DEFAULT_TASK_BACKEND_ALIAS,
                TaskContext,
                TaskResult,
                TaskResultStatus,
                task_backends,
            )
        except ImportError:
            from pgqueue_sync.errors import ConfigurationError

            raise ConfigurationError(
                "pgqueue_sync.contrib.django needs Django's Tasks framework: Django 6 has it "
                "(django.tasks); for Django 4.2 to 5.2 install its backport, django-tasks "
                '(pip install "pgqueue-sync[django]")'
            ) from None
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json

        FRAMEWORK = "django_tasks"
    else:
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TaskError
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json

        FRAMEWORK = "django.tasks"
