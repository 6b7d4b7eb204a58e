"""Cron jobs for another user: installed as root, they start and back up as that user."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cron import cron_env, throwaway_user
from support.project import run_opskit, write_project
from support.services import unavailable

from opskit.engines import DbParams

TAG = re.compile(r" # opskit:\S+$")


@pytest.fixture
def user() -> Iterator[str]:
    """A throwaway system user (no home), removed with its crontab afterwards."""
    with throwaway_user("opskit-night", "su") as name:
        yield name


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user may enter (pytest's own tmp folder is root's, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="opskit-shared-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def opskit_for_all(shared: Path) -> Path:
    """An opskit executable other users can run: a venv on a system Python they can reach.

    The test venv's Python may live in root's private home; this one runs /usr/bin/python3
    (the same version) with the test venv's packages added as a site folder.
    """
    system = Path("/usr/bin/python3")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    probe = subprocess.run(
        [system, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.stdout.strip() != version:
        unavailable(f"a /usr/bin/python3 of version {version} that every user can run")
    venv = shared / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", venv], check=True)
    packages = sysconfig.get_paths()["purelib"]
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "opskit-test.pth").write_text(f"import site; site.addsitedir({packages!r})\n")
    script = venv / "bin" / "opskit"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nfrom opskit.cli import main\nmain()\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def project(shared: Path, pg_db: DbParams) -> Path:
    """A PostgreSQL project in the shared folder (readable by everyone, owned by root)."""
    folder = write_project(shared / "shop", {"default": pg_db})
    folder.chmod(0o755)
    return folder


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fake /proc with a cron daemon (none runs here) and a tmp cron.d folder."""
    return cron_env(tmp_path)


def opskit(exe: Path, *args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"} | env
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, env=full, cwd="/", check=False
    )


def installed_commands(user: str) -> list[str]:
    text = subprocess.run(["crontab", "-l", "-u", user], capture_output=True, text=True).stdout
    return [TAG.sub("", line).split(None, 5)[5] for line in text.splitlines() if TAG.search(line)]


def as_user(user: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run a crontab command the way cron does: /bin/sh -c, as the user, a bare PATH."""
    return subprocess.run(
        ["su", user, "-s", "/bin/sh", "-c", command.replace("\\%", "%")],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.mark.postgresql
@pytest.mark.parametrize("where", ["crontab", "cron.d"])
def test_install_for_a_user_as_root_makes_the_folders_theirs_and_the_job_backs_up_as_them(
    user: str, opskit_for_all: Path, project: Path, env: dict[str, str], where: str
) -> None:
    (project / "crontab.txt").write_text("0 2 * * * opskit backup\n")

    tab = ("--cron-d", "shop") if where == "cron.d" else ()
    args = ("--project-dir", project, "cron", "install", *tab, "--user", user)
    done = opskit(opskit_for_all, *args, env=env)

    assert done.returncode == 0, done.stderr
    assert "would fail" not in done.stderr
    uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout)
    assert (project / "logs").stat().st_uid == uid
    assert (project / "db_backups").stat().st_uid == uid
    if where == "cron.d":  # the system format: a user column after the schedule
        lines = (Path(env["OPSKIT_CRON_D_DIR"]) / "shop").read_text().splitlines()
        [command] = [TAG.sub("", ln).split(None, 6)[6] for ln in lines if TAG.search(ln)]
        assert f" {user} " in lines[-1]
    else:
        [command] = installed_commands(user)
    ran = as_user(user, command)
    assert ran.returncode == 0, ran.stderr + (project / "logs" / "cron.log").read_text()
    archives = list((project / "db_backups").glob("?-*.sql.zst"))
    assert len(archives) == 1
    assert archives[0].stat().st_uid == uid
    assert "opskit backup: 0 errors" in (project / "logs" / "cron.log").read_text()
    which = ("--cron-d", "shop") if where == "cron.d" else ("--cron-user", user)
    checked = opskit(
        opskit_for_all,
        "--project-dir",
        project,
        "check",
        "--cron",
        *which,
        "--only",
        "cron",
        env=env,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"as {user}: cron.log, the folders, opskit and the project are usable" in checked.stdout


@pytest.mark.postgresql
def test_cron_d_for_a_user_refuses_a_log_folder_they_cannot_write_naming_the_chown(
    user: str, opskit_for_all: Path, project: Path, env: dict[str, str]
) -> None:
    (project / "logs").mkdir(mode=0o755)  # root's, as an earlier root run would leave it

    done = opskit(
        opskit_for_all,
        "--project-dir",
        project,
        "cron",
        "install",
        "--cron-d",
        "shop",
        "--user",
        user,
        env=env,
    )

    assert done.returncode == 1
    assert done.stderr.startswith(f"opskit: error: the jobs could not write: {user} cannot write")
    assert f"chown -R {user}: {project / 'logs'}" in done.stderr
    assert not (Path(env["OPSKIT_CRON_D_DIR"]) / "shop").exists()


@pytest.mark.postgresql
def test_check_cron_for_the_user_fails_when_cron_log_is_roots(
    user: str, opskit_for_all: Path, project: Path, env: dict[str, str]
) -> None:
    base = ("--project-dir", project)
    assert opskit(opskit_for_all, *base, "cron", "install", "--user", user, env=env).returncode == 0
    log = project / "logs" / "cron.log"
    log.write_text("")
    log.chmod(0o600)  # root's file: the user's shell cannot open it for >>

    checked = opskit(
        opskit_for_all, *base, "check", "--cron", "--cron-user", user, "--only", "cron", env=env
    )

    assert checked.returncode == 1, checked.stdout
    assert f"{user} cannot append to {log}" in checked.stdout
    assert f"chown {user}: {log}" in checked.stdout


def test_check_cron_for_the_user_names_the_private_folder_hiding_the_project(
    user: str, tmp_path: Path, sqlite_db: DbParams, env: dict[str, str]
) -> None:
    # pytest's tmp folder is root's and 0700: the user cannot even reach the project.
    site = write_project(tmp_path / "site", {"default": sqlite_db})

    installed = run_opskit("--project-dir", site, "cron", "install", "--user", user, env=env)
    checked = run_opskit(
        "--project-dir", site, "check", "--cron", "--cron-user", user, "--only", "cron", env=env
    )

    assert installed.returncode == 0, installed.stderr
    assert "opskit: warning: the jobs would fail:" in installed.stderr
    assert checked.returncode >= 1
    closed = next(p for p in reversed(site.parents) if p.stat().st_mode & 0o005 == 0)
    assert f"{user} cannot reach" in checked.stdout
    assert f"{closed} is closed to {user}" in checked.stdout


@pytest.mark.postgresql
def test_check_cron_not_as_root_warns_that_it_cannot_check_for_another_user(
    user: str, opskit_for_all: Path, project: Path, shared: Path
) -> None:
    # Root's jobs in a cron.d file, checked by another user: they cannot become root to ask.
    (shared / "cron.d").mkdir(mode=0o755)
    (shared / "proc" / "1").mkdir(parents=True)
    (shared / "proc" / "1" / "comm").write_text("cron\n")
    env = {
        "OPSKIT_TEST_PROC_DIR": str(shared / "proc"),
        "OPSKIT_CRON_D_DIR": str(shared / "cron.d"),
    }
    args = ("--project-dir", project, "cron", "install", "--cron-d", "shop", "--user", "root")
    assert opskit(opskit_for_all, *args, env=env).returncode == 0
    (project / "logs").chmod(0o755)  # so the checking user can open the log folder at all

    command = f"{opskit_for_all} --project-dir {project} check --cron --cron-d shop --only cron"
    done = subprocess.run(
        ["su", user, "-s", "/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )

    assert "WARN  cron:start: the jobs run as root: only root can check" in done.stdout, (
        done.stdout + done.stderr
    )
