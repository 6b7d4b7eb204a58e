"""`opskit check`: cheap smoke checks of the whole set-up, one verdict each, for CI and humans."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from opskit import django_project, files
from opskit.archive import manifest as manifests
from opskit.archive import rotation, space
from opskit.config import Config
from opskit.cron import install as cron
from opskit.engines import DbParams, Tools, engine_for, vendor_of
from opskit.errors import ArchiveError, ConfigError, OpsError
from opskit.progress import human
from opskit.report import Report, Step
from opskit.verify import verify_one

if TYPE_CHECKING:
    from opskit.healthchecks.sync import Wanted

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
# The families --only selects by; a line's name is the family, or "family:detail".
FAMILIES = (
    "settings",
    "database",
    "folder",
    "latest",
    "size",
    "restore",
    "cron",
    "healthchecks",
    "sessions",
)
DEFAULT_MAX_AGE = 26 * 3600.0
FUTURE_SLACK = 120.0  # seconds a finished_at may be ahead (clocks of two hosts, rounding)
_AGE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.I)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclasses.dataclass(frozen=True)
class Result:
    """One check's verdict: what was found, and the fix for anything not OK."""

    name: str
    status: str
    found: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.found}"
        return text + (f"; fix: {self.fix}" if self.fix and self.status != OK else "")

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def parse_age(text: str) -> float:
    """Return seconds for ``26h``, ``90m``, ``2d``, ``45s`` or a plain number of seconds."""
    match = _AGE_RE.fullmatch(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not an age like 26h, 90m or 2d")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def human_age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _fail(name: str, exc: OpsError) -> Result:
    return Result(name, FAIL, " ".join(exc.message.split()), " ".join(exc.hint.split()))


def settings_failed(exc: OpsError, only: Sequence[str] = ()) -> list[Result]:
    """The settings did not load: one FAIL, every other selected check skipped for that reason."""
    results = [_fail("settings", exc)]
    reason = "skipped: the settings did not load"
    results += [Result(f, SKIP, reason) for f in FAMILIES[1:] if selected(f, only)]
    return results


def selected(name: str, only: Sequence[str]) -> bool:
    """Whether ``--only`` (empty: everything) selects a check by its full name or its family."""
    return not only or name in only or name.split(":", 1)[0] in only


def check_database(config: Config, db: DbParams) -> Result:
    """Connect with the project's credentials and check the dump/restore tools fit the server."""
    name = f"database:{db.alias}"
    try:
        if vendor_of(db.django_engine) == "sqlite":
            path = Path(db.name)
            if not path.is_file():
                raise ConfigError(
                    f"SQLite database {path} does not exist",
                    "check DATABASES NAME, or create it with manage.py migrate",
                )
            if not os.access(path, os.R_OK):
                raise ConfigError(f"SQLite database {path} is not readable", "fix its owner/mode")
        engine = engine_for(db, Tools.of(config))
        versions = engine.versions(db)
    except OpsError as exc:
        return _fail(name, exc)
    server = versions.pop("server", "?")
    if vendor_of(db.django_engine) == "sqlite":
        return Result(name, OK, f"{db.name} is readable (SQLite {server})")
    tools = ", ".join(f"{v.splitlines()[0]}" for v in versions.values())
    return Result(name, OK, f"{db.describe()}: connected, server {server}; {tools}")


def check_folder(
    label: str, folder: Path, needed: int = 0, basis: str = "", mode: int = 0o700
) -> Result:
    """The folder exists (created if missing: check's only write), is writable and has room.

    The same rules as the jobs: a folder opskit did not create is never chmodded, and one
    that others can write is a WARN (backup logs the same warning).
    """
    name = f"folder:{label}"
    fix = f"create {folder} writable by this user, or set --{label}-dir"
    created = ""
    if not folder.is_dir():
        try:
            files.make_dirs(folder, mode)
        except OSError as exc:
            return Result(name, FAIL, f"cannot create {folder}: {exc.strerror or exc}", fix)
        created = " (created now)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return Result(name, FAIL, f"{folder} is not writable by this user", fix)
    try:
        space.check(folder, needed, basis)
    except OpsError as exc:
        return _fail(name, exc)
    free = human(_free(folder))
    room = f", room for {human(needed)} ({basis})" if needed else ""
    who = files.writable_by_others(folder)
    if who:
        found = f"{folder} is writable{created}, and {who} can write it too; {free} free{room}"
        return Result(name, WARN, found, f"chmod go-w {folder}, or use a folder only you can write")
    return Result(name, OK, f"{folder} is writable{created}; {free} free{room}")


def _free(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def expected_backup(config: Config, aliases: Iterable[str]) -> int:
    """The bytes another backup of every database will need, judged by the newest archives."""
    total = 0
    for alias in aliases:
        folder = rotation.db_dir(config.backup_dir, alias)
        if folder.is_dir():
            total += space.expected_size(folder, folder / "next")
    return total


def check_latest(
    config: Config, db: DbParams, now: datetime, max_age: float = DEFAULT_MAX_AGE
) -> Result:
    """The newest archive is younger than ``max_age`` and matches its manifest and sha256."""
    name = f"latest:{db.alias}"
    folder = rotation.db_dir(config.backup_dir, db.alias)
    again = f"run opskit backup --database {db.alias}, and check why the nightly run did not"
    links = [link for link in rotation.latest_links(folder) if link.exists()]
    if not links:
        return Result(name, FAIL, f"no latest backup in {folder}", again)
    path = max((link.resolve() for link in links), key=lambda p: p.stat().st_mtime)
    try:
        manifest = manifests.read(path)
        # The age below is the manifest's word: believe it only if the manifest is ours.
        manifests.check_signature(path, manifest, config.signing_keys)
    except ArchiveError as exc:
        return _fail(name, exc)
    finished = manifests.finished_at(manifest) or _mtime(path)
    age = (now - finished).total_seconds()
    if age < -FUTURE_SLACK:
        found = (
            f"{path.name} says it finished {finished:%Y-%m-%d %H:%M %z}, {human_age(-age)} from"
            " now: clock moved back, or archive from the future"
        )
        fix = "check the clock (timedatectl, NTP), then run opskit backup"
        return Result(name, FAIL, found, f"{fix} --database {db.alias}")
    if age > max_age:
        found = (
            f"{path.name} is {human_age(age)} old (finished {finished:%Y-%m-%d %H:%M}),"
            f" older than {human_age(max_age)}"
        )
        return Result(name, FAIL, found, again + " (opskit cron show; logs/cron.log)")
    verdict = verify_one(config, db, db.alias, path, latest=True)
    if not verdict.ok:
        return Result(name, FAIL, f"{path.name}: {verdict.found}", verdict.fix)
    return Result(name, OK, f"{path.name}, {human_age(max(age, 0))} old: {verdict.found}")


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime).astimezone()


def check_size(config: Config, alias: str) -> Result:
    """The newest dump is not much smaller than the usual ones (or that was acknowledged)."""
    from opskit.monitoring import anomaly

    name = f"size:{alias}"
    entry = anomaly.newest(rotation.db_dir(config.backup_dir, alias), config.size_drop_ratio)
    if entry is None:
        return Result(name, OK, "no backup history yet")
    size = human(int(entry["raw_size"]))
    if not entry.get("anomaly"):
        return Result(name, OK, f"the newest dump ({size}) is as large as usual")
    if entry.get("acknowledged"):
        return Result(name, OK, f"{entry['anomaly']} (acknowledged)")
    fix = (
        f"find out why (a failed import, a purge, a wrong database?); if it is expected,"
        f" acknowledge it: opskit check --ack-size {alias}"
    )
    return Result(
        name, FAIL, f"{entry.get('file') or 'the newest archive'}: {entry['anomaly']}", fix
    )


def check_restores(config: Config, db: DbParams) -> list[Result]:
    """No restore was left half-done, no scratch database orphaned; kept copies take space.

    A journal left by a killed restore is finished or undone here (under the locks), and
    the line FAILs saying what was done, so that CI notices; while a restore runs, it WARNs.
    """
    from opskit.archive import locks
    from opskit.backup import recover_folder
    from opskit.engines import journal

    name = f"restore:{db.alias}"
    folder = rotation.db_dir(config.backup_dir, db.alias)
    results: list[Result] = []
    engine = engine_for(db, Tools.of(config), work_dir=folder)
    running = False
    if folder.is_dir():
        try:
            with contextlib.ExitStack() as stack:
                for job in ("restore", "backup"):
                    stack.enter_context(locks.hold(locks.lock_path(folder, job), what="check"))
                left = journal.load(folder)
                done = recover_folder(config, db, engine, folder) if left is not None else []
        except locks.LockBusy:
            running, done = True, []
        except OpsError as exc:
            return [_fail(name, exc)]
        if running and journal.path_in(folder).exists():
            results.append(Result(name, WARN, "a restore is running now", "let it finish"))
        for line in done:
            fix = "nothing left to do; see why the restore was killed (logs/opskit.log)"
            results.append(Result(name, FAIL, f"an unfinished restore was found: {line}", fix))
    try:
        kept = engine.leftovers(db)
    except OpsError as exc:
        return [*results, _fail(name, exc)]
    for item in kept:
        size = f", {human(item.size)}" if item.size else ""
        if item.kind == "scratch" and not running:
            found = f"{item.name} was left by a killed run{size}"
            results.append(Result(f"{name}:{item.name}", FAIL, found, f"drop it: {item.drop}"))
        elif item.kind != "scratch":
            found = f"{item.name} is kept by an earlier restore{size}"
            results.append(
                Result(f"{name}:{item.name}", WARN, found, f"when satisfied: {item.drop}")
            )
    if not results:
        results.append(Result(name, OK, "no unfinished restore, no leftover databases"))
    return results


def check_cron(
    wanted: Sequence[cron.Entry], installed: Sequence[cron.CronJob], where: str, daemon: bool
) -> list[Result]:
    """Every job of crontab.txt is installed as written, nothing stale is, and cron runs."""
    have = {job.tag: job for job in installed}
    want = {entry.tag: entry for entry in wanted}
    missing = [tag for tag in want if tag not in have]
    changed = [
        tag
        for tag, entry in want.items()
        if tag in have
        and (have[tag].schedule, have[tag].command) != (entry.schedule, entry.command)
    ]
    stale = [tag for tag in have if tag not in want]
    problems = []
    if missing:
        problems.append(f"not installed: {', '.join(missing)}")
    if changed:
        problems.append(f"installed differently from crontab.txt: {', '.join(changed)}")
    if stale:
        problems.append(f"stale (not in crontab.txt): {', '.join(stale)}")
    if problems:
        fix = "run opskit cron install (with the same --user/--cron-d)"
        result = Result("cron:jobs", FAIL, f"{where}: {'; '.join(problems)}", fix)
    else:
        result = Result("cron:jobs", OK, f"{where} has all {len(want)} job(s) of crontab.txt")
    if daemon:
        return [result, Result("cron:daemon", OK, "a cron daemon is running")]
    fix = "start it: service cron start (or install it: apt-get install cron)"
    return [result, Result("cron:daemon", FAIL, "no cron daemon is running", fix)]


def check_healthchecks(
    config: Config,
    wanted: Sequence[Wanted],
    durations: Callable[[str], list[float]],
) -> list[Result]:
    """Read the checks through the API (a read-only key is enough) and judge each one.

    FAIL when a crontab job's check is missing, down, or differs from crontab.txt in
    schedule, time zone or grace; WARN when it is paused or new, or when a recent run took
    more than half its grace. Nothing is pinged, created or changed.
    """
    from opskit.healthchecks import api as hcapi
    from opskit.healthchecks import sync as hcsync
    from opskit.healthchecks.run import as_config_key

    # OPSKIT_HC_EXPORT_SH is filed as 'export-sh': the same job as a line running export.sh.
    scheduled = {name for w in wanted for name in (w.command, as_config_key(w.command))}
    others = {job: spec for job, spec in config.healthchecks.items() if job not in scheduled}
    if not config.api_key:
        fix = "set OPSKIT_HEALTHCHECKS_API_KEY (a read-only API key is enough)"
        return [Result("healthchecks", WARN, "no API key: the checks were not read", fix)]
    try:
        api = hcapi.Api(config.api_url, config.api_key, timeout=min(config.ping_timeout, 10.0))
        findings = hcsync.audit(api, wanted, others, durations)
    except OpsError as exc:
        return [_fail("healthchecks", exc)]
    if not findings:
        return [Result("healthchecks", WARN, "no job has a check", "run opskit hc sync")]
    return [Result(f"healthchecks:{f.job}", f.status, f.found, f.fix) for f in findings]


def check_sessions(now: datetime) -> Result:
    """The session engine can clear expired sessions (and its table is there to clear)."""
    try:
        engine = django_project.session_engine_name()
        django_project.check_clear_sessions(now)
    except OpsError as exc:
        return _fail("sessions", exc)
    return Result("sessions", OK, f"{engine} can clear expired sessions")


def run_checks(
    config: Config,
    databases: Mapping[str, DbParams],
    now: datetime,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    only: Sequence[str] = (),
    cron_state: Callable[[], list[Result]] | None = None,
    healthchecks: Callable[[], list[Result]] | None = None,
) -> list[Result]:
    """Run every selected check; ``cron_state`` (if given) checks the installed schedule."""
    aliases = [a for a in databases if not config.databases or a in config.databases]
    results: list[Result] = []

    def want(family: str) -> bool:
        return not only or any(o.split(":", 1)[0] == family for o in only)

    if want("settings"):
        results.append(Result("settings", OK, f"{config.settings_module} loaded, Django set up"))
    if want("database"):
        results += [check_database(config, databases[a]) for a in aliases]
    if want("folder"):
        needed = expected_backup(config, aliases)
        basis = "the newest archives" if needed else ""
        results.append(check_folder("backup", config.backup_dir, needed, basis))
        results.append(check_folder("log", config.log_dir, mode=0o750))
    if want("latest"):
        results += [check_latest(config, databases[a], now, max_age) for a in aliases]
    if want("size"):
        results += [check_size(config, a) for a in aliases]
    if want("restore"):
        for alias in aliases:
            results += check_restores(config, databases[alias])
    if cron_state is not None and want("cron"):
        results += cron_state()
    if healthchecks is not None and want("healthchecks"):
        results += healthchecks()
    if want("sessions"):
        results.append(check_sessions(now))
    return [r for r in results if selected(r.name, only)]


def to_report(results: Iterable[Result]) -> Report:
    """One step per check; a FAIL is a failed step, so the exit status counts FAIL lines."""
    report = Report("check")
    for r in results:
        prefixes = ("database:", "latest:", "size:", "restore:")
        database = r.name.split(":")[1] if r.name.startswith(prefixes) else None
        report.steps.append(Step(r.name, database, ok=r.status != FAIL, reason=r.found))
    return report
