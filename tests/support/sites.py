"""A project on one database, filled with the test rows and backed up once: where most tests
of what comes after a backup begin."""

from __future__ import annotations

from pathlib import Path

from dbdata import adapter_for
from support.project import run_opskit, write_project

from opskit.engines import DbParams


def backed_up_site(folder: Path, db: DbParams, opskit: str = "{}") -> Path:
    """``db`` (alias ``default``) filled with the test rows, the project at ``folder`` (with
    ``OPSKIT = opskit``), and one ``opskit backup`` of it that succeeded."""
    adapter_for(db).populate()
    site = write_project(folder, {"default": db}, opskit)
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    return site
