"""Which check a job pings, and running any command the way runitor does, pinging around it."""

from __future__ import annotations

import dataclasses
import re
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from opskit import healthchecks, logs, proc
from opskit.errors import ConfigError
from opskit.healthchecks import DEFAULT_BASE_URL, Pinger, PingTarget, parse_check

if TYPE_CHECKING:
    from opskit.cron import ScheduleLine
    from opskit.hcapi import Wanted

EXIT_PING_FAILED = 1  # --strict-ping: a command that succeeded but could not be reported
TAIL_KEEP = 100_000  # bytes of output kept for the ping body (the server may allow more)
_TRUE = ("1", "true", "yes", "on")
# The options of "opskit run" that take a value, to find its command in a crontab line.
_VALUE_OPTIONS = frozenset({"--hc", "--timeout", "--kill-after", "--ping-url", "--ping-budget"})

log = logs.get("run")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a monitored run ended with: opskit's exit status and why."""

    exit_status: int
    finished: proc.Finished
    duration: float
    ping_problem: str = ""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run and report one command."""

    job: str
    timeout: float | None = None
    kill_after: float = 5.0
    strict_ping: bool = False
    ping_budget: float = 30.0
    secrets: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a job's pings go (None: not monitored, and why), and what to redact."""

    target: PingTarget | None
    secrets: tuple[str, ...] = ()
    strict: bool = False
    problem: str = ""


class BadCheckFlag(ConfigError):
    """The --hc flag itself is malformed (a usage error, unlike a bad setting)."""


def env_name(job: str) -> str:
    """Return the variable that names a job's check: clear-sessions -> OPSKIT_HC_CLEAR_SESSIONS."""
    return "OPSKIT_HC_" + re.sub(r"[^A-Z0-9]+", "_", job.upper()).strip("_")


def locate(
    job: str,
    flag: str | None,
    *,
    ping_url: str | None,
    environ: Mapping[str, str],
    project_dir: Path,
    settings: str | None,
    strict: bool | None,
) -> Where:
    """Find a job's check: the flag, else OPSKIT_HC_<JOB> (no Django), else settings.OPSKIT."""
    spec = flag or environ.get(env_name(job))
    if not spec:
        return _from_settings(job, ping_url, environ, project_dir, settings, strict)
    base = ping_url or environ.get("OPSKIT_HEALTHCHECKS_PING_URL") or DEFAULT_BASE_URL
    create = _true(environ.get("OPSKIT_HEALTHCHECKS_CREATE"))
    try:
        target = parse_check(spec, base, create)
    except ConfigError as exc:
        if flag:
            raise BadCheckFlag(exc.message, exc.hint) from None
        raise ConfigError(f"{env_name(job)}: {exc.message}", exc.hint) from None
    return Where(target, (), _true(environ.get("OPSKIT_STRICT_PING")) if strict is None else strict)


def _from_settings(
    job: str,
    ping_url: str | None,
    environ: Mapping[str, str],
    project_dir: Path,
    settings: str | None,
    strict: bool | None,
) -> Where:
    """Read the check from the Django project's settings: the only path that sets Django up."""
    from opskit import django_project
    from opskit.config import build_config

    unset = f"no check for job {job!r} (pass --hc CHECK, or set {env_name(job)})"
    named = settings or environ.get("DJANGO_SETTINGS_MODULE")
    if not named and not (project_dir / "manage.py").is_file():  # no project: say what to set
        return Where(None, problem=unset)
    module = django_project.find_settings(project_dir, settings, environ)
    django_project.setup(project_dir, module)
    databases = django_project.databases()
    config = build_config(
        project_dir=project_dir,
        settings_module=module,
        settings_opskit=django_project.opskit_settings(),
        environ=environ,
        flags={"STRICT_PING": strict},
    )
    secrets = (*(db.password for db in databases.values()), config.api_key)
    spec = config.check_for(job)
    if not spec:
        return Where(None, secrets, config.strict_ping, f"{unset[:-1]} or OPSKIT['HEALTHCHECKS'])")
    target = parse_check(spec, ping_url or config.ping_url, config.ping_create)
    return Where(target, secrets, config.strict_ping)


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


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


def run_monitored(
    argv: Sequence[str],
    target: PingTarget | None,
    options: RunOptions,
    *,
    out: IO[bytes],
    err: IO[bytes],
    stdin: IO[bytes] | int | None = None,
) -> RunResult:
    """Ping start, run the command with its output passed through, ping its exit status."""
    pinger = _pinger(target, options.ping_budget, options.secrets)
    problems: list[str] = []
    if pinger is not None:
        _note(pinger.start(), problems)
    began = time.monotonic()
    finished = proc.passthrough(
        argv,
        out=out,
        err=err,
        keep=TAIL_KEEP,
        timeout=options.timeout,
        kill_after=options.kill_after,
        stdin=stdin,
    )
    duration = time.monotonic() - began
    summary: dict[str, object] = {
        "job": options.job,
        "host": socket.gethostname(),
        "command": command_name(argv),
        "duration": round(duration, 3),
    }
    if finished.reason:
        summary["reason"] = finished.reason
    log.debug("command_finished", **summary, exit_status=finished.status)
    if pinger is not None:
        tail = finished.tail.decode("utf-8", errors="replace")
        _note(pinger.finish(finished.status, tail, summary), problems)
    status = finished.status
    # A failed ping turns success into failure; a failing command keeps its own status.
    if problems and options.strict_ping and status == 0:
        status = EXIT_PING_FAILED
    return RunResult(status, finished, duration, "; ".join(problems))


def _pinger(target: PingTarget | None, budget: float, secrets: Iterable[str]) -> Pinger | None:
    if target is None:
        return None
    return Pinger(target, budget=budget, timeout=min(10.0, budget), secrets=secrets)


def _note(result: healthchecks.PingResult, problems: list[str]) -> None:
    if not result.ok:
        problems.append(result.message)


def unpinged(
    lines: Iterable[ScheduleLine], wanted: Iterable[Wanted], checks: Mapping[str, str], file: str
) -> list[str]:
    """Say which jobs will not ping the check made for them, and what to set."""
    notes = []
    for line, want in zip(lines, wanted, strict=True):
        command = job_of(line.args)
        if any(a == "--hc" or a.startswith("--hc=") for a in line.args):
            continue  # the line names its own check
        if want.job != command:  # a repeated command pings its command's check, not this one
            notes.append(
                f"{file} line {line.line_no} pings the {command!r} check, not {want.slug}:"
                f" add '--hc <ping key>/{want.slug}' to it"
            )
        elif not (checks.get(command) or checks.get(_as_config_key(command))):
            notes.append(
                f"job {command!r} pings no check yet: set OPSKIT['HEALTHCHECKS'][{command!r}]"
                f" to '<ping key>/{want.slug}' or the check's UUID"
            )
    return notes


def _as_config_key(job: str) -> str:
    """Return the key build_config files OPSKIT_HC_<JOB> under (export.sh -> export-sh)."""
    return env_name(job).removeprefix("OPSKIT_HC_").lower().replace("_", "-")
