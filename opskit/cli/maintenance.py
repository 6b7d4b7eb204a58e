"""``opskit maintenance on|off|status``: the switch the middleware reads, by hand."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING

import click

from opskit.cli.common import fail_early, load_project
from opskit.errors import OpsError
from opskit.status import Status, for_errors

if TYPE_CHECKING:
    from opskit.maintenance import Hold


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from opskit.check import parse_age

    if value is None:
        return None
    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).replace("an age", "a duration")) from None


def _prefix(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise click.BadParameter(f"{value!r} is not a URL path prefix like /shop/")
    return value


path_option = click.option(
    "--path",
    callback=_prefix,
    metavar="PREFIX",
    help="Only URLs under this prefix, e.g. /shop/ (default: the whole site).",
)


@click.group("maintenance")
def maintenance_group() -> None:
    """Put the site into maintenance (HTTP 503 with a page) and take it out again."""


@maintenance_group.command("on")
@click.option("--message", metavar="TEXT", help="Shown on the page [default: MAINTENANCE_MESSAGE].")
@click.option(
    "--for",
    "duration",
    callback=_duration,
    metavar="DURATION",
    help="Off by itself after 30m, 2h, 1d...; also the Retry-After clients get.",
)
@path_option
@click.pass_context
def on(ctx: click.Context, message: str | None, duration: float | None, path: str | None) -> None:
    """Turn maintenance on for the whole site, or for URLs under --path."""
    from opskit import maintenance

    config, _ = load_project(ctx, apps=False)
    until = time.time() + duration if duration else None
    try:
        maintenance.turn_on(config.state_dir, message=message or "", until=until, path=path)
    except OpsError as exc:
        fail_early(ctx, exc)
    where = f"URLs under {path}" if path else "the whole site"
    end = f" until {_when(until)}" if until else " until opskit maintenance off"
    click.echo(f"maintenance on for {where}{end}")
    ctx.exit(Status.OK)


@maintenance_group.command("off")
@path_option
@click.option(
    "--force",
    is_flag=True,
    help="Also drop the hold of a restore that left its journal (the database is known whole).",
)
@click.pass_context
def off(ctx: click.Context, path: str | None, force: bool) -> None:
    """Turn maintenance off: every switch set by hand, or only the one for --path."""
    from opskit import maintenance

    config, _ = load_project(ctx, apps=False)
    try:
        state = maintenance.turn_off(config.state_dir, path=path, force=force)
    except OpsError as exc:
        fail_early(ctx, exc)
    if state.restores:
        for hold in state.restores.values():
            click.echo(
                f"opskit: error: maintenance stays on: {_describe_hold(hold)}; run opskit"
                f" restore --recover --database {hold.alias} (or pass --force once the"
                " database is known to be whole)",
                err=True,
            )
        ctx.exit(for_errors(1))
    still = (["the whole site"] if state.site else []) + sorted(state.paths)
    rest = f"; still on for {', '.join(still)}" if still else ""
    click.echo(f"maintenance off for {path or 'the whole site'}{rest}")
    ctx.exit(Status.OK)


@maintenance_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Say what is in maintenance, since when, until when and why."""
    from opskit import maintenance

    config, _ = load_project(ctx, apps=False)
    try:
        state = maintenance.read(config.state_dir).active(time.time())
    except OpsError as exc:
        fail_early(ctx, exc)
    if as_json:
        data = state.as_dict()
        data["on"] = not state.empty
        for alias, hold in state.restores.items():
            data["restores"][alias]["stale"] = hold.stale()
        click.echo(json.dumps(data, indent=2))
        ctx.exit(Status.OK)
    if state.empty:
        click.echo("maintenance is off")
    lines = []
    if state.site is not None:
        lines.append(("the whole site", state.site))
    lines += sorted(state.paths.items())
    for where, switch in lines:
        until = f", until {_when(switch.until)}" if switch.until else ""
        text = f": {switch.message}" if switch.message else ""
        click.echo(f"on for {where} since {_when(switch.since)} by {switch.by}{until}{text}")
    for hold in state.restores.values():
        click.echo(f"on for the whole site: {_describe_hold(hold)}")
    ctx.exit(Status.OK)


def _describe_hold(hold: Hold) -> str:
    from opskit.proc import pid_alive

    what = f"a restore of {hold.alias!r} (pid {hold.pid}) since {_when(hold.since)}"
    if hold.stale():
        return f"{what} ended without releasing it (stale; opskit maintenance off drops it)"
    if pid_alive(hold.pid):
        return f"{what} is running"
    return f"{what} was killed and left its journal {hold.journal}"


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp or 0).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


COMMANDS = [maintenance_group]
