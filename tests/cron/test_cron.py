"""opskit.cron.install: crontab.txt validation, install/remove/show on user crontabs and cron.d."""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import secrets
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.cron import throwaway_user as system_user

from opskit.cron import install as cron
from opskit.errors import ConfigError, ToolNotFound

REPO = Path(__file__).resolve().parents[2]
OPSKIT = "/srv/venv/bin/opskit"
PREFIX = f"{OPSKIT} --project-dir /srv/site --settings site.settings.prod"
LOG = ">> /srv/site/logs/cron.log 2>&1"
DEFAULT = "0 1 * * * opskit clear-sessions\n0 2 * * * opskit backup\n"
FOREIGN = (
    "# my own jobs\n"
    "MAILTO=x@example.com\n"
    "  # an indented comment  \n"
    "\n"
    "*/5  *  * * *   /usr/bin/sync-photos --to '/mnt/a b'  \n"
    "PATH=/usr/bin:/bin\n"
    "@reboot /usr/local/bin/start-thing\n"
    "\n"
)
ME = pwd.getpwuid(os.getuid()).pw_name


@dataclasses.dataclass
class MemTab:
    """An in-memory user crontab that counts its writes."""

    text: str = ""
    label: str = "crontab"
    run_as: None = None
    blank: str = ""
    writes: int = 0

    def read(self) -> str:
        return self.text

    def write(self, text: str) -> None:
        self.text = text
        self.writes += 1


@pytest.fixture
def cron_proc(tmp_path: Path) -> Path:
    """A /proc where a cron daemon runs."""
    for pid, comm in (("1", "init"), ("42", "cron"), ("77", "bash")):
        (tmp_path / "proc" / pid).mkdir(parents=True)
        (tmp_path / "proc" / pid / "comm").write_text(f"{comm}\n")
    return tmp_path / "proc"


@pytest.fixture
def no_cron_proc(tmp_path: Path) -> Path:
    """A /proc without any cron daemon."""
    (tmp_path / "noproc" / "1").mkdir(parents=True)
    (tmp_path / "noproc" / "1" / "comm").write_text("init\n")
    return tmp_path / "noproc"


def schedule(tmp_path: Path, text: str, name: str = "crontab.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def entries(tmp_path: Path, text: str = DEFAULT, project: str = "site") -> list[cron.Entry]:
    lines = cron.parse_schedule(schedule(tmp_path, text, f"{project}.txt"))
    return cron.build_entries(
        lines,
        opskit_bin=OPSKIT,
        project_dir="/srv/site",
        settings="site.settings.prod",
        log_dir="/srv/site/logs",
        project=project,
    )


def test_shipped_crontab_txt_clears_sessions_at_one_and_backs_up_at_two() -> None:
    lines = cron.parse_schedule(REPO / "crontab.txt")
    assert [(x.schedule, x.args) for x in lines] == [
        ("0 1 * * *", ("clear-sessions",)),
        ("0 2 * * *", ("backup",)),
    ]


def test_entries_carry_absolute_opskit_project_dir_settings_log_redirect_and_tag(
    tmp_path: Path,
) -> None:
    rendered = [e.render() for e in entries(tmp_path)]
    assert rendered == [
        f"0 1 * * * {PREFIX} clear-sessions {LOG} # opskit:site:clear-sessions",
        f"0 2 * * * {PREFIX} backup {LOG} # opskit:site:backup",
    ]


def test_paths_with_spaces_quotes_and_percent_reach_opskit_intact(tmp_path: Path) -> None:
    bindir = tmp_path / "bin dir"
    bindir.mkdir()
    fake = bindir / "opskit"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    project_dir = tmp_path / "it's 100% site"
    log_dir = project_dir / "my logs"
    log_dir.mkdir(parents=True)
    text = "0 2 * * * opskit backup --label 'a b'\n"
    [entry] = cron.build_entries(
        cron.parse_schedule(schedule(tmp_path, text)),
        opskit_bin=fake,
        project_dir=project_dir,
        settings="site.settings",
        log_dir=log_dir,
        project="site",
    )
    assert not re.search(r"(?<!\\)%", entry.command), "cron would turn a bare % into a newline"
    # What cron does before handing the command to /bin/sh: \% becomes %.
    subprocess.run(["/bin/sh", "-c", entry.command.replace("\\%", "%")], check=True)
    args = (log_dir / "cron.log").read_text().splitlines()
    assert args == [
        "--project-dir",
        str(project_dir),
        "--settings",
        "site.settings",
        "backup",
        "--label",
        "a b",
    ]


def test_repeated_subcommand_gets_a_unique_job_tag(tmp_path: Path) -> None:
    text = "0 2 * * * opskit backup\n0 14 * * * opskit backup --database other\n"
    assert [e.tag for e in entries(tmp_path, text)] == [
        "opskit:site:backup",
        "opskit:site:backup-2",
    ]


def test_bad_project_name_for_the_tag_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="project name"):
        entries(tmp_path, project="my:site")


def test_install_twice_is_byte_identical_and_writes_once(tmp_path: Path, cron_proc: Path) -> None:
    tab = MemTab(FOREIGN)
    first = cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    installed = tab.text
    second = cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    assert first.changed
    assert not second.changed
    assert second.diff == ""
    assert tab.text == installed
    assert tab.writes == 1


def test_install_keeps_foreign_lines_byte_for_byte_and_in_order(
    tmp_path: Path, cron_proc: Path
) -> None:
    tab = MemTab(FOREIGN)
    cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    block = "".join(f"{e.render()}\n" for e in entries(tmp_path))
    assert tab.text == FOREIGN + block


def test_reinstall_updates_the_block_in_place_between_foreign_lines(
    tmp_path: Path, cron_proc: Path
) -> None:
    before, after = "MAILTO=x\n# above\n", "# below\n0 4 * * * /bin/true\n"
    old = "".join(f"{e.render()}\n" for e in entries(tmp_path))
    tab = MemTab(before + old + after)
    changed = entries(tmp_path, "30 3 * * * opskit backup\n")
    result = cron.install(changed, project="site", tab=tab, proc=cron_proc)
    assert tab.text == before + f"{changed[0].render()}\n" + after
    assert "-0 2 * * *" in result.diff
    assert "+30 3 * * *" in result.diff


def test_install_writes_no_environment_lines_into_a_user_crontab(
    tmp_path: Path, cron_proc: Path
) -> None:
    tab = MemTab()
    cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    assert tab.text.count("\n") == 2
    assert not [line for line in tab.text.splitlines() if re.match(r"\s*\w+\s*=", line)]


def test_lines_dropped_from_crontab_txt_disappear_on_reinstall(
    tmp_path: Path, cron_proc: Path
) -> None:
    tab = MemTab(FOREIGN)
    cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    only_backup = entries(tmp_path, "0 2 * * * opskit backup\n")
    cron.install(only_backup, project="site", tab=tab, proc=cron_proc)
    assert tab.text == FOREIGN + f"{only_backup[0].render()}\n"
    assert "clear-sessions" not in tab.text


def test_another_projects_opskit_lines_are_left_alone(tmp_path: Path, cron_proc: Path) -> None:
    tab = MemTab(FOREIGN)
    blog = entries(tmp_path, "15 3 * * * opskit backup\n", project="blog")
    cron.install(blog, project="blog", tab=tab, proc=cron_proc)
    with_blog = tab.text
    cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    cron.install([], project="site", tab=tab, proc=cron_proc)
    assert tab.text == with_blog


def test_remove_deletes_only_this_projects_tagged_lines(tmp_path: Path, cron_proc: Path) -> None:
    site = entries(tmp_path)
    blog = entries(tmp_path, "15 3 * * * opskit backup\n", project="blog")
    disabled = f"# {site[1].render()}\n"  # commented out by the user: theirs now
    text = FOREIGN + f"{site[0].render()}\n" + f"{blog[0].render()}\n" + disabled
    tab = MemTab(text + f"{site[1].render()}\n")
    result = cron.remove("site", tab=tab)
    assert result.changed
    assert tab.text == FOREIGN + f"{blog[0].render()}\n" + disabled
    assert not cron.remove("site", tab=tab).changed


def test_dry_run_returns_the_diff_and_writes_nothing(tmp_path: Path, cron_proc: Path) -> None:
    tab = MemTab(FOREIGN)
    result = cron.install(entries(tmp_path), project="site", tab=tab, dry_run=True, proc=cron_proc)
    assert result.changed
    assert result.diff.startswith("--- crontab\n+++ crontab (new)\n")
    assert f"+0 2 * * * {PREFIX} backup {LOG} # opskit:site:backup\n" in result.diff
    assert tab.text == FOREIGN
    assert tab.writes == 0


def test_install_without_a_cron_daemon_fails_with_how_to_start_it(
    tmp_path: Path, no_cron_proc: Path
) -> None:
    tab = MemTab()
    with pytest.raises(ConfigError, match=r"no cron daemon.*service cron start"):
        cron.install(entries(tmp_path), project="site", tab=tab, proc=no_cron_proc)
    assert tab.writes == 0


def test_install_without_a_daemon_only_warns_when_allowed_or_dry_run(
    tmp_path: Path, no_cron_proc: Path
) -> None:
    dry = cron.install(
        entries(tmp_path), project="site", tab=MemTab(), dry_run=True, proc=no_cron_proc
    )
    tab = MemTab()
    allowed = cron.install(
        entries(tmp_path), project="site", tab=tab, proc=no_cron_proc, allow_no_daemon=True
    )
    assert tab.writes == 1
    for result in (dry, allowed):
        assert len(result.warnings) == 1
        assert "no cron daemon" in result.warnings[0]


def test_cron_daemon_is_found_by_process_name(tmp_path: Path, cron_proc: Path) -> None:
    crond = tmp_path / "crond-proc" / "9"
    crond.mkdir(parents=True)
    (crond / "comm").write_text("crond\n")
    assert cron.cron_daemon_running(cron_proc)
    assert cron.cron_daemon_running(crond.parent)
    assert not cron.cron_daemon_running(tmp_path / "missing")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 2 * * opskit backup", "expected 5 time fields"),
        ("0 2 * * * * opskit backup", "expected 5 time fields"),
        ("0 2 * *", "expected 5 time fields"),
        ("0 25 * * * opskit backup", "Bad hour"),
        ("0 0 31 2 * opskit backup", "can never run"),
        ("0 0 31 4,6 * opskit backup", "can never run"),
        ("0 0 L * * opskit backup", "bad day-of-month field"),
        ("5/10 * * * * opskit backup", "bad minute field"),
        ("0 2 * * * rm -rf /", "not an opskit command"),
        ("0 2 * * * /usr/bin/opskit backup", "not an opskit command"),
        ("0 2 * * * opskit frobnicate", "unknown opskit command 'frobnicate'"),
        ("0 2 * * * opskit", "unknown opskit command"),
        ("0 2 * * * opskit backup > /tmp/out", "shell syntax"),
        ("0 2 * * * opskit backup 'unclosed", "cannot split"),
        ("@reboot opskit backup", "unsupported schedule '@reboot'"),
        ("@fortnightly opskit backup", "unsupported schedule"),
        ("MAILTO=ops@example.com", "environment lines are not allowed"),
    ],
)
def test_bad_line_is_rejected_naming_file_and_line_number(
    tmp_path: Path, line: str, message: str
) -> None:
    path = schedule(tmp_path, f"# schedule\n0 1 * * * opskit clear-sessions\n{line}\n")
    with pytest.raises(ConfigError) as info:
        cron.parse_schedule(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)


def test_macros_comments_and_trailing_comments_are_accepted(tmp_path: Path) -> None:
    text = "\n  # indented\n@daily opskit check  # nightly smoke test\n@hourly opskit backup\n"
    lines = cron.parse_schedule(schedule(tmp_path, text))
    assert [(x.line_no, x.schedule, x.args) for x in lines] == [
        (3, "@daily", ("check",)),
        (4, "@hourly", ("backup",)),
    ]


def test_missing_schedule_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        cron.parse_schedule(tmp_path / "nope.txt")


def test_show_gives_the_next_three_runs_for_a_fixed_now(tmp_path: Path, cron_proc: Path) -> None:
    tab = MemTab(FOREIGN)
    cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    result = cron.show("site", now, tab=tab, proc=cron_proc)
    assert result.warnings == ()
    assert [(j.tag, j.schedule, j.line_no) for j in result.jobs] == [
        ("opskit:site:clear-sessions", "0 1 * * *", 9),
        ("opskit:site:backup", "0 2 * * *", 10),
    ]
    backup = result.jobs[1]
    assert backup.command == f"{PREFIX} backup {LOG}"
    assert backup.next_runs == tuple(datetime(2026, 11, d, 2, 0, tzinfo=UTC) for d in (23, 24, 25))


def test_show_gives_runs_in_the_time_zone_of_now_and_expands_macros(
    tmp_path: Path, cron_proc: Path
) -> None:
    tab = MemTab()
    cron.install(
        entries(tmp_path, "@daily opskit check\n"), project="site", tab=tab, proc=cron_proc
    )
    paris = timezone(timedelta(hours=1))
    [job] = cron.show(
        "site", datetime(2026, 11, 22, 12, 0, tzinfo=paris), tab=tab, proc=cron_proc
    ).jobs
    assert job.schedule == "@daily"
    assert job.next_runs[0] == datetime(2026, 11, 23, 0, 0, tzinfo=paris)
    assert job.next_runs[0].utcoffset() == timedelta(hours=1)


def test_show_lists_every_project_or_one_and_warns_without_daemon(
    tmp_path: Path, cron_proc: Path, no_cron_proc: Path
) -> None:
    tab = MemTab(FOREIGN)
    cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    blog = entries(tmp_path, "15 3 * * * opskit backup\n", project="blog")
    cron.install(blog, project="blog", tab=tab, proc=cron_proc)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert len(cron.show(None, now, tab=tab, proc=cron_proc).jobs) == 3
    result = cron.show("blog", now, tab=tab, proc=no_cron_proc)
    assert [j.tag for j in result.jobs] == ["opskit:blog:backup"]
    assert "no cron daemon" in result.warnings[0]


def test_show_warns_about_a_hand_edited_impossible_schedule(cron_proc: Path) -> None:
    tab = MemTab(f"0 0 31 2 * {OPSKIT} backup # opskit:site:backup\n")
    result = cron.show("site", datetime(2026, 11, 22, tzinfo=UTC), tab=tab, proc=cron_proc)
    assert result.jobs[0].next_runs == ()
    assert result.warnings[0].startswith("line 1: bad schedule '0 0 31 2 *'")


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_runs("0 2 * * *", datetime(2026, 11, 22))


def test_cron_d_file_has_user_column_shell_path_and_mode_0644(
    tmp_path: Path, cron_proc: Path
) -> None:
    tab = cron.cron_d_tab("site", run_as=ME, directory=tmp_path)
    result = cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    path = tmp_path / "site"
    lines = path.read_text().splitlines()
    assert lines[1:3] == ["SHELL=/bin/sh", f"PATH={cron.CRON_D_PATH}"]
    assert lines[3:] == [
        f"0 1 * * * {ME} {PREFIX} clear-sessions {LOG} # opskit:site:clear-sessions",
        f"0 2 * * * {ME} {PREFIX} backup {LOG} # opskit:site:backup",
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert result.changed
    assert "+SHELL=/bin/sh" in result.diff
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.tmp")]


def test_cron_d_install_is_idempotent_and_show_reads_the_user_column(
    tmp_path: Path, cron_proc: Path
) -> None:
    tab = cron.cron_d_tab("site", run_as=ME, directory=tmp_path)
    cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    before = (tmp_path / "site").read_bytes()
    again = cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    assert not again.changed
    assert (tmp_path / "site").read_bytes() == before
    jobs = cron.show("site", datetime(2026, 11, 22, 12, tzinfo=UTC), tab=tab, proc=cron_proc).jobs
    assert [(j.user, j.schedule, j.command) for j in jobs][1] == (
        ME,
        "0 2 * * *",
        f"{PREFIX} backup {LOG}",
    )
    assert jobs[1].next_runs[0] == datetime(2026, 11, 23, 2, tzinfo=UTC)


def test_cron_d_dry_run_writes_nothing_and_remove_deletes_the_file(
    tmp_path: Path, cron_proc: Path
) -> None:
    tab = cron.cron_d_tab("site", run_as=ME, directory=tmp_path)
    dry = cron.install(entries(tmp_path), project="site", tab=tab, dry_run=True, proc=cron_proc)
    assert dry.changed
    assert "+0 2 * * *" in dry.diff
    assert not (tmp_path / "site").exists()
    cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    assert cron.remove("site", tab=tab, dry_run=True).changed
    assert (tmp_path / "site").exists()
    removed = cron.remove("site", tab=tab)
    assert removed.changed
    assert "-SHELL=/bin/sh" in removed.diff
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize(
    ("name", "fixed"), [("my.site", "my-site"), ("a b", "a-b"), ("", "opskit")]
)
def test_cron_d_name_with_dots_or_spaces_is_rejected_with_a_fix(
    tmp_path: Path, name: str, fixed: str
) -> None:
    with pytest.raises(ConfigError, match="run-parts") as info:
        cron.cron_d_tab(name, run_as=ME, directory=tmp_path)
    assert str(info.value).endswith(f": {fixed})")


def test_cron_d_refuses_a_foreign_file_and_an_unknown_user(tmp_path: Path, cron_proc: Path) -> None:
    (tmp_path / "php").write_text("09,39 * * * * root /usr/lib/php/sessionclean\n")
    tab = cron.cron_d_tab("php", run_as=ME, directory=tmp_path)
    with pytest.raises(ConfigError, match="not written by opskit"):
        cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    with pytest.raises(ConfigError, match="no user"):
        cron.cron_d_tab("site", run_as=f"nobody-{secrets.token_hex(4)}", directory=tmp_path)


def test_missing_crontab_program_says_install_cron(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFound, match=r"no crontab program.*apt-get install cron"):
        cron.user_tab("someone", path=str(tmp_path))


def test_editing_another_users_crontab_needs_root(tmp_path: Path) -> None:
    fake = tmp_path / "crontab"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    with pytest.raises(ConfigError, match="needs root"):
        cron.user_tab(f"not-{ME}", path=str(tmp_path), euid=1000)
    assert cron.user_tab(None, path=str(tmp_path), euid=1000).program == str(fake)


# Real crontab: a throwaway system user, never the developer's own crontab.


@pytest.fixture
def throwaway_user() -> Iterator[str]:
    """A system user with no home, deleted afterwards with its crontab."""
    with system_user("opskit-test", shell="/usr/sbin/nologin") as name:
        yield name


def crontab_l(user: str) -> str:
    done = subprocess.run(["crontab", "-l", "-u", user], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def test_real_crontab_install_twice_keeps_foreign_lines_and_remove_restores_them(
    tmp_path: Path, cron_proc: Path, throwaway_user: str
) -> None:
    tab = cron.user_tab(throwaway_user)
    assert tab.read() == ""
    seed = tmp_path / "seed"
    seed.write_text(FOREIGN)
    subprocess.run(["crontab", "-u", throwaway_user, str(seed)], check=True)
    first = cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    installed = crontab_l(throwaway_user)
    second = cron.install(entries(tmp_path), project="site", tab=tab, proc=cron_proc)
    assert first.changed
    assert not second.changed
    assert crontab_l(throwaway_user) == installed
    assert installed == FOREIGN + "".join(f"{e.render()}\n" for e in entries(tmp_path))
    assert cron.remove("site", tab=tab).changed
    assert crontab_l(throwaway_user) == FOREIGN
