"""Flask: ``PgQueue``, the queue as a Flask extension (``pip install
"pgqueue-sync[flask]"``).

```python
db = SQLAlchemy()                       # Flask-SQLAlchemy on postgresql+psycopg://
pgq = PgQueue(session=db.session)       # enqueues join the session's transaction

@pgq.task(retry=RetryPolicy(stop=stop_after_attempt(5)))
def send_welcome(user_id: int) -> None:
    user = db.session.get(User, user_id)   # an app context per job: extensions work
    ...

def create_app() -> Flask:
    app = Flask(__name__)
    app.config["PGQUEUE_DSN"] = "postgresql://localhost/app"
    db.init_app(app)
    pgq.init_app(app)
    return app

# in a view: commits with db.session.commit(), or goes with its rollback
send_welcome.enqueue(user.id)
```

and ``flask pgq worker`` runs the workers; ``flask pgq status|install|upgrade|...`` are the
``pgq-sync`` commands on the app's queue (``pgqueue_sync.contrib.flask_cli``).

Configuration (``app.config``, else the environment):

- ``PGQUEUE_DSN``: the queue's database (default: libpq's ``PG*`` variables).
- ``PGQUEUE_SCHEMA``, ``PGQUEUE_PREFIX``, ``PGQUEUE_MAX_PAYLOAD_BYTES``: see Settings.
- ``PGQUEUE_POOL_MIN_SIZE`` (1), ``PGQUEUE_POOL_MAX_SIZE`` (4): the app's connection pool
  (psycopg_pool), opened at first use; ``PGQUEUE_POOL_TIMEOUT`` (30 s) to get a connection.
- ``PGQUEUE_RUN_OPTIONS``: a dict of ``run()``'s parameters (``workers``, ``batch_size``,
  ``shutdown_timeout``, ...) for ``flask pgq worker`` and ``PgQueue.run``; the
  command's own options win.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ParamSpec, Protocol, TypeVar, overload

import psycopg
from flask import Flask, current_app, has_app_context
from psycopg_pool import ConnectionPool

from pgqueue_sync.context import Context
from pgqueue_sync.db import Connection, PsycopgDriver
from pgqueue_sync.errors import ConfigurationError, InvalidHandlerError, InvalidStateError
from pgqueue_sync.models import Job
from pgqueue_sync.options import run_overrides
from pgqueue_sync.qm import QueueManager
from pgqueue_sync.queries import Queries
from pgqueue_sync.registry import (
    DEFAULT_MAX_LOST,
    entrypoint,
    is_async_callable,
    takes_context,
)
from pgqueue_sync.registry import policies as rules
from pgqueue_sync.retry import RetryPolicy
from pgqueue_sync.settings import Settings
from pgqueue_sync.task_arguments import TaskSignature
from pgqueue_sync.tasks import Task, task_handler

__all__ = ["FlaskTask", "PgQueue", "SessionLike", "session_connection"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

EXTENSION_KEY = "pgqueue"
_SETTINGS_KEYS = ("PGQUEUE_SCHEMA", "PGQUEUE_PREFIX", "PGQUEUE_MAX_PAYLOAD_BYTES")


class SessionLike(Protocol):
    """A SQLAlchemy session (Flask-SQLAlchemy's ``db.session``): what gives its connection."""

    def connection(self) -> Any:
        """The SQLAlchemy Connection of the session's transaction (begun if need be)."""


def session_connection(session: SessionLike) -> Connection:
    """The psycopg connection under ``session``'s transaction (begun if it was not): a job
    enqueued with ``connection=session_connection(db.session)`` commits with
    ``db.session.commit()`` and is gone with a rollback. The session must use psycopg 3
    (``postgresql+psycopg://``); with another driver this raises ConfigurationError: enqueue
    after the commit instead (an ``after_commit`` session event)."""
    driver_connection = session.connection().connection.driver_connection
    if not isinstance(driver_connection, psycopg.Connection):
        raise ConfigurationError(
            "the session's database driver is not psycopg 3 "
            f"({type(driver_connection).__module__}.{type(driver_connection).__name__}), so "
            "a job cannot join its transaction: use a postgresql+psycopg:// URL, or enqueue "
            "once the session has committed (an after_commit event)"
        )
    return driver_connection


@dataclasses.dataclass
class _Declared:
    """A handler declared on the extension: registered on each app's manager."""

    name: str
    handler: Callable[..., Any]
    policies: dict[str, Any]


class _AppQueue:
    """One app's queue: its pool, its QueueManager (handlers in app contexts), run options."""

    def __init__(self, ext: PgQueue, app: Flask) -> None:
        config = app.config
        env = {**os.environ, **{k: str(config[k]) for k in _SETTINGS_KEYS if k in config}}
        self.ext = ext
        self.app = app
        self.pool: ConnectionPool[Any] = ConnectionPool(
            str(config.get("PGQUEUE_DSN") or os.environ.get("PGQUEUE_DSN", "")),
            min_size=int(config.get("PGQUEUE_POOL_MIN_SIZE", 1)),
            max_size=int(config.get("PGQUEUE_POOL_MAX_SIZE", 4)),
            timeout=float(config.get("PGQUEUE_POOL_TIMEOUT", 30.0)),
            open=False,
            name=f"pgqueue:{app.name}",
            kwargs={"autocommit": True},
        )
        self.qm = QueueManager(PsycopgDriver(self.pool), settings=Settings.from_env(env))
        self.run_options = run_overrides(
            config.get("PGQUEUE_RUN_OPTIONS") or {}, "PGQUEUE_RUN_OPTIONS"
        )
        self._lock = threading.Lock()
        self._opened = False

    def register(self, declared: _Declared) -> None:
        app = self.app
        handler = declared.handler
        with_context = takes_context(handler)

        def in_app_context(job: Job, ctx: Context) -> Any:
            with app.app_context():  # a fresh one per job: g starts empty
                return handler(job, ctx) if with_context else handler(job)

        in_app_context.__name__ = getattr(handler, "__name__", in_app_context.__name__)
        self.qm.entrypoint(declared.name, **declared.policies)(in_app_context)

    def manager(self) -> QueueManager:
        """The manager, its pool opened (once, at first use; never again once closed)."""
        if not self._opened:
            with self._lock:
                if not self._opened:
                    self.pool.open()
                    self._opened = True
        return self.qm

    def close(self) -> None:
        with self._lock:
            self._opened = True  # a closed pool is not reopened
            self.pool.close()


class FlaskTask(Task[P, R]):
    """A task of a ``PgQueue``: enqueued on the queue of the current app, and, when
    the extension has a ``session``, in that session's transaction."""

    def __init__(self, func: Callable[P, R], signature: TaskSignature, ext: PgQueue) -> None:
        super().__init__(func, signature, lambda: ext.queries)
        self._ext = ext

    def _connection(self) -> Connection | None:
        return self._ext.transaction_connection()


class PgQueue:
    """The queue as a Flask extension: ``PgQueue(app)``, or ``PgQueue()`` then
    ``init_app(app)`` in an application factory (see the module docstring).

    ``session``: a SQLAlchemy session (Flask-SQLAlchemy's ``db.session``) whose transaction
    a task's ``enqueue`` joins when it is called in an app context without ``connection=``
    (in a request, and in a job: a task that enqueues another): the job exists once the
    session commits, and never if it rolls back (or is never committed). Without it, an
    enqueue commits at once, on the app's pool.
    """

    def __init__(self, app: Flask | None = None, *, session: SessionLike | None = None) -> None:
        self.session = session
        self._declared: list[_Declared] = []
        self._queues: list[_AppQueue] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Give ``app`` its queue (configured from ``app.config``), its handlers, and the
        ``flask pgq`` commands."""
        from .flask_cli import command_group  # noqa: PLC0415 - click's commands load late

        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError(f"app {app.name!r} already has a PgQueue")
        queue = _AppQueue(self, app)
        for declared in self._declared:
            queue.register(declared)
        app.extensions[EXTENSION_KEY] = queue
        self._queues.append(queue)
        app.cli.add_command(command_group(self))

    # -- the current app's queue -----------------------------------------------------------

    def _queue(self, app: Flask | None = None) -> _AppQueue:
        if app is None and has_app_context():
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        if app is None:
            if len(self._queues) == 1:
                return self._queues[0]
            raise InvalidStateError(
                "no app context: the queue of which app? (call this inside "
                "app.app_context(), or a request)"
            )
        queue = app.extensions.get(EXTENSION_KEY)
        if not isinstance(queue, _AppQueue) or queue.ext is not self:
            raise InvalidStateError(f"app {app.name!r} was not given this PgQueue (init_app)")
        return queue

    def manager(self, app: Flask | None = None) -> QueueManager:
        """The QueueManager of ``app`` (default: the current app)."""
        return self._queue(app).manager()

    @property
    def queries(self) -> Queries:
        """The current app's Queries: enqueue (bytes), wait_for, history, status, ..."""
        return self.manager().queries

    def run_options(self, app: Flask | None = None) -> dict[str, Any]:
        """``app``'s ``PGQUEUE_RUN_OPTIONS``, checked."""
        return dict(self._queue(app).run_options)

    def run(self, **overrides: Any) -> None:
        """Run the current app's workers here until ``manager().alive = False``, with its
        ``PGQUEUE_RUN_OPTIONS`` and ``overrides`` (``flask pgq worker`` is the command)."""
        queue = self._queue()
        queue.manager().run(**{**queue.run_options, **overrides})

    def close(self, app: Flask | None = None) -> None:
        """Close ``app``'s connection pool (default: the current app's)."""
        self._queue(app).close()

    def transaction_connection(self) -> Connection | None:
        """The connection of ``session``'s transaction, in an app context; else None (the
        pool)."""
        if self.session is None or not has_app_context():
            return None
        return session_connection(self.session)

    # -- handlers ------------------------------------------------------------------------

    @overload
    def task(self, func: Callable[P, R], /) -> FlaskTask[P, R]: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        concurrency_limit: int | None = None,
        per_worker_limit: int | None = None,
        requests_per_second: float | None = None,
        timeout: timedelta | float | None = None,
        max_lost: int | None = DEFAULT_MAX_LOST,
    ) -> Callable[[Callable[P, R]], FlaskTask[P, R]]: ...

    def task(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        concurrency_limit: int | None = None,
        per_worker_limit: int | None = None,
        requests_per_second: float | None = None,
        timeout: timedelta | float | None = None,
        max_lost: int | None = DEFAULT_MAX_LOST,
    ) -> FlaskTask[P, R] | Callable[[Callable[P, R]], FlaskTask[P, R]]:
        """``pgqueue_sync.QueueManager.task`` for every app of this extension: the
        function runs in a fresh app context per job; ``enqueue`` goes to the current app's
        queue (in ``session``'s transaction, if the extension has one)."""
        policies = {
            "retry": retry,
            "concurrency_limit": concurrency_limit,
            "per_worker_limit": per_worker_limit,
            "requests_per_second": requests_per_second,
            "timeout": timeout,
            "max_lost": max_lost,
        }

        def register(function: Callable[P, R]) -> FlaskTask[P, R]:
            if is_async_callable(function):
                raise InvalidHandlerError(
                    f"task {getattr(function, '__name__', function)!r} is an async function: "
                    "PgQueue runs plain def tasks in threads"
                )
            task_name = name if name is not None else getattr(function, "__name__", "")
            signature = TaskSignature.of(task_name, function)
            self._declare(task_name, task_handler(signature, function), policies)
            return FlaskTask(function, signature, self)

        return register if func is None else register(func)

    def entrypoint(self, name: str, **policies: Any) -> Callable[[F], F]:
        """``pgqueue_sync.QueueManager.entrypoint`` (a handler of bytes payloads) for
        every app of this extension, run in a fresh app context per job."""

        def register(func: F) -> F:
            self._declare(name, func, policies)
            return func

        return register

    def _declare(self, name: str, handler: Callable[..., Any], policies: dict[str, Any]) -> None:
        if any(d.name == name for d in self._declared):
            raise ConfigurationError(f"entrypoint {name!r} is already registered")
        entrypoint(name, handler, rules(**policies))  # checked now, once for every app
        declared = _Declared(name, handler, policies)
        self._declared.append(declared)
        for queue in self._queues:
            queue.register(declared)
