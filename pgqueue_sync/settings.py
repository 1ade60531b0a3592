"""Where the queue lives: schema, table prefix and limits, from code or the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg import sql

from .errors import ConfigurationError, InvalidEntrypointError

__all__ = ["ENTRYPOINT_PATTERN", "Settings", "validate_entrypoint"]

# Schema and prefix: plain lower-case SQL identifiers. They are quoted anyway; the strict
# pattern keeps names predictable across tools (psql, pg_dump, monitoring) and avoids
# case-folding surprises.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*\Z")
_PREFIX = re.compile(r"([a-z_][a-z0-9_]*)?\Z")
MAX_SCHEMA_LENGTH = 40
MAX_PREFIX_LENGTH = 18

ENTRYPOINT_PATTERN = r"[A-Za-z_][A-Za-z0-9_.:\-]*"
_ENTRYPOINT = re.compile(ENTRYPOINT_PATTERN + r"\Z")
MAX_ENTRYPOINT_LENGTH = 128

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024


def validate_entrypoint(name: object) -> str:
    """Return ``name`` if it is a valid entrypoint name, else raise InvalidEntrypointError.

    Names are ASCII letters, digits, ``_ . : -``, start with a letter or ``_``, and are at
    most 128 characters: they show up in logs, metrics labels and shell commands.
    """
    if not isinstance(name, str):
        raise InvalidEntrypointError(f"entrypoint name must be a str, not {type(name).__name__}")
    if not name or len(name) > MAX_ENTRYPOINT_LENGTH or not _ENTRYPOINT.match(name):
        raise InvalidEntrypointError(
            f"invalid entrypoint name {name!r}: use 1 to {MAX_ENTRYPOINT_LENGTH} ASCII letters, "
            "digits, '_', '.', ':' or '-', starting with a letter or '_'"
        )
    return name


def _int_from_env(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{key} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """The queue's location in the database and its limits.

    ``Settings.from_env()`` reads them from ``PGQUEUE_SCHEMA``, ``PGQUEUE_PREFIX`` and
    ``PGQUEUE_MAX_PAYLOAD_BYTES``.

    Attributes:
        schema: the PostgreSQL schema (namespace) holding the tables: lower-case letters,
            digits and ``_``, at most 40 characters. Default ``public``.
        prefix: put in front of every table, type and function name, so several
            independent queues can share one schema; at most 18 characters. Default none.
        max_payload_bytes: the largest payload ``enqueue`` accepts (and result a handler
            may return). Default 1 MiB.

    Raises:
        ConfigurationError: an invalid schema name, prefix or limit.
    """

    schema: str = "public"
    prefix: str = ""
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    _names: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.schema, str) or not _IDENTIFIER.match(self.schema):
            raise ConfigurationError(
                f"invalid schema name {self.schema!r}: use lower-case letters, digits and '_', "
                "starting with a letter or '_'"
            )
        if len(self.schema) > MAX_SCHEMA_LENGTH:
            raise ConfigurationError(
                f"schema name {self.schema!r} is longer than {MAX_SCHEMA_LENGTH} characters"
            )
        if not isinstance(self.prefix, str) or not _PREFIX.match(self.prefix):
            raise ConfigurationError(
                f"invalid table prefix {self.prefix!r}: use lower-case letters, digits and '_', "
                "starting with a letter or '_'"
            )
        if len(self.prefix) > MAX_PREFIX_LENGTH:
            raise ConfigurationError(
                f"table prefix {self.prefix!r} is longer than {MAX_PREFIX_LENGTH} characters"
            )
        if not isinstance(self.max_payload_bytes, int) or self.max_payload_bytes <= 0:
            raise ConfigurationError("max_payload_bytes must be a positive integer")
        p = self.prefix
        names = {
            "jobs": f"{p}pgqueue_jobs",
            "log": f"{p}pgqueue_log",
            "version": f"{p}pgqueue_schema_version",
            "status": f"{p}pgqueue_status",
            "notify_fn": f"{p}pgqueue_notify",
            "notify_trigger": f"{p}pgqueue_jobs_notify",
            "dequeue_idx": f"{p}pgqueue_jobs_dequeue_idx",
            "picked_idx": f"{p}pgqueue_jobs_picked_idx",
            "dedupe_idx": f"{p}pgqueue_jobs_dedupe_idx",
            "log_job_idx": f"{p}pgqueue_log_job_id_idx",
            "log_created_idx": f"{p}pgqueue_log_created_idx",
            "limits": f"{p}pgqueue_limits",
            "workers": f"{p}pgqueue_workers",
            "paused": f"{p}pgqueue_paused",
            "failed_idx": f"{p}pgqueue_jobs_failed_idx",
            "log_problem_idx": f"{p}pgqueue_log_problem_idx",
            "schedules": f"{p}pgqueue_schedules",
        }
        object.__setattr__(self, "_names", names)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``PGQUEUE_SCHEMA``, ``PGQUEUE_PREFIX`` and ``PGQUEUE_MAX_PAYLOAD_BYTES``.

        Keyword arguments win over the environment.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "schema": env.get("PGQUEUE_SCHEMA") or "public",
            "prefix": env.get("PGQUEUE_PREFIX", ""),
            "max_payload_bytes": _int_from_env(
                env, "PGQUEUE_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def name(self, key: str) -> str:
        """The bare (unqualified) name of one of the queue's objects."""
        return self._names[key]

    def ident(self, key: str) -> sql.Identifier:
        """The schema-qualified, quoted identifier of one of the queue's objects."""
        return sql.Identifier(self.schema, self._names[key])

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel (at most 63 bytes, PostgreSQL's identifier limit)."""
        return f"pgq.{self.schema}.{self.prefix}"

    @property
    def done_channel(self) -> str:
        """The channel of ``done`` events alone (outcomes written: one per completion),
        heard by ``wait_for`` and by workers with a ``concurrency_limit``; the others need
        not wake for them. As long as ``channel``."""
        return f"pgd.{self.schema}.{self.prefix}"
