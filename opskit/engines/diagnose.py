"""Turn a client tool's connection failure into one line naming the database, user and server."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from opskit.engines.base import DbParams
from opskit.errors import CommandFailed

# (pattern in the tool's message, hint); {where} is host:port, {user} the user, {name} the database.
_PG = (
    (r"connection refused", "is the server running and listening on {where}?"),
    (r'database ".*" does not exist', "create it, or fix NAME in settings.DATABASES"),
    (r'role ".*" does not exist', "create the role, or fix USER in settings.DATABASES"),
    (r"password authentication failed", "check USER and PASSWORD in settings.DATABASES"),
    (r"no password supplied", "set PASSWORD in settings.DATABASES"),
    (r"no pg_hba\.conf entry", "allow this user, database and host in the server's pg_hba.conf"),
    (r"could not translate host name|name or service not known", "fix HOST"),
    (r"timeout expired|timed out", "check HOST, PORT and the firewall"),
    (r"no such file or directory", "is the server running? set HOST to its socket folder"),
    (r"the database system is (starting up|shutting down)", "wait for the server, then retry"),
)
_MYSQL = (
    (r"\b200[23]\b|can't connect", "is the server running and listening on {where}?"),
    (r"\b1049\b|unknown database", "create it, or fix NAME in settings.DATABASES"),
    (r"\b1045\b", "check USER and PASSWORD in settings.DATABASES"),
    # The server says "access denied" for a database that does not exist too.
    (r"\b1044\b", "create {name} if it does not exist, and grant {user} access to it"),
    (r"\b2005\b|unknown (mysql |mariadb )?server host", "fix HOST"),
    (r"\b2013\b|lost connection", "check the server's log; it may have restarted"),
)
_PG_CONNECTING = re.compile(r"connection to server|could not connect|FATAL:", re.I)
# "ERROR n (state) at line k" is a failed statement; without "at line" the login failed.
_MY_CONNECTING = re.compile(r"ERROR \d+ \(\w+\):|when trying to connect|when selecting the data")


def _detail(vendor: str, message: str) -> str:
    """Return the part of the tool's message that says what the server answered."""
    if vendor == "postgresql":
        found = re.search(r"failed:\s*(?:FATAL:\s*)?(.*)$", message) or re.search(
            r"FATAL:\s*(.*)$", message
        )
    else:
        found = re.search(r'Got error: \d+: "(.*?)" when', message) or re.search(
            r"ERROR \d+ \(\w+\)(?: at line \d+)?: (.*)$", message
        )
    return (found.group(1) if found else message).strip()


def explain(vendor: str, db: DbParams, dbname: str, message: str) -> CommandFailed | None:
    """Return a one-line connection error for a tool's failure message, or None if not one."""
    connecting = _PG_CONNECTING if vendor == "postgresql" else _MY_CONNECTING
    if not connecting.search(message):
        return None
    where = db.address()
    for pattern, hint in _PG if vendor == "postgresql" else _MYSQL:
        if re.search(pattern, message, re.I):
            return CommandFailed(
                f"cannot connect to {db.describe(dbname)}: {_detail(vendor, message)}",
                hint.format(where=where, user=db.user or "the user", name=dbname),
            )
    return None


@contextlib.contextmanager
def connecting(vendor: str, db: DbParams, dbname: str | None = None) -> Iterator[None]:
    """Rephrase a connection failure inside the block; let every other failure through."""
    try:
        yield
    except CommandFailed as exc:
        better = explain(vendor, db, dbname or db.name, exc.message)
        if better is None:
            raise
        raise better from None
