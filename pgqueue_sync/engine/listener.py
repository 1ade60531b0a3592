"""The listener: a thread LISTENing on the queue's channel, turning NOTIFY events into
hints for the worker, and surviving connection loss."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pgqueue_sync import events
from pgqueue_sync.clock import Clock
from pgqueue_sync.connection import ManagedConnection
from pgqueue_sync.errors import ConnectionLostError
from pgqueue_sync.retry import reconnecting
from pgqueue_sync.sql import Statements
from pgqueue_sync.translate import translate_errors

__all__ = ["Listener"]

logger = logging.getLogger(__name__)


class Listener:
    """Holds a connection LISTENing on the queue's channel.

    Every event, decoded, is handed to ``on_event`` (a hint: see :mod:`pgqueue_sync.events`).
    After (re)connecting it calls
    ``on_connect``: notifications sent while it was away are gone, so the fetcher must
    poll once.

    Liveness: its worker sends a :class:`~pgqueue_sync.events.Probe` with ``probe_id``
    every ``probe_interval`` seconds from another connection. A listener that has not heard
    its own probe for ``3 * probe_interval`` is deaf (a half-open or black-holed link that
    TCP has not noticed yet): it drops the connection and listens anew. ``watch`` is called
    on every turn of its loop (after each packet of notifications, and at least every
    ``poll_interval``), for the worker's other checks; what it returns, if not None, is how
    soon (seconds) it wants the next turn.

    ``hear_done``: also LISTEN on the channel of ``done`` events (a worker with a
    ``concurrency_limit`` learns from them that another worker freed a slot; the others
    would only decode one event per completion for nothing).

    ``listening=False`` (LISTEN cannot work: a transaction pooler and no ``listen_dsn``): it
    opens no connection and hears nothing; its thread only calls ``watch``.

    ``claim``: when ``on_event`` returns True for an event, the listener calls it on its own
    thread once the events that arrived with it are handled, outside the wait for
    notifications, so that it may run a statement on the listening connection (the worker
    claims there while its fetch loop sleeps: see ``Worker.claim_on_listener``). A
    connection error it raises is the listener's: it reconnects.
    """

    def __init__(
        self,
        connection: ManagedConnection,
        statements: Statements,
        *,
        on_event: Callable[[events.Event], bool],
        on_connect: Callable[[], None],
        clock: Clock,
        probe_id: str | None = None,
        probe_interval: float = 10.0,
        watch: Callable[[], float | None] | None = None,
        poll_interval: float = 0.25,
        listening: bool = True,
        hear_done: bool = False,
        claim: Callable[[], None] | None = None,
    ) -> None:
        self.listening = listening
        self._claim = claim
        self._hear_done = hear_done
        self._conn = connection
        self._sql = statements
        self._on_event = on_event
        self._on_connect = on_connect
        self._clock = clock
        self._probe_id = probe_id
        self._deaf_after = 3 * probe_interval
        self._watch = watch
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False
        self._last_probe = clock.monotonic()
        self.reconnects = 0

    def start(self) -> None:
        """LISTEN now (errors surface to the caller), then keep listening in a thread."""
        self._listen()
        self._thread = threading.Thread(target=self._run, name="pgqueue-sync-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0, wake: Callable[[], None] | None = None) -> None:
        """Stop listening. ``wake`` sends an event on the channel from another connection,
        so the thread sees the stop at once instead of at the end of its poll interval."""
        self._stop.set()
        if (
            self.listening
            and wake is not None
            and self._thread is not None
            and self._thread.is_alive()
        ):
            try:
                wake()
            except Exception as exc:
                logger.debug("could not wake the listener to stop it: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout)
        self._conn.close()

    def _listen(self) -> None:
        if self.listening:
            with translate_errors(), self._conn.connection() as conn:
                conn.execute(self._sql.listen)
                if self._hear_done:
                    conn.execute(self._sql.listen_done)
        self._listening = True
        self._last_probe = self._clock.monotonic()

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
        if not self.listening:  # nothing to hear: only the worker's checks
            while not self._stop.wait(self._poll_interval):
                if self._watch is not None:
                    self._watch()
            return
        if not self._listening:
            self._listen()
            self.reconnects += 1
            logger.info("listener reconnected; polling once for jobs missed meanwhile")
            self._on_connect()
        try:
            with translate_errors():
                wait = self._poll_interval
                while not self._stop.is_set():
                    conn = self._conn.raw()
                    # One packet of notifications at a time (stop_after=1 ends the wait
                    # after the packet, all of its notifications yielded): a claim must run
                    # outside the wait, which holds the connection's lock, and leaving the
                    # wait in the middle of a packet would lose the rest of it.
                    claim = False
                    for notify in conn.notifies(timeout=wait, stop_after=1):
                        claim = self._dispatch(notify.payload) or claim
                    if claim and self._claim is not None and not self._stop.is_set():
                        self._claim()
                    wait = self._poll_interval
                    if self._watch is not None:
                        again = self._watch()
                        if again is not None:
                            wait = max(0.0, min(wait, again))
                    silent = self._clock.monotonic() - self._last_probe
                    if self._probe_id is not None and silent > self._deaf_after:
                        raise ConnectionLostError(
                            f"the listener heard nothing for {silent:.1f} s (its link is "
                            "half-open or black-holed)"
                        )
        except BaseException:
            self._listening = False
            self._conn.close()
            raise

    def _dispatch(self, payload: str) -> bool:
        """Hand one notification to ``on_event``; whether it asks for a claim here."""
        event = events.decode(payload)
        if isinstance(event, events.Probe):
            if event.worker == self._probe_id:
                self._last_probe = self._clock.monotonic()
            return False
        try:
            return self._on_event(event)
        except Exception:
            logger.exception("error while handling event %r", payload)
            return False
