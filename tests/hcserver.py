"""A real, scriptable Healthchecks server on 127.0.0.1: ping endpoints and the v3 API.

Pings are recorded, and answered with scripted replies, else by the stored check they name
(its status follows start, success, fail and exit-status pings, with Healthchecks' keyword
filters and methods rule), else with the default reply. The API lists, creates, updates,
pauses and deletes stored checks with the real server's validation and its messages
("json validation error: tz is not a valid timezone"), and replaces legacy time-zone names
with the current ones, as Healthchecks does. The server can hold every request that
arrives in its first N seconds (an overloaded or restarting server) and announce a body
limit, keeping only the head of longer bodies, like Healthchecks' PING_BODY_LIMIT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
import time
import urllib.parse
import uuid
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cronsim import CronSim, CronSimError

# A few of the legacy names Healthchecks replaces (hc/lib/tz.py legacy_timezones).
LEGACY_ZONES = {
    "US/Eastern": "America/New_York",
    "US/Pacific": "America/Los_Angeles",
    "US/Central": "America/Chicago",
    "Europe/Kiev": "Europe/Kyiv",
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Saigon": "Asia/Ho_Chi_Minh",
}
# Zones newer than the server's own list (tzdata 2025b added America/Coyhaique).
UNKNOWN_ZONES = frozenset({"America/Coyhaique"})
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SUFFIX = re.compile(r"/(start|fail|log|\d+)$")
_SLUG_RE = re.compile(r"^[a-z0-9-_]*$")
_UNIQUE = ("name", "slug", "tags", "timeout", "grace")
_STRINGS = ("name", "slug", "tags", "desc", "schedule", "tz", "channels", "failure_kw")


@dataclasses.dataclass(frozen=True)
class Reply:
    """How to answer one request: a status, extra headers, or a hang before answering."""

    status: int = 200
    body: bytes = b"OK"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    hang: float = 0.0  # seconds to stall first; ends early when the server stops


@dataclasses.dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    time: float  # time.monotonic() on arrival

    @property
    def rid(self) -> str | None:
        return self.query.get("rid")

    @property
    def api(self) -> bool:
        return "/api/" in self.path

    @property
    def writes(self) -> bool:
        """Whether the request could change anything: a ping, or an API call that is not a GET."""
        return not self.api or self.method != "GET"


class HCServer:
    """Context manager: serve on a free port in a thread; script replies; record requests."""

    def __init__(
        self,
        default: Reply | int = 200,
        body_limit: int | None = None,
        *,
        api_key: str = "",
        read_key: str = "",
        ping_key: str = "",
        stall: float = 0.0,
    ) -> None:
        self.default = _reply(default)
        self.body_limit = body_limit  # sent as Ping-Body-Limit on every reply when set
        self.api_key, self.read_key, self.ping_key = api_key, read_key, ping_key
        # Requests arriving within ``stall`` s of the first one wait until then: counted from
        # the first request, not from start, so a slow-starting opskit still meets the stall.
        self.stall = stall
        self._stall_from: float | None = None
        self.checks: list[dict[str, Any]] = []
        self.kept: list[bytes] = []  # ping bodies as the server stored them (cut to the limit)
        self._script: list[Reply] = []
        self._requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = time.monotonic()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # a short poll interval keeps shutdown (and so each test's teardown) fast
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        """Ping base URL ending with a slash, like https://hc-ping.com/."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    @property
    def started(self) -> float:
        """time.monotonic() when the stall began (the first request), or the server started."""
        return self._stall_from if self._stall_from is not None else self._started

    @property
    def api_url(self) -> str:
        return f"{self.url}api/v3/"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def pings(self) -> list[Recorded]:
        return [r for r in self.requests if not r.api]

    def api_calls(self) -> list[tuple[str, str]]:
        """(method, path) of each API request."""
        return [(r.method, r.path) for r in self.requests if r.api]

    def script(self, *replies: Reply | int) -> None:
        """Queue replies for the next pings, in order; then the stored checks or the default."""
        with self._lock:
            self._script.extend(_reply(r) for r in replies)

    def add(self, **fields: Any) -> dict[str, Any]:
        """Put a check on the server, as if made in the web UI (a cron check unless timeout)."""
        with self._lock:
            return self._add(**fields)

    def _add(self, **fields: Any) -> dict[str, Any]:
        check: dict[str, Any] = {
            "name": "",
            "slug": "",
            "tags": "",
            "desc": "",
            "grace": 3600,
            "channels": "",
            "methods": "",
            "status": "new",
            "n_pings": 0,
            "last_ping": None,
            "failure_kw": "",
            "filter_body": False,
            "manual_resume": False,
            "uuid": str(uuid.uuid4()),
        }
        if "timeout" not in fields:
            check.update(schedule="* * * * *", tz="UTC")
        check.update(fields)
        self.checks.append(check)
        return check

    def check(self, slug: str) -> dict[str, Any]:
        (found,) = [c for c in self.checks if c["slug"] == slug]
        return found

    def __enter__(self) -> HCServer:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()  # wakes hanging handlers so no thread outlives the test
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    # --- requests ------------------------------------------------------------------------

    def _record(self, recorded: Recorded) -> Reply | None:
        with self._lock:
            self._requests.append(recorded)
            if recorded.api or not self._script:
                return None
            return self._script.pop(0)

    def _held(self) -> bool:
        """Hold a request that came during the stall; False if the server stopped meanwhile."""
        with self._lock:
            if self._stall_from is None:
                self._stall_from = time.monotonic()
            until = self._stall_from + self.stall
        wait = until - time.monotonic()
        return not (wait > 0 and self._stopping.wait(wait))

    def _ping(self, recorded: Recorded) -> Reply:
        path = recorded.path
        match = _SUFFIX.search(path)
        kind = match.group(1) if match else "success"
        base = path[: match.start()] if match else path
        parts = [p for p in base.split("/") if p]
        body = recorded.body
        if self.body_limit is not None:
            body = body[: self.body_limit]  # Healthchecks keeps the head of a long body
        with self._lock:
            self.kept.append(body)
            check = self._find_for_ping(parts)
            if check is None and len(parts) == 2 and self.ping_key and parts[0] == self.ping_key:
                if recorded.query.get("create") != "1":
                    return Reply(404, b"not found")
                check = self._add(name=parts[1], slug=parts[1])
                created = True
            else:
                created = False
            if check is None:
                return self.default
            _apply_ping(check, kind, recorded.method, body)
        return Reply(201 if created else 200, b"Created" if created else b"OK")

    def _find_for_ping(self, parts: list[str]) -> dict[str, Any] | None:
        if len(parts) == 1 and _UUID.fullmatch(parts[0]):
            return next((c for c in self.checks if c["uuid"] == parts[0]), None)
        if len(parts) == 2 and self.ping_key and parts[0] == self.ping_key:
            return next((c for c in self.checks if c["slug"] == parts[1]), None)
        return None

    # --- the v3 API ----------------------------------------------------------------------

    def _api(self, method: str, path: str, key: str, raw: bytes) -> tuple[int, Any]:
        if key not in (self.api_key, self.read_key) or not key:
            return 401, {"error": "wrong api key" if key else "missing api key"}
        readonly = key == self.read_key
        rest = path.removeprefix("/api/v3/checks/")
        if not path.startswith("/api/v3/checks/"):
            return 404, None
        if readonly and method != "GET":
            return 401, {"error": "API key is read-only"}
        with self._lock:
            if rest == "" and method == "GET":
                return 200, {"checks": [_to_dict(c, readonly) for c in self.checks]}
            try:
                spec = json.loads(raw or b"{}")
            except ValueError:
                return 400, {"error": "could not parse request body"}
            if rest == "" and method == "POST":
                return self._create(spec)
            code, _, action = rest.rstrip("/").partition("/")
            check = next((c for c in self.checks if c["uuid"] == code), None)
            if check is None:
                return 404, None
            if action == "pause" and method == "POST":
                check["status"] = "paused"
                return 200, _to_dict(check, False)
            if not action and method == "DELETE":
                self.checks.remove(check)
                return 200, _to_dict(check, False)
            if not action and method == "POST":
                problem = _validate(spec)
                if problem:
                    return 400, {"error": problem}
                _update(check, spec)
                return 200, _to_dict(check, False)
        return 405, None

    def _create(self, spec: Any) -> tuple[int, Any]:
        problem = _validate(spec)
        if problem:
            return 400, {"error": problem}
        unique = spec.get("unique") or []
        found = None
        if unique and all(field in spec for field in unique):
            found = next((c for c in self.checks if all(c.get(f) == spec[f] for f in unique)), None)
        check = found or self._add(schedule="* * * * *", tz="UTC")
        _update(check, spec)
        return (200 if found else 201), _to_dict(check, False)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                headers = dict(self.headers.items())
                recorded = Recorded(self.command, parts.path, query, headers, body, arrived)
                reply = server._record(recorded)
                if not server._held():
                    return  # stopped while holding the request
                if recorded.api:
                    status, doc = server._api(
                        self.command, parts.path, self.headers.get("X-Api-Key", ""), body
                    )
                    if doc is None:  # Django's own page, not the API's JSON
                        data, kind = b"<h1>Not Found</h1>", "text/html"
                    else:
                        data, kind = json.dumps(doc).encode(), "application/json"
                    reply = Reply(status, data, {"Content-Type": kind})
                elif reply is None:
                    reply = server._ping(recorded)
                if reply.hang and server._stopping.wait(reply.hang):
                    return  # stopped while hanging: drop the connection unanswered
                try:
                    self.send_response(reply.status)
                    if server.body_limit is not None and not recorded.api:
                        self.send_header("Ping-Body-Limit", str(server.body_limit))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout) before we answered

            do_GET = do_POST = do_HEAD = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest output clean

        return Handler


def _reply(reply: Reply | int) -> Reply:
    return reply if isinstance(reply, Reply) else Reply(status=reply)


def _apply_ping(check: dict[str, Any], kind: str, method: str, body: bytes) -> None:
    """Healthchecks' reading of a ping: methods rule, keyword filters, then the status."""
    check["n_pings"] += 1
    action = {"start": "start", "fail": "fail", "log": "log"}.get(kind, "success")
    if kind.isdigit() and int(kind) != 0:
        action = "fail"
    if check.get("methods") == "POST" and method != "POST":
        action = "ign"
    text = body.decode("utf-8", errors="replace")
    keywords = [k.strip() for k in (check.get("failure_kw") or "").split(",") if k.strip()]
    if action in ("success", "fail") and check.get("filter_body") and keywords:
        action = "fail" if any(k in text for k in keywords) else action
    check.setdefault("actions", []).append(action)
    if action == "start":
        check["started"] = True
    elif action in ("success", "fail"):
        check["started"] = False
        check["last_ping"] = datetime.now(UTC).replace(microsecond=0).isoformat()
        check["status"] = "down" if action == "fail" else "up"


def _validate(spec: Any) -> str:  # noqa: C901, PLR0912 — mirrors Healthchecks' own validation, one field after another
    """Return the server's 400 message for a bad check spec, or ''."""
    if not isinstance(spec, dict):
        return "json validation error: request body is not an object"
    for field in _STRINGS:
        if field in spec and not isinstance(spec[field], str):
            return f"json validation error: {field} is not a string"
    for field, limit in (("name", 100), ("slug", 100), ("schedule", 100)):
        if len(spec.get(field, "")) > limit:
            return f"json validation error: {field} is too long"
    if not _SLUG_RE.match(spec.get("slug", "")):
        return "json validation error: slug does not match pattern"
    for field in ("grace", "timeout"):
        if field in spec:
            value = spec[field]
            if not isinstance(value, int) or isinstance(value, bool):
                return f"json validation error: {field} is not a number"
            if value < 60:
                return f"json validation error: {field} is too small"
            if value > 31536000:
                return f"json validation error: {field} is too large"
    if "methods" in spec and spec["methods"] not in ("", "POST"):
        return "json validation error: methods has unexpected value"
    if any(u not in _UNIQUE for u in spec.get("unique") or []):
        return "json validation error: an item in 'unique' has unexpected value"
    if "tz" in spec:
        tz = LEGACY_ZONES.get(spec["tz"], spec["tz"])
        if tz not in zoneinfo.available_timezones() or tz in UNKNOWN_ZONES | set(LEGACY_ZONES):
            return "json validation error: tz is not a valid timezone"
    if "schedule" in spec:
        try:
            next(CronSim(spec["schedule"], datetime(2000, 1, 1)))
        except (CronSimError, StopIteration):
            return "json validation error: schedule is not a valid cron or OnCalendar expression"
    return ""


def _update(check: dict[str, Any], spec: dict[str, Any]) -> None:
    for field in ("name", "slug", "tags", "desc", "grace", "methods", "channels", "timeout"):
        if field in spec:
            check[field] = spec[field]
    if "schedule" in spec:
        check.pop("timeout", None)
        check["schedule"] = spec["schedule"]
        check.setdefault("tz", "UTC")
    if "tz" in spec:
        check["tz"] = LEGACY_ZONES.get(spec["tz"], spec["tz"])  # stored by its current name


def _to_dict(check: dict[str, Any], readonly: bool) -> dict[str, Any]:
    fields = ("name", "slug", "tags", "desc", "grace", "n_pings", "last_ping", "methods")
    doc = {f: check.get(f) for f in fields}
    doc["manual_resume"] = check.get("manual_resume", False)
    doc["status"] = "started" if check.get("started") and check["status"] != "paused" else None
    doc["status"] = doc["status"] or check["status"]
    if "last_duration" in check:
        doc["last_duration"] = check["last_duration"]
    if "timeout" in check:
        doc["timeout"] = check["timeout"]
    else:
        doc["schedule"], doc["tz"] = check["schedule"], check["tz"]
    if readonly:
        code = uuid.UUID(check["uuid"]).hex[:16]
        doc["unique_key"] = hashlib.sha1(code.encode()).hexdigest()
    else:
        doc["uuid"] = check["uuid"]
        doc["channels"] = check.get("channels", "")
    return doc
