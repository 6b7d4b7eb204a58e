"""The package as users get it: built without warnings, installed into a fresh venv, run."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support.project import write_project

from opskit.engines import DbParams

REPO = Path(__file__).resolve().parent.parent


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.slow
def test_the_wheel_builds_without_warnings_installs_into_a_fresh_venv_and_runs_elsewhere(
    tmp_path: Path, sqlite_db: DbParams
) -> None:
    # Byte-compiling off (PYTHONDONTWRITEBYTECODE) is this machine's choice, not the package's.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    dist = tmp_path / "dist"
    output = run(sys.executable, "-m", "build", "--outdir", dist, REPO, cwd=REPO, env=env)

    assert "warning" not in output.lower(), output
    [wheel] = dist.glob("opskit-*.whl")
    assert len(list(dist.glob("opskit-*.tar.gz"))) == 1
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    run(venv / "bin" / "pip", "install", "-q", wheel, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site = write_project(tmp_path / "site", {"default": sqlite_db})
    (site / "db.sqlite3").touch()
    clean = {k: v for k, v in env.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    assert "opskit, version" in run(venv / "bin" / "opskit", "--version", cwd=elsewhere, env=clean)
    out = run(venv / "bin" / "opskit", "--project-dir", site, "backup", cwd=elsewhere, env=clean)
    assert "opskit backup: 0 errors, 1 database(s)" in out
    assert len(list((site / "db_backups").glob("?-*.sqlite3.zst"))) == 1
    # What the wheel must carry besides code: the app's templates, its manage.py command and
    # the default schedule (the repository's crontab.txt, byte for byte).
    probe = (
        "import importlib.resources as r, opskit.management.commands.opskit;"
        " print(r.files('opskit').joinpath('templates/opskit/maintenance.html').is_file())"
    )
    assert run(venv / "bin" / "python", "-c", probe, cwd=elsewhere, env=clean).strip() == "True"
    schedule = (
        "import importlib.resources as r;"
        " print(r.files('opskit').joinpath('crontab.txt').read_text(), end='')"
    )
    shipped = run(venv / "bin" / "python", "-c", schedule, cwd=elsewhere, env=clean)
    assert shipped == (REPO / "crontab.txt").read_text()
    with zipfile.ZipFile(wheel) as whl:
        [name] = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = whl.read(name).decode()
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    for classifier in ("Python :: 3.11", "Python :: 3.13", "Django :: 4.2", "Django :: 5.2"):
        assert classifier in metadata
    assert "Project-URL: Documentation" in metadata
