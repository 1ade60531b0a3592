from __future__ import annotations

import pytest

from pgqueue_sync import ConfigurationError, InvalidEntrypointError, Settings
from pgqueue_sync.redaction import redact_conninfo
from pgqueue_sync.settings import validate_entrypoint


def test_defaults_and_names() -> None:
    s = Settings()
    assert s.schema == "public"
    assert s.name("jobs") == "pgqueue_jobs"
    assert s.ident("jobs").as_string(None) == '"public"."pgqueue_jobs"'
    assert Settings(prefix="app_").name("log") == "app_pgqueue_log"


def test_channel_fits_postgres_identifier_limit() -> None:
    s = Settings(schema="s" * 40, prefix="p" * 18)
    assert len(s.channel.encode()) <= 63
    assert len(s.done_channel.encode()) <= 63
    assert s.done_channel != s.channel


@pytest.mark.parametrize(
    "schema",
    ['bad"name', "semi;colon", "Upper", "", "1starts_with_digit", "ünïcode", "a" * 41, "x y"],
)
def test_schema_names_are_validated(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        Settings(schema=schema)


@pytest.mark.parametrize("prefix", ["a'b", "drop;", "Ü_", "p" * 19, "-x"])
def test_prefixes_are_validated(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        Settings(prefix=prefix)


def test_from_env_reads_variables_and_overrides_win() -> None:
    env = {"PGQUEUE_SCHEMA": "jobs", "PGQUEUE_PREFIX": "app_", "PGQUEUE_MAX_PAYLOAD_BYTES": "10"}
    s = Settings.from_env(env)
    assert (s.schema, s.prefix, s.max_payload_bytes) == ("jobs", "app_", 10)
    assert Settings.from_env(env, schema="other").schema == "other"
    with pytest.raises(ConfigurationError, match="PGQUEUE_MAX_PAYLOAD_BYTES"):
        Settings.from_env({"PGQUEUE_MAX_PAYLOAD_BYTES": "lots"})


@pytest.mark.parametrize(
    "name", ["fetch", "emails.send", "billing:invoice-v2", "_private", "a" * 128]
)
def test_valid_entrypoint_names(name: str) -> None:
    assert validate_entrypoint(name) == name


@pytest.mark.parametrize(
    "name", ["", "has space", "quote'", 'dq"', "semi;colon", "ünicode", "a" * 129, "1abc", None, 3]
)
def test_invalid_entrypoint_names(name: object) -> None:
    with pytest.raises(InvalidEntrypointError):
        validate_entrypoint(name)


@pytest.mark.parametrize(
    ("conninfo", "secret"),
    [
        ("host=db user=app password=hunter2 dbname=x", "hunter2"),
        ("postgresql://app:hunter2@db:5432/x", "hunter2"),
        ("postgresql://app:hunter2@db:5432/x?sslmode=require", "hunter2"),
        ("password='hunter 2' host=db", "hunter 2"),
        ("not a dsn password=hunter2", "hunter2"),
    ],
)
def test_passwords_never_appear_in_redacted_conninfo(conninfo: str, secret: str) -> None:
    redacted = redact_conninfo(conninfo)
    assert secret not in redacted
    assert "***" in redacted or "not shown" in redacted
