"""``python manage.py opskit <command> [options]``: the opskit CLI in this project's Django.

For deployments that ship only ``manage.py`` (containers, PaaS): the same click CLI, its
options, output, logs, pings and exit status, with manage.py's settings (opskit does not set
Django up again with other ones) and manage.py's folder as the project folder.
Django-facing, so it imports django.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run opskit inside this project: backup, restore, list, verify, check, clear-sessions,"
        " cron ... (python manage.py opskit --help)."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand everything after ``opskit`` to opskit's own parser; exit with its status."""
        from opskit import django_project
        from opskit.cli import cli

        manage = Path(argv[0]).resolve()
        django_project.host(os.environ["DJANGO_SETTINGS_MODULE"], manage.parent)
        prog = f"{Path(sys.executable).name} {manage.name} opskit"
        cli.main(args=argv[2:], prog_name=prog)  # exits: SystemExit with opskit's status

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover - call_command
        from django.core.management.base import CommandError

        raise CommandError("run it from the command line: python manage.py opskit <command>")
