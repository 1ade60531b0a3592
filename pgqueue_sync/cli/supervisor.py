"""The supervisor of ``pgq-sync run --processes N``: N worker processes, kept running.

Prefork, as gunicorn and Celery do it, so that CPU-bound handlers use more than one core
(each process has its own GIL). Each child is a fresh interpreter running
``python -m pgqueue_sync.cli run APP ...`` (nothing of the supervisor's state is inherited),
in a session of its own (a terminal's Ctrl-C reaches the supervisor only, which forwards
it), connected to the supervisor by a socket pair:

- the child writes ``ready`` once it claims jobs. A child that exits before that could not
  start (a bad APP, an import error, a wrong DSN, no schema): the supervisor stops the
  others and exits with that child's code (2 for a bad APP, else 1);
- a child that exits after that crashed (or was killed): it is restarted, after a delay
  that doubles with each crash in a row (0.5 s up to 30 s; a child that ran 30 s resets
  it). One that reached ``--max-jobs``/``--max-memory`` (exit code 75) is replaced at once;
  one that exits 0 (``--mode drain`` found nothing left) is not restarted;
- the child stops gracefully when the socket closes (the supervisor is gone).

With ``--metrics-port``, the supervisor serves the children's metrics added up
(prometheus-client's multiprocess mode: a directory it creates for their values and removes
at the end, given to them as ``PROMETHEUS_MULTIPROC_DIR``).

SIGTERM or SIGINT: each child gets SIGTERM (a graceful stop); once all have exited, the
supervisor exits 0 (1 if one of them failed meanwhile). A second signal kills the children
(SIGKILL) and exits 130.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from pgqueue_sync.clock import now_real

from .context import EXIT_INTERRUPTED
from .worker import EXIT_RECYCLE

if TYPE_CHECKING:
    from pgqueue_sync.metrics import MultiprocessMetrics

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "STABLE_AFTER", "Supervisor"]

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0
_STOP = (signal.SIGTERM, signal.SIGINT)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclasses.dataclass
class _Child:
    slot: int
    process: subprocess.Popen[bytes]
    channel: socket.socket
    started: float
    ready: bool = False


class Supervisor:
    """Keeps ``processes`` children running ``pgq-sync run`` with ``child_args``."""

    def __init__(
        self,
        child_args: Sequence[str],
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        metrics: MultiprocessMetrics | None = None,
    ) -> None:
        self.child_args = list(child_args)
        self.processes = processes
        self.env = dict(os.environ if env is None else env)
        # --metrics-port: the children's metrics, added up, served by this process.
        self.metrics = metrics
        self._children: dict[int, _Child] = {}
        self._crashes = dict.fromkeys(range(processes), 0)
        self._restart_at: dict[int, float] = {}
        self._signals: list[int] = []
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._hard = False
        self._exit_code = 0

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Start the children and supervise them until they have all stopped; return the
        exit code (0, 1, 2, or 130)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (*_STOP, signal.SIGCHLD)}
        logger.info("supervisor (pid %d) starting %d worker processes", os.getpid(), self.processes)
        try:
            if self.metrics is not None:
                server = self.metrics.start()
                self.env.update(self.metrics.env())
                logger.info("serving the worker processes' metrics on %s", server.url)
            for slot in range(self.processes):
                self._start(slot)
            while self._children or self._restart_at:
                self._turn(wake_r)
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in self._children.values():  # only after an error of our own
                with contextlib.suppress(OSError):
                    child.process.kill()
            self._selector.close()
            os.close(wake_r)
            os.close(wake_w)
            if self.metrics is not None:
                self.metrics.close()
        if self._hard:
            return EXIT_INTERRUPTED
        logger.info("all worker processes stopped")
        return self._exit_code

    def _turn(self, wake_r: int) -> None:
        timeout = None
        if self._restart_at:
            timeout = max(0.0, min(self._restart_at.values()) - now_real())
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            else:
                self._read(key.data)
        while self._signals:
            self._stop(self._signals.pop(0))
        for child in list(self._children.values()):
            code = child.process.poll()
            if code is not None:
                self._exited(child, code)
        now = now_real()
        for slot, at in list(self._restart_at.items()):
            if at <= now:
                del self._restart_at[slot]
                self._start(slot)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self._signals.append(signum)

    # -- children --------------------------------------------------------------------------

    def _start(self, slot: int) -> None:
        ours, theirs = socket.socketpair()
        command = [
            sys.executable,
            "-m",
            "pgqueue_sync.cli",
            "run",
            *self.child_args,
            "--supervisor-fd",
            str(theirs.fileno()),
        ]
        try:
            process = subprocess.Popen(
                command,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        child = _Child(slot, process, ours, now_real())
        self._children[slot] = child
        self._selector.register(ours, selectors.EVENT_READ, child)
        logger.info("worker process %d started (slot %d)", process.pid, slot + 1)

    def _read(self, child: _Child) -> None:
        try:
            data = child.channel.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the child is exiting: it is reaped when SIGCHLD comes
            self._selector.unregister(child.channel)
            return
        if b"ready" in data and not child.ready:
            child.ready = True
            logger.info("worker process %d is ready", child.process.pid)

    def _exited(self, child: _Child, code: int) -> None:
        if self._children.get(child.slot) is not child:
            return  # already handled
        del self._children[child.slot]
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(child.channel)
        child.channel.close()
        pid, how = child.process.pid, describe_exit(code)
        if self.metrics is not None:
            self.metrics.process_exited(pid)
        ran = now_real() - child.started
        if self._stopping:
            logger.info("worker process %d stopped (%s)", pid, how)
            if code not in (0, EXIT_RECYCLE, -signal.SIGTERM) and not self._hard:
                self._exit_code = self._exit_code or 1
        elif not child.ready:
            logger.error("worker process %d could not start (%s): stopping the others", pid, how)
            self._exit_code = code if code in (1, 2) else 1
            self._begin_stop(f"worker process {pid} could not start")
        elif code == EXIT_RECYCLE:
            logger.info("worker process %d finished its run (%s): replacing it", pid, how)
            self._restart_at[child.slot] = now_real()
        elif code == 0:
            logger.info("worker process %d finished (%s); not restarted", pid, how)
        else:
            crashes = self._crashes[child.slot] + 1 if ran < STABLE_AFTER else 1
            self._crashes[child.slot] = crashes
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (crashes - 1))
            logger.warning(
                "worker process %d exited (%s) after %.1f s: restarting it in %.1f s",
                pid,
                how,
                ran,
                delay,
            )
            self._restart_at[child.slot] = now_real() + delay

    # -- stopping --------------------------------------------------------------------------

    def _stop(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self._stopping:
            self._begin_stop(f"{name} received")
            return
        if not self._hard:
            self._hard = True
            logger.warning("%s received again: killing the worker processes", name)
            for child in self._children.values():
                with contextlib.suppress(OSError):
                    child.process.kill()

    def _begin_stop(self, why: str) -> None:
        self._stopping = True
        self._restart_at.clear()
        logger.info(
            "%s: stopping %d worker process(es) gracefully (held jobs finish)",
            why,
            len(self._children),
        )
        for child in self._children.values():
            with contextlib.suppress(OSError):
                child.process.send_signal(signal.SIGTERM)
