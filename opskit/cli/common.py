"""What every command shares: finding the project, logging, and ending a job run."""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from opskit import status
from opskit.errors import OpsError
from opskit.report import Report

if TYPE_CHECKING:
    from opskit.config import Config
    from opskit.engines import DbParams
    from opskit.healthchecks.job import JobRun
    from opskit.logs import LogTail
    from opskit.progress import Console, ProgressFn
    from opskit.project import Project


@dataclasses.dataclass
class Globals:
    """The group's options, shared by every subcommand."""

    settings: str | None
    project_dir: Path
    backup_dir: Path | None
    log_dir: Path | None
    verbosity: int
    strict_ping: bool | None = None
    mail_admins: bool | None = None
    console: Console | None = None
    run: JobRun | None = None
    tail: LogTail | None = None
    secrets: tuple[str, ...] = ()


def now() -> datetime:
    return datetime.now().astimezone()


def fail_early(ctx: click.Context, exc: OpsError) -> NoReturn:
    """Report a failure that happened before any job could start, as one failed step."""
    click.echo(f"opskit: error: {exc.line()}", err=True)
    ctx.exit(status.for_errors(1))


def load_project(
    ctx: click.Context, *, apps: bool = True, log_files: bool = True, **flags: Any
) -> tuple[Config, dict[str, DbParams]]:
    """Set the project up (``project.load``), configure logging, and say its warnings.

    ``log_files=False`` logs to stderr only and leaves the log folder alone (cron install
    makes it for the user the jobs run as).

    ``apps=False`` reads the settings without loading the installed apps: the jobs that
    use no models (backup, restore, verify, list) start faster and import no driver.
    """
    g: Globals = ctx.obj
    try:
        loaded = load(ctx, apps=apps, **flags)
        _start_logging(g, loaded.config, log_files)
    except OpsError as exc:
        fail_early(ctx, exc)
    except OSError as exc:
        fail_early(ctx, OpsError(f"cannot open the log folder: {exc}", "set --log-dir"))
    return loaded.config, loaded.databases


def load(ctx: click.Context, *, apps: bool = True, **flags: Any) -> Project:
    """``project.load`` with the group's options as flags; keeps the secrets to mask."""
    from opskit import project

    g: Globals = ctx.obj
    given = {
        "BACKUP_DIR": g.backup_dir,
        "LOG_DIR": g.log_dir,
        "STRICT_PING": g.strict_ping,
        "MAIL_ADMINS_ON_ERROR": g.mail_admins,
        **flags,
    }
    loaded = project.load(g.project_dir, g.settings, os.environ, apps=apps, flags=given)
    g.secrets = loaded.secrets
    return loaded


def _start_logging(g: Globals, config: Config, log_files: bool) -> None:
    """Log to the log folder (unless not ``log_files``) and stderr, secrets masked."""
    from opskit import logs
    from opskit.proc import sweep_secret_dirs

    g.tail = logs.LogTail()
    g.console = logs.configure(
        log_dir=config.log_dir if log_files else None,
        verbosity=g.verbosity,
        secrets=g.secrets,
        tail=g.tail,
        progress_delay=config.progress_delay,
    )
    warn(config.warnings)
    for stale in sweep_secret_dirs():
        logs.get().info("removed_stale_credentials", path=str(stale))


def warn(warnings: tuple[str, ...]) -> None:
    """Print each warning as one line on stderr (shown under -q too)."""
    for warning in warnings:
        click.echo(f"opskit: warning: {warning}", err=True)


def start_job(ctx: click.Context, job: str, config: Config, check: str | None = None) -> JobRun:
    """Begin a job run: the Healthchecks start ping, if the job has a check."""
    from opskit.healthchecks.job import JobRun

    g: Globals = ctx.obj
    run = JobRun(job, config, tail=g.tail, secrets=g.secrets, check=check)
    g.run = run  # so a signal can still send the final ping
    run.start()
    return run


def progress_of(ctx: click.Context) -> ProgressFn | None:
    """Return the live progress display on a terminal; None under cron or a pipe."""
    g: Globals = ctx.obj
    return g.console.update if g.console is not None else None


def finish(ctx: click.Context, run: JobRun, report: Report) -> NoReturn:
    """End a job run: summary, final ping, a one-line verdict, and the exit status."""
    g: Globals = ctx.obj
    if g.console is not None:
        g.console.finish()
    code = run.finish(report)
    databases = {s.database for s in report.steps if s.database}
    word = "error" if report.errors == 1 else "errors"
    if report.errors or not quiet(ctx):  # -q: only warnings and errors
        click.echo(
            f"opskit {report.job}: {report.errors} {word}, {len(databases)} database(s),"
            f" {report.duration:.1f} s",
            err=True,
        )
    ctx.exit(code)


def quiet(ctx: click.Context) -> bool:
    """Whether -q was given: say nothing but warnings and errors."""
    g = ctx.find_object(Globals)
    return g is not None and g.verbosity < 0


def say(ctx: click.Context, text: str, *, err: bool = False) -> None:
    """Print a line of information, unless -q asked for warnings and errors only."""
    if not quiet(ctx):
        click.echo(text, err=err)


DATABASE_HELP = (
    "An alias of settings.DATABASES; repeat for several  [default: every alias, or"
    " OPSKIT['DATABASES']]."
)

lock_wait_option = click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Wait this long for another run of the same job and database [default: 0].",
)


def check_source(value: str) -> str:
    """A SOURCE that is neither latest, a weekday nor an existing file is a usage error (64).

    An archive path is relative to the current folder, like any file named on a command line.
    """
    from opskit.archive.rotation import parse_slot
    from opskit.restore import looks_like_path

    if value == "latest" or Path(value).expanduser().exists():
        return value
    if looks_like_path(value):
        raise click.BadParameter(f"{value} does not exist; run opskit list to see the archives")
    try:
        parse_slot(value)
    except OpsError as exc:
        raise click.BadParameter(
            f"{value!r} is not latest, a weekday (0-6, Monday, mon, 1-Monday),"
            " nor a file that exists"
        ) from exc
    return value


def source_argument(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: check one SOURCE or each of several."""
    if isinstance(value, tuple):
        return tuple(check_source(v) for v in value)
    return check_source(value)


def _check_flag(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A malformed --hc is a usage error (64) before anything runs: a typo must not go unseen."""
    from opskit.healthchecks.ping import parse_check

    if value is not None:
        try:
            parse_check(value)
        except OpsError as exc:
            raise click.BadParameter(exc.line()) from None
    return value


hc_option = click.option(
    "--hc",
    "check",
    metavar="CHECK",
    callback=_check_flag,
    help="Healthchecks check: UUID, ping URL or KEY/SLUG.",
)
