"""The worker engine: one ``QueueManager.run()``, laid out by the stages of a job's path.

::

    enqueue -> jobs table -> NOTIFY -> listener -> fetcher -> buffer -> runner -> flusher
                  ^                                claims               runs      writes
                  +-- outcomes, heartbeats, releases ------------------------------+

- :mod:`.listener`: LISTENs on the queue's channel; its events are hints that wake the
  fetcher (or make the flusher read a cancellation from the table).
- :mod:`.fetcher`: claims due jobs (``FOR UPDATE SKIP LOCKED``) into the buffer, within
  limits and the buffer's room.
- :mod:`.buffer`: the bounded job buffer, the completion buffer and the fetcher's mailbox.
- :mod:`.runner`: the handler threads; timeouts; stuck threads retired.
- :mod:`.execution`: one handler run, and its end as an Outcome.
- :mod:`.rescue`: jobs taken from dead workers; workers lost while running them.
- :mod:`.flusher`: outcomes written (fenced), heartbeats, cancellations, log pruning.
- :mod:`.ledger`: what the worker holds, shared by the stages.
- :mod:`.scheduler`: periodic jobs: the schedules' due ticks enqueued from the fetch loop
  (:mod:`.schedule_store`: its statements).
- :mod:`.store`: the engine's own statements.
- :mod:`.worker`: wires the stages, runs the fetch loop, shuts down.
"""

from __future__ import annotations

from .ledger import LedgerSnapshot
from .worker import Worker

__all__ = ["LedgerSnapshot", "Worker"]
