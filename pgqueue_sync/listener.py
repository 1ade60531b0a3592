"""The LISTEN thread: turns NOTIFY events into wake-ups, and survives connection loss."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from .clock import Clock
from .db import ManagedConnection
from .errors import translate_errors
from .retry import reconnecting
from .sql import Statements

__all__ = ["Listener"]

logger = logging.getLogger("pgqueue_sync")


class Listener:
    """Holds a connection LISTENing on the queue's channel.

    Every event is handed to ``on_event`` as a dict. After (re)connecting it calls
    ``on_connect``: notifications sent while it was away are gone, so the fetcher must
    poll once. While idle it probes its connection every ``probe_interval`` seconds, so a
    silently dead link is noticed and replaced.
    """

    def __init__(
        self,
        connection: ManagedConnection,
        statements: Statements,
        *,
        on_event: Callable[[dict[str, Any]], None],
        on_connect: Callable[[], None],
        clock: Clock,
        probe_interval: float = 15.0,
        poll_interval: float = 0.25,
    ) -> None:
        self._conn = connection
        self._sql = statements
        self._on_event = on_event
        self._on_connect = on_connect
        self._clock = clock
        self._probe_interval = probe_interval
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False
        self.reconnects = 0

    def start(self) -> None:
        """LISTEN now (errors surface to the caller), then keep listening in a thread."""
        self._listen()
        self._thread = threading.Thread(target=self._run, name="pgqueue-sync-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._conn.close()

    def _listen(self) -> None:
        with translate_errors(), self._conn.connection() as conn:
            conn.execute(self._sql.listen)
        self._listening = True

    def _run(self) -> None:
        retrying = reconnecting(
            "listener connection lost",
            sleep=self._stop.wait,
            should_stop=self._stop.is_set,
        )
        while not self._stop.is_set():
            try:
                for attempt in retrying:
                    with attempt:
                        self._serve()
            except Exception as exc:
                if self._stop.is_set():
                    return
                logger.exception("listener failed: %s; restarting it", exc)
                self._stop.wait(1.0)

    def _serve(self) -> None:
        if not self._listening:
            self._listen()
            self.reconnects += 1
            logger.info("listener reconnected; polling once for jobs missed meanwhile")
            self._on_connect()
        last_activity = self._clock.monotonic()
        try:
            with translate_errors():
                while not self._stop.is_set():
                    conn = self._conn.raw()
                    got = False
                    for notify in conn.notifies(timeout=self._poll_interval):
                        got = True
                        self._dispatch(notify.payload)
                    now = self._clock.monotonic()
                    if got:
                        last_activity = now
                    elif now - last_activity >= self._probe_interval:
                        with self._conn.connection() as probe:
                            probe.execute(b"SELECT 1")
                        last_activity = now
                        # An event that arrived during the probe may not reach notifies()
                        # on every psycopg version: poll once to be sure.
                        self._on_connect()
        except BaseException:
            self._listening = False
            self._conn.close()
            raise

    def _dispatch(self, payload: str) -> None:
        try:
            event = json.loads(payload) if payload else {}
        except ValueError:
            event = {}
        if not isinstance(event, dict):
            event = {}
        try:
            self._on_event(event)
        except Exception:
            logger.exception("error while handling event %r", payload)
