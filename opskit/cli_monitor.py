"""Monitoring commands: ping, run, hc."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
