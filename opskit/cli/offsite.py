"""The offsite commands: what the OFFSITE repositories hold."""

from __future__ import annotations

import json

import click

from opskit.cli.common import fail_early, load_project
from opskit.errors import ConfigError
from opskit.progress import human
from opskit.status import for_errors


@click.group("offsite")
def offsite() -> None:
    """Off-site copies in restic repositories (OPSKIT['OFFSITE'])."""


@offsite.command("list")
@click.option(
    "--all-hosts",
    is_flag=True,
    help="Every host's and project's newest snapshot per database and media folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_command(ctx: click.Context, all_hosts: bool, as_json: bool) -> None:
    """Snapshots of this host and project, newest first, with sizes (exit 1 if one repository
    could not be read)."""
    from opskit.offsite.health import listing

    config, _ = load_project(ctx, apps=False)
    if not config.offsite:
        fail_early(ctx, ConfigError("no OPSKIT['OFFSITE'] is configured", "see docs/offsite.md"))
    rows, problems = listing(config, all_hosts=all_hosts)
    if as_json:
        click.echo(json.dumps({"snapshots": rows, "problems": problems}, indent=2))
    else:
        for row in rows:
            size = human(row["size"]) if row["size"] is not None else "-"
            click.echo(
                f"{row['destination']:<10} {row['host']:<16} {row['project']:<12}"
                f" {row['what']:<16} {row['time'][:16].replace('T', ' ')}  {row['id']}  {size:>9}"
            )
        if not rows and not problems:
            click.echo("no off-site snapshots yet")
    for problem in problems:
        click.echo(f"opskit offsite list: error: {problem}", err=True)
    ctx.exit(for_errors(len(problems)))


COMMANDS: list[click.Command] = [offsite]
