"""Which check a job pings, and running any command the way runitor does, pinging around it."""

from __future__ import annotations

import dataclasses
import re
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from opskit import logs, proc, project, status
from opskit.errors import ConfigError
from opskit.healthchecks import ping as healthchecks
from opskit.healthchecks.ping import Pinger, PingTarget, parse_check

if TYPE_CHECKING:
    from opskit.config import Config
    from opskit.cron.install import ScheduleLine
    from opskit.healthchecks.sync import Wanted

# --strict-ping: a command that succeeded but could not be reported has this one error.
EXIT_PING_FAILED = status.for_errors(1)
TAIL_KEEP = 100_000  # bytes of output kept for the ping body (the server may allow more)
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
class Bounds:
    """How long pings may take: each attempt, the start ping, and the final ping on its own."""

    timeout: float = healthchecks.DEFAULT_TIMEOUT
    start: float = healthchecks.DEFAULT_START_BUDGET
    final: float = healthchecks.DEFAULT_BUDGET


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run and report one command."""

    job: str
    timeout: float | None = None
    kill_after: float = 5.0
    strict_ping: bool = False
    ping_budget: float = healthchecks.DEFAULT_BUDGET  # the final ping's own bound
    secrets: tuple[str, ...] = ()
    start_budget: float = healthchecks.DEFAULT_START_BUDGET
    ping_timeout: float = healthchecks.DEFAULT_TIMEOUT
    limits: Path | None = None  # where learned body limits are kept (None: not kept)


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a job's pings go (None: not monitored, and why), how long they may take."""

    target: PingTarget | None
    secrets: tuple[str, ...] = ()
    strict: bool = False
    problem: str = ""
    bounds: Bounds = Bounds()
    metrics_file: Path | None = None
    limits: Path | None = None  # where the learned body limits are kept


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
    """Find a job's check: the flag, else OPSKIT_HC_<JOB>, else settings.OPSKIT.

    A UUID or ``KEY/SLUG`` needs a base URL: ``--ping-url``, else the environment's, else,
    inside a project, its settings (read without loading the apps), else hc-ping.com. A full
    ping URL needs none, so then Django is not set up at all: the Config is the one of a
    command outside any project (defaults < OPSKIT_* variables < flags).
    """
    config = project.outside(project_dir, environ, flags={"STRICT_PING": strict})
    spec = flag or config.check_for(as_config_key(job))
    if not spec:
        return _from_settings(job, ping_url, environ, project_dir, settings, strict)
    base = ping_url or config.ping_url
    try:
        target = parse_check(spec, base, config.ping_create)
    except ConfigError as exc:
        if flag:
            raise BadCheckFlag(exc.message, exc.hint) from None
        raise ConfigError(f"{env_name(job)}: {exc.message}", exc.hint) from None
    needs_base = not spec.strip().startswith(("http://", "https://"))
    given = ping_url or "HEALTHCHECKS_PING_URL" in config.given
    if needs_base and not given and project.present(project_dir, settings, environ):
        loaded = _load(project_dir, settings, environ, strict, apps=False)
        target = parse_check(spec, loaded.config.ping_url, loaded.config.ping_create)
        return _where(target, loaded.config, loaded.secrets)
    return _where(target, config, project.secrets_of(config, {}))


def _load(
    project_dir: Path,
    settings: str | None,
    environ: Mapping[str, str],
    strict: bool | None,
    apps: bool = True,
) -> project.Project:
    """Set the project up (settings only, unless ``apps``), as every command does."""
    return project.load(project_dir, settings, environ, apps=apps, flags={"STRICT_PING": strict})


def _where(
    target: PingTarget | None, config: Config, secrets: tuple[str, ...], problem: str = ""
) -> Where:
    bounds = Bounds(config.ping_timeout, config.ping_start_budget, config.ping_budget)
    return Where(
        target,
        tuple(s for s in secrets if s),
        config.strict_ping,
        problem,
        bounds,
        config.metrics_file,
        healthchecks.limits_file(config.cache_dir),
    )


def _from_settings(
    job: str,
    ping_url: str | None,
    environ: Mapping[str, str],
    project_dir: Path,
    settings: str | None,
    strict: bool | None,
) -> Where:
    """Read the check from the Django project's settings."""
    unset = f"no check for job {job!r} (pass --hc CHECK, or set {env_name(job)})"
    if not project.present(project_dir, settings, environ):  # no project: say what to set
        return Where(None, problem=unset)
    loaded = _load(project_dir, settings, environ, strict)
    config = loaded.config
    spec = config.check_for(job)
    if not spec:
        return _where(None, config, loaded.secrets, f"{unset[:-1]} or OPSKIT['HEALTHCHECKS'])")
    target = parse_check(spec, ping_url or config.ping_url, config.ping_create)
    return _where(target, config, loaded.secrets)


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
    pinger = _pinger(target, options)
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
        _note(pinger.finish(finished.status, tail, summary, own_log=False), problems)
    code = finished.status
    # A failed ping turns success into failure; a failing command keeps its own status.
    if problems and options.strict_ping and code == status.Status.OK:
        code = EXIT_PING_FAILED
    return RunResult(code, finished, duration, "; ".join(problems))


def record_run(path: Path, job: str, result: RunResult) -> None:
    """Add a monitored run to the metrics file (a failure to write is logged)."""
    from opskit.monitoring import metrics

    finished = time.time()
    run = metrics.Run(job, result.exit_status, finished - result.duration, finished)
    metrics.record(path, run)


def _pinger(target: PingTarget | None, options: RunOptions) -> Pinger | None:
    if target is None:
        return None
    limits = healthchecks.BodyLimits(options.limits) if options.limits else None
    return Pinger(
        target,
        budget=options.ping_budget,
        start_budget=options.start_budget,
        timeout=min(options.ping_timeout, options.ping_budget),
        secrets=options.secrets,
        limits=limits,
    )


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
        elif not (checks.get(command) or checks.get(as_config_key(command))):
            notes.append(
                f"job {command!r} pings no check yet: set OPSKIT['HEALTHCHECKS'][{command!r}]"
                f" to '<ping key>/{want.slug}' or the check's UUID"
            )
    return notes


def as_config_key(job: str) -> str:
    """Return the key build_config files OPSKIT_HC_<JOB> under (export.sh -> export-sh)."""
    return env_name(job).removeprefix("OPSKIT_HC_").lower().replace("_", "-")
