"""One Healthchecks check per crontab job: what it should be, ``hc sync``, and ``check``'s audit.

A job's check is the one it will ping: the line's own ``--hc``, else the job's configured
check (``OPSKIT['HEALTHCHECKS']``, ``OPSKIT_HC_<JOB>``), else ``<project>-<job>``. Checks
opskit creates carry the tags ``opskit <project>``; only those count as this project's, so
a check made by hand is never reported or pruned. Time zones are compared by what they
link to, grace periods by the runs' measured durations (``runs``), so that a second sync in
a row changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opskit import logs
from opskit.cron import timezones
from opskit.cron.install import MACROS, ScheduleLine
from opskit.errors import ConfigError
from opskit.healthchecks.api import Api, ApiError, KeyRefused, ZoneRefused
from opskit.healthchecks.ping import parse_check
from opskit.healthchecks.run import as_config_key, job_of
from opskit.monitoring import durations as runs

DEFAULT_GRACE = 3600  # Healthchecks' own default grace period
MAX_NAME = MAX_SLUG = 100  # the server's limits (json validation error: name is too long)
OK_STATES = frozenset({"created", "updated", "unchanged", "paused", "deleted"})
PRUNE = ("pause", "delete")
OK, WARN, FAIL = "OK", "WARN", "FAIL"

log = logs.get("hc")


@dataclasses.dataclass(frozen=True)
class Wanted:
    """The check one crontab job should have."""

    job: str  # the row's name: the job, -2, -3 ... when repeated
    slug: str
    name: str
    schedule: str
    tz: str  # as the server stores it
    grace: int | None  # None: the default on creation, and keep what the check has
    exact: bool = True  # --grace: exactly this; measured: from it to twice it
    code: str = ""  # the check is named by UUID (by the line or the settings)
    named: bool = False  # named by the line or the settings: its name is the user's
    command: str = ""  # the job it runs as, for its durations
    tz_given: str = ""  # the zone as given, if the server should refuse the current name

    @property
    def label(self) -> str:
        return f"{self.code[:8]}…" if self.code else self.slug


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the sync table: a job or a stray check, and what happened to it."""

    job: str
    slug: str
    state: str  # created, updated, unchanged, missing, drifted, orphan, paused, deleted, failed
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in OK_STATES


@dataclasses.dataclass(frozen=True)
class Finding:
    """One line of ``check --healthchecks``."""

    job: str
    status: str
    found: str
    fix: str = ""


def slugify(text: str) -> str:
    """Return ``text`` in Healthchecks' slug alphabet: a-z, 0-9, '-' and '_'."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")


def _shorten(text: str, room: int, sep: str = "-") -> str:
    """Cut ``text`` to ``room`` characters, keeping it unique with a short hash."""
    if len(text) <= room:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    return text[: max(room - len(digest) - 1, 1)].rstrip("-. ") + sep + digest


def project_tag(project: str) -> str:
    """The tag opskit gives this project's checks (with ``opskit``)."""
    return _shorten(slugify(project) or "project", 40)


def name_and_slug(project: str, job: str) -> tuple[str, str]:
    """``<project> <job>`` and ``<project>-<job>``, shortened to the server's limits."""
    job_slug = _shorten(slugify(job) or "job", 60)
    slug = f"{_shorten(slugify(project), MAX_SLUG - len(job_slug) - 1)}-{job_slug}"
    name = f"{_shorten(project, MAX_NAME - min(len(job), 60) - 1, '…')} {job[:60]}"
    return name, slug


def line_check(args: Sequence[str]) -> str | None:
    """The ``--hc`` a crontab line gives itself, if any."""
    for i, arg in enumerate(args):
        if arg == "--":
            return None
        if arg == "--hc" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--hc="):
            return arg.partition("=")[2]
    return None


def wanted_checks(
    lines: Iterable[ScheduleLine],
    *,
    project: str,
    tz: str,
    grace: int | None,
    checks: Mapping[str, str] | None = None,
    durations: Callable[[str], list[float]] | None = None,
) -> list[Wanted]:
    """One wanted check per crontab job (a repeated job gets -2, -3, ...)."""
    checks = checks or {}
    seen: dict[str, int] = {}
    wanted = []
    for line in lines:
        command = job_of(line.args)
        seen[command] = count = seen.get(command, 0) + 1
        job = command if count == 1 else f"{command}-{count}"
        schedule = " ".join(MACROS.get(line.schedule, line.schedule).split())
        name, slug = name_and_slug(project, job)
        spec = line_check(line.args)
        if spec is None and count == 1:  # a repeated line pings its command's check
            spec = checks.get(command) or checks.get(as_config_key(command))
        slug, code, named = _given_check(spec, slug)
        wanted_grace, exact = grace, True
        if grace is None and durations is not None:
            wanted_grace, exact = runs.grace_for(durations(command)), False
        sent = timezones.for_server(tz)
        wanted.append(
            Wanted(
                job,
                slug,
                name,
                schedule,
                sent,
                wanted_grace,
                exact=exact,
                code=code,
                named=named,
                command=command,
                tz_given=tz if sent != tz else "",
            )
        )
    return wanted


def _given_check(spec: str | None, slug: str) -> tuple[str, str, bool]:
    """(slug, ping code, named: the check is not the job's own) for a job whose ``--hc`` (or
    setting) is ``spec``: a slug other than the job's, a UUID or a ping URL."""
    if not spec:
        return slug, "", False
    try:
        target = parse_check(spec)
    except ConfigError:
        return slug, "", False  # reported by the job itself, and by check
    if target.slug:
        return target.slug, "", target.slug != slug
    return slug, target.secret, True


def differences(check: Mapping[str, Any], want: Wanted, *, audit: bool = False) -> list[str]:
    """Say how an existing check differs from the wanted one ([] when it matches).

    ``audit``: only what makes the check alert at the wrong time (schedule, zone, grace).
    """
    found: list[str] = []
    schedule = " ".join(str(check.get("schedule") or "").split())
    if "timeout" in check and not schedule:
        found.append(f"is a period check (every {check['timeout']} s), not a cron schedule")
    elif schedule != want.schedule:
        found.append(f"schedule {schedule!r} -> {want.schedule!r}")
    tz = str(check.get("tz") or "")
    if schedule and not timezones.same_zone(tz, want.tz):
        found.append(f"tz {tz!r} -> {want.tz!r}")
    if not audit and not want.named and check.get("name") != want.name:
        found.append(f"name {check.get('name')!r} -> {want.name!r}")
    if want.grace is not None and not audit:  # the audit weighs grace itself (_grace)
        current = check.get("grace")
        fits = current == want.grace if want.exact else runs.grace_fits(current, want.grace)
        if not fits:
            found.append(f"grace {current} -> {want.grace} s")
    if not audit and "methods" in check and check.get("methods") != "POST":
        found.append(f"methods {check.get('methods')!r} -> 'POST'")
    return found


def _body(want: Wanted, *, project: str, new: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"schedule": want.schedule, "tz": want.tz, "methods": "POST"}
    if not want.code:
        body.update(slug=want.slug, unique=["slug"])
    if new or not want.named:
        body["name"] = want.name
    if want.grace is not None or new:
        body["grace"] = DEFAULT_GRACE if want.grace is None else want.grace
    if new:  # channels and tags are the user's to change afterwards; set them only once
        body.update(channels="*", tags=f"opskit {project_tag(project)}")
        body["desc"] = f"opskit {want.job} of project {project}, created by 'opskit hc sync'"
    return body


def ours(check: Mapping[str, Any], project: str) -> bool:
    """Whether opskit made the check for this project (it carries both tags)."""
    tags = str(check.get("tags") or "").split()
    return "opskit" in tags and project_tag(project) in tags


def unique_key(code: str) -> str:
    """The key a read-only API key shows instead of the UUID (Healthchecks' own rule)."""
    return hashlib.sha1(uuid.UUID(code).hex[:16].encode()).hexdigest()


def find(existing: Sequence[Mapping[str, Any]], want: Wanted) -> list[Mapping[str, Any]]:
    if want.code:
        key = unique_key(want.code)
        return [c for c in existing if c.get("uuid") == want.code or c.get("unique_key") == key]
    return [c for c in existing if c.get("slug") == want.slug]


def sync(
    api: Api,
    wanted: list[Wanted],
    *,
    project: str,
    dry_run: bool = False,
    prune: str | None = None,
) -> list[Row]:
    """Create or update each wanted check; report (or pause, or delete) this project's strays."""
    existing = api.list_checks()
    rows = [_sync_one(api, want, existing, project, dry_run) for want in wanted]
    for row in rows:
        log.debug("check_synced", job=row.job, slug=row.slug, state=row.state, detail=row.detail)
    matched = {id(c) for want in wanted for c in find(existing, want)}
    for check in existing:
        if ours(check, project) and id(check) not in matched:
            rows.append(_orphan(api, check, project, dry_run, prune))
    return rows


def _orphan(
    api: Api, check: Mapping[str, Any], project: str, dry_run: bool, prune: str | None
) -> Row:
    name = str(check.get("name") or "").removeprefix(f"{project} ")
    slug, code = str(check.get("slug") or ""), str(check.get("uuid") or "")
    if check.get("status") == "paused" and prune != "delete":
        return Row(
            name, slug, "paused", "no job in crontab.txt; paused (--prune delete removes it)"
        )
    if prune is None:
        hint = "no job in crontab.txt: --prune pause or --prune delete acts on it"
        return Row(name, slug, "orphan", hint)
    if dry_run:
        return Row(name, slug, "orphan", f"no job in crontab.txt: would {prune} it")
    try:
        if not code:
            raise ApiError("the API key shows no UUID", "use the read-write API key")
        api.pause(code) if prune == "pause" else api.delete(code)
    except KeyRefused:
        raise
    except ApiError as exc:
        return Row(name, slug, "failed", exc.line())
    return Row(name, slug, "paused" if prune == "pause" else "deleted", "no job in crontab.txt")


def _sync_one(
    api: Api, want: Wanted, existing: list[dict[str, Any]], project: str, dry_run: bool
) -> Row:
    same = find(existing, want)
    if len(same) > 1:
        return Row(want.job, want.label, "failed", f"{len(same)} checks share this slug")
    if not same and want.code:
        detail = f"the check {want.label} it pings is not in this API key's project"
        return Row(want.job, want.label, "failed", detail)
    changes = differences(same[0], want) if same else ["no check yet"]
    if not changes:
        return Row(want.job, want.label, "unchanged", f"{want.schedule} {want.tz}")
    detail = "; ".join(changes)
    if dry_run:
        return Row(want.job, want.label, "drifted" if same else "missing", detail)
    try:
        status = _write(api, want, project, new=not same)
    except (KeyRefused, ZoneRefused):
        raise  # every other request would fail the same way: stop with one message
    except ApiError as exc:
        return Row(want.job, want.label, "failed", exc.line())
    if status == 201:
        return Row(want.job, want.label, "created", f"{want.schedule} {want.tz}")
    return Row(want.job, want.label, "updated", detail)


def _write(api: Api, want: Wanted, project: str, *, new: bool) -> int:
    body = _body(want, project=project, new=new)
    try:
        return api.update(want.code, body) if want.code else api.upsert(body)
    except ZoneRefused:
        if not want.tz_given:
            raise
        # An older server: it knows the zone only by the name it was given.
        body["tz"] = want.tz_given
        return api.update(want.code, body) if want.code else api.upsert(body)


def audit(
    api: Api,
    wanted: Sequence[Wanted],
    others: Mapping[str, str],
    durations: Callable[[str], list[float]],
) -> list[Finding]:
    """Read the checks (a read-only key is enough) and judge each; never writes anything.

    ``others``: configured checks of jobs that are not in the crontab (job -> spec).
    """
    existing = api.list_checks()
    findings = []
    for want in wanted:
        same = find(existing, want)
        if not same:
            fix = "run opskit hc sync" if not want.code else "fix the job's --hc or its setting"
            findings.append(Finding(want.job, FAIL, f"no check {want.label} in Healthchecks", fix))
            continue
        changes = differences(same[0], want, audit=True)
        if changes:
            found = f"{want.label} differs from crontab.txt: {'; '.join(changes)}"
            findings.append(Finding(want.job, FAIL, found, "run opskit hc sync"))
            continue
        state = _state(want.job, want.label, same[0], durations(want.command))
        grace = _grace(want, same[0])
        findings.append(grace if grace.status == FAIL or state.status == OK else state)
    for job, spec in sorted(others.items()):
        try:
            target = parse_check(spec)
        except ConfigError as exc:
            findings.append(Finding(job, FAIL, exc.message, exc.hint))
            continue
        want = Wanted(job, target.slug, "", "", "", None, code="" if target.slug else target.secret)
        same = find(existing, want)
        if not same:
            fix = f"fix OPSKIT['HEALTHCHECKS'][{job!r}], or create the check"
            findings.append(Finding(job, FAIL, f"no check {want.label} in Healthchecks", fix))
        else:
            findings.append(_state(job, want.label, same[0], durations(job)))
    return findings


def _grace(want: Wanted, check: Mapping[str, Any]) -> Finding:
    """A grace shorter than the runs need is a FAIL (false alarms); far longer, a WARN."""
    current, needed = check.get("grace"), want.grace
    fix = "run opskit hc sync (it sets grace from the durations)"
    if needed is not None and isinstance(current, int | float):
        if current < needed:
            found = (
                f"{want.label} has a grace of {current:.0f} s; its runs need {needed} s"
                " (twice the longest recent run): a slow night would count as down"
            )
            return Finding(want.job, FAIL, found, fix)
        if current > 2 * needed:
            found = (
                f"{want.label} has a grace of {current:.0f} s, far more than the {needed} s"
                " its runs need: an alert would come late"
            )
            return Finding(want.job, WARN, found, fix)
    return Finding(want.job, OK, f"{want.label} is {check.get('status')}, grace {current} s")


def _state(job: str, label: str, check: Mapping[str, Any], durations: list[float]) -> Finding:
    status = str(check.get("status") or "")
    grace = check.get("grace")
    if status == "down":
        fix = f"see why the last {job} failed or did not run (logs/opskit.log, logs/cron.log)"
        return Finding(job, FAIL, f"{label} is down (last ping {check.get('last_ping')})", fix)
    if status == "paused":
        fix = "resume it in Healthchecks, or take the job out of crontab.txt"
        return Finding(job, WARN, f"{label} is paused: Healthchecks will not alert", fix)
    if status == "new":
        fix = f"run opskit {job} once (it cannot alert before its first ping)"
        return Finding(job, WARN, f"{label} is new: it has never been pinged", fix)
    last = check.get("last_duration")
    samples = [*durations, *([float(last)] if isinstance(last, int | float) else [])]
    longest = max(samples, default=0.0)
    if isinstance(grace, int | float) and longest > grace / 2:
        found = (
            f"{label}: a recent run took {longest:.0f} s, more than half its grace of"
            f" {grace:.0f} s: a slower night would count as down"
        )
        return Finding(job, WARN, found, "run opskit hc sync (it sets grace from the durations)")
    return Finding(job, OK, f"{label} is {status}, grace {grace} s")
