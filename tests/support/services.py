"""The real servers and tools the tests use: where they are, how to reach them, and the one
way a test says one is missing (a skip, or a failure under OPSKIT_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

REQUIRE = os.environ.get("OPSKIT_REQUIRE_SERVICES") == "1"


def _address(variable: str, default: str) -> tuple[str, str]:
    """``host:port`` from ``variable`` (a check of the fast lane points it at a closed port)."""
    host, _, port = os.environ.get(variable, default).rpartition(":")
    if not host or not port.isdigit():
        raise RuntimeError(f"{variable} must be host:port, not {os.environ[variable]!r}")
    return host, port


# PG_TEST_SERVER / MYSQL_TEST_SERVER: where the shared servers are (host:port). Not OPSKIT_*:
# opskit warns about an OPSKIT_ variable it does not know, and the tests' children inherit these.
_PG_HOST, _PG_PORT = _address("PG_TEST_SERVER", "127.0.0.1:5432")
PG = {"host": _PG_HOST, "port": _PG_PORT, "user": "postgres"}


_MY_HOST, _MY_PORT = _address("MYSQL_TEST_SERVER", "127.0.0.1:3306")
MY = {"host": _MY_HOST, "port": _MY_PORT, "user": "root"}


def unavailable(what: str) -> None:
    """Skip for a missing server, or fail when CI requires every service."""
    if REQUIRE:
        pytest.fail(f"{what} is required (OPSKIT_REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable")


def need_tools(*programs: str, package: str = "") -> None:
    """Skip unless every program is on PATH; fail instead under OPSKIT_REQUIRE_SERVICES=1.

    The one way a test says a tool is missing, so CI can require every tool alike.
    """
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        unavailable(f"{', '.join(missing)} (apt-get install {package or ' '.join(missing)})")


def psql(sql: str, db: str = "postgres", **params: str) -> str:
    conn = {**PG, **params}
    env = {**os.environ, "PGHOST": conn["host"], "PGPORT": conn["port"], "PGUSER": conn["user"]}
    done = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(done.stderr)
    return done.stdout.strip()


def mysql(sql: str, db: str = "") -> str:
    argv = ["mariadb", "-h", MY["host"], "-P", MY["port"], "-u", MY["user"], "-N", "-B"]
    done = subprocess.run(
        [*argv, "-e", sql, *([db] if db else [])],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(done.stderr)
    return done.stdout.strip()


def random_name(prefix: str = "opskit_t") -> str:
    return f"{prefix}_{secrets.token_hex(5)}"
