"""Job names: what each crontab line's job is called, in cron's tags and in Healthchecks.

One name per line, from one place: the job a line reports and pings as (``run`` lines: their
``--job``, else the program's name), numbered ``-2``, ``-3`` when an earlier line has the same
one. ``cron install`` tags the line with it and ``hc sync`` names the line's check after it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

# The options of "opskit run" that take a value, to find its command in a crontab line.
_VALUE_OPTIONS = frozenset({"--hc", "--timeout", "--kill-after", "--ping-url", "--ping-budget"})
_UNTAGGABLE = re.compile(r"[^\w.-]+")  # what a cron tag (opskit:<project>:<job>) cannot hold


def job_of(args: Sequence[str]) -> str:
    """Return the job a crontab line's opskit command reports as (run: --job, else the program)."""
    if args[0] != "run":
        return args[0]
    rest = list(args[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--job" and rest:
            return rest[0]
        if arg.startswith("--job="):
            return arg.partition("=")[2]
        if arg == "--" or not arg.startswith("-"):
            command = rest if arg == "--" else [arg, *rest]
            return command_name(command) if command else "run"
        if arg in _VALUE_OPTIONS and rest:
            rest.pop(0)
    return "run"


def command_name(argv: Sequence[str]) -> str:
    """Return the program's base name: its arguments may hold secrets, so pings never show them."""
    return Path(argv[0]).name or argv[0]


@dataclasses.dataclass(frozen=True)
class JobName:
    """One line's job: what it reports as, and its name among the schedule's jobs."""

    command: str  # what the line's job reports and pings as (job_of)
    job: str  # command, numbered -2, -3, ... when an earlier line has the same command
    count: int  # 1 for the first line with this command

    @property
    def tag(self) -> str:
        """The job part of the line's cron tag (characters a tag cannot hold become -)."""
        return _UNTAGGABLE.sub("-", self.job).strip("-") or "job"


def job_names(lines: Iterable[Sequence[str]]) -> list[JobName]:
    """Name the job of each line (given as its opskit arguments), in order."""
    seen: dict[str, int] = {}
    names = []
    for args in lines:
        command = job_of(args)
        seen[command] = count = seen.get(command, 0) + 1
        names.append(JobName(command, command if count == 1 else f"{command}-{count}", count))
    return names
