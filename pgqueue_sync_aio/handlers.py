"""How the engine's handler threads run ``async def`` handlers on the event loop.

The sync engine calls a plain function; for an async handler that function is a stand-in
(``LoopBridge.stand_in``, with the handler's signature and names) that hands the call
over to the loop awaiting ``run()`` and waits for it. The bridge also cancels the handler
when its job is cancelled, and, once the engine has stopped, cancels and waits for those
that outlived it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.lowlevel import EventLoopToken

from pgqueue_sync.context import Context, JobCancelled, current_context
from pgqueue_sync.errors import HandlerAbandoned, InvalidStateError

__all__ = ["ABANDON_JOIN_TIMEOUT", "HandlerResult", "LoopBridge"]

# How long run() waits for a handler thread to return once its async handler was cancelled
# past shutdown_timeout (it only has bookkeeping left to do).
ABANDON_JOIN_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class HandlerResult:
    """How an async handler ended, carried back to its handler thread."""

    value: object = None
    error: BaseException | None = None


class LoopBridge:
    """Async handlers, called from the engine's handler threads, run on one event loop.

    ``open(token)`` when ``run()`` starts (the loop of ``token``), ``abandon()`` then
    ``close()`` when the engine has stopped. ``interrupted``: a handler's loop delivered
    a KeyboardInterrupt (``on_interrupt`` was called; ``run()`` raises it at the end).
    """

    def __init__(self, on_interrupt: Callable[[], None]) -> None:
        self._on_interrupt = on_interrupt
        self._token: EventLoopToken | None = None
        # Touched only on the event loop thread.
        self._scopes: set[anyio.CancelScope] = set()
        self._abandoning = False
        self.interrupted = False
        # Handler threads waiting for an async handler (any thread).
        self._waiting_lock = threading.Lock()
        self._waiting: set[threading.Thread] = set()

    def open(self, token: EventLoopToken) -> None:
        """``run()`` starts: async handlers run on the loop of ``token`` from now on."""
        self._token = token
        self._abandoning = False
        self.interrupted = False

    def close(self) -> None:
        self._token = None

    def stand_in(self, func: Callable[..., Any]) -> Callable[..., object]:
        """A plain function for the sync engine that runs ``func`` on the event loop and
        waits for it, from a handler thread. It has ``func``'s signature (the engine calls
        ``handler(job, context)`` when the handler takes two parameters) and names."""

        def call(*args: Any) -> object:
            token = self._token
            if token is None:
                raise InvalidStateError("async handlers run only inside AsyncQueueManager.run()")
            ctx = current_context()
            thread = threading.current_thread()
            with self._waiting_lock:
                self._waiting.add(thread)
            try:
                result = anyio.from_thread.run(self._run, func, args, ctx, token, token=token)
            finally:
                with self._waiting_lock:
                    self._waiting.discard(thread)
            if result.error is not None:
                raise result.error  # the handler's own traceback goes to the log
            return result.value

        with contextlib.suppress(TypeError, ValueError):
            call.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
        call.__name__ = getattr(func, "__name__", call.__name__)
        call.__qualname__ = getattr(func, "__qualname__", call.__qualname__)
        return call

    async def _run(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        ctx: Context,
        token: EventLoopToken,
    ) -> HandlerResult:
        loop_thread = threading.get_ident()

        def cancel_soon(scope: anyio.CancelScope) -> None:
            # ctx.cancel() comes from the engine's threads (listener, flusher).
            if threading.get_ident() == loop_thread:
                scope.cancel()
            else:
                with contextlib.suppress(anyio.RunFinishedError):
                    anyio.from_thread.run_sync(scope.cancel, token=token)

        try:
            with anyio.CancelScope() as scope:
                if self._abandoning or ctx.is_cancelled:
                    scope.cancel()
                self._scopes.add(scope)
                forget = ctx.on_cancel(partial(cancel_soon, scope))
                try:
                    return HandlerResult(value=await func(*args))
                except (anyio.get_cancelled_exc_class(), KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    # SystemExit too: it fails the job, never the loop.
                    return HandlerResult(error=exc)
                finally:
                    forget()
                    self._scopes.discard(scope)
        except KeyboardInterrupt as exc:
            # On the loop's thread this is how trio, or asyncio outside asyncio.run(),
            # delivers Ctrl-C: the job fails, and run() stops gracefully, then raises it.
            self.interrupted = True
            self._on_interrupt()
            return HandlerResult(error=exc)
        if ctx.is_cancelled and not self._abandoning:
            # The job was cancelled (or timed out): the handler was cancelled with it.
            return HandlerResult(error=JobCancelled(f"job {ctx.job.id} was cancelled"))
        abandoned = HandlerAbandoned("cancelled: still running past shutdown_timeout")
        return HandlerResult(error=abandoned)

    async def abandon(self) -> None:
        """Cancel async handlers that outlived the engine (it released their jobs at
        ``shutdown_timeout``), then wait for their threads, so none is left running."""
        self._abandoning = True
        for scope in list(self._scopes):
            scope.cancel()
        with self._waiting_lock:
            threads = list(self._waiting)
        if threads:
            await anyio.to_thread.run_sync(
                partial(_join_all, threads, ABANDON_JOIN_TIMEOUT),
                limiter=anyio.CapacityLimiter(1),
            )


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    for thread in threads:
        thread.join(timeout)
