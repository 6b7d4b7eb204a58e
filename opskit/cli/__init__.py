"""The command line: parse, build the Config, call the core, render, exit with the status."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from opskit import __version__, signals
from opskit.archive import codec
from opskit.cli.common import (
    DATABASE_HELP,
    Globals,
    fail_early,
    finish,
    hc_option,
    load_project,
    lock_wait_option,
    now,
    progress_of,
    say,
    source_argument,
    start_job,
)
from opskit.errors import Interrupted, OpsError
from opskit.progress import human
from opskit.report import Report
from opskit.status import Status, for_signal


class OpsGroup(click.Group):
    """A click group whose usage errors exit 64 and whose Ctrl-C exits 130."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with usage_status():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with usage_status():
                return super().invoke(ctx)
        except click.NoSuchOption as exc:
            _name_global_option(self, ctx, exc)
            raise
        except KeyboardInterrupt:
            self._stopped(ctx, Status.INTERRUPTED, "interrupted (SIGINT)")
        except Interrupted as exc:
            name = signal.Signals(exc.signum).name
            self._stopped(ctx, for_signal(exc.signum), f"stopped by {name}")

    @staticmethod
    def _stopped(ctx: click.Context, code: int, reason: str) -> NoReturn:
        """End a run cut short by a signal: cleanup already ran; report and exit 128+N."""
        g = ctx.find_object(Globals)
        if g is not None and g.run is not None:
            g.run.abort(code, reason)
        click.echo(f"opskit: {reason}", err=True)
        raise click.exceptions.Exit(code)


@contextlib.contextmanager
def usage_status() -> Iterator[None]:
    """The one place a usage error gets its status: click's 2 becomes 64 (Status.USAGE)."""
    try:
        yield
    except click.UsageError as exc:
        exc.exit_code = Status.USAGE  # type: ignore[misc]
        raise


def _name_global_option(group: click.Group, ctx: click.Context, exc: click.NoSuchOption) -> None:
    """Turn "No such option: -q" after a subcommand into where the global option goes."""
    names = {o for p in group.params for o in (*p.opts, *p.secondary_opts)}
    option = exc.option_name.split("=", 1)[0]
    if option not in names or exc.ctx is None:
        return
    words = exc.ctx.command_path.split()
    sub = words[1] if len(words) > 1 else exc.ctx.command_path
    # click marks message Final, but a UsageError is ours to reword before it is shown.
    hint = f"{option} is a global option: put it before {sub!r} (opskit {option} ... {sub})"
    exc.message = hint  # type: ignore[misc]


@click.group(cls=OpsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--settings", metavar="MODULE", help="Django settings module.")
@click.option(
    "--project-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Folder with manage.py (put on sys.path).",
)
@click.option(
    "--backup-dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Folder for the archives and their manifests (one subfolder per extra alias);"
    " relative to the project folder. Overrides OPSKIT_BACKUP_DIR and"
    " OPSKIT['BACKUP_DIR'].  [default: db_backups/]",
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Folder for opskit.log, opskit.json.log and cron's cron.log; relative to the"
    " project folder. Overrides OPSKIT_LOG_DIR and OPSKIT['LOG_DIR'].  [default: logs/]",
)
@click.option("-v", "--verbose", count=True, help="Log each step's start and end with its timings.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("--strict-ping", is_flag=True, default=None, help="Count a failed ping as an error.")
@click.option(
    "--mail-admins", is_flag=True, default=None, help="E-mail ADMINS when a job has errors."
)
@click.version_option(__version__, prog_name="opskit")
@click.pass_context
def cli(
    ctx: click.Context,
    settings: str | None,
    project_dir: Path,
    backup_dir: Path | None,
    log_dir: Path | None,
    verbose: int,
    quiet: bool,
    strict_ping: bool | None,
    mail_admins: bool | None,
) -> None:
    """Nightly maintenance for a Django deployment: backups, sessions, cron, Healthchecks."""
    from opskit.django_project import hosted_project_dir

    signals.install()
    hosted = hosted_project_dir()
    if hosted is not None and ctx.get_parameter_source("project_dir") is ParameterSource.DEFAULT:
        project_dir = hosted  # manage.py opskit: manage.py's folder, wherever it is run from
    verbosity = -1 if quiet else verbose
    ctx.obj = Globals(
        settings,
        project_dir.resolve(),
        backup_dir,
        log_dir,
        verbosity,
        strict_ping=strict_ping,
        mail_admins=mail_admins,
    )


@cli.command()
@click.option("--database", "-d", "databases", multiple=True, metavar="ALIAS", help=DATABASE_HELP)
@click.option("--compress", type=click.Choice(codec.NAMES), help="[default: zstd]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["plain", "directory"]),
    help="PostgreSQL: directory = pg_dump -Fd, restored in parallel.  [default: plain]",
)
@click.option("--exclude-table-data", multiple=True, metavar="TABLE", help="Keep schema only.")
@click.option(
    "--verify-restore", is_flag=True, help="Restore each new archive into a scratch database."
)
@lock_wait_option
@hc_option
@click.pass_context
def backup(
    ctx: click.Context,
    databases: tuple[str, ...],
    compress: str | None,
    fmt: str | None,
    exclude_table_data: tuple[str, ...],
    verify_restore: bool,
    lock_wait: float | None,
    check: str | None,
) -> None:
    """Back up databases into weekday slots (all of settings.DATABASES by default)."""
    from opskit.backup import run_backup, select

    flags: dict[str, Any] = {
        "COMPRESS": compress,
        "FORMAT": fmt,
        "EXCLUDE_TABLE_DATA": exclude_table_data,
        "LOCK_WAIT": lock_wait,
        "VERIFY_RESTORE": verify_restore or None,
    }
    config, dbs = load_project(ctx, apps=False, **flags)
    try:
        aliases = select(config, dbs, databases)
    except OpsError as exc:
        fail_early(ctx, exc)
    run = start_job(ctx, "backup", config, check)
    report = run_backup(config, dbs, aliases, now(), progress_of(ctx))
    for alias, detail in report.details.items():
        say(ctx, f"{alias}: {detail['archive']}")
    finish(ctx, run, report)


@cli.command()
@click.argument("source", default="latest", callback=source_argument)
@click.option(
    "--database",
    "-d",
    "alias",
    default="default",
    show_default=True,
    metavar="ALIAS",
    help="Which database of settings.DATABASES to replace.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--drop-old", is_flag=True, help="Drop the replaced database instead of keeping it.")
@click.option(
    "--in-place",
    is_flag=True,
    help="Load into the live database itself (PostgreSQL: one transaction; MySQL: behind a"
    " safety copy) instead of a scratch database and a swap.",
)
@click.option("--no-owner", is_flag=True, help="PostgreSQL: leave out the objects' owners.")
@click.option("--no-privileges", is_flag=True, help="PostgreSQL: leave out GRANT and REVOKE.")
@click.option(
    "--definer",
    type=click.Choice(["keep", "current-user"]),
    default="keep",
    show_default=True,
    help="MySQL: current-user rewrites DEFINER clauses to the restoring account.",
)
@click.option(
    "--trust-unsigned",
    is_flag=True,
    help="Restore an archive whose manifest is unsigned or signed with another key.",
)
@click.option(
    "--from-other-database",
    is_flag=True,
    help="Restore an archive taken from another database (e.g. production into staging).",
)
@click.option(
    "--recover",
    "recover_only",
    is_flag=True,
    help="Only finish or undo what a killed restore left, then exit.",
)
@click.option(
    "--from",
    "origin",
    type=click.Choice(["local", "offsite"]),
    default="local",
    show_default=True,
    help="offsite: SOURCE is a day (YYYY-MM-DD), latest or a snapshot id in the repository.",
)
@click.option(
    "--media",
    is_flag=True,
    help="Restore the media folders (local weekday snapshots, or --from offsite) instead of a"
    " database.",
)
@click.option(
    "--destination", metavar="NAME", help="With --from offsite: which OFFSITE entry to read."
)
@lock_wait_option
@hc_option
@click.pass_context
def restore(  # long: a click command: 17 parameters, then plan, confirm and restore
    ctx: click.Context,
    source: str,
    alias: str,
    yes: bool,
    drop_old: bool,
    in_place: bool,
    no_owner: bool,
    no_privileges: bool,
    definer: str,
    trust_unsigned: bool,
    from_other_database: bool,
    recover_only: bool,
    origin: str,
    media: bool,
    destination: str | None,
    lock_wait: float | None,
    check: str | None,
) -> None:
    """Restore SOURCE (latest, a weekday like 1-Monday, or an archive path).

    With --from offsite, SOURCE is a day, latest or a snapshot id of the OFFSITE repository.
    """
    from opskit.report import StepFailed
    from opskit.restore import RestoreOptions, RestorePlan, restore_archive

    options = RestoreOptions(
        drop_old=drop_old,
        in_place=in_place,
        no_owner=no_owner,
        no_privileges=no_privileges,
        definer="" if definer == "keep" else definer,
        trust_unsigned=trust_unsigned,
        from_other_database=from_other_database,
    )
    config, dbs = load_project(ctx, apps=False, LOCK_WAIT=lock_wait)
    run = start_job(ctx, "restore", config, check)
    report = Report("restore")

    def confirm(plan: RestorePlan) -> None:
        if not yes:  # the question needs it; with --yes it is information (-q drops it)
            click.echo(f"About to {plan.describe()}.", err=True)
        else:
            say(ctx, f"About to {plan.describe()}.", err=True)
        if not yes:
            _confirm(ctx, run, report, alias)

    if media or origin == "offsite":
        for note in _restore_offsite(
            ctx, config, dbs, alias, source, report, options, confirm, media, destination, origin
        ):
            click.echo(note, err=True)
        finish(ctx, run, report)
    notes: list[str] = []
    with contextlib.suppress(StepFailed):
        notes = restore_archive(
            config,
            dbs,
            alias,
            source,
            now(),
            report,
            options,
            confirm=confirm,
            recover_only=recover_only,
            progress=progress_of(ctx),
        )
    for note in notes:
        say(ctx, note, err=True)
    finish(ctx, run, report)


def _restore_offsite(
    ctx: click.Context,
    config: Any,
    dbs: Any,
    alias: str,
    source: str,
    report: Report,
    options: Any,
    confirm: Any,
    media: bool,
    destination: str | None,
    origin: str,
) -> list[str]:
    """restore --from offsite (a database snapshot), or --media (local or off-site)."""
    from opskit.offsite.fetch import restore_database, restore_local_media, restore_media
    from opskit.report import StepFailed

    with contextlib.suppress(StepFailed):
        if media and origin == "local":
            return restore_local_media(config, source, now(), report)
        if media:
            return restore_media(config, source, now(), report, dest_name=destination)
        return restore_database(
            config,
            dbs,
            alias,
            source,
            now(),
            report,
            options,
            dest_name=destination,
            confirm=confirm,
            progress=progress_of(ctx),
        )
    return []


def _confirm(ctx: click.Context, run: Any, report: Report, alias: str) -> None:
    """Ask on the terminal; without one (cron, a pipe) refuse unless --yes was given."""
    if not sys.stdin.isatty():
        report.fail("confirm", alias, "no terminal to confirm on; pass --yes to restore")
        finish(ctx, run, report)
    if not click.confirm("Replace it?", default=False, err=True):
        report.fail("confirm", alias, "cancelled; nothing was changed")
        finish(ctx, run, report)


@cli.command("list")
@click.option("--database", "-d", "databases", multiple=True, metavar="ALIAS", help=DATABASE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx: click.Context, databases: tuple[str, ...], as_json: bool) -> None:
    """List each database's archives (weekday, age, size, ratio, verified, latest) and what
    restores kept: previous databases and safety copies, with the command that removes each."""
    from opskit.backup import select
    from opskit.catalog import catalog

    config, dbs = load_project(ctx, apps=False)
    try:
        aliases = select(config, dbs, databases)
    except OpsError as exc:
        fail_early(ctx, exc)
    from opskit.overview import kept_copies

    entries = catalog(config, dbs, aliases, now())
    for entry in entries:
        kept, problem = kept_copies(config, dbs[entry["alias"]], Path(entry["folder"]), now())
        entry["kept"] = kept
        if problem:
            entry["kept_problem"] = problem
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        click.echo(f"{entry['alias']} ({entry['database']}) in {entry['folder']}")
        if not entry["archives"]:
            click.echo("  no backups yet")
        for row in entry["archives"]:
            click.echo("  " + _row(row))
        _kept_rows(entry)


def _kept_rows(entry: dict[str, Any]) -> None:
    """What restores kept: opskit never deletes it, so say how much room it takes and how."""
    kept = entry["kept"]
    if kept:
        total = sum(k["size"] or 0 for k in kept)
        click.echo(f"  kept by restores, {human(total)} in all; remove each when no longer needed:")
    for item in kept:
        size = human(item["size"]) if item["size"] is not None else "?"
        click.echo(f"    {item['kind']:<11} {item['name']:<40} {size:>9}  {item['drop']}")
    if entry.get("kept_problem"):
        click.echo(f"  cannot list what restores kept: {entry['kept_problem']}")


def _human_age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    if seconds < -120:
        return "in the future"  # the clock moved back, or the archive came from elsewhere
    seconds = max(seconds, 0)
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def _row(row: dict[str, Any]) -> str:
    mark = "*" if row["latest"] else " "
    name = Path(row["file"]).name
    ratio = f"x{row['ratio']}" if row.get("ratio") else ""
    age = _human_age(row.get("age_seconds"))
    text = f"{mark} {name:<24} {age:>13} {human(row['size']):>9} {ratio:>7}  {row['status']}"
    return text + (f": {row['problem']}" if row.get("problem") else "")


def _register() -> None:
    """Add the scheduling and monitoring commands (kept in their own modules)."""
    from opskit.cli import check as cli_check
    from opskit.cli import maintenance as cli_maintenance
    from opskit.cli import monitor as cli_monitor
    from opskit.cli import offsite as cli_offsite
    from opskit.cli import schedule as cli_schedule
    from opskit.cli import verify as cli_verify

    groups = (cli_schedule, cli_monitor, cli_verify, cli_check, cli_maintenance, cli_offsite)
    for command in (c for module in groups for c in module.COMMANDS):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="opskit")
