"""Healthchecks management API v3: list checks, create or update, pause and delete one."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from opskit import __version__
from opskit.errors import ConfigError, OpsError
from opskit.healthchecks import http as http_
from opskit.redact import redact

_KEY_HINT = "set OPSKIT_HEALTHCHECKS_API_KEY to the project's read-write API key"
_API_HINT = "set HEALTHCHECKS_API_URL to the server's API, e.g. https://hc.example.com/api/v3/"
_OLD_API = re.compile(r"/api/v[12]/?$")


class ApiError(OpsError):
    """The management API refused a request or could not be reached."""


class KeyRefused(ApiError):
    """The API key is missing, wrong or read-only: no request can succeed."""


class ZoneRefused(ApiError):
    """The server does not know a time zone (its list is older than this machine's)."""

    def __init__(self, zone: str) -> None:
        super().__init__(
            f"the Healthchecks server does not know the time zone {zone!r}",
            "its list of zones is older than this machine's tzdata: pass --tz with a zone"
            " it knows that keeps the same clock (see timedatectl list-timezones)",
        )
        self.zone = zone


def api_base(url: str) -> str:
    """Return the v3 API's base URL; a site root (``https://hc.example.com/``) gets api/v3/."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"API URL {url!r} is not an http(s) URL",
            "e.g. https://healthchecks.io/api/v3/ or https://hc.example.com/api/v3/",
        )
    path = parts.path.rstrip("/")
    if _OLD_API.search(path + "/"):
        raise ConfigError(
            f"API URL {url!r} is an older API version",
            "opskit needs v3 (it knows slugs): .../api/v3/",
        )
    if "/api/v" not in path + "/":
        path += "/api/v3"  # the site's root (or the folder it is served from)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


class Api:
    """A plain urllib client for the calls sync and check need."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        budget: float = 30.0,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        base = api_base(base_url)
        if not api_key:
            raise ConfigError("no Healthchecks API key", _KEY_HINT)
        self.checks_url = base + "checks/"
        self._key, self._timeout, self._attempts = api_key, timeout, attempts
        self._budget, self._sleep, self._clock = budget, sleep, clock
        # No redirects: urllib would turn a POST into a GET and send the key elsewhere.
        self._opener = http_.opener()

    def list_checks(self) -> list[dict[str, Any]]:
        """Return every check of the API key's project (a read-only key is enough)."""
        _, doc = self._call("GET", self.checks_url, None)
        checks = doc.get("checks")
        if not isinstance(checks, list):
            raise ApiError(f"{self.checks_url} answered without a check list", _API_HINT)
        return [c for c in checks if isinstance(c, dict)]

    def upsert(self, body: dict[str, Any]) -> int:
        """Create or update the check matching ``body['unique']``; return 201 or 200."""
        return self._write("POST", self.checks_url, body)

    def update(self, code: str, body: dict[str, Any]) -> int:
        """Update the check with this UUID."""
        return self._write("POST", self.checks_url + code, body)

    def pause(self, code: str) -> None:
        self._call("POST", self.checks_url + code + "/pause", b"")

    def delete(self, code: str) -> None:
        self._call("DELETE", self.checks_url + code, None)

    def _write(self, method: str, url: str, body: dict[str, Any]) -> int:
        try:
            status, _ = self._call(method, url, json.dumps(body).encode())
        except ApiError as exc:
            if "tz is not a valid timezone" in exc.message and "tz" in body:
                raise ZoneRefused(str(body["tz"])) from None
            raise
        return status

    def _call(self, method: str, url: str, data: bytes | None) -> tuple[int, dict[str, Any]]:
        def attempt(timeout: float) -> http_.Answer[tuple[int, dict[str, Any]]]:
            try:
                status, doc = self._once(method, url, data, timeout)
            except _Retry as exc:
                return http_.Answer(exc.status, exc.reason, exc.wait)
            return http_.Answer(status, "", value=(status, doc))

        outcome = http_.with_retries(
            attempt,
            budget=self._budget,
            timeout=self._timeout,
            attempts=self._attempts,
            sleep=self._sleep,
            clock=self._clock,
        )
        answer = outcome.answer
        if answer is not None and answer.value is not None:
            return answer.value
        reason = answer.reason if answer else f"no time left to {method} {url}"
        raise ApiError(redact(reason, [self._key]), "try again later")

    def _once(
        self, method: str, url: str, data: bytes | None, timeout: float
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("X-Api-Key", self._key)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", f"opskit/{__version__}")
        if data:
            request.add_header("Content-Type", "application/json")
        where = f"{method} {url}"
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, _json(response.read(), where)
        except urllib.error.HTTPError as exc:
            with exc:
                raise self._refused(exc, where) from None
        except (OSError, http.client.HTTPException) as exc:
            # Safe to retry even a POST: an upsert by slug done twice is done once.
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _Retry(None, f"cannot reach {where}: {cause}", 0.0) from None

    def _refused(self, exc: urllib.error.HTTPError, where: str) -> Exception:
        try:
            said = str(json.loads(exc.read() or b"{}").get("error") or "")
        except (ValueError, AttributeError, OSError):
            said = ""
        text = redact(f"{where} failed: HTTP {exc.code} {said}".rstrip(), [self._key])
        if exc.code in http_.RETRY_STATUSES:
            return _Retry(exc.code, text, http_.retry_after(exc.headers))
        if exc.code == 401:
            return KeyRefused(f"the Healthchecks API refused the API key ({text})", _KEY_HINT)
        if 300 <= exc.code < 400:
            hint = f"set HEALTHCHECKS_API_URL to the final address: {exc.headers.get('Location')}"
            return ApiError(f"{where} was redirected", hint)
        if exc.code == 403:
            return ApiError(text, "the project may have no checks left in its plan")
        if exc.code == 404 and not said and where.endswith("/checks/"):
            # Not the API's own JSON: the URL is not a Healthchecks API at all.
            return ApiError(f"{text} (no Healthchecks API there)", _API_HINT)
        return ApiError(text)


class _Retry(Exception):
    """An answer worth another attempt (no answer at all, or a status in RETRY_STATUSES)."""

    def __init__(self, status: int | None, reason: str, wait: float) -> None:
        super().__init__(reason)
        self.status, self.reason, self.wait = status, reason, wait


def _json(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ApiError(f"{where} did not answer with JSON", _API_HINT)
    return doc
