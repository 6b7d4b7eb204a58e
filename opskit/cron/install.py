"""The cron schedule: crontab.txt into a user crontab or /etc/cron.d, and back out."""

from __future__ import annotations

import dataclasses
import difflib
import os
import pwd
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cronsim import CronSim, CronSimError
from crontab import Process, current_user

from opskit import files
from opskit.cron.jobs import job_names
from opskit.errors import CommandFailed, ConfigError, ToolNotFound

SUBCOMMANDS = frozenset({"backup", "restore", "clear-sessions", "check"})
# cronsim knows no macros; cron itself gets the macro as written.
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
CRON_D_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
# Debian's cron syntax only: cronsim also accepts L, W, # and "5/10", which cron rejects.
_VALUE = r"(?:\d+|[A-Za-z]{3})"
_ITEM = rf"(?:(?:\*|{_VALUE}-{_VALUE})(?:/\d+)?|{_VALUE})"
_FIELD_RE = re.compile(rf"{_ITEM}(?:,{_ITEM})*")
_TAG_RE = re.compile(r"\s#\s*opskit:(?P<project>[\w.-]+):(?P<job>[\w.-]+)\s*$")
_PROJECT_RE = re.compile(r"[A-Za-z0-9_.-]+")
_CRON_D_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_SHELL_OP_RE = re.compile(r"\d*[<>|&;]")
_ENV_RE = re.compile(r"[A-Za-z_]\w*\s*=")
_CRON_D_HEADER = "# Installed by opskit; 'opskit cron remove' deletes this file."
_SCHEDULE_HINT = (
    "fields are: minute hour day-of-month month day-of-week, "
    "or one of @hourly @daily @weekly @monthly @yearly"
)
NO_DAEMON = "no cron daemon is running"
NO_DAEMON_FIX = "start it: service cron start (or install it: apt-get install cron)"
# Validation needs some start time; a fixed one keeps it deterministic.
_REFERENCE = datetime(2024, 1, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class ScheduleLine:
    """One validated line of crontab.txt: its schedule and the opskit arguments."""

    path: Path
    line_no: int
    schedule: str
    args: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One job as opskit installs it: schedule, self-contained shell command and tag."""

    tag: str
    job: str
    schedule: str
    command: str
    line_no: int

    def render(self, user: str | None = None) -> str:
        """Return the crontab line, with a user column for /etc/cron.d files."""
        who = f"{user} " if user else ""
        return f"{self.schedule} {who}{self.command} # {self.tag}"


@dataclasses.dataclass(frozen=True)
class CronJob:
    """An installed opskit job and its next run times."""

    tag: str
    schedule: str
    command: str
    line_no: int
    user: str | None = None
    next_runs: tuple[datetime, ...] = ()


@dataclasses.dataclass(frozen=True)
class InstallResult:
    """What install/remove changed: a unified diff (empty if nothing) and warnings."""

    diff: str
    changed: bool
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ShowResult:
    """The installed opskit jobs, plus warnings the caller may show."""

    jobs: tuple[CronJob, ...]
    warnings: tuple[str, ...] = ()


class Tab(Protocol):
    """A crontab's whole text, read and written at once."""

    @property
    def label(self) -> str: ...

    @property
    def run_as(self) -> str | None:
        """The user column of a system crontab (cron.d); None in a user's own crontab."""

    @property
    def blank(self) -> str:
        """The text of this crontab when it holds no jobs."""

    def read(self) -> str: ...

    def write(self, text: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class UserTab:
    """A user's crontab, read and written by python-crontab running ``crontab``."""

    program: str
    user: str | None = None
    run_as: None = None
    blank: str = ""

    @property
    def label(self) -> str:
        return f"crontab of {self.user}" if self.user else "crontab"

    def _run(self, *args: str, **flags: str) -> tuple[int, str, str]:
        # Like python-crontab, say -u only for another user (some crontabs refuse it).
        if self.user and self.user != current_user():
            flags["u"] = self.user
        proc = Process(shlex.quote(self.program), *args, **flags).run()
        return int(proc.returncode), str(proc.stdout), str(proc.stderr).strip()

    def read(self) -> str:
        code, out, err = self._run(l="")
        if code == 0:
            return out
        if "no crontab for" in err:
            return ""
        raise CommandFailed(f"{self.program} -l failed: {err}", "check the user name")

    def write(self, text: str) -> None:
        if not text:  # no lines left: remove the crontab rather than leave an empty one
            code, _, err = self._run(r="")
            if code != 0 and "no crontab for" not in err:
                raise CommandFailed(f"{self.program} -r failed: {err}", "check the user name")
            return
        with tempfile.NamedTemporaryFile("w", prefix="opskit-crontab-", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            code, _, err = self._run(f.name)
        if code != 0:
            raise CommandFailed(f"{self.program} could not install the crontab: {err}")


def user_tab(
    user: str | None = None, *, path: str | None = None, euid: int | None = None
) -> UserTab:
    """Return the crontab of ``user`` (default: the current user), checking ``crontab`` exists."""
    program = shutil.which("crontab", path=path)
    if program is None:
        raise ToolNotFound("no crontab program on PATH", "install cron: apt-get install cron")
    if user and user != current_user() and (os.geteuid() if euid is None else euid) != 0:
        raise ConfigError(f"editing the crontab of {user} needs root", "run it with sudo")
    return UserTab(program, user)


def cron_daemon_running(proc: Path = Path("/proc")) -> bool:
    """Return whether a process named cron or crond is running."""
    for comm in proc.glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("cron", "crond"):
                return True
        except OSError:  # the process exited while we looked
            continue
    return False


def next_runs(schedule: str, now: datetime, n: int = 3) -> list[datetime]:
    """Return the next ``n`` run times after ``now``, in the time zone of ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        it = CronSim(MACROS.get(schedule, schedule), now)
        return [next(it) for _ in range(n)]
    except CronSimError as e:
        raise ConfigError(f"bad schedule {schedule!r}: {e}", _SCHEDULE_HINT) from e
    except StopIteration:  # cronsim gives up after 50 years without a match
        raise ConfigError(f"schedule {schedule!r} never runs", _SCHEDULE_HINT) from None


def _schedule_error(schedule: str) -> str | None:
    if schedule.startswith("@"):
        return None if schedule in MACROS else f"unsupported schedule {schedule!r}"
    for name, field in zip(_FIELDS, schedule.split(), strict=True):
        if not _FIELD_RE.fullmatch(field):
            return f"bad {name} field {field!r}"
    try:
        next_runs(schedule, _REFERENCE, 1)
    except ConfigError as e:
        # cronsim says "Bad day-of-month" for 32 and for 31 February alike; tell them apart.
        any_day = schedule.split()
        any_day[2] = "*"
        try:
            next_runs(" ".join(any_day), _REFERENCE, 1)
        except ConfigError:
            return e.message
        return f"schedule {schedule!r} can never run: no month has that day"
    return None


def _parse_line(line: str, path: Path, no: int, commands: frozenset[str]) -> ScheduleLine:
    def bad(message: str, hint: str) -> ConfigError:
        return ConfigError(f"{path}:{no}: {message}", hint)

    if _ENV_RE.match(line):
        raise bad("environment lines are not allowed", "opskit passes its settings as flags")
    n = 1 if line.startswith("@") else 5
    parts, tokens = line.split(None, n), line.split()
    if "opskit" in tokens and tokens.index("opskit") != n:
        found = tokens.index("opskit")
        raise bad(
            f"expected 5 time fields or one @macro before 'opskit', got {found}", _SCHEDULE_HINT
        )
    if len(parts) <= n:
        raise bad("expected 5 time fields (or one @macro) and a command", _SCHEDULE_HINT)
    schedule = " ".join(parts[:n])
    try:
        words = shlex.split(parts[n], comments=True)
    except ValueError as e:
        raise bad(f"cannot split the command: {e}", "check the quotes") from e
    if not words or words[0] != "opskit":
        raise bad(f"not an opskit command: {parts[n]!r}", "each line runs 'opskit <command> ...'")
    if len(words) < 2 or words[1] not in commands:
        raise bad(f"unknown opskit command {' '.join(words[1:2])!r}", f"use {sorted(commands)}")
    if any(_SHELL_OP_RE.match(w) for w in words):
        raise bad("shell syntax is not allowed", "opskit adds '>> <log dir>/cron.log 2>&1' itself")
    error = _schedule_error(schedule)
    if error:
        raise bad(error, _SCHEDULE_HINT)
    return ScheduleLine(path, no, schedule, tuple(words[1:]))


def parse_schedule(path: Path, *, commands: Iterable[str] = SUBCOMMANDS) -> list[ScheduleLine]:
    """Read and validate crontab.txt; any bad line is a ConfigError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}", "pass an existing file") from e
    known = frozenset(commands)
    return [
        _parse_line(line.strip(), path, no, known)
        for no, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _check_project(project: str) -> None:
    if not _PROJECT_RE.fullmatch(project):
        raise ConfigError(f"bad project name {project!r} for cron tags", "use [A-Za-z0-9_.-] only")


def build_entries(
    lines: Iterable[ScheduleLine],
    *,
    opskit_bin: str | Path,
    project_dir: str | Path,
    settings: str,
    log_dir: str | Path,
    project: str,
    options: Sequence[str] = (),
) -> list[Entry]:
    """Turn schedule lines into self-contained, shell-quoted, tagged cron entries.

    ``options`` are the global options given to ``cron install`` (absolute paths by then):
    every job runs with them, between ``--settings`` and the subcommand.
    """
    _check_project(project)
    log = os.path.join(os.path.abspath(log_dir), "cron.log")
    base = [os.path.abspath(opskit_bin), "--project-dir", os.path.abspath(project_dir)]
    base += ["--settings", settings, *options]
    lines = list(lines)
    entries = []
    for line, job in zip(lines, job_names(line.args for line in lines), strict=True):
        argv = [*base, *line.args]
        if any("\n" in a or "\r" in a for a in [*argv, log]):
            raise ConfigError("a path or argument contains a newline", "cron lines are one line")
        command = " ".join(map(shlex.quote, argv)) + f" >> {shlex.quote(log)} 2>&1"
        # cron turns an unescaped % into a newline before the shell sees the command.
        command = command.replace("%", "\\%")
        tag = f"opskit:{project}:{job.tag}"
        entries.append(Entry(tag, job.job, line.schedule, command, line.line_no))
    return entries


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _tag(line: str) -> tuple[str, str] | None:
    # A commented-out opskit line is the user's now: leave it as text.
    match = None if line.lstrip().startswith("#") else _TAG_RE.search(line)
    return (match["project"], match["job"]) if match else None


def _splice(old: str, project: str, block: list[str]) -> str:
    """Replace this project's tagged lines by ``block``, where the first of them stood."""
    kept: list[str] = []
    at: int | None = None
    for line in _lines(old):
        tag = _tag(line)
        if tag and tag[0] == project:
            at = len(kept) if at is None else at
        else:
            kept.append(line)
    at = len(kept) if at is None else at
    return "".join(f"{line}\n" for line in [*kept[:at], *block, *kept[at:]])


def _diff(old: str, new: str, label: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(True), new.splitlines(True), label, f"{label} (new)"
    )
    return "".join(lines)


def _daemon_warnings(proc: Path, fatal: bool) -> tuple[str, ...]:
    if cron_daemon_running(proc):
        return ()
    if fatal:
        raise no_daemon()
    return (f"{NO_DAEMON}, so no job will run ({NO_DAEMON_FIX})",)


def no_daemon() -> ConfigError:
    """The refusal to install jobs that no cron daemon would run."""
    return ConfigError(
        f"{NO_DAEMON}, so no job would run",
        f"{NO_DAEMON_FIX}; or pass --allow-no-daemon to install anyway",
    )


def _edit(tab: Tab, project: str, block: list[str], dry_run: bool) -> InstallResult:
    _check_project(project)
    old = tab.read()
    new = _splice(old or tab.blank, project, block)
    new = "" if new == tab.blank else new
    if new != old and not dry_run:
        tab.write(new)
    return InstallResult(_diff(old, new, tab.label), new != old)


def install(
    entries: Sequence[Entry],
    *,
    project: str,
    tab: Tab,
    dry_run: bool = False,
    proc: Path = Path("/proc"),
    allow_no_daemon: bool = False,
) -> InstallResult:
    """Put ``entries`` into ``tab``, replacing this project's old opskit lines only."""
    warnings = _daemon_warnings(proc, fatal=not (dry_run or allow_no_daemon))
    result = _edit(tab, project, [e.render(tab.run_as) for e in entries], dry_run)
    return dataclasses.replace(result, warnings=warnings)


def remove(project: str, *, tab: Tab, dry_run: bool = False) -> InstallResult:
    """Delete this project's opskit lines from ``tab`` (a cron.d file left empty goes too)."""
    return _edit(tab, project, [], dry_run)


@dataclasses.dataclass(frozen=True)
class CronDTab:
    """An /etc/cron.d file opskit owns: system format, atomic writes, mode 0644."""

    path: Path
    run_as: str

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def blank(self) -> str:
        return f"{_CRON_D_HEADER}\nSHELL=/bin/sh\nPATH={CRON_D_PATH}\n"

    def read(self) -> str:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
        if not text.startswith(_CRON_D_HEADER):
            raise ConfigError(f"{self.path} was not written by opskit", "choose another name")
        return text

    def write(self, text: str) -> None:
        try:
            if text:
                _write_tab(self.path, text)
            else:
                self.path.unlink(missing_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot write {self.path}: {e.strerror}", "run it as root") from e


def check_cron_d_name(name: str) -> None:
    """Raise ConfigError for a cron.d file name run-parts would skip, with one it would not."""
    if not _CRON_D_NAME_RE.fullmatch(name):
        fixed = re.sub(r"[^A-Za-z0-9_-]", "-", name) or "opskit"
        hint = f"use only letters, digits, '_' and '-' (run-parts skips names with dots): {fixed}"
        raise ConfigError(f"bad cron.d file name {name!r}", hint)


def cron_d_tab(name: str, *, run_as: str, directory: Path = Path("/etc/cron.d")) -> CronDTab:
    """Return the cron.d file ``directory/name`` whose jobs run as ``run_as``."""
    check_cron_d_name(name)
    try:
        pwd.getpwnam(run_as)
    except KeyError:
        raise ConfigError(f"no user {run_as!r} to run the jobs", "pass an existing user") from None
    return CronDTab(directory / name, run_as)


def _write_tab(path: Path, text: str) -> None:
    # A dotted temp name: cron ignores it until the rename makes it whole; 0644, as cron
    # skips group- or world-writable files.
    files.write_atomic(path, text.encode("utf-8"), 0o644)


def show(
    project: str | None, now: datetime, *, tab: Tab, proc: Path = Path("/proc"), n: int = 3
) -> ShowResult:
    """List installed opskit jobs (all projects if ``project`` is None) with next runs."""
    jobs: list[CronJob] = []
    warnings = list(_daemon_warnings(proc, fatal=False))
    system = tab.run_as is not None
    for no, line in enumerate(_lines(tab.read()), 1):
        tag = _tag(line)
        if tag is None or project not in (None, tag[0]):
            continue
        body = _TAG_RE.sub("", line).strip()
        fields = 1 if body.startswith("@") else 5
        parts = body.split(None, fields + system)
        if len(parts) < fields + 1 + system:
            warnings.append(f"line {no}: cannot read the opskit line {line!r}")
            continue
        schedule, user = " ".join(parts[:fields]), parts[fields] if system else None
        try:
            runs = tuple(next_runs(schedule, now, n))
        except ConfigError as e:
            warnings.append(f"line {no}: {e.line()}")
            runs = ()
        jobs.append(CronJob(f"opskit:{tag[0]}:{tag[1]}", schedule, parts[-1], no, user, runs))
    return ShowResult(tuple(jobs), tuple(warnings))
