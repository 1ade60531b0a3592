"""``wait_for``: block until jobs have finished, woken by the completion NOTIFY.

The NOTIFY is a hint: every wake-up re-reads the log, and the log alone says a job is done.
Through a pooler in transaction mode without ``listen_dsn`` (where LISTEN cannot work) the
wait polls instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta

from psycopg.rows import dict_row

from . import events
from .clock import Deadline
from .db import Connection
from .errors import JobNotFoundError, WaitTimeoutError
from .models import JobId, JobResult, LogEntry
from .options import duration
from .querying import QueryBase
from .sql import statements
from .translate import translate_errors

__all__ = ["REQUERY_INTERVAL", "WAIT_POLL_FIRST", "WAIT_POLL_MAX", "wait_for"]

# Without a NOTIFY that concerns them, the waiting jobs' outcomes are read again this often
# (a NOTIFY lost with a connection must not make the wait endless).
REQUERY_INTERVAL = 30.0
# Without LISTEN: every 50 ms at first, twice as long each time, at most every second.
WAIT_POLL_FIRST = 0.05
WAIT_POLL_MAX = 1.0


def wait_for(
    queries: QueryBase,
    job_ids: Sequence[JobId],
    timeout: timedelta | float | None,
    stop: threading.Event | None = None,
) -> list[JobResult]:
    """The results of ``job_ids``, in order, once all have finished. Gives up with
    WaitTimeoutError (holding the jobs that did finish) when ``timeout`` runs out or once
    ``stop`` is set (the async shim sets it when the awaiting task is cancelled, so no
    thread lingers); JobNotFoundError for an id neither queued nor logged."""
    ids = list(dict.fromkeys(job_ids))
    limit = None if timeout is None else duration(timeout, "wait_for's timeout", zero=True)
    deadline = Deadline(limit)
    done: dict[JobId, JobResult] = {}
    listening = queries.driver.can_listen
    poll = WAIT_POLL_FIRST
    sleeper = stop if stop is not None else threading.Event()
    sql = statements(queries.settings)
    settings = queries.settings
    with translate_errors(schema=settings.schema, prefix=settings.prefix) as scope:
        if listening:
            conn = queries.driver.connect_listener("wait")
        else:
            conn = queries.driver.connect("wait")
        scope.connection = conn
        try:
            if listening:
                conn.execute(sql.listen_done)
            found = {row[0] for row in conn.execute(sql.known_ids, {"ids": ids})}
            if len(found) < len(ids):
                missing = sorted(set(ids) - found)
                raise JobNotFoundError(f"no job with id(s) {missing} in the queue or log")
            while True:
                pending = [i for i in ids if i not in done]
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(sql.results, {"ids": pending})
                    for row in cur.fetchall():
                        done[row["job_id"]] = JobResult.from_entry(LogEntry.from_row(row))
                if len(done) == len(ids):
                    return [done[i] for i in ids]
                remaining = deadline.remaining(REQUERY_INTERVAL)
                assert remaining is not None
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    raise WaitTimeoutError(
                        f"{len(ids) - len(done)} of {len(ids)} job(s) still unfinished",
                        dict(done),
                    )
                if listening:
                    _wait_done_event(conn, pending, min(remaining, REQUERY_INTERVAL), stop)
                else:
                    sleeper.wait(min(remaining, poll))
                    poll = min(poll * 2, WAIT_POLL_MAX)
        finally:
            conn.close()


def _wait_done_event(
    conn: Connection,
    pending: Sequence[JobId],
    timeout: float,
    stop: threading.Event | None,
) -> None:
    """Return when a ``done`` NOTIFY may concern ``pending``, after ``timeout``, or soon
    after ``stop`` is set (the wait is then sliced into short waits on the socket)."""
    deadline = Deadline(timeout)
    while True:
        left = deadline.remaining(0.0) or 0.0
        if left <= 0 or (stop is not None and stop.is_set()):
            return
        for notify in conn.notifies(timeout=left if stop is None else min(left, 0.1)):
            event = events.decode(notify.payload)
            if isinstance(event, events.Done) and events.concerns(event, pending):
                return
