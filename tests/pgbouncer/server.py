"""A throwaway PgBouncer in front of the test database, for tests and benchmarks.

``PgBouncer(upstream_dsn, tmp_dir).start()`` writes a config in ``tmp_dir``, runs the
``pgbouncer`` binary (Debian package ``pgbouncer``) on a free loopback port and waits until
it answers; ``dsn`` is then the conninfo through it. As root, PgBouncer refuses to run
unless told which unprivileged user to become (``-u``): it reads its config first, then
drops to ``nobody``.

Server connections are handed out round robin (``server_round_robin = 1``) from a small
pool, all of them opened at start: consecutive transactions of one client land on different
server connections, which is what exposes any reliance on session state (prepared
statements, SET, LISTEN) at once instead of once in a while.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["PgBouncer", "pgbouncer_binary"]

PoolMode = Literal["transaction", "session", "statement"]


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable, or None if it is not installed (/usr/sbin is often not on
    a non-root PATH)."""
    found = shutil.which("pgbouncer")
    if found is None and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PgBouncer:
    """One PgBouncer process; a context manager that stops it on exit."""

    def __init__(
        self,
        upstream_dsn: str,
        directory: Path,
        *,
        pool_mode: PoolMode = "transaction",
        pool_size: int = 2,
        round_robin: bool = True,
        binary: str | None = None,
    ) -> None:
        found = binary or pgbouncer_binary()
        if found is None:
            raise FileNotFoundError("pgbouncer is not installed (apt-get install pgbouncer)")
        self.binary = found
        self.upstream = conninfo_to_dict(upstream_dsn)
        self.directory = directory
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.round_robin = round_robin
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "pgbouncer.log"

    @property
    def user(self) -> str:
        return str(self.upstream.get("user") or "postgres")

    @property
    def dbname(self) -> str:
        return str(self.upstream.get("dbname") or self.user)

    @property
    def dsn(self) -> str:
        """The conninfo of the database through PgBouncer."""
        return make_conninfo(
            "", host="127.0.0.1", port=self.port, user=self.user, dbname=self.dbname
        )

    @property
    def admin_dsn(self) -> str:
        """PgBouncer's admin console (SHOW POOLS, SHOW SERVERS, ...)."""
        return make_conninfo(
            "", host="127.0.0.1", port=self.port, user=self.user, dbname="pgbouncer"
        )

    def _config(self) -> str:
        target = {
            "host": str(self.upstream.get("host") or "127.0.0.1"),
            "port": str(self.upstream.get("port") or "5432"),
            "dbname": self.dbname,
            "user": self.user,
        }
        if self.upstream.get("password"):
            target["password"] = str(self.upstream["password"])
        database = " ".join(f"{key}={_quote(value)}" for key, value in target.items())
        users = self.directory / "users.txt"
        users.write_text(f'"{self.user}" ""\n')
        return "\n".join(
            [
                "[databases]",
                f"{self.dbname} = {database}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {users}",
                f"admin_users = {self.user}",
                f"pool_mode = {self.pool_mode}",
                f"default_pool_size = {self.pool_size}",
                "max_client_conn = 500",
                f"server_round_robin = {int(self.round_robin)}",
                "",
            ]
        )

    def start(self, timeout: float = 15.0) -> PgBouncer:
        for _ in range(5):  # another process may take the free port first
            self.port = _free_port()
            config = self.directory / "pgbouncer.ini"
            config.write_text(self._config())
            command = [self.binary]
            if os.geteuid() == 0:
                command += ["-u", "nobody"]
            command.append(str(config))
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            if self._wait_ready(timeout):
                self._fill_pool()
                return self
            self.stop()
        raise RuntimeError(f"pgbouncer did not start:\n{self.log_path.read_text()[-2000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(psycopg.Error), psycopg.connect(self.dsn, connect_timeout=2):
                return True
            time.sleep(0.05)  # a process to come up: no event to wait on
        return False

    def _fill_pool(self) -> None:
        """Open every server connection of the pool now: with one only, round robin would
        hand every client the same one and hide session-state bugs."""
        clients = [psycopg.connect(self.dsn) for _ in range(self.pool_size)]
        try:
            for client in clients:  # each holds its server connection until it commits
                client.execute("SELECT 1")
            for client in clients:  # (one that closed in a transaction would be dropped)
                client.commit()
        finally:
            for client in clients:
                client.close()

    def servers(self) -> list[dict[str, object]]:
        """SHOW SERVERS: the server connections PgBouncer holds now."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SHOW SERVERS")
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> PgBouncer:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
