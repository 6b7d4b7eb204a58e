"""A throwaway Django project on the test's databases, and opskit run on it as a real process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from opskit.engines import DbParams

OPSKIT = Path(sys.executable).with_name("opskit")

# Sunday 2026-11-22 at 02:00 local: the slot is 0-Sunday.
SUNDAY = datetime(2026, 11, 22, 2, 0).astimezone()


def write_project(folder: Path, databases: dict[str, DbParams], opskit: str = "{}") -> Path:
    """Write a minimal Django project (manage.py and settings) using ``databases``."""
    folder.mkdir(parents=True, exist_ok=True)
    module = f"settings_{secrets.token_hex(4)}"
    entries = []
    for alias, db in databases.items():
        entries.append(
            f"    {alias!r}: {{'ENGINE': {db.django_engine!r}, 'NAME': {db.name!r},"
            f" 'USER': {db.user!r}, 'PASSWORD': {db.password!r}, 'HOST': {db.host!r},"
            f" 'PORT': {db.port!r}, 'OPTIONS': {db.options!r}}},"
        )
    # A MySQL project needs a driver to set Django up; PyMySQL stands in for mysqlclient.
    driver = "import pymysql\npymysql.install_as_MySQLdb()\n"
    needs_driver = any("mysql" in db.django_engine for db in databases.values())
    (folder / f"{module}.py").write_text(
        (driver if needs_driver else "") + "SECRET_KEY = 'test-only'\n"
        "USE_TZ = True\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.sessions']\n"
        "DATABASES = {\n" + "\n".join(entries) + "\n}\n"
        f"OPSKIT = {opskit}\n"
    )
    (folder / "manage.py").write_text(
        f"import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', '{module}')\n"
    )
    return folder


def run_opskit(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: int = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``opskit`` console script as a real process."""
    full_env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    full_env.update(env or {})
    return subprocess.run(
        [str(OPSKIT), *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
