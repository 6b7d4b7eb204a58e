"""Scheduling commands: clear-sessions and cron."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
