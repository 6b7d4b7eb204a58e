"""The real servers and tools the tests use: where they are, how to reach them, and the one
way a test says one is missing (a skip, or a failure under OPSKIT_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

REQUIRE = os.environ.get("OPSKIT_REQUIRE_SERVICES") == "1"


PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}


MY = {"host": "127.0.0.1", "port": "3306", "user": "root"}


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
