"""A private PostgreSQL cluster for tests that stop, restart or crash the server.

Built from the server binaries of the ``pgserver`` wheel (so it needs no system
PostgreSQL), in a temporary directory, on a free TCP port of 127.0.0.1. As root, the server
runs as an unprivileged system user, as PostgreSQL requires.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import warnings
from pathlib import Path

PASSWORD = "fault-suite-secret"


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import _commands  # noqa: PLC0415 - optional, test-only dependency

    return Path(_commands.POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = free_port()
        self.bin = _bin_dir()
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "pgserver"
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                subprocess.run(["useradd", "-s", "/bin/false", self.user], check=True)
            shutil.chown(root, self.user)
            root.chmod(0o755)

    def _run(self, program: str, *args: str) -> None:
        proc = subprocess.run(
            [str(self.bin / program), *args],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {args} failed:\n{proc.stdout}{proc.stderr}\n{log[-3000:]}"
            )

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self.user:
            shutil.chown(pwfile, self.user)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off -c full_page_writes=off "
            "-c max_connections=200"
        )

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", self._options(), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-m", mode,
            "-o", self._options(), "restart",
        )  # fmt: skip

    def dsn(self, password: str = PASSWORD, **extra: str) -> str:
        options = " ".join(f"{k}={v}" for k, v in extra.items())
        return (
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres "
            f"password={password} {options}"
        ).strip()
