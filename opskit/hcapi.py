"""Healthchecks management API v3: one check per crontab job, created or updated by slug."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opskit import __version__, logs
from opskit.cron import MACROS, ScheduleLine
from opskit.errors import ConfigError, OpsError
from opskit.healthchecks import NoRedirect
from opskit.redact import redact
from opskit.runner import job_of

DEFAULT_GRACE = 3600  # Healthchecks' own default grace period
OK_STATES = frozenset({"created", "updated", "unchanged"})
_RETRY = frozenset({429, 500, 502, 503, 504})
_KEY_HINT = "set OPSKIT_HEALTHCHECKS_API_KEY to the project's read-write API key"

log = logs.get("hc")


class ApiError(OpsError):
    """The management API refused a request or could not be reached."""


class KeyRefused(ApiError):
    """The API key is missing, wrong or read-only: no request can succeed."""


@dataclasses.dataclass(frozen=True)
class Wanted:
    """The check one crontab job should have."""

    job: str
    slug: str
    name: str
    schedule: str
    tz: str
    grace: int | None  # None: the default on creation, and keep what the check has


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the sync table: a job or a stray check, and what happened to it."""

    job: str
    slug: str
    state: str  # created, updated, unchanged, missing, drifted, orphan, failed
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in OK_STATES


class Api:
    """A plain urllib client for the two calls sync needs: list checks and upsert one."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"API URL {base_url!r} is not an http(s) URL",
                "e.g. https://healthchecks.io/api/v3/ or https://hc.example.com/api/v3/",
            )
        if not api_key:
            raise ConfigError("no Healthchecks API key", _KEY_HINT)
        self.checks_url = parts.geturl().rstrip("/") + "/checks/"
        self._key, self._timeout, self._attempts, self._sleep = api_key, timeout, attempts, sleep
        # No redirects: urllib would turn a POST into a GET and send the key elsewhere.
        self._opener = urllib.request.build_opener(NoRedirect)

    def list_checks(self) -> list[dict[str, Any]]:
        """Return every check of the API key's project."""
        _, doc = self._call("GET", None)
        checks = doc.get("checks")
        if not isinstance(checks, list):
            raise ApiError(f"{self.checks_url} answered without a check list", "check the API URL")
        return [c for c in checks if isinstance(c, dict)]

    def upsert(self, body: dict[str, Any]) -> int:
        """Create or update the check matching ``body['unique']``; return 201 or 200."""
        status, _ = self._call("POST", json.dumps(body).encode())
        return status

    def _call(self, method: str, data: bytes | None) -> tuple[int, dict[str, Any]]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(method, data)
            except _Retry as exc:
                if attempt >= self._attempts:
                    raise ApiError(redact(exc.reason, [self._key]), "try again later") from None
                self._sleep(max(exc.wait, 2.0 ** (attempt - 1)))

    def _once(self, method: str, data: bytes | None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.checks_url, data=data, method=method)
        request.add_header("X-Api-Key", self._key)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", f"opskit/{__version__}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        where = f"{method} {self.checks_url}"
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return response.status, _json(response.read(), where)
        except urllib.error.HTTPError as exc:
            with exc:
                raise self._refused(exc, where) from None
        except (OSError, http.client.HTTPException) as exc:
            # Safe to retry even a POST: an upsert by slug done twice is done once.
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _Retry(f"cannot reach {where}: {cause}", 0.0) from None

    def _refused(self, exc: urllib.error.HTTPError, where: str) -> Exception:
        try:
            said = str(json.loads(exc.read() or b"{}").get("error") or "")
        except (ValueError, AttributeError, OSError):
            said = ""
        text = redact(f"{where} failed: HTTP {exc.code} {said}".rstrip(), [self._key])
        if exc.code in _RETRY:
            retry_after = exc.headers.get("Retry-After", "")
            return _Retry(text, min(float(retry_after), 30.0) if retry_after.isdigit() else 0.0)
        if exc.code == 401:
            return KeyRefused(f"the Healthchecks API refused the API key ({text})", _KEY_HINT)
        if 300 <= exc.code < 400:
            hint = f"set HEALTHCHECKS_API_URL to the final address: {exc.headers.get('Location')}"
            return ApiError(f"{where} was redirected", hint)
        if exc.code == 403:
            return ApiError(text, "the project may have no checks left in its plan")
        return ApiError(text)


class _Retry(Exception):
    def __init__(self, reason: str, wait: float) -> None:
        super().__init__(reason)
        self.reason, self.wait = reason, wait


def _json(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ApiError(f"{where} did not answer with JSON", "is HEALTHCHECKS_API_URL the API?")
    return doc


def zone_name(
    localtime: Path = Path("/etc/localtime"), timezone_file: Path = Path("/etc/timezone")
) -> str:
    """Return the IANA name of the time zone cron runs in (from the /etc/localtime link)."""
    name = ""
    if localtime.is_symlink():
        target = os.path.normpath(os.path.join(localtime.parent, os.readlink(localtime)))
        _, found, rest = target.partition("zoneinfo/")
        name = re.sub(r"^(posix|right)/", "", rest) if found else ""
    elif not localtime.exists():
        name = "UTC"  # what the C library, and so cron, falls back to
    if not name:  # a copied file, not a link: Debian keeps the name beside it
        with contextlib.suppress(OSError, IndexError):
            name = timezone_file.read_text(encoding="utf-8").split()[0]
    if not name:
        raise ConfigError(
            f"cannot tell cron's time zone from {localtime}", "pass --tz, e.g. --tz Europe/Riga"
        )
    return check_zone(name)


def check_zone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone Healthchecks will accept."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hint = "use an IANA name like Europe/Riga"
        raise ConfigError(f"unknown time zone {name!r}", hint) from None
    return name


def slugify(text: str) -> str:
    """Return ``text`` in Healthchecks' slug alphabet: a-z, 0-9, '-' and '_'."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")


def wanted_checks(
    lines: Iterable[ScheduleLine], *, project: str, tz: str, grace: int | None
) -> list[Wanted]:
    """Return one wanted check per crontab job (a repeated job gets -2, -3, ...)."""
    seen: dict[str, int] = {}
    wanted = []
    for line in lines:
        command = job_of(line.args)
        seen[command] = count = seen.get(command, 0) + 1
        job = command if count == 1 else f"{command}-{count}"
        schedule = " ".join(MACROS.get(line.schedule, line.schedule).split())
        slug = slugify(f"{project}-{job}")
        wanted.append(Wanted(job, slug, f"{project} {job}", schedule, tz, grace))
    return wanted


def differences(check: dict[str, Any], want: Wanted) -> list[str]:
    """Say how an existing check differs from the wanted one ([] when it matches)."""
    found: list[str] = []
    schedule = " ".join(str(check.get("schedule") or "").split())
    if "timeout" in check and not schedule:
        found.append(f"is a period check (every {check['timeout']} s), not a cron schedule")
    elif schedule != want.schedule:
        found.append(f"schedule {schedule!r} -> {want.schedule!r}")
    if str(check.get("tz") or "") != want.tz and schedule:
        found.append(f"tz {check.get('tz')!r} -> {want.tz!r}")
    if check.get("name") != want.name:
        found.append(f"name {check.get('name')!r} -> {want.name!r}")
    if want.grace is not None and check.get("grace") != want.grace:
        found.append(f"grace {check.get('grace')} -> {want.grace} s")
    return found


def _body(want: Wanted, *, project: str, new: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": want.name,
        "slug": want.slug,
        "schedule": want.schedule,
        "tz": want.tz,
        "unique": ["slug"],
    }
    if want.grace is not None or new:
        body["grace"] = DEFAULT_GRACE if want.grace is None else want.grace
    if new:  # channels and tags are the user's to change afterwards; set them only once
        body.update(channels="*", tags=f"opskit {slugify(project)}")
        body["desc"] = f"opskit {want.job} of project {project}, created by 'opskit hc sync'"
    return body


def sync(api: Api, wanted: list[Wanted], *, project: str, dry_run: bool = False) -> list[Row]:
    """Create or update each wanted check; report drift and this project's stray checks."""
    existing = api.list_checks()
    rows = [_sync_one(api, want, existing, project, dry_run) for want in wanted]
    for row in rows:
        log.debug("check_synced", job=row.job, slug=row.slug, state=row.state, detail=row.detail)
    slugs = {w.slug for w in wanted}
    prefix = slugify(project) + "-"
    for check in existing:
        slug, name = str(check.get("slug") or ""), str(check.get("name") or "")
        if slug.startswith(prefix) and name.startswith(f"{project} ") and slug not in slugs:
            hint = "no job in crontab.txt: delete or pause the check in Healthchecks"
            rows.append(Row(name.removeprefix(f"{project} "), slug, "orphan", hint))
    return rows


def _sync_one(
    api: Api, want: Wanted, existing: list[dict[str, Any]], project: str, dry_run: bool
) -> Row:
    same = [c for c in existing if c.get("slug") == want.slug]
    if len(same) > 1:
        return Row(want.job, want.slug, "failed", f"{len(same)} checks share this slug")
    changes = differences(same[0], want) if same else ["no check yet"]
    if not changes:
        return Row(want.job, want.slug, "unchanged", f"{want.schedule} {want.tz}")
    detail = "; ".join(changes)
    if dry_run:
        return Row(want.job, want.slug, "drifted" if same else "missing", detail)
    try:
        status = api.upsert(_body(want, project=project, new=not same))
    except KeyRefused:
        raise  # every other request would fail the same way: stop with one message
    except ApiError as exc:
        return Row(want.job, want.slug, "failed", exc.line())
    if status == 201:
        return Row(want.job, want.slug, "created", f"{want.schedule} {want.tz}")
    return Row(want.job, want.slug, "updated", detail)
