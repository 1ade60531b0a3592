"""The fetcher: claims due jobs into the buffer, within limits and the buffer's free room.

Limited entrypoints are claimed first, each on its own (their limits bound them); then the
others together with the room left. An entrypoint whose last claim was held back by its
limits is skipped, so a blocked entrypoint costs no query, until a slot may be free (one of
its jobs finished) or, for a rate limit, until its next token.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping

from pgqueue_sync.clock import Clock
from pgqueue_sync.models import Job
from pgqueue_sync.options import RunOptions
from pgqueue_sync.registry import Entrypoint

from .buffer import JobBuffer
from .hooks import HookList
from .ledger import Ledger
from .store import Store

__all__ = ["Fetcher"]


class Fetcher:
    """Claims jobs into the buffer (see the module docstring)."""

    def __init__(
        self,
        *,
        worker_id: uuid.UUID,
        registry: Mapping[str, Entrypoint],
        store: Store,
        ledger: Ledger,
        buffer: JobBuffer,
        options: RunOptions,
        clock: Clock,
        can_start: Callable[[], bool],
        hooks: HookList,
        next_tick: Callable[[], float] = lambda: math.inf,
    ) -> None:
        self.worker_id = worker_id
        self.entrypoints = sorted(registry)
        self._unlimited = [name for name in self.entrypoints if not registry[name].limited]
        self._limited = [registry[name] for name in self.entrypoints if registry[name].limited]
        self._store = store
        self._ledger = ledger
        self._buffer = buffer
        self._options = options
        self._clock = clock
        self._can_start = can_start
        self._next_tick = next_tick
        # None without hooks: a falsy check per job without HookList.__bool__'s call.
        self._hooks = hooks if hooks else None
        # Limited entrypoints whose last claim was held back: until when (clock seconds)
        # they are not tried again, and whether a finished job may free them ("slots") or
        # only time ("rate"). Read and written from several threads: never iterated live.
        self._blocked: dict[str, tuple[float, str]] = {}

    @property
    def globally_limited(self) -> list[str]:
        """Entrypoints with a limit shared by all workers (they need a limits row)."""
        return [e.name for e in self._limited if e.globally_limited]

    @property
    def hears_done(self) -> bool:
        """Whether ``done`` events concern this fetcher: only an entrypoint with a
        ``concurrency_limit`` is blocked until another worker's job ends (a ``done``)."""
        return any(e.concurrency_limit is not None for e in self._limited)

    @property
    def blocked(self) -> dict[str, tuple[float, str]]:
        """Entrypoints skipped by claims: until when, and why ("slots" or "rate")."""
        return dict(self._blocked)

    def fetch_once(self, limit: int | None = None, *, store: Store | None = None) -> list[Job]:
        """Claim as many jobs as fit (at most ``claim_size``) into the buffer; the jobs.

        ``store``: claim over it rather than the fetch connection's (the worker's listener
        claims on its own connection). One claim at a time: the caller serializes them."""
        store = self._store if store is None else store
        want = min(self._options.claim_size if limit is None else limit, self._buffer.room())
        if not self._can_start():
            return []  # every handler thread is stuck: what is claimed could not start
        jobs: list[Job] = []
        now = self._clock.monotonic()
        for entry in self._limited:
            if want - len(jobs) <= 0:
                break
            blocked = self._blocked.get(entry.name)
            if blocked is None or blocked[0] <= now:
                jobs += self._claim_limited(store, entry, want - len(jobs), now)
        if want - len(jobs) > 0 and self._unlimited:
            jobs += store.dequeue(
                want - len(jobs), self._unlimited, self.worker_id, self._options.retry_timer
            )
        if jobs:
            self._buffer.put_many(self._ledger.hold(jobs))
        if self._hooks:
            self._hooks.claimed(jobs)
        return jobs

    def _claim_limited(self, store: Store, entry: Entrypoint, room: int, now: float) -> list[Job]:
        self._blocked.pop(entry.name, None)
        want = room
        if entry.per_worker_limit is not None:
            want = min(want, entry.per_worker_limit - self._ledger.held_of(entry.name))
        if want <= 0:
            self._block(entry.name, now, self._options.dequeue_timeout, "slots")
            return []
        retry_timer = self._options.retry_timer
        if not entry.globally_limited:
            return store.dequeue(want, [entry.name], self.worker_id, retry_timer)
        claim = store.dequeue_limited(
            entry.name,
            want,
            self.worker_id,
            retry_timer,
            concurrency_limit=entry.concurrency_limit,
            requests_per_second=entry.requests_per_second,
        )
        if claim.rate_wait is not None:
            self._block(entry.name, now, claim.rate_wait, "rate")
        elif claim.at_limit:
            self._block(entry.name, now, self._options.dequeue_timeout, "slots")
        return claim.jobs

    def _block(self, name: str, now: float, seconds: float, kind: str) -> None:
        self._blocked[name] = (now + seconds, kind)

    def job_done(self, entrypoint: str) -> bool:
        """One of ``entrypoint``'s jobs finished here: if the entrypoint was skipped for want
        of a slot, it may be claimed again; True if it was."""
        return entrypoint in self._blocked and self.unblock([entrypoint])

    def unblock(self, names: Iterable[str] | None = None) -> bool:
        """Let entrypoints blocked for want of a slot be claimed again, now one may be free
        (all of them with None); True if any was blocked."""
        blocked = dict(self._blocked)
        wanted = None if names is None else set(names)
        freed = [
            name
            for name, (_, kind) in blocked.items()
            if kind == "slots" and (wanted is None or name in wanted)
        ]
        for name in freed:
            self._blocked.pop(name, None)
        return bool(freed)

    def idle_timeout(self) -> float:
        """How long to sleep after an empty claim (a NOTIFY ends the sleep sooner): at most
        ``dequeue_timeout`` and ``retry_timer``, until a blocked entrypoint may be tried
        again, the next deferred job is due, or a schedule's next tick (``next_tick``: the
        seconds until the scheduler has something to do)."""
        timeout = min(self._options.dequeue_timeout, self._next_tick())
        if self._options.retry_timer is not None:
            timeout = min(timeout, self._options.retry_timer.total_seconds())
        now = self._clock.monotonic()
        blocked = dict(self._blocked)
        for until, _ in blocked.values():
            timeout = min(timeout, max(0.0, until - now))
        open_entrypoints = [name for name in self.entrypoints if name not in blocked]
        due = self._store.next_due(open_entrypoints)
        if due is not None:
            # <= 0: a due job was skipped because another worker is claiming it.
            timeout = min(timeout, max(due, 0.1))
        return max(0.0, timeout)
