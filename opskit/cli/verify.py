"""The verify command: re-read archives, optionally restore-test them, one line per archive."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from opskit.cli.common import (
    DATABASE_HELP,
    fail_early,
    finish,
    hc_option,
    load_project,
    now,
    progress_of,
    source_argument,
    start_job,
)
from opskit.errors import OpsError


@click.command("verify")
@click.argument("sources", nargs=-1, metavar="[SOURCE]...", callback=source_argument)
@click.option("--all", "every", is_flag=True, help="Every archive, pre-restore copies too.")
@click.option("--database", "-d", "databases", multiple=True, metavar="ALIAS", help=DATABASE_HELP)
@click.option(
    "--restore-test", is_flag=True, help="Also restore into a scratch database and count rows."
)
@click.option(
    "--trust-unsigned", is_flag=True, help="Accept unsigned manifests (after inspecting them)."
)
@click.option(
    "--offsite",
    is_flag=True,
    help="Check the OFFSITE repositories instead: restic check, and the newest snapshot of"
    " each database read back and hashed.",
)
@click.option(
    "--read-data-subset",
    metavar="N/M",
    help="With --offsite: also read this part of the data (restic check --read-data-subset).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@hc_option
@click.pass_context
def verify_command(
    ctx: click.Context,
    sources: tuple[str, ...],
    every: bool,
    databases: tuple[str, ...],
    restore_test: bool,
    trust_unsigned: bool,
    offsite: bool,
    read_data_subset: str | None,
    as_json: bool,
    check: str | None,
) -> None:
    """Check archives against their manifests (SOURCE: latest, a weekday or a path).

    Exits with the number of bad archives.
    """
    from opskit.backup import select
    from opskit.verify import plan, run_verify

    if every and sources:
        raise click.UsageError("give SOURCE arguments or --all, not both")
    config, dbs = load_project(ctx, apps=False)
    try:
        aliases = select(config, dbs, databases)
    except OpsError as exc:
        fail_early(ctx, exc)
    run = start_job(ctx, "verify", config, check)
    if read_data_subset and not offsite:
        raise click.UsageError("--read-data-subset goes with --offsite")
    if offsite:
        _verify_offsite(ctx, run, config, aliases, read_data_subset, as_json)
    started = now()
    targets = plan(config, dbs, aliases, sources, every=every)
    report, verdicts = run_verify(
        config,
        dbs,
        targets,
        restore_at=started if restore_test else None,
        progress=progress_of(ctx),
        trust_unsigned=trust_unsigned,
    )
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in verdicts], indent=2))
    else:
        for verdict in verdicts:
            click.echo(verdict.line())
    finish(ctx, run, report)


def _verify_offsite(
    ctx: click.Context,
    run: Any,
    config: Any,
    aliases: list[str],
    subset: str | None,
    as_json: bool,
) -> None:
    from opskit.offsite.health import verify_offsite

    if not config.offsite:
        fail_early(ctx, OpsError("no OPSKIT['OFFSITE'] is configured", "see docs/offsite.md"))
    if subset is not None and not re.fullmatch(r"\d+/\d+|\d+(\.\d+)?%", subset):
        raise click.BadParameter("give N/M (1/7) or a percentage", param_hint="--read-data-subset")
    report, lines = verify_offsite(config, aliases, subset)
    if as_json:
        click.echo(json.dumps(lines, indent=2))
    else:
        for line in lines:
            click.echo(line)
    finish(ctx, run, report)


COMMANDS: list[click.Command] = [verify_command]
