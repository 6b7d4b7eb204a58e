"""Monitoring commands: ping, run, and hc sync."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from opskit import status
from opskit.cli.common import Globals, fail_early, hc_option, load_project
from opskit.errors import ConfigError, OpsError

if TYPE_CHECKING:  # imported late at run time: "opskit ping --hc" must start fast
    from opskit.config import Config
    from opskit.healthchecks.run import Where

KINDS = ("start", "success", "fail", "log")
_READ_KEEP = 100_000  # --data keeps this many trailing bytes (the server keeps fewer)


def resolve(ctx: click.Context, job: str, flag: str | None, ping_url: str | None) -> Where:
    """Find the job's check and set up logging on stderr (secrets known by then are masked)."""
    from opskit import logs
    from opskit.healthchecks.run import BadCheckFlag, locate

    g: Globals = ctx.obj
    logs.configure(log_dir=None, verbosity=g.verbosity)
    try:
        where = locate(
            job,
            flag,
            ping_url=ping_url,
            environ=os.environ,
            project_dir=g.project_dir,
            settings=g.settings,
            strict=g.strict_ping,
        )
    except BadCheckFlag as exc:  # a bad flag is a usage error (64); a bad setting is not
        raise click.BadParameter(exc.line(), param_hint="'--hc'") from None
    if where.secrets:
        logs.configure(log_dir=None, verbosity=g.verbosity, secrets=where.secrets)
    return where


def _kind(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip().lower()
    if value in KINDS or (value.isdigit() and int(value) <= 255):
        return value
    raise click.BadParameter(f"{value!r} is not one of start, success, fail, log or 0-255")


def _rid(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if value is None:
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise click.BadParameter("a run id is a UUID, e.g. from uuidgen") from None


def _tail(stream: IO[bytes]) -> bytes:
    """Read a stream to its end, keeping only its last bytes (a log may be huge)."""
    kept = bytearray()
    for chunk in iter(lambda: stream.read(65536), b""):
        kept += chunk
        del kept[:-_READ_KEEP]
    return bytes(kept)


def _data(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes:
    if value is None:
        return b""
    if value == "-":
        return _tail(sys.stdin.buffer)
    if value.startswith("@"):
        try:
            with open(value[1:], "rb") as fh:
                return _tail(fh)
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}") from None
    return value.encode()


ping_url_option = click.option(
    "--ping-url",
    metavar="URL",
    help="Ping base URL [default: OPSKIT_HEALTHCHECKS_PING_URL, else the settings', "
    "else https://hc-ping.com/].",
)


@click.command("ping")
@click.argument("kind", callback=_kind, metavar="start|success|fail|log|0-255")
@hc_option
@click.option(
    "--job",
    default="ping",
    metavar="NAME",
    show_default=True,
    help="Without --hc, use this job's check: OPSKIT_HC_<JOB>, else OPSKIT['HEALTHCHECKS'][JOB].",
)
@click.option(
    "--data", metavar="TEXT|@FILE|-", callback=_data, help="Ping body: text, a file, or stdin."
)
@click.option("--rid", metavar="UUID", callback=_rid, help="Run id pairing start and end pings.")
@ping_url_option
@click.option(
    "--max-time",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up after this long, retries included.",
)
@click.pass_context
def ping_command(
    ctx: click.Context,
    kind: str,
    check: str | None,
    job: str,
    data: bytes,
    rid: str,
    ping_url: str | None,
    max_time: float,
) -> None:
    """Send one ping to Healthchecks; exit 0 if it arrived, 1 if not."""
    from opskit.healthchecks.ping import BodyLimits, ping

    try:
        where = resolve(ctx, job, check, ping_url)
    except OpsError as exc:
        fail_early(ctx, exc)
    if where.target is None:
        fail_early(ctx, ConfigError(where.problem))
    result = ping(
        where.target,
        kind,
        data,
        rid=rid,
        timeout=min(where.bounds.timeout, max_time),
        budget=max_time,
        secrets=where.secrets,
        limits=BodyLimits(where.limits) if where.limits else None,
    )
    ctx.exit(status.Status.OK if result.ok else status.for_errors(1))


@click.command(
    "run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@hc_option
@click.option("--job", metavar="NAME", help="Job name [default: the command's file name].")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop the command after this long (SIGTERM, then SIGKILL) and exit 124.",
)
@click.option(
    "--kill-after",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How long --timeout waits after SIGTERM before SIGKILL.",
)
@ping_url_option
@click.option(
    "--ping-budget",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Most time the final ping may take, retries included [default: HEALTHCHECKS_BUDGET, 30].",
)
@click.option(
    "--start-budget",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Most time the start ping may take [default: HEALTHCHECKS_START_BUDGET, 10].",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run_command(
    ctx: click.Context,
    check: str | None,
    job: str | None,
    timeout: float | None,
    kill_after: float,
    ping_url: str | None,
    ping_budget: float | None,
    start_budget: float | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND, pinging its start and its exit status with the end of its output."""
    from opskit.healthchecks.run import RunOptions, Where, command_name, record_run, run_monitored

    job = job or command_name(command)
    try:
        where = resolve(ctx, job, check, ping_url)
    except OpsError as exc:  # monitoring must never stop the command from running
        where = Where(None, problem=exc.line())
    if where.target is None:
        click.echo(f"opskit run: warning: not monitored: {where.problem}", err=True)
    bounds = where.bounds
    options = RunOptions(
        job,
        timeout,
        kill_after,
        where.strict,
        ping_budget or bounds.final,
        where.secrets,
        start_budget=start_budget or bounds.start,
        ping_timeout=bounds.timeout,
        limits=where.limits,
    )
    with _child_stdin() as stdin:
        result = run_monitored(
            command,
            where.target,
            options,
            out=sys.stdout.buffer,
            err=sys.stderr.buffer,
            stdin=stdin,
        )
    if result.finished.reason:
        click.echo(f"opskit run: {result.finished.reason}", err=True)
    if where.metrics_file is not None:
        record_run(where.metrics_file, job, result)
    ctx.exit(result.exit_status)


@contextlib.contextmanager
def _child_stdin() -> Iterator[IO[bytes] | None]:
    """Pass our stdin on, unless it is a terminal: the command runs in a background group."""
    try:
        fd = sys.stdin.fileno()
        usable = not os.isatty(fd)
    except (AttributeError, ValueError, OSError):  # no real stdin (e.g. under CliRunner)
        usable = False
    if usable:
        yield None
        return
    with open(os.devnull, "rb") as devnull:
        yield devnull


@click.group("hc")
def hc_group() -> None:
    """Manage Healthchecks checks through the management API."""


@hc_group.command("sync")
@click.option("--dry-run", is_flag=True, help="Only read: show what would change.")
@click.option(
    "--grace",
    type=click.IntRange(60, 31_536_000),
    metavar="SECONDS",
    help="Grace period of every check [default: twice the longest of the job's last 7 runs,"
    " at least 600; 3600 for a new check of a job that never ran].",
)
@click.option("--tz", metavar="ZONE", help="Schedules' time zone [default: cron's, the system's].")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Schedule [default: OPSKIT['CRONTAB'], else crontab.txt, else built-in].",
)
@click.option("--name", metavar="NAME", help="Project name [default: the project folder's].")
@click.option(
    "--prune",
    type=click.Choice(["pause", "delete"]),
    help="Pause or delete this project's checks whose job left crontab.txt.",
)
@click.pass_context
def hc_sync(
    ctx: click.Context,
    dry_run: bool,
    grace: int | None,
    tz: str | None,
    path: Path | None,
    name: str | None,
    prune: str | None,
) -> None:
    """Create or update one check per crontab.txt job, with the same schedule."""
    from opskit.cli.schedule import project_name, schedule_file, subcommands
    from opskit.cron import install as cron
    from opskit.cron import timezones
    from opskit.healthchecks import api as hcapi
    from opskit.healthchecks import sync as hcsync
    from opskit.healthchecks.run import unpinged

    config, _ = load_project(ctx)
    project = project_name(ctx, name)
    try:
        zone = timezones.check(tz) if tz else timezones.system_zone()
        with schedule_file(path, config) as (source, label):
            lines = cron.parse_schedule(source, commands=subcommands(ctx))
        wanted = hcsync.wanted_checks(
            lines,
            project=project,
            tz=zone,
            grace=grace,
            checks=config.healthchecks,
            durations=durations_of(config),
        )
        api = hcapi.Api(config.api_url, config.api_key)
        rows = hcsync.sync(api, wanted, project=project, dry_run=dry_run, prune=prune)
    except OpsError as exc:
        fail_early(ctx, exc)
    width = max([len(r.job) for r in rows] + [3])
    slugs = max([len(r.slug) for r in rows] + [5])
    click.echo(f"{'JOB':<{width}}  {'STATE':<9}  {'CHECK':<{slugs}}  DETAIL")
    for row in rows:
        click.echo(f"{row.job:<{width}}  {row.state:<9}  {row.slug:<{slugs}}  {row.detail}")
    for note in unpinged(lines, wanted, config.healthchecks, label):
        click.echo(f"opskit: note: {note}", err=True)
    counts = {s: sum(r.state == s for r in rows) for s in dict.fromkeys(r.state for r in rows)}
    said = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no jobs"
    click.echo(f"opskit hc sync{' (dry run)' if dry_run else ''}: {said}", err=True)
    ctx.exit(status.for_errors(sum(not r.ok for r in rows)))


def durations_of(config: Config) -> Callable[[str], list[float]]:
    """How long a job's last runs took: the JSON log, else (a backup) the manifests."""
    from opskit.monitoring import durations as runs

    def durations(job: str) -> list[float]:
        found = runs.logged(config.log_dir, job)
        if not found and job == "backup":
            found = runs.from_manifests(config.backup_dir)
        return found

    return durations


COMMANDS: list[click.Command] = [ping_command, run_command, hc_group]
