"""The check command: is the whole set-up healthy? One line per check; exit = FAIL count."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from opskit import status
from opskit.cli.common import Globals, finish, hc_option, now, start_job
from opskit.cli.schedule import cron_d_name, existing_user
from opskit.errors import OpsError

if TYPE_CHECKING:
    from opskit.project import Project


def _age(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from opskit.check import parse_age

    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("check")
@click.option(
    "--max-age",
    default="26h",
    show_default=True,
    callback=_age,
    metavar="AGE",
    help="Oldest acceptable latest backup: 90m, 26h, 2d.",
)
@click.option("--cron", "with_cron", is_flag=True, help="Also check the installed cron jobs.")
@click.option(
    "--cron-user",
    metavar="NAME",
    callback=existing_user,
    help="With --cron: whose crontab to read; its jobs are checked as that user.",
)
@click.option(
    "--cron-d",
    metavar="NAME",
    callback=cron_d_name,
    help="With --cron: read /etc/cron.d/NAME instead.",
)
@click.option(
    "--name",
    metavar="NAME",
    help="With --cron or --healthchecks: project name in job tags and check names.",
)
@click.option(
    "--healthchecks",
    "with_hc",
    is_flag=True,
    help="Also read each job's Healthchecks check through the API (read-only key is enough).",
)
@click.option(
    "--ack-size",
    "ack_size",
    multiple=True,
    metavar="ALIAS",
    help="Accept the newest dump of ALIAS as its usual size (after a purge, say).",
)
@click.option(
    "--only", metavar="NAMES", help="Comma-separated checks to run, e.g. database,latest."
)
@click.option(
    "--offsite",
    "with_offsite",
    is_flag=True,
    help="Also check the OFFSITE repositories: reachable, newest snapshots within --max-age.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@hc_option
@click.pass_context
def check_command(
    ctx: click.Context,
    max_age: float,
    with_cron: bool,
    cron_user: str | None,
    cron_d: str | None,
    name: str | None,
    with_hc: bool,
    ack_size: tuple[str, ...],
    only: str | None,
    with_offsite: bool,
    as_json: bool,
    check: str | None,
) -> None:
    """Check settings, databases, tools, folders, latest backups, sessions (and cron, pings).

    Prints OK, WARN or FAIL with the fix for each; exits with the number of FAILs.
    """
    from opskit import check as checks

    names = _names(only)
    loaded = _load(ctx, names, as_json)
    config, dbs = loaded.config, loaded.databases
    for alias in ack_size:
        _acknowledge(ctx, config, dbs, alias)
    run = start_job(ctx, "check", config, check)
    started = now()

    def cron_state() -> list[checks.Result]:
        return _cron_state(ctx, config, cron_user, cron_d, name)

    def hc_state() -> list[checks.Result]:
        return _hc_state(ctx, config, name)

    results = checks.run_checks(
        config,
        dbs,
        started,
        max_age=max_age,
        only=names,
        cron_state=cron_state if with_cron else None,
        healthchecks=hc_state if with_hc else None,
    )
    if with_offsite:
        results += _offsite_state(config, dbs, started, max_age)
    _render(results, as_json)
    run.body = "".join(r.line() + "\n" for r in results)  # the ping body is the table
    finish(ctx, run, checks.to_report(results))


def _names(only: str | None) -> list[str]:
    """The checks --only names; an unknown one is a usage error (64) before anything runs."""
    from opskit.check import FAMILIES

    names = [n.strip() for n in (only or "").split(",") if n.strip()]
    unknown = [n for n in names if n.split(":", 1)[0] not in FAMILIES]
    if unknown:
        raise click.BadParameter(
            f"unknown check {', '.join(unknown)}; choose from {', '.join(FAMILIES)}",
            param_hint="--only",
        )
    return names


def _load(ctx: click.Context, names: list[str], as_json: bool) -> Project:
    """Set the project up; if that fails, the settings checks say why and the run ends."""
    from opskit import check as checks
    from opskit import logs
    from opskit.cli.common import load

    g: Globals = ctx.obj
    try:
        loaded = load(ctx)
    except OpsError as exc:
        results = checks.settings_failed(exc, names)
        _render(results, as_json)
        ctx.exit(status.for_errors(sum(r.status == checks.FAIL for r in results)))
    # Read-only: log to stderr (and the ping's tail) only; the log folder is one of the checks.
    g.tail = logs.LogTail()
    logs.configure(log_dir=None, verbosity=g.verbosity, secrets=g.secrets, tail=g.tail)
    return loaded


def _offsite_state(config: Any, dbs: dict[str, Any], started: Any, max_age: float) -> list[Any]:
    """check --offsite: the OFFSITE repositories are reachable and their snapshots recent."""
    from opskit import check as checks
    from opskit.offsite.health import check_offsite

    results = []
    if not config.offsite:
        results.append(
            checks.Result(
                "offsite", checks.FAIL, "no OPSKIT['OFFSITE'] is configured", "docs/offsite.md"
            )
        )
    aliases = [a for a in dbs if not config.databases or a in config.databases]
    return results + check_offsite(config, aliases, started, max_age)


def _acknowledge(ctx: click.Context, config: Any, dbs: dict[str, Any], alias: str) -> None:
    """Accept the newest dump's size under the backup lock (check's only other write)."""
    from opskit.archive import locks, rotation
    from opskit.monitoring import anomaly

    if alias not in dbs:
        raise click.BadParameter(
            f"no database {alias!r} in settings.DATABASES", param_hint="--ack-size"
        )
    folder = rotation.db_dir(config.backup_dir, alias)
    try:
        with locks.hold(locks.lock_path(folder, "backup"), what="check --ack-size"):
            entry = anomaly.acknowledge(folder, now())
    except (OpsError, OSError) as exc:
        message = exc.line() if isinstance(exc, OpsError) else str(exc)
        click.echo(f"opskit: error: {message}", err=True)
        ctx.exit(status.for_errors(1))
    click.echo(
        f"opskit check: {entry.get('file') or 'the newest dump'} of {alias} is now its usual size",
        err=True,
    )


def _hc_state(ctx: click.Context, config: Any, name: str | None) -> list[Any]:
    """The crontab's jobs and their checks, as hc sync would make them, read from the API."""
    from opskit.check import FAIL, Result, check_healthchecks
    from opskit.cli.monitor import durations_of
    from opskit.cli.schedule import project_name, schedule_file, subcommands
    from opskit.cron import install as cron
    from opskit.cron import timezones
    from opskit.healthchecks import sync as hcsync

    try:
        with schedule_file(None, config) as (source, _):
            lines = cron.parse_schedule(source, commands=subcommands(ctx))
        wanted = hcsync.wanted_checks(
            lines,
            project=project_name(ctx, name),
            tz=timezones.system_zone(),
            grace=None,
            checks=config.healthchecks,
            durations=durations_of(config),
        )
    except OpsError as exc:
        return [Result("healthchecks", FAIL, exc.message, exc.hint)]
    return check_healthchecks(config, wanted, durations_of(config))


def _render(results: list[Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            click.echo(result.line())


def _cron_state(
    ctx: click.Context, config: Any, user: str | None, cron_d: str | None, name: str | None
) -> list[Any]:
    """Compare the schedule ``cron install`` would write with what the crontab holds."""
    from opskit.check import FAIL, OK, WARN, Result, check_cron
    from opskit.cli.schedule import (
        job_problems,
        job_user,
        proc_dir,
        project_name,
        target,
        wanted_entries,
    )
    from opskit.cron import install as cron
    from opskit.cron import runas

    project = project_name(ctx, name)
    try:
        wanted, _ = wanted_entries(ctx, config, None, project)
        tab = target(user, cron_d)
        installed = cron.show(project, now(), tab=tab, proc=proc_dir()).jobs
        who = job_user(tab)
        users = {job.user for job in installed if job.user}
        if cron_d is not None and user is None and len(users) == 1:
            who = runas.User.named(users.pop())  # the user column the file's jobs run as
        problems = job_problems(who, config)
    except OpsError as exc:
        return [Result("cron:jobs", FAIL, exc.message, exc.hint)]
    results = check_cron(wanted, installed, tab.label, cron.cron_daemon_running(proc_dir()))
    if not (who.is_me or os.geteuid() == 0):
        # Only root can become another user to ask; the answers would be our own.
        found = f"the jobs run as {who.name}: only root can check what {who.name} may access"
        results.append(Result("cron:start", WARN, found, "run opskit check --cron as root"))
        return results
    # What cron needs before opskit even starts, checked as the user the jobs run as.
    for problem in problems:
        results.append(Result("cron:start", FAIL, f"a job would fail: {problem.text}", problem.fix))
    if not problems:
        found = f"as {who.name}: cron.log, the folders, opskit and the project are usable"
        results.append(Result("cron:start", OK, found))
    return results


COMMANDS: list[click.Command] = [check_command]
