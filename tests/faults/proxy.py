"""A TCP proxy on 127.0.0.1 that can black-hole the connections passing through it.

``blackhole()`` stops forwarding on every open connection without closing it: the peers see
a link that silently went dead (as after a network partition or a dead NAT entry). New
connections are forwarded normally.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._sockets: list[socket.socket] = []
        self._pumps: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            dead = threading.Event()
            pump = threading.Thread(target=self._pump, args=(client, upstream, dead), daemon=True)
            with self._lock:
                self._pairs.append((client, upstream, dead))
                self._sockets += [client, upstream]
                self._pumps.append(pump)
            pump.start()

    def _pump(self, a: socket.socket, b: socket.socket, dead: threading.Event) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    if dead.is_set():
                        # Black hole: swallow whatever arrives, answer nothing, close nothing.
                        with contextlib.suppress(OSError):
                            key.fileobj.recv(65536)  # type: ignore[union-attr]
                        continue
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except OSError:
                        data = b""
                    if not data:
                        return
                    key.data.sendall(data)
        finally:
            sel.close()

    def blackhole(self) -> int:
        """Silently kill every open connection; return how many."""
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for _, _, dead in pairs:
            dead.set()
        return len(pairs)

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._thread.join(2)
        with self._lock:
            pumps, sockets = list(self._pumps), list(self._sockets)
        for pump in pumps:
            pump.join(2)
        for sock in sockets:
            sock.close()
