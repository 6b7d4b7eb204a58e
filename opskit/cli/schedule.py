"""Scheduling commands: clear-sessions, and cron install/remove/show."""

from __future__ import annotations

import importlib.resources
import os
import pwd
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from opskit.cli.common import (
    Globals,
    fail_early,
    finish,
    hc_option,
    load_project,
    now,
    say,
    start_job,
)
from opskit.config import Config
from opskit.errors import OpsError, ToolNotFound

# opskit.cron.install (python-crontab brings asyncio) is imported where used: --help stays fast.
if TYPE_CHECKING:
    from opskit.cron import install as cron
    from opskit.cron import runas

FC = TypeVar("FC", bound=Callable[..., object])
R = TypeVar("R")

# Where --cron-d files go, and the /proc that tells whether a cron daemon runs (for tests).
ENV_CRON_D_DIR = "OPSKIT_CRON_D_DIR"
ENV_PROC_DIR = "OPSKIT_TEST_PROC_DIR"


@click.command("clear-sessions")
@hc_option
@click.pass_context
def clear_sessions(ctx: click.Context, check: str | None) -> None:
    """Delete expired sessions with Django's clearsessions."""
    from opskit.sessions import describe, run_clear_sessions

    config, _ = load_project(ctx)
    run = start_job(ctx, "clear-sessions", config, check)
    report = run_clear_sessions(now())
    for where, details in report.details.items():
        say(ctx, f"{where}: {describe(details)}")
    finish(ctx, run, report)


@click.group("cron")
def cron_group() -> None:
    """Install the schedule from crontab.txt into cron, show it, or remove it."""


def wanted_entries(
    ctx: click.Context, config: Config, path: Path | None, project: str
) -> tuple[list[cron.Entry], str]:
    """Return the cron entries ``cron install`` writes for this project, and their source."""
    from opskit.cron import install as cron

    with schedule_file(path, config) as (source, label):
        lines = cron.parse_schedule(source, commands=subcommands(ctx))
    entries = cron.build_entries(
        lines,
        opskit_bin=opskit_bin(),
        project_dir=config.project_dir,
        settings=config.settings_module,
        log_dir=config.log_dir,
        project=project,
        options=global_options(ctx, config),
    )
    return entries, label


def global_options(ctx: click.Context, config: Config) -> list[str]:
    """The global options this run was given, as every installed job must repeat them.

    Paths are written resolved (absolute), so the job means what the user meant wherever
    cron starts it.
    """
    g: Globals = ctx.obj
    options: list[str] = []
    if g.backup_dir is not None:
        options += ["--backup-dir", str(config.backup_dir)]
    if g.log_dir is not None:
        options += ["--log-dir", str(config.log_dir)]
    if g.verbosity < 0:
        options.append("--quiet")
    elif g.verbosity > 0:
        options.append("-" + "v" * g.verbosity)
    if g.strict_ping:
        options.append("--strict-ping")
    if g.mail_admins:
        options.append("--mail-admins")
    return options


def existing_user(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An unknown --user is a usage error (64), before any crontab is read."""
    if value is not None:
        try:
            pwd.getpwnam(value)
        except KeyError:
            raise click.BadParameter(f"no user {value!r} on this machine") from None
    return value


def cron_d_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --cron-d name run-parts would skip is a usage error (64), with the name to use."""
    from opskit.cron import install as cron

    if value is not None:
        try:
            cron.check_cron_d_name(value)
        except OpsError as exc:
            raise click.BadParameter(exc.line()) from None
    return value


def user_option(verb: str) -> Callable[[FC], FC]:
    return click.option(
        "--user",
        metavar="NAME",
        callback=existing_user,
        help=f"Whose crontab to {verb} (another user's needs root); with --cron-d, who runs"
        " the jobs.",
    )


cron_d_option = click.option(
    "--cron-d",
    "cron_d",
    metavar="NAME",
    callback=cron_d_name,
    help="Use the system file /etc/cron.d/NAME instead of a user crontab (needs root).",
)
name_option = click.option(
    "--name", metavar="NAME", help="Project name in the job tags [default: the project folder's]."
)


def tab_options(verb: str) -> Callable[[FC], FC]:
    """--user, --cron-d and --name: the crontab to ``verb`` and the project's tag in it."""

    def apply(command: FC) -> FC:
        return user_option(verb)(cron_d_option(name_option(command)))

    return apply


@cron_group.command("install")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Schedule to install, relative to the project folder"
    "  [default: OPSKIT['CRONTAB'], else crontab.txt, else built-in].",
)
@tab_options("edit")
@click.option("--dry-run", is_flag=True, help="Print the change as a diff; write nothing.")
@click.option("--allow-no-daemon", is_flag=True, help="Install even if no cron daemon runs.")
@click.pass_context
def cron_install(
    ctx: click.Context,
    path: Path | None,
    user: str | None,
    cron_d: str | None,
    name: str | None,
    dry_run: bool,
    allow_no_daemon: bool,
) -> None:
    """Put the jobs of crontab.txt into cron, replacing only this project's old lines."""
    from opskit.cron import install as cron

    config, _ = load_project(ctx, log_files=False)
    project = project_name(ctx, name)
    try:
        entries, label = wanted_entries(ctx, config, path, project)
        tab = target(user, cron_d)
        if not (dry_run or allow_no_daemon or cron.cron_daemon_running(proc_dir())):
            raise cron.no_daemon()
        problems = _prepare_for(job_user(tab), config, dry_run)
        result = cron.install(
            entries,
            project=project,
            tab=tab,
            dry_run=dry_run,
            proc=proc_dir(),
            allow_no_daemon=allow_no_daemon,
        )
    except OpsError as exc:
        fail_early(ctx, exc)
    _warn(result.warnings + problems + _unseen_env(os.environ))
    click.echo(result.diff, nl=False)
    jobs = f"{len(entries)} job(s) of project {project} from {label}"
    if not result.changed:
        say(ctx, f"opskit: {tab.label} already has the {jobs}", err=True)
    elif dry_run:
        say(ctx, f"opskit: dry run: would install {jobs} into {tab.label}", err=True)
    else:
        say(ctx, f"opskit: installed {jobs} into {tab.label}", err=True)


@cron_group.command("remove")
@tab_options("edit")
@click.option("--dry-run", is_flag=True, help="Print the change as a diff; write nothing.")
@click.pass_context
def cron_remove(
    ctx: click.Context, user: str | None, cron_d: str | None, name: str | None, dry_run: bool
) -> None:
    """Delete this project's opskit lines; every other line stays as it was."""
    from opskit.cron import install as cron

    project = project_name(ctx, name)
    tab, result = on_tab(ctx, user, cron_d, lambda t: cron.remove(project, tab=t, dry_run=dry_run))
    click.echo(result.diff, nl=False)
    if not result.changed:
        say(ctx, f"opskit: no jobs of project {project} in {tab.label}", err=True)
    else:
        verb = "would remove" if dry_run else "removed"
        say(ctx, f"opskit: {verb} the jobs of project {project} from {tab.label}", err=True)


@cron_group.command("show")
@tab_options("read")
@click.option("--all-projects", is_flag=True, help="Show the opskit jobs of every project.")
@click.pass_context
def cron_show(
    ctx: click.Context, user: str | None, cron_d: str | None, name: str | None, all_projects: bool
) -> None:
    """List this project's installed jobs, each with its next three runs in local time."""
    from opskit.cron import install as cron
    from opskit.cron import timezones

    project = None if all_projects else project_name(ctx, name)
    local = now().astimezone(timezones.local_zone())
    tab, result = on_tab(
        ctx, user, cron_d, lambda t: cron.show(project, local, tab=t, proc=proc_dir())
    )
    _warn(result.warnings)
    if not result.jobs:
        whose = "" if project is None else f" of project {project}"
        click.echo(f"opskit: no opskit jobs{whose} in {tab.label}", err=True)
    for job in result.jobs:
        as_user = f"  as {job.user}" if job.user else ""
        click.echo(f"{job.tag}  {job.schedule}{as_user}")
        click.echo(f"  next: {', '.join(f'{t:%a %Y-%m-%d %H:%M %Z}' for t in job.next_runs)}")
        click.echo(f"  runs: {job.command}")


def project_name(ctx: click.Context, name: str | None) -> str:
    """Return the tag name: ``--name``, else the project folder's name, made tag-safe."""
    g: Globals = ctx.obj
    raw = name if name is not None else g.project_dir.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-") or "project"


@contextmanager
def schedule_file(flag: Path | None, config: Config) -> Iterator[tuple[Path, str]]:
    """Yield the schedule to read and how to name it: flag, setting, project file, built-in.

    A relative ``--file`` is the project folder's, like every path option; a missing one is
    a usage error (64).
    """
    if flag is not None:
        flag = flag if flag.is_absolute() else config.project_dir / flag
        if not flag.is_file():
            raise click.BadParameter(f"{flag} does not exist", param_hint="'--file'")
    local = config.project_dir / "crontab.txt"
    chosen = flag or config.crontab or (local if local.is_file() else None)
    if chosen is not None:
        yield chosen, str(chosen)
        return
    # The package's own crontab.txt (the repository's top-level one links to it).
    with importlib.resources.as_file(importlib.resources.files("opskit") / "crontab.txt") as path:
        yield path, "opskit's built-in crontab.txt"


def subcommands(ctx: click.Context) -> list[str]:
    """Return the opskit commands a schedule line may run (all but cron itself)."""
    from opskit.cron import install as cron

    root = ctx.find_root().command
    names = root.list_commands(ctx) if isinstance(root, click.Group) else []
    return [n for n in names if n != "cron"] or sorted(cron.SUBCOMMANDS)


def opskit_bin() -> Path:
    """Return the absolute path of the running opskit executable, for cron to call."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "opskit" and argv0.is_file() and os.access(argv0, os.X_OK):
        return argv0.absolute()
    # python -m opskit: the console script of the same environment, else the one on PATH.
    beside = Path(sys.executable).with_name("opskit")
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("opskit")
    if found:
        return Path(found).absolute()
    raise ToolNotFound(
        "cannot find the opskit executable for cron to run", "pip install opskit into the venv"
    )


def target(user: str | None, cron_d: str | None) -> cron.Tab:
    """Return the crontab to edit: /etc/cron.d/NAME, or a user's crontab."""
    from opskit.cron import install as cron

    if cron_d is None:
        return cron.user_tab(user)
    directory = Path(os.environ.get(ENV_CRON_D_DIR) or "/etc/cron.d")
    run_as = user or pwd.getpwuid(os.geteuid()).pw_name
    return cron.cron_d_tab(cron_d, run_as=run_as, directory=directory)


def proc_dir() -> Path:
    return Path(os.environ.get(ENV_PROC_DIR) or "/proc")


def on_tab(
    ctx: click.Context, user: str | None, cron_d: str | None, act: Callable[[cron.Tab], R]
) -> tuple[cron.Tab, R]:
    """Act on the crontab that --user/--cron-d name; a failure ends the command (exit 1)."""
    try:
        tab = target(user, cron_d)
        return tab, act(tab)
    except OpsError as exc:
        fail_early(ctx, exc)


def job_user(tab: cron.Tab) -> runas.User:
    """Who cron runs the jobs as: the cron.d user column, else the crontab's owner."""
    from opskit.cron import runas

    name = tab.run_as or getattr(tab, "user", None)
    return runas.User.named(name) if name else runas.User.current()


def job_problems(user: runas.User, config: Config) -> list[runas.Problem]:
    """Why a job of this project would not start or write as ``user`` (empty: it would)."""
    from opskit.cron import runas

    return runas.job_problems(
        user,
        opskit_bin=opskit_bin(),
        project_dir=config.project_dir,
        log_file=config.log_dir / "cron.log",
        folders=[config.log_dir, config.backup_dir],
    )


def _prepare_for(user: runas.User, config: Config, dry_run: bool) -> tuple[str, ...]:
    """Make the job's folders writable by its user, or refuse naming the folder and the fix.

    cron appends to <log dir>/cron.log before opskit starts: a folder the job's user cannot
    write would lose every run. A dry run changes nothing and only warns.
    """
    from opskit.cron import runas

    if not dry_run:
        # The log folder always (cron.log); the backup folder for another user, who could
        # not create it in a project folder that is not theirs.
        folders = [config.log_dir] if user.is_me else [config.log_dir, config.backup_dir]
        runas.make_folders(user, folders)
    problems = job_problems(user, config)
    unwritable = [p for p in problems if p.kind == "folder"]
    if unwritable and not dry_run:
        first, more = unwritable[0], len(unwritable) - 1
        also = f" (and {more} more)" if more else ""
        raise OpsError(f"the jobs could not write: {first.text}{also}", first.fix)
    return tuple(f"the jobs would fail: {p.text} (fix: {p.fix})" for p in problems)


def _unseen_env(environ: Mapping[str, str]) -> tuple[str, ...]:
    """OPSKIT_* settings of this shell, which cron's jobs will not have."""
    from opskit.config import DEFAULTS

    names = sorted(f"OPSKIT_{k}" for k in DEFAULTS if environ.get(f"OPSKIT_{k}"))
    names += sorted(n for n in environ if n.startswith("OPSKIT_HC_") and environ[n])
    if not names:
        return ()
    return (
        f"{', '.join(names)} is set in this shell but cron's jobs will not see it:"
        " pass the global option before 'cron install', or put it in settings.OPSKIT",
    )


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        click.echo(f"opskit: warning: {warning}", err=True)


COMMANDS: list[click.Command] = [clear_sessions, cron_group]
