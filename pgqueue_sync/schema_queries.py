"""The queue's schema: install, upgrade, verify, uninstall.

``Queries`` inherits these. Installs and upgrades of queues in
one PostgreSQL schema are serialised by an advisory lock held for their transaction, so
they are safe to run concurrently, from any number of processes.
"""

from __future__ import annotations

import logging

from psycopg.rows import tuple_row

from .db import Connection
from .errors import SchemaNotInstalledError, SchemaVersionError
from .querying import QueryBase
from .sql import SCHEMA_VERSION, install_lock_key, migration_path
from .translate import database_location, not_installed_message

__all__ = ["SchemaQueries"]

logger = logging.getLogger(__name__)


class SchemaQueries(QueryBase):
    """Install, upgrade, verify and uninstall the queue's schema."""

    def install(self) -> int:
        """Create the queue's tables at the current schema version; return that version.

        Idempotent and safe to run concurrently: a current schema is left as it is. An
        older one is not changed: SchemaVersionError says to run ``pgq-sync upgrade`` (or
        ``upgrade``), since an upgrade is a step an operator takes on purpose.
        """
        with self._conn() as conn, conn.transaction():
            self._lock(conn)
            current = self._installed_version(conn)
            if current is None:
                conn.execute(self._sql.install)
                conn.execute(self._sql.record_version, {"version": SCHEMA_VERSION})
                logger.info("installed pgqueue-sync schema v%d in %s", SCHEMA_VERSION, self._where)
                return SCHEMA_VERSION
        self._check_current(current)
        return current

    def upgrade(self) -> list[int]:
        """Bring an installed schema to the current version; return the versions applied,
        in order (empty if it was current).

        All steps run in one transaction, under the install lock: a failure changes nothing,
        and concurrent upgrades apply each step once. Raises SchemaNotInstalledError if
        there is nothing to upgrade and SchemaVersionError if the schema is newer than this
        library.
        """
        with self._conn() as conn, conn.transaction():
            self._lock(conn)
            current = self._installed_version(conn)
            if current is None:
                raise SchemaNotInstalledError(self._not_installed(conn))
            path = self._path(current)
            for version in path:
                conn.execute(self._sql.migrations[version])
                conn.execute(self._sql.record_version, {"version": version})
                logger.info("upgraded pgqueue-sync schema in %s to v%d", self._where, version)
            return path

    def uninstall(self) -> None:
        """Drop the queue's tables, function and type (jobs and log are lost)."""
        with self._conn() as conn, conn.transaction():
            conn.execute(self._sql.uninstall)

    def verify(self) -> int:
        """Check the schema is installed and current; return its version.

        Raises SchemaNotInstalledError or SchemaVersionError, saying what to do. ``run()``
        calls it first: a worker never runs on a schema of another version.
        """
        with self._conn() as conn:
            current = self._installed_version(conn)
            if current is None:
                raise SchemaNotInstalledError(self._not_installed(conn))
        self._check_current(current)
        return current

    def installed_version(self) -> int | None:
        """The schema version recorded in the database; None if the queue is not installed.

        Raises SchemaVersionError if the version table is empty or its rows have a gap.
        """
        with self._conn() as conn:
            return self._installed_version(conn)

    # -- helpers -------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        s = self.settings
        return f"schema {s.schema!r}" + (f" (prefix {s.prefix!r})" if s.prefix else "")

    def _not_installed(self, conn: Connection) -> str:
        s = self.settings
        return not_installed_message(s.schema, database_location(conn), s.prefix)

    def _lock(self, conn: Connection) -> None:
        conn.execute(self._sql.install_lock, {"key": install_lock_key(self.settings)})

    def _path(self, current: int) -> list[int]:
        try:
            return migration_path(current)
        except SchemaVersionError as exc:
            raise SchemaVersionError(f"{exc} (queue in {self._where})") from None

    def _check_current(self, current: int) -> None:
        if self._path(current):
            raise SchemaVersionError(
                f"the queue schema in {self._where} is v{current}, older than this "
                f"pgqueue-sync (v{SCHEMA_VERSION}): run `pgq-sync upgrade` (or "
                "`qm.queries.upgrade()`); `pgq-sync sql upgrade` prints its SQL"
            )

    def _installed_version(self, conn: Connection) -> int | None:
        with conn.cursor(row_factory=tuple_row) as cur:
            table = self.settings.ident("version").as_string(None)
            cur.execute(self._sql.table_exists, {"name": table})
            row = cur.fetchone()
            if not row or not row[0]:
                return None
            cur.execute(self._sql.recorded_versions)
            row = cur.fetchone()
            versions: list[int] = sorted(set(row[0] or ())) if row else []
        if not versions:
            raise SchemaVersionError(
                f"the version table {table} is empty: the queue's schema version is unknown. "
                f"Record it (INSERT INTO {table} (version) VALUES (n)) or reinstall"
            )
        gaps = sorted(set(range(versions[0], versions[-1] + 1)) - set(versions))
        if gaps:
            raise SchemaVersionError(
                f"the version table {table} records versions {versions}: the upgrade to "
                f"v{gaps[0]} is missing (the table was edited or damaged)"
            )
        return versions[-1]
