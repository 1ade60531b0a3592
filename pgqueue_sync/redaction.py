"""Reading a connection string without ever showing its password.

A conninfo (``key=value`` or a ``postgresql://`` URI) is shown in messages only in a form
libpq could parse, with every secret masked. A string that cannot be parsed is never echoed,
not even in part: libpq's own parse errors quote the input, so they are replaced by a fixed
description of the problem. A URI whose password holds an unencoded ``@`` or ``/`` is
parseable, but libpq then reads pieces of the password as the host, port or database name;
such a string is not shown either, and those pieces are scrubbed from connection errors.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["NOT_SHOWN", "ConninfoReading", "read_conninfo", "redact_conninfo", "scrub"]

NOT_SHOWN = "not shown: it could not be parsed safely"
MASK = "***"

# Keywords whose values are secrets; in ``options``, -c settings whose name looks secret.
_SECRET_KEYWORDS = ("password", "sslpassword")
_SECRET_OPTION = re.compile(r"(?i)([\w.]*(?:pass|secret|token)[\w.]*=)('(?:[^'\\]|\\.)*'|\S+)")
_URI = re.compile(r"(?i)^\s*postgres(?:ql)?://")
# What can end a piece of a password that libpq split across fields.
_DELIMITERS = re.compile(r"[\s/@?#:\[\],&='\"\\%]+")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_SHORTEST_FRAGMENT = 4

# libpq's parse errors quote the input: each is described without it.
_PARSE_PROBLEMS = (
    ("missing \"=\" after", 'a word without "=" (quote a value that holds spaces: '
     "key='a value', with \\' and \\\\ inside)"),
    ("unterminated quoted string", "an unterminated quoted value"),
    ("invalid connection option", "an unknown keyword (keywords are lower case)"),
    ("matching \"]\"", 'an unterminated IPv6 address in the URI (no closing "]")'),
    ("IPv6 host address may not be empty", "an empty IPv6 address in the URI"),
    ("unexpected character", "an unexpected character in the URI"),
    ("key/value separator", "an invalid URI query parameter (expected key=value)"),
    ("invalid URI query parameter", "an invalid URI query parameter (expected key=value)"),
    ("percent-encoded", "an invalid percent-encoding in the URI (write % as %25, @ as %40, "
     "/ as %2F)"),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ConninfoReading:
    """What could be read of a conninfo.

    ``params`` (as libpq reads them, password included: never show them) is None when it
    could not be parsed; ``problem`` then says why, without quoting it. ``shown`` is the
    form fit for messages. ``secrets`` are the strings to scrub from any text derived from
    it; ``ambiguous`` is set when libpq's reading may have put pieces of the password in
    other fields.
    """

    params: dict[str, str] | None = dataclasses.field(repr=False)
    shown: str
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    ambiguous: bool = False
    problem: str | None = None


def _describe_parse_error(exc: BaseException) -> str:
    text = str(exc)
    for marker, problem in _PARSE_PROBLEMS:
        if marker in text:
            return problem
    return "unreadable"


def _pieces(secret: str) -> set[str]:
    """A secret, its URI-encoded forms, and the pieces libpq may have split it into."""
    pieces = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)}
    with_decoded = {secret, urllib.parse.unquote(secret)}
    for text in with_decoded:
        pieces.add(text)
        pieces.update(p for p in _DELIMITERS.split(text) if len(p) >= _SHORTEST_FRAGMENT)
    return {p for p in pieces if p}


def _uri_password(conninfo: str) -> str | None:
    """The password of a URI as a person reads it, when libpq reads it otherwise.

    libpq ends the user info at the first ``@`` or ``/``. If an ``@`` follows in the host
    part (or, after a ``/``, in the path), the password held an unencoded ``@`` or ``/``:
    libpq put the rest of it in the host, port or database name. Returns None when the
    two readings agree.
    """
    match = _URI.match(conninfo)
    if match is None:
        return None
    rest = conninfo[match.end() :]
    end = re.match(r"[^@/]*", rest)
    assert end is not None
    i = end.end()
    if i == len(rest):
        return None
    part = re.match(r"[^/?]*" if rest[i] == "@" else r"[^?]*", rest[i + 1 :])
    assert part is not None
    if "@" not in part.group():
        return None
    userinfo = rest[: i + 1 + part.group().rfind("@")]
    return userinfo.split(":", 1)[1] if ":" in userinfo else None


def read_conninfo(conninfo: str) -> ConninfoReading:
    """Parse ``conninfo`` for display: never raises, never keeps a password in ``shown``."""
    if "\x00" in conninfo:
        return ConninfoReading(None, NOT_SHOWN, problem="a NUL character")
    try:
        parsed = conninfo_to_dict(conninfo)
    except UnicodeError:
        return ConninfoReading(None, NOT_SHOWN, problem="characters that are not valid UTF-8")
    except psycopg.Error as exc:
        return ConninfoReading(None, NOT_SHOWN, problem=_describe_parse_error(exc))
    params = {key: str(value) for key, value in parsed.items() if value is not None}
    values = dict(params)
    secrets: set[str] = set()
    for key in _SECRET_KEYWORDS:
        if values.get(key):
            secrets.update(_pieces(values[key]))
            values[key] = MASK
    if "options" in values:
        for match in _SECRET_OPTION.finditer(values["options"]):
            secrets.update(_pieces(match.group(2).strip("'")))
        values["options"] = _SECRET_OPTION.sub(rf"\1{MASK}", values["options"])
    intended = _uri_password(conninfo)
    ambiguous = intended is not None and urllib.parse.unquote(intended) != params.get("password")
    if ambiguous:
        assert intended is not None
        secrets.update(_pieces(intended))
        shown = NOT_SHOWN
    else:
        shown = make_conninfo("", **values)
    ordered = tuple(sorted(secrets, key=len, reverse=True))
    return ConninfoReading(params, shown, ordered, ambiguous)


def redact_conninfo(conninfo: str) -> str:
    """``conninfo`` fit for a message: its secrets masked with ``***``, or a note that it is
    not shown when it cannot be parsed safely."""
    if not conninfo.strip():
        return conninfo
    return read_conninfo(conninfo).shown


def scrub(text: str, reading: ConninfoReading) -> str:
    """``text`` (a libpq or server message about ``reading``'s conninfo) without secrets.

    When the conninfo was ambiguous every quoted value goes too: a short piece of the
    password may be quoted as a host or port name.
    """
    for secret in reading.secrets:
        if len(secret) >= 3 or f'"{secret}"' in text or f"'{secret}'" in text:
            text = text.replace(secret, MASK)
    if reading.ambiguous:
        text = _QUOTED.sub(MASK, text)
    return text
