"""``PgQueueBackend``: a backend of Django's Tasks framework on the queue (docs/django.md).

A task enqueued through it is a job of the entrypoint of its queue (``ENTRYPOINT_PREFIX`` +
queue name: ``django.default``), inserted on Django's own database connection, so that it
joins the transaction of ``transaction.atomic()``. The job's headers say which task to call
with which arguments (``{"django": {"task": "app.tasks.f", "queue": ..., "args": [...],
"kwargs": {...}}}``, kept in the log with each outcome); a worker (``manage.py pgq_worker``)
imports the task by its path and calls it; what it returns is the job's result. The result
id is the job id.
"""

from __future__ import annotations

import builtins
import inspect
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from traceback import format_exception
from typing import Any, cast

import psycopg
from django.conf import settings as django_settings
from django.core import checks
from django.db import close_old_connections, connections
from django.utils import timezone
from django.utils.module_loading import import_string
from psycopg.conninfo import make_conninfo

from pgqueue_sync import errors as queue_errors
from pgqueue_sync.admin_models import JobDetail
from pgqueue_sync.context import Context
from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.errors import (
    ConfigurationError,
    InvalidTaskArgumentsError,
    JobNotFoundError,
)
from pgqueue_sync.models import Job, JobStatus
from pgqueue_sync.options import run_overrides
from pgqueue_sync.qm import QueueManager
from pgqueue_sync.queries import Queries
from pgqueue_sync.registry import policies as checked_policies
from pgqueue_sync.settings import Settings, validate_entrypoint
from pgqueue_sync.task_arguments import TaskSignature

from .compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
)

__all__ = ["HEADER", "PgQueueBackend", "exception_path"]

# The key of a Django task's call in its job's headers.
HEADER = "django"
DEFAULT_ENTRYPOINT_PREFIX = "django."
OPTION_NAMES = frozenset(
    {
        "DATABASE",
        "SCHEMA",
        "PREFIX",
        "MAX_PAYLOAD_BYTES",
        "ENTRYPOINT_PREFIX",
        "RUN_OPTIONS",
        "QUEUE_POLICIES",
    }
)
# Keyword arguments of psycopg.connect() in Django's connection parameters that are not
# libpq parameters: they cannot go into the conninfo of the queue's own connections.
_CONNECT_ONLY = frozenset(
    {"autocommit", "prepare_threshold", "row_factory", "cursor_factory", "context"}
)
READY = TaskResultStatus("READY")
RUNNING = TaskResultStatus("RUNNING")
SUCCESSFUL = TaskResultStatus("SUCCESSFUL")
FAILED = TaskResultStatus("FAILED")
# A job's status as Django's: queued (or waiting for a retry) is ready to run; every end but
# success is a failure (Django has no cancelled status).
_STATUS = {
    JobStatus.QUEUED: READY,
    JobStatus.PICKED: RUNNING,
    JobStatus.SUCCESSFUL: SUCCESSFUL,
    JobStatus.EXCEPTION: FAILED,
    JobStatus.FAILED: FAILED,
    JobStatus.CANCELED: FAILED,
}

# One driver (one connection of its own, shared by the process's threads) per database:
# for results, the worker's reads and the operator commands. Enqueues use Django's.
_drivers: dict[str, PsycopgDriver] = {}
_drivers_lock = threading.Lock()


def _driver(conninfo: str) -> PsycopgDriver:
    with _drivers_lock:
        driver = _drivers.get(conninfo)
        if driver is None:
            driver = _drivers[conninfo] = PsycopgDriver(conninfo)
        return driver


def exception_path(traceback: str) -> str:
    """The import path of the exception a recorded traceback ends with (its last line is
    ``module.Name: message``, or ``Name: message`` for builtins and the queue's own)."""
    lines = [line for line in traceback.strip().splitlines() if line and not line[0].isspace()]
    name = lines[-1].split(":", 1)[0].strip() if lines else ""
    if "." in name or not name.isidentifier():
        return name
    if isinstance(getattr(builtins, name, None), type):
        return f"builtins.{name}"
    if isinstance(getattr(queue_errors, name, None), type):
        return f"{queue_errors.__name__}.{name}"
    return name


def _conninfo(alias: str) -> str:
    """The conninfo of Django's database ``alias`` (for the queue's own connections)."""
    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        raise ConfigurationError(
            f"the database {alias!r} is {wrapper.vendor}, not PostgreSQL: the queue lives in a "
            "PostgreSQL database (OPTIONS['DATABASE'] names which of DATABASES)"
        )
    params = {
        key: value
        for key, value in wrapper.get_connection_params().items()
        if key not in _CONNECT_ONLY and value is not None
    }
    return make_conninfo("", **params)


def _aware(when: datetime | None) -> datetime | None:
    if when is None or timezone.is_aware(when):
        return when
    return timezone.make_aware(when, timezone.get_default_timezone())


def _as_django_time(when: datetime | None) -> datetime | None:
    """A time read from the database as Django shows times (naive without USE_TZ)."""
    if when is None or django_settings.USE_TZ:
        return when
    return timezone.make_naive(when, timezone.get_default_timezone())


class PgQueueBackend(BaseTaskBackend):
    """Django's Tasks on pgqueue-sync: ``TASKS = {"default": {"BACKEND":
    "pgqueue_sync.contrib.django.PgQueueBackend", "QUEUES": [...], "OPTIONS": {...}}}``.

    OPTIONS (all optional):

    - ``DATABASE``: the alias in ``DATABASES`` of the queue's database (``"default"``); a
      PostgreSQL database on psycopg 3. Enqueues run on that connection, in its transaction.
    - ``SCHEMA``, ``PREFIX``, ``MAX_PAYLOAD_BYTES``: the queue's :class:`Settings` (else
      ``PGQUEUE_SCHEMA``... from the environment, else ``public``, no prefix, 1 MiB).
    - ``ENTRYPOINT_PREFIX``: the entrypoint of queue ``q`` is this + ``q`` (``"django."``).
    - ``RUN_OPTIONS``: ``run()``'s parameters for ``manage.py pgq_worker`` (its options win).
    - ``QUEUE_POLICIES``: ``{queue: {"retry": RetryPolicy(...), "timeout": 30,
      "concurrency_limit": 2, ...}}``, the policies of ``qm.entrypoint`` for a queue's jobs.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        unknown = sorted(set(options) - OPTION_NAMES)
        if unknown:
            raise ConfigurationError(
                f"TASKS[{alias!r}]['OPTIONS']: unknown {', '.join(unknown)} (known: "
                f"{', '.join(sorted(OPTION_NAMES))})"
            )
        self.database: str = str(options.get("DATABASE", "default"))
        self.settings = Settings.from_env(
            {
                **os.environ,
                **{
                    f"PGQUEUE_{key}": str(options[key])
                    for key in ("SCHEMA", "PREFIX", "MAX_PAYLOAD_BYTES")
                    if key in options
                },
            }
        )
        prefix = options.get("ENTRYPOINT_PREFIX", DEFAULT_ENTRYPOINT_PREFIX)
        if not isinstance(prefix, str):
            raise ConfigurationError(f"TASKS[{alias!r}]: ENTRYPOINT_PREFIX must be a str")
        self.entrypoint_prefix = prefix
        self.run_options = run_overrides(
            options.get("RUN_OPTIONS") or {}, f"TASKS[{alias!r}]['OPTIONS']['RUN_OPTIONS']"
        )
        queue_policies = options.get("QUEUE_POLICIES") or {}
        if not isinstance(queue_policies, Mapping):
            raise ConfigurationError(
                f"TASKS[{alias!r}]: QUEUE_POLICIES must map queue names to policies"
            )
        self.queue_policies: dict[str, dict[str, Any]] = {}
        for queue, given in queue_policies.items():
            try:
                checked_policies(**given)
            except TypeError as exc:
                raise ConfigurationError(
                    f"TASKS[{alias!r}]: QUEUE_POLICIES[{queue!r}]: {exc}"
                ) from None
            self.queue_policies[str(queue)] = dict(given)
        self._signatures: dict[tuple[Any, bool], TaskSignature] = {}

    # -- where the queue is --------------------------------------------------------------

    def entrypoint(self, queue_name: str) -> str:
        """The entrypoint of the jobs of ``queue_name`` (ConfigurationError if the name
        cannot make one)."""
        name = f"{self.entrypoint_prefix}{queue_name}"
        try:
            return validate_entrypoint(name)
        except ConfigurationError as exc:
            raise ConfigurationError(f"queue {queue_name!r} cannot be served: {exc}") from None

    def conninfo(self) -> str:
        """The conninfo of the queue's database, from Django's ``DATABASES``."""
        return _conninfo(self.database)

    @property
    def queries(self) -> Queries:
        """The queue's Queries on a connection of its own (shared by this process): results,
        inspection, install. Enqueues go through Django's connection instead."""
        return Queries(_driver(self.conninfo()), self.settings)

    def database_connection(self) -> psycopg.Connection[Any]:
        """Django's psycopg connection to the queue's database, in this thread: a statement
        on it joins the transaction of ``transaction.atomic()``, if one is open."""
        wrapper = connections[self.database]
        if wrapper.vendor != "postgresql":
            _conninfo(self.database)  # raises, saying why
        wrapper.ensure_connection()
        raw = wrapper.connection
        if not isinstance(raw, psycopg.Connection):
            raise ConfigurationError(
                f"the database {self.database!r} uses {type(raw).__module__}, not psycopg 3: "
                "install psycopg 3 (Django uses it when both are installed)"
            )
        return raw

    # -- enqueue -------------------------------------------------------------------------

    def _signature(self, task: Task[..., Any]) -> TaskSignature:
        """What ``task``'s arguments are checked against: its function's parameters, less
        the first (``context``) for a task that takes its context."""
        key = (task.func, task.takes_context)
        signature = self._signatures.get(key)
        if signature is None:
            full = inspect.signature(task.func)
            parameters = list(full.parameters.values())
            if task.takes_context:
                parameters = parameters[1:]
            signature = TaskSignature(
                name=task.module_path,
                full=full,
                arguments=full.replace(parameters=parameters),
                context=None,
                collisions=frozenset(),
            )
            self._signatures[key] = signature
        return signature

    def enqueue(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult[Any, Any]:
        """Enqueue a call of ``task`` as a job, on Django's connection (in its transaction,
        if one is open); a READY TaskResult whose id is the job id.

        The arguments are checked against the function's signature and must be JSON after
        Django's normalisation (tuples become lists): InvalidTaskArgumentsError (or
        PayloadTooLargeError past ``MAX_PAYLOAD_BYTES``) before anything is written."""
        self.validate_task(task)
        try:
            call_args = cast("list[Any]", normalize_json(list(args)))
            call_kwargs = cast("dict[str, Any]", normalize_json(dict(kwargs)))
        except (TypeError, ValueError) as exc:
            raise InvalidTaskArgumentsError(
                f"task {task.module_path!r}: its arguments must be JSON: {exc}"
            ) from None
        signature = self._signature(task)
        signature.encode(call_args, call_kwargs, self.settings.max_payload_bytes)
        call: dict[str, Any] = {
            "task": task.module_path,
            "backend": self.alias,
            "queue": task.queue_name,
            "args": call_args,
            "kwargs": call_kwargs,
        }
        run_after = _aware(task.run_after)
        if run_after is not None:
            call["run_after"] = run_after.isoformat()
        [job_id] = self.queries.enqueue(
            self.entrypoint(task.queue_name),
            None,
            task.priority,
            run_after,
            headers={HEADER: call},
            connection=self.database_connection(),
        )
        result: TaskResult[Any, Any] = TaskResult(
            task=task,
            id=str(job_id),
            status=READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=call_args,
            kwargs=call_kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    # -- results -------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        """The result of job ``result_id``: READY while queued (or waiting for a retry),
        RUNNING while a worker runs it, then SUCCESSFUL (with its return value) or FAILED
        (with an error per failed attempt: the exception's path and its traceback).

        TaskResultDoesNotExist for an id that is no job (or no Django task's job), or a job
        whose log rows were pruned. Read on the queue's own connection: a job enqueued in a
        transaction that has not committed yet is not found."""
        try:
            job_id = int(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(f"no task result with id {result_id!r}") from None
        if not 0 < job_id < 2**63:
            raise TaskResultDoesNotExist(f"no task result with id {result_id!r}")
        try:
            detail = self.queries.job_detail(job_id)
        except JobNotFoundError:
            raise TaskResultDoesNotExist(f"no task result with id {result_id!r}") from None
        return self._result(detail)

    def _call(self, job_id: int, headers: Mapping[str, Any] | None) -> dict[str, Any]:
        call = (headers or {}).get(HEADER)
        if not isinstance(call, dict) or not isinstance(call.get("task"), str):
            raise TaskResultDoesNotExist(f"job {job_id} is not a task of Django's Tasks")
        return call

    def _task(self, call: Mapping[str, Any], priority: int) -> Task[Any, Any]:
        """The Task a job calls, as it was enqueued (priority, queue, run_after)."""
        path = call["task"]
        try:
            found = import_string(path)
        except ImportError as exc:
            raise ConfigurationError(f"the task {path!r} cannot be imported: {exc}") from None
        if not (hasattr(found, "using") and hasattr(found, "func")):
            raise ConfigurationError(
                f"{path!r} is not a task: decorate it with @task (django.tasks, or django_tasks)"
            )
        changes: dict[str, Any] = {"priority": priority, "backend": self.alias}
        if isinstance(call.get("queue"), str):
            changes["queue_name"] = call["queue"]
        if isinstance(call.get("run_after"), str):
            changes["run_after"] = _as_django_time(datetime.fromisoformat(call["run_after"]))
        try:
            task: Task[Any, Any] = found.using(**changes)
        except InvalidTask:  # the settings changed since (a queue removed): as declared
            task = found
        return task

    def _result(self, detail: JobDetail) -> TaskResult[Any, Any]:
        job, log = detail.job, detail.log
        headers = job.headers if job is not None else log[-1].headers
        call = self._call(detail.id, headers)
        priority = job.priority if job is not None else log[-1].priority
        status = _STATUS[detail.status]
        # The queue records the worker of each outcome's last attempt: earlier attempts (retried)
        # count as workers of unknown id, "", so that Django's ``attempts`` counts them.
        worker_ids: list[str] = []
        for entry in log:
            worker_ids += [""] * max(0, entry.attempts - 1) + [str(entry.worker_id or "")]
        started: datetime | None = None
        if job is not None and job.status is JobStatus.PICKED:
            started = job.updated
            worker_ids += [""] * max(0, job.attempts - 1) + [str(job.worker_id or "")]
        elif job is not None:
            worker_ids += [""] * job.attempts
        elif log:
            last = log[-1]
            started = last.created - (last.duration or timedelta())
        errors = [
            TaskError(
                exception_class_path=exception_path(entry.traceback), traceback=entry.traceback
            )
            for entry in log
            if entry.status is not JobStatus.SUCCESSFUL and entry.traceback
        ]
        if job is not None and job.last_error:  # failed, or waiting for its retry
            errors.append(
                TaskError(
                    exception_class_path=exception_path(job.last_error), traceback=job.last_error
                )
            )
        finished = log[-1].created if job is None and log else None
        result: TaskResult[Any, Any] = TaskResult(
            task=self._task(call, priority),
            id=str(detail.id),
            status=status,
            enqueued_at=_as_django_time(job.created if job is not None else log[-1].enqueued),
            started_at=_as_django_time(started),
            finished_at=_as_django_time(finished),
            last_attempted_at=_as_django_time(started),
            args=list(call.get("args") or []),
            kwargs=dict(call.get("kwargs") or {}),
            backend=self.alias,
            errors=errors,
            worker_ids=worker_ids,
        )
        if status == SUCCESSFUL:
            last = log[-1]
            value = last.value if last.result is None else normalize_json(last.result)
            object.__setattr__(result, "_return_value", value)
        return result

    # -- running -------------------------------------------------------------------------

    def serves(self, queues: Iterable[str] | None = None) -> list[str]:
        """The queues a worker serves: ``queues``, else this backend's ``QUEUES``
        (ConfigurationError for a queue the backend does not have, or none at all)."""
        chosen = sorted(set(queues) if queues else self.queues)
        if not chosen:
            raise ConfigurationError(
                f"TASKS[{self.alias!r}] has no QUEUES: name the queues to serve (--queue)"
            )
        unknown = [q for q in chosen if self.queues and q not in self.queues]
        if unknown:
            raise ConfigurationError(
                f"queue {', '.join(map(repr, unknown))} is not one of TASKS[{self.alias!r}]'s "
                f"QUEUES ({', '.join(sorted(self.queues))})"
            )
        return chosen

    def manager(self, queues: Iterable[str] | None = None) -> QueueManager:
        """A QueueManager whose handlers run this backend's tasks of ``queues`` (default:
        every queue of ``QUEUES``), on connections of its own: ``manager().run()`` is a
        worker (``manage.py pgq_worker`` runs one)."""
        qm = QueueManager(_driver(self.conninfo()), settings=self.settings)
        for queue in self.serves(queues):
            qm.entrypoint(self.entrypoint(queue), **self.queue_policies.get(queue, {}))(
                self.run_job
            )
        return qm

    def run_job(self, job: Job, ctx: Context) -> Any:
        """The handler of a Django task's job: call the task with its arguments (with a
        TaskContext if it takes one), Django's task signals sent around it, the thread's
        database connections closed when unusable or past ``CONN_MAX_AGE`` before and after,
        as Django does around a request. Its return value is the job's result."""
        call = self._call(job.id, job.headers)
        args, kwargs = call.get("args", []), call.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise InvalidTaskArgumentsError(
                f"job {job.id}: its headers hold no arguments of a task call"
            )
        task = self._task(call, job.priority)
        now = timezone.now()
        worker_ids = [""] * (job.attempts - 1) + [str(ctx.worker_id)]
        result: TaskResult[Any, Any] = TaskResult(
            task=task,
            id=str(job.id),
            status=RUNNING,
            enqueued_at=_as_django_time(job.created),
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=worker_ids,
        )
        sender = type(self)
        task_started.send(sender, task_result=result)
        close_old_connections()
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            value = normalize_json(value)
        except BaseException as exc:
            object.__setattr__(result, "status", FAILED)
            object.__setattr__(result, "finished_at", timezone.now())
            result.errors.append(
                TaskError(
                    exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
                    traceback="".join(format_exception(exc)),
                )
            )
            task_finished.send(sender, task_result=result)
            raise
        finally:
            close_old_connections()
        object.__setattr__(result, "status", SUCCESSFUL)
        object.__setattr__(result, "finished_at", timezone.now())
        object.__setattr__(result, "_return_value", value)
        task_finished.send(sender, task_result=result)
        return value

    # -- checks --------------------------------------------------------------------------

    def check(self, **kwargs: Any) -> list[Any]:
        """Django's system checks: the queue's database is PostgreSQL, each queue makes an
        entrypoint name."""
        messages: list[Any] = list(super().check(**kwargs))
        try:
            _conninfo(self.database)
        except Exception as exc:  # a missing alias, another vendor: said as it is
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]: {exc}",
                    obj=self,
                    id="pgqueue_sync.E001",
                )
            )
        for queue in sorted(self.queues):
            try:
                self.entrypoint(queue)
            except ConfigurationError as exc:
                messages.append(
                    checks.Error(f"TASKS[{self.alias!r}]: {exc}", obj=self, id="pgqueue_sync.E002")
                )
        return messages
