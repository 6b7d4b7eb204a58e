"""opskit cron install/remove/show through the real CLI, on a real crontab and a cron.d folder."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cron import cron_env, fake_proc, throwaway_user
from support.project import OPSKIT, run_opskit, write_project

from opskit.engines import DbParams

REPO = Path(__file__).resolve().parents[2]
FOREIGN = (
    "# my own jobs\nMAILTO=ops@example.com\n*/5 * * * * /usr/bin/sync-photos --to '/mnt/a b'\n"
)
TAG = re.compile(r" # opskit:(\S+)$")


@pytest.fixture
def site(tmp_path: Path, sqlite_db: DbParams) -> Path:
    """A project folder named ``site`` (so its jobs are tagged opskit:site:...)."""
    return write_project(tmp_path / "site", {"default": sqlite_db})


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment for opskit: a running cron daemon, and cron.d files in a tmp folder."""
    return cron_env(tmp_path)


@pytest.fixture
def cron_user() -> Iterator[str]:
    """A throwaway system user whose crontab the test may edit (never the developer's own)."""
    with throwaway_user("opskit-test") as name:
        yield name


def crontab(user: str, text: str | None = None) -> str:
    """Set (text given) or read a user's crontab with the real crontab program."""
    if text is not None:
        subprocess.run(["crontab", "-u", user, "-"], input=text, text=True, check=True)
        return text
    done = subprocess.run(["crontab", "-l", "-u", user], capture_output=True, text=True)
    return done.stdout


def cron(site: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_opskit("--project-dir", site, "cron", *args, env=env)


def test_install_adds_tagged_jobs_and_keeps_foreign_lines(
    site: Path, env: dict[str, str], cron_user: str
) -> None:
    crontab(cron_user, FOREIGN)

    done = cron(site, env, "install", "--user", cron_user)

    assert done.returncode == 0, done.stderr
    text = crontab(cron_user)
    assert text.startswith(FOREIGN)
    jobs = text[len(FOREIGN) :].splitlines()
    settings = re.search(r"'(settings_\w+)'", (site / "manage.py").read_text())
    assert settings
    prefix = f"{OPSKIT} --project-dir {site} --settings {settings[1]}"
    log = f">> {site / 'logs' / 'cron.log'} 2>&1"
    assert jobs == [
        f"0 1 * * * {prefix} clear-sessions {log} # opskit:site:clear-sessions",
        f"0 2 * * * {prefix} backup {log} # opskit:site:backup",
    ]
    assert (site / "logs").is_dir()
    assert "+0 2 * * *" in done.stdout
    assert "installed 2 job(s) of project site from opskit's built-in crontab.txt" in done.stderr


def test_install_twice_changes_nothing_and_remove_leaves_only_foreign_lines(
    site: Path, env: dict[str, str], cron_user: str
) -> None:
    crontab(cron_user, FOREIGN)
    cron(site, env, "install", "--user", cron_user)
    installed = crontab(cron_user)

    again = cron(site, env, "install", "--user", cron_user)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert "already has the 2 job(s)" in again.stderr
    assert crontab(cron_user) == installed

    removed = cron(site, env, "remove", "--user", cron_user)
    assert removed.returncode == 0, removed.stderr
    assert crontab(cron_user) == FOREIGN
    assert "-0 1 * * *" in removed.stdout


def test_remove_touches_only_this_project(site: Path, env: dict[str, str], cron_user: str) -> None:
    cron(site, env, "install", "--user", cron_user)
    cron(site, env, "install", "--user", cron_user, "--name", "other site")

    cron(site, env, "remove", "--user", cron_user)

    tags = [m[1] for m in map(TAG.search, crontab(cron_user).splitlines()) if m]
    assert tags == ["other-site:clear-sessions", "other-site:backup"]


def test_show_lists_each_job_with_its_next_three_runs(
    site: Path, env: dict[str, str], cron_user: str
) -> None:
    (site / "crontab.txt").write_text("30 4 * * 1 opskit backup\n")
    cron(site, env, "install", "--user", cron_user)

    done = cron(site, env, "show", "--user", cron_user)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "opskit:site:backup  30 4 * * 1"
    runs = lines[1].removeprefix("  next: ").split(", ")
    assert len(runs) == 3
    assert all(r.startswith("Mon ") and " 04:30 " in r for r in runs)
    assert lines[2].startswith(f"  runs: {OPSKIT} --project-dir {site}")


def test_show_warns_when_no_daemon_runs_and_says_when_nothing_is_installed(
    site: Path, env: dict[str, str], cron_user: str, tmp_path: Path
) -> None:
    env["OPSKIT_TEST_PROC_DIR"] = str(fake_proc(tmp_path / "noproc"))

    done = cron(site, env, "show", "--user", cron_user)

    assert done.returncode == 0
    assert "warning: no cron daemon is running" in done.stderr
    assert f"no opskit jobs of project site in crontab of {cron_user}" in done.stderr


def test_dry_run_prints_the_diff_and_writes_nothing(
    site: Path, env: dict[str, str], cron_user: str
) -> None:
    crontab(cron_user, FOREIGN)

    done = cron(site, env, "install", "--user", cron_user, "--dry-run")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"--- crontab of {cron_user}\n")
    assert "+0 1 * * *" in done.stdout
    assert "# opskit:site:clear-sessions" in done.stdout
    assert crontab(cron_user) == FOREIGN


def test_no_cron_daemon_refuses_to_install_unless_allowed(
    site: Path, env: dict[str, str], tmp_path: Path
) -> None:
    env["OPSKIT_TEST_PROC_DIR"] = str(fake_proc(tmp_path / "noproc", "bash"))
    target = Path(env["OPSKIT_CRON_D_DIR"]) / "opskit-site"

    refused = cron(site, env, "install", "--cron-d", "opskit-site")
    assert refused.returncode == 1
    assert "no cron daemon is running" in refused.stderr
    assert "--allow-no-daemon" in refused.stderr
    assert not target.exists()

    allowed = cron(site, env, "install", "--cron-d", "opskit-site", "--allow-no-daemon")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: no cron daemon is running" in allowed.stderr
    assert target.exists()


def test_cron_d_file_has_the_user_column_and_goes_away_on_remove(
    site: Path, env: dict[str, str], cron_user: str
) -> None:
    target = Path(env["OPSKIT_CRON_D_DIR"]) / "opskit-site"

    done = cron(site, env, "install", "--cron-d", "opskit-site", "--user", cron_user)

    assert done.returncode == 0, done.stderr
    lines = target.read_text().splitlines()
    assert lines[0].startswith("# Installed by opskit")
    assert lines[3].startswith(f"0 1 * * * {cron_user} {OPSKIT} ")
    assert target.stat().st_mode & 0o777 == 0o644
    shown = cron(site, env, "show", "--cron-d", "opskit-site")
    assert f"opskit:site:backup  0 2 * * *  as {cron_user}" in shown.stdout

    removed = cron(site, env, "remove", "--cron-d", "opskit-site")
    assert removed.returncode == 0, removed.stderr
    assert not target.exists()


def test_bad_crontab_line_fails_naming_file_and_line(site: Path, env: dict[str, str]) -> None:
    schedule = site / "crontab.txt"
    schedule.write_text("# nightly\n0 1 * * * opskit clear-sessions\n0 25 * * * opskit backup\n")

    done = cron(site, env, "install", "--cron-d", "opskit-site")

    assert done.returncode == 1
    assert done.stderr.startswith(f"opskit: error: {schedule}:3: bad schedule '0 25 * * *'")
    assert len(done.stderr.splitlines()) == 1
    assert not (Path(env["OPSKIT_CRON_D_DIR"]) / "opskit-site").exists()


@pytest.mark.parametrize("source", ["flag", "setting", "project", "builtin"])
def test_schedule_comes_from_flag_then_setting_then_project_file_then_builtin(
    tmp_path: Path, sqlite_db: DbParams, env: dict[str, str], source: str
) -> None:
    files = {"flag": "5 0 * * * opskit backup\n", "setting": "6 0 * * * opskit backup\n"}
    for name, text in files.items():
        (tmp_path / f"{name}.txt").write_text(text)
    setting = {"CRONTAB": str(tmp_path / "setting.txt")} if source in ("flag", "setting") else {}
    site = write_project(tmp_path / "site", {"default": sqlite_db}, repr(setting))
    if source != "builtin":
        (site / "crontab.txt").write_text("7 0 * * * opskit backup\n")
    flag = ["--file", str(tmp_path / "flag.txt")] if source == "flag" else []

    done = cron(site, env, "install", "--cron-d", "opskit-site", "--dry-run", *flag)

    assert done.returncode == 0, done.stderr
    added = [
        " ".join(line[1:].split()[:5])
        for line in done.stdout.splitlines()
        if line.startswith("+") and "# opskit:" in line
    ]
    expected = {"flag": ["5 0 * * *"], "setting": ["6 0 * * *"], "project": ["7 0 * * *"]}
    assert added == expected.get(source, ["0 1 * * *", "0 2 * * *"])


def test_installed_line_runs_opskit_when_cron_runs_it(site: Path, env: dict[str, str]) -> None:
    (site / "crontab.txt").write_text("@daily opskit list\n")
    logs: list[str | Path] = ["--log-dir", site / "cron logs"]
    run_opskit("--project-dir", site, *logs, "cron", "install", "--cron-d", "x", env=env)
    line = (Path(env["OPSKIT_CRON_D_DIR"]) / "x").read_text().splitlines()[-1]
    command = TAG.sub("", line).split(None, 2)[2]

    # What cron does: /bin/sh -c with the line's command, from the user's home, a bare PATH.
    done = subprocess.run(
        ["/bin/sh", "-c", command.replace("\\%", "%")],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/root"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "no backups yet" in (site / "cron logs" / "cron.log").read_text()


def test_bad_user_is_a_usage_error_naming_it(site: Path, env: dict[str, str]) -> None:
    done = cron(site, env, "show", "--user", "opskit-no-such-user")

    assert done.returncode == 64
    assert "Invalid value for '--user': no user 'opskit-no-such-user'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("install", "--cron-d", "shop.site"), "bad cron.d file name 'shop.site'"),
        (("install", "--file", "no-such.txt"), "no-such.txt does not exist"),
        (("remove", "--user", "opskit-no-such-user"), "no user 'opskit-no-such-user'"),
    ],
)
def test_bad_cron_arguments_exit_64(
    site: Path, env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    done = cron(site, env, *args)

    assert done.returncode == 64
    assert message in done.stderr


def test_unknown_option_is_a_usage_error(site: Path, env: dict[str, str]) -> None:
    assert cron(site, env, "install", "--bogus").returncode == 64


def test_the_repositorys_crontab_txt_is_the_one_the_package_ships() -> None:
    top = REPO / "crontab.txt"
    assert top.is_symlink()
    assert top.resolve() == (REPO / "opskit" / "crontab.txt").resolve()


def test_a_project_without_crontab_txt_gets_the_packaged_schedule(
    site: Path, env: dict[str, str]
) -> None:
    done = cron(site, env, "install", "--cron-d", "opskit-site", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would install 2 job(s) of project site from opskit's built-in crontab.txt" in (
        done.stderr
    )
    added = [line for line in done.stdout.splitlines() if line.startswith("+0 ")]
    assert [line.split(" # ")[-1] for line in added] == [
        "opskit:site:clear-sessions",
        "opskit:site:backup",
    ]


def test_global_options_given_to_install_are_written_into_every_job_as_absolute_paths(
    site: Path, env: dict[str, str]
) -> None:
    (site / "crontab.txt").write_text("0 1 * * * opskit clear-sessions\n0 2 * * * opskit list\n")
    given = ("--backup-dir", "backups", "--log-dir", "var/log", "-q")
    flags = ("--strict-ping", "--mail-admins")
    args = ("--project-dir", site, *given, *flags, "cron", "install", "--cron-d", "x")

    dry = run_opskit(*args, "--dry-run", env=env)
    done = run_opskit(*args, env=env)

    # Relative paths mean the project folder's, as they do for every opskit run.
    options = (
        f"--backup-dir {site / 'backups'} --log-dir {site / 'var/log'} --quiet {' '.join(flags)}"
    )
    assert dry.returncode == 0, done.stderr
    assert done.returncode == 0, done.stderr
    assert dry.stdout.count(options) == 2
    lines = (Path(env["OPSKIT_CRON_D_DIR"]) / "x").read_text().splitlines()[3:]
    assert len(lines) == 2
    assert all(options in line for line in lines)
    assert all(f">> {site / 'var/log' / 'cron.log'} 2>&1" in line for line in lines)

    command = TAG.sub("", lines[1]).split(None, 6)[6]
    ran = subprocess.run(["/bin/sh", "-c", command], cwd="/", env={"PATH": "/usr/bin:/bin"})
    assert ran.returncode == 0
    assert "no backups yet" in (site / "var/log" / "cron.log").read_text()
    assert (site / "var/log" / "opskit.log").is_file()
    assert not (site / "logs").exists()


def test_install_warns_about_opskit_variables_cron_will_not_have(
    site: Path, env: dict[str, str]
) -> None:
    done = cron(site, {**env, "OPSKIT_COMPRESS": "gzip"}, "install", "--cron-d", "x")

    assert done.returncode == 0, done.stderr
    assert "warning: OPSKIT_COMPRESS is set in this shell but cron's jobs will not see it" in (
        done.stderr
    )


def test_remove_of_the_last_jobs_deletes_the_crontab(
    site: Path, env: dict[str, str], cron_user: str
) -> None:
    assert cron(site, env, "install", "--user", cron_user).returncode == 0

    removed = cron(site, env, "remove", "--user", cron_user)

    assert removed.returncode == 0, removed.stderr
    listed = subprocess.run(["crontab", "-l", "-u", cron_user], capture_output=True, text=True)
    assert listed.returncode == 1
    assert "no crontab for" in listed.stderr


def test_show_help_says_whose_crontab_it_reads(site: Path) -> None:
    done = run_opskit("cron", "show", "--help")

    assert "Whose crontab to read" in done.stdout
    assert "to edit" not in done.stdout


def test_every_global_option_reaches_the_installed_jobs(site: Path, env: dict[str, str]) -> None:
    """A new global option must be carried into cron lines too (or this test says which)."""
    from opskit.cli import cli

    given = {
        "--settings": [
            "--settings",
            re.findall(r"'(settings_\w+)'", (site / "manage.py").read_text())[0],
        ],
        "--project-dir": ["--project-dir", str(site)],
        "--backup-dir": ["--backup-dir", "b"],
        "--log-dir": ["--log-dir", "l"],
        "--verbose": ["-vv"],
        "--strict-ping": ["--strict-ping"],
        "--mail-admins": ["--mail-admins"],
    }
    globals_ = {p.opts[-1] for p in cli.params if p.name not in ("version", "help", "quiet")}
    assert globals_ == set(given), "a new global option: make cron install write it into jobs"
    args = [a for flags in given.values() for a in flags]

    done = run_opskit(*args, "cron", "install", "--cron-d", "x", "--dry-run", env=env)

    assert done.returncode == 0, done.stderr
    [line] = [ln for ln in done.stdout.splitlines() if ln.endswith("# opskit:site:backup")]
    for flags in given.values():
        value = flags[-1] if len(flags) == 1 else f"{flags[0]} {flags[1]}"
        assert value.replace(" b", f" {site / 'b'}").replace(" l", f" {site / 'l'}") in line
