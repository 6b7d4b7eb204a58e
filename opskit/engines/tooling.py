"""Client tools: find them with a helpful message, and check they can handle the server."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from opskit.errors import ToolNotFound

PACKAGES = {
    "PG_BIN_DIR": "the PostgreSQL client tools (e.g. apt install postgresql-client)",
    "MYSQL_BIN_DIR": "the MariaDB or MySQL client tools (e.g. apt install mariadb-client)",
}
EXAMPLE_DIRS = {"PG_BIN_DIR": "/usr/lib/postgresql/16/bin", "MYSQL_BIN_DIR": "/opt/mysql/bin"}


def find_tool(names: Sequence[str], bin_dir: Path | None, setting: str) -> Path:
    """Return the first of ``names`` in ``bin_dir`` (if set) or on PATH; say where if not."""
    for name in names:
        found = shutil.which(name, path=str(bin_dir) if bin_dir else None)
        if found:
            return Path(found)
    wanted = " or ".join(names)
    if bin_dir is None:
        where = f"on PATH ({os.environ.get('PATH', '')})"
    elif not bin_dir.is_dir():
        where = f"in {bin_dir} (OPSKIT['{setting}'], which is not a folder)"
    else:
        where = f"in {bin_dir} (OPSKIT['{setting}'])"
    raise ToolNotFound(
        f"{wanted} not found {where}",
        f"install {PACKAGES.get(setting, 'the database client tools')}, or set"
        f" OPSKIT['{setting}'] (or OPSKIT_{setting}) to the folder that holds {names[0]},"
        f" e.g. {EXAMPLE_DIRS.get(setting, '/usr/local/bin')}",
    )


# --- PostgreSQL ---------------------------------------------------------------------------------

PgMajor = tuple[int, ...]  # (15,) from 10 on; (9, 6) before, when majors had two parts


def pg_tool_major(version_text: str) -> PgMajor | None:
    """Return the major version in ``pg_dump --version`` output, or None if unreadable."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", version_text)
    if not match:
        return None
    first = int(match.group(1))
    if first >= 10 or match.group(2) is None:
        return (first,)
    return (first, int(match.group(2)))


def pg_server_major(version_num: str) -> PgMajor | None:
    """Return the major version of a ``server_version_num`` such as 150020 or 90624."""
    if not version_num.strip().isdigit():
        return None
    num = int(version_num)
    return (num // 10000,) if num >= 100000 else (num // 10000, num // 100 % 100)


def _dotted(major: PgMajor) -> str:
    return ".".join(map(str, major))


def pg_dump_problem(
    version_text: str, version_num: str, where: str, tool: str = ""
) -> ToolNotFound | None:
    """Return why this pg_dump cannot dump that server (before trying), or None if it can."""
    client, server = pg_tool_major(version_text), pg_server_major(version_num)
    if client is None or server is None:
        return None  # unknown: let pg_dump itself decide rather than block a backup
    path = f" ({tool})" if tool else ""
    if client < server:
        new = _dotted(server)
        return ToolNotFound(
            f"pg_dump {_dotted(client)}{path} cannot dump PostgreSQL {new} on {where}",
            f"install postgresql-client-{new} or set OPSKIT['PG_BIN_DIR'] to its bin folder"
            f" (e.g. /usr/lib/postgresql/{new}/bin)",
        )
    if client >= (15,) and server < (9, 2):
        # pg_dump 15 dropped support for servers before 9.2.
        return ToolNotFound(
            f"pg_dump {_dotted(client)}{path} cannot dump PostgreSQL {_dotted(server)} on {where}",
            "use pg_dump 14 or older (set OPSKIT['PG_BIN_DIR'] to its bin folder)",
        )
    return None


# --- MySQL and MariaDB --------------------------------------------------------------------------

_MY_PATTERNS = (
    r"Distrib (\d+)\.(\d+)",  # mysqldump 5.7, mariadb-dump 10: "Ver 10.19 Distrib 10.11.6-MariaDB"
    r"\bfrom (\d+)\.(\d+)",  # mariadb-dump 11: "mariadb-dump from 11.4.2-MariaDB, client 10.19"
    r"\bVer (\d+)\.(\d+)\.\d+ for",  # mysqldump 8: "mysqldump  Ver 8.0.36 for Linux on x86_64"
    r"^(\d+)\.(\d+)",  # a server's VERSION(): "10.11.6-MariaDB-0+deb12u1", "8.0.36"
)


def mysql_series(version_text: str) -> tuple[str, tuple[int, int]] | None:
    """Return ("mariadb"|"mysql", (major, minor)) from a dump tool's or server's version."""
    for pattern in _MY_PATTERNS:
        match = re.search(pattern, version_text.strip())
        if match:
            flavour = "mariadb" if "mariadb" in version_text.lower() else "mysql"
            return flavour, (int(match.group(1)), int(match.group(2)))
    return None


def mysql_mismatch(tool_text: str, server_text: str) -> str:
    """Return a warning if the dump tool's flavour or release series differs from the server's."""
    tool, server = mysql_series(tool_text), mysql_series(server_text)
    if tool is None or server is None or tool == server:
        return ""

    def name(found: tuple[str, tuple[int, int]]) -> str:
        flavour = "MariaDB" if found[0] == "mariadb" else "MySQL"
        return f"{flavour} {found[1][0]}.{found[1][1]}"

    return f"the dump tool is from {name(tool)} but the server is {name(server)}"
