"""Healthchecks ping client: start, exit status and log tail of a job run, within a time budget."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

import structlog

from opskit import __version__, files
from opskit.errors import ConfigError
from opskit.redact import redact

DEFAULT_BASE_URL = "https://hc-ping.com/"
DEFAULT_BODY_LIMIT = 10_000  # Healthchecks' own default PING_BODY_LIMIT
DEFAULT_TIMEOUT = 10.0  # seconds per attempt
DEFAULT_START_BUDGET = 10.0  # the start ping's bound, retries included: short, so it never
DEFAULT_BUDGET = 30.0  # eats into the final ping's own bound, which matters more
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MIN_ATTEMPT = 0.05  # below this a request cannot finish, so the budget counts as spent
_ADVICE = {
    400: "bad request: the ping URL or exit status is malformed (check the check spec)",
    404: "unknown check: check the UUID/slug and ping key, or use create=1 for slug checks",
    409: "ambiguous slug: two checks in the project share this slug (rename one)",
}
_REDIRECT = "redirected: set the ping base URL to the final address"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_KEY = re.compile(r"[-a-zA-Z0-9_]+")  # ping keys are URL-safe base64
_SLUG = re.compile(r"[a-z0-9_-]+")  # Healthchecks' slug rule: ^[a-z0-9-_]*$
_FAILURE_WORDS = re.compile(r"error|fail", re.I)  # what keyword filters usually look for
_ZERO_ERRORS = re.compile(r"(?:\s|^)errors=0(?=\s|$)|,?\s*\"errors\":\s*0(?=[,}])", re.M)
_KINDS = {"start": "/start", "success": "", "fail": "/fail", "log": "/log"}

log = structlog.get_logger()


@dataclasses.dataclass(frozen=True)
class PingTarget:
    """A parsed check: where to ping, and a label that is safe to log."""

    url: str = dataclasses.field(repr=False)  # holds the ping key or UUID: keep out of reprs
    create: bool = False
    label: str = ""
    secret: str = dataclasses.field(default="", repr=False)  # the ping key or UUID
    slug: str = ""  # the check's slug for <ping key>/<slug> checks

    @property
    def host(self) -> str:
        """The server's host[:port], to name in messages."""
        return urllib.parse.urlsplit(self.url).netloc


@dataclasses.dataclass(frozen=True)
class PingResult:
    """What one ping achieved; a failed ping is reported here, never raised."""

    ok: bool
    status: int | None
    attempts: int
    message: str


def _base(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"ping base URL {base_url!r} is not an http(s) URL",
            "use e.g. https://hc-ping.com/ or http://127.0.0.1:8000/ping/",
        )
    return parts.geturl().rstrip("/") + "/"


def _from_url(spec: str, create: bool) -> PingTarget:
    parts = urllib.parse.urlsplit(spec)
    query = urllib.parse.parse_qs(parts.query)
    create = create or query.pop("create", [""])[-1] == "1"
    segments = [s for s in parts.path.split("/") if s]
    if parts.fragment or query or not segments or not parts.netloc:
        raise ConfigError("ping URL has no check in it", "use <base>/<uuid> or <base>/<key>/<slug>")
    if len(segments) >= 2 and _UUID.fullmatch(segments[-2]):
        raise ConfigError(
            f"ping URL ends with /{segments[-1]}", "give the check's URL without a suffix"
        )
    root = f"{parts.scheme}://{parts.netloc}/{'/'.join(segments[:-1])}"
    if _UUID.fullmatch(segments[-1]):
        return _uuid_target(segments[-1], root, create)
    if len(segments) >= 2 and _KEY.fullmatch(segments[-2]) and _KEY.fullmatch(segments[-1]):
        _check_slug(segments[-1])
        return _slug_target(segments[-2], segments[-1], root.rsplit("/", 1)[0] + "/", create)
    raise ConfigError("ping URL has no check in it", "use <base>/<uuid> or <base>/<key>/<slug>")


def _check_slug(slug: str) -> None:
    """Refuse a slug Healthchecks cannot have, saying why (its answer would be a bare 400/404)."""
    if _SLUG.fullmatch(slug):
        return
    if _SLUG.fullmatch(slug.lower()):
        raise ConfigError(
            f"slug {slug!r} has upper-case letters; Healthchecks slugs are lower case",
            f"use {slug.lower()!r} (a-z, 0-9, '-' and '_')",
        )
    raise ConfigError(
        f"slug {slug[:40]!r} holds characters Healthchecks slugs cannot have",
        "a slug is a-z, 0-9, '-' and '_'",
    )


def _uuid_target(code: str, base: str, create: bool) -> PingTarget:
    if create:
        raise ConfigError("create=1 needs a ping-key/slug check", "UUID checks already exist")
    code = code.lower()  # Healthchecks' <uuid:...> route only matches lower case
    return PingTarget(f"{base.rstrip('/')}/{code}", False, f"{code[:8]}…", code)


def _slug_target(key: str, slug: str, base: str, create: bool) -> PingTarget:
    return PingTarget(f"{base.rstrip('/')}/{key}/{slug}", create, f"…/{slug}", key, slug)


def parse_check(spec: str, base_url: str = DEFAULT_BASE_URL, create: bool = False) -> PingTarget:
    """Parse a UUID, a full ping URL or ``<ping_key>/<slug>`` into a target."""
    spec = spec.strip()
    if spec.startswith(("http://", "https://")):
        return _from_url(spec, create)
    if _UUID.fullmatch(spec):
        return _uuid_target(spec, _base(base_url), create)
    key, _, slug = spec.partition("/")
    if _KEY.fullmatch(key) and _KEY.fullmatch(slug):
        _check_slug(slug)
        return _slug_target(key, slug, _base(base_url), create)
    raise ConfigError(
        f"check {spec[:40]!r} is not a UUID, ping URL or <ping_key>/<slug>",
        "copy the check's ping URL or UUID from Healthchecks",
    )


def tail_body(text: str, limit: int) -> bytes:
    """Return the last ``limit`` bytes of ``text`` as UTF-8, starting on a character boundary."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return data
    cut = len(data) - max(limit, 0)
    while cut < len(data) and data[cut] & 0xC0 == 0x80:  # skip continuation bytes
        cut += 1
    return data[cut:]


def _suffix(kind: str | int) -> str:
    kind = str(kind).strip()
    if kind in _KINDS:
        return _KINDS[kind]
    if kind.isdigit() and int(kind) <= 255:
        return f"/{int(kind)}"
    raise ConfigError(f"unknown ping kind {kind!r}", "use start, success, fail, log or 0-255")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would replay a POST as a GET and drop the log body."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_OPENER = urllib.request.build_opener(NoRedirect)


class BodyLimits:
    """The body limit each server announced (Ping-Body-Limit), remembered between runs.

    Kept in a small JSON file (host -> bytes), so that a script's ``opskit ping --data``
    cuts its body to what that server keeps from the very first request: Healthchecks
    keeps the head of a longer body, which would lose the end of a log.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, host: str) -> int | None:
        value = self._read().get(host)
        return value if isinstance(value, int) and value > 0 else None

    def learn(self, host: str, limit: int) -> None:
        known = self._read()
        if known.get(host) == limit:
            return
        known[host] = limit
        try:
            files.make_dirs(self.path.parent, 0o700)
            data = json.dumps(known, indent=1, sort_keys=True).encode() + b"\n"
            files.write_atomic(self.path, data, 0o600)
        except OSError as exc:  # a cache: never worth failing a ping for
            log.debug("body_limit_not_saved", path=str(self.path), reason=str(exc))

    def _read(self) -> dict[str, object]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}


def limits_file(cache_dir: Path) -> Path:
    """Where the learned body limits live in the cache folder (Config.cache_dir)."""
    return cache_dir / "ping-body-limits.json"


def quiet_success(text: str) -> str:
    """A successful run's log tail without failure words, so keyword filters read it right.

    Healthchecks can turn a ping whose body holds a keyword such as "error" into a failure.
    opskit's own lines say ``errors=0`` on every good run: that is dropped, and any line
    still holding "error" or "fail" (a warning of a good run, say a start ping that was
    not delivered) is left out of the body; the log files keep it.
    """
    kept, left_out = [], 0
    for line in _ZERO_ERRORS.sub("", text).splitlines():
        if _FAILURE_WORDS.search(line):
            left_out += 1
        else:
            kept.append(line)
    if left_out:
        noun = "line" if left_out == 1 else "lines"
        kept.append(f"[{left_out} log {noun} of this good run left out; see the log files]")
    return "\n".join(kept) + ("\n" if kept else "")


class Pinger:
    """Pings one check for one job run: a shared run id, a bound per ping, the body limit.

    The start ping has a short bound of its own (``start_budget``), and every other ping
    its own full ``budget``: a server that hangs on the start never silences the result.
    """

    def __init__(
        self,
        target: PingTarget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        budget: float = DEFAULT_BUDGET,
        start_budget: float = DEFAULT_START_BUDGET,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rid: str | None = None,
        limits: BodyLimits | None = None,
    ) -> None:
        self.target = target
        self.rid = str(uuid.uuid4()) if rid is None else rid  # "" sends no rid
        self._limits = limits
        known = limits.get(target.host) if limits is not None else None
        self.body_limit = known or DEFAULT_BODY_LIMIT
        self._timeout, self._budget = timeout, budget
        self._start_budget = min(start_budget, budget)
        self._secrets = (*secrets, target.secret)
        self._sleep, self._clock = sleep, clock

    def start(self) -> PingResult:
        """Signal that the job has started (within the start ping's own short bound)."""
        return self._post("start", b"", self._start_budget)

    def finish(
        self,
        exit_status: int,
        log_tail: str,
        summary: Mapping[str, object],
        *,
        own_log: bool = True,
    ) -> PingResult:
        """Report the exit status with the end of the log and a summary block as the body.

        A good run's body (exit status 0) holds no failure words: the summary leaves out
        ``errors: 0`` and, when the log is opskit's own (``own_log``), ``quiet_success``
        cleans it. A command's own output (``opskit run``) is passed on as it is.
        """
        info = {**summary, "exit_status": exit_status}
        if exit_status == 0 and not info.get("errors"):
            info.pop("errors", None)
        info.setdefault("host", socket.gethostname())
        info.setdefault("opskit", __version__)
        lines = [f"{k}: {_fmt(v)}" for k, v in info.items()]
        block = redact("\n".join(["--- opskit summary ---", *lines, ""]), self._secrets)
        text = redact(log_tail.rstrip("\n") + "\n" if log_tail else "", self._secrets)
        if exit_status == 0 and own_log:
            text = quiet_success(text)
        tail = block.encode()
        room = self.body_limit - len(tail)  # the summary always survives; the log gives way
        if room <= 0:  # a tiny server limit: keep the end of the summary itself
            body = tail_body(text + block, self.body_limit)
            return self._post(str(exit_status), body, self._budget)
        return self._post(str(exit_status), tail_body(text, room) + tail, self._budget)

    def send(self, kind: str | int, body: bytes | str = b"") -> PingResult:
        """Send one ping (start, success, fail, log or 0-255), redacted and cut to the limit."""
        if isinstance(body, bytes):  # script input is log text; a stray bad byte is not fatal
            body = body.decode("utf-8", errors="replace")
        text = redact(body, self._secrets)
        budget = self._start_budget if str(kind).strip() == "start" else self._budget
        return self._post(kind, text, budget)

    def _post(self, kind: str | int, body: bytes | str, budget: float) -> PingResult:
        """POST a body with retries and backoff within ``budget`` seconds.

        A text body is cut to the body limit before each attempt, so a limit the server
        announced in an answer (a 5xx, say) is honoured by the retry.
        """
        suffix, kind = _suffix(kind), str(kind)
        query = {"create": "1"} if self.target.create else {}
        if self.rid:
            query["rid"] = self.rid
        url = self.target.url + suffix + ("?" + urllib.parse.urlencode(query) if query else "")
        began, attempts, status, reason = self._clock(), 0, None, ""
        while (left := budget - (self._clock() - began)) >= _MIN_ATTEMPT:
            attempts += 1
            data = tail_body(body, self.body_limit) if isinstance(body, str) else body
            status, reason, retry_after = self._attempt(url, data, min(self._timeout, left))
            if status is not None and 200 <= status < 300:
                return self._done(kind, PingResult(True, status, attempts, reason))
            if status is not None and status not in RETRY_STATUSES:
                break
            delay = max(0.5 * 2 ** (attempts - 1), retry_after)
            left = budget - (self._clock() - began)
            if delay + _MIN_ATTEMPT > left:
                reason += f"; gave up within the {budget:g}s bound of this ping"
                break
            log.debug("ping_retry", check=self.target.label, kind=kind, reason=reason)
            self._sleep(delay)
        else:  # the bound ran out between attempts, or before the first one
            spent = f"the {budget:g}s bound of this ping is used up"
            reason = f"{reason}; {spent}" if reason else f"skipped: {spent}"
        return self._done(kind, PingResult(False, status, attempts, reason))

    def _attempt(self, url: str, body: bytes, timeout: float) -> tuple[int | None, str, float]:
        """Make one request; return (status or None, reason, Retry-After seconds)."""
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("User-Agent", f"opskit/{__version__}")
        request.add_header("Content-Type", "text/plain; charset=utf-8")
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                self._learn(response.headers.get("Ping-Body-Limit"))
                return response.status, f"HTTP {response.status}", 0.0
        except urllib.error.HTTPError as exc:
            with exc:
                self._learn(exc.headers.get("Ping-Body-Limit"))
                status = exc.code
                advice = _ADVICE.get(status, _REDIRECT if status < 400 else "")
                retry_after = exc.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.isdigit() else 0.0
                return status, f"HTTP {status}" + (f" {advice}" if advice else ""), wait
        except (OSError, http.client.HTTPException) as exc:
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(cause, TimeoutError):
                return None, f"timed out after {timeout:.1f}s", 0.0
            name = f"{type(cause).__name__}: " if isinstance(cause, BaseException) else ""
            return None, redact(f"{name}{cause}", self._secrets), 0.0

    def _learn(self, value: str | None) -> None:
        """Remember the server's body limit from any response, error or not."""
        value = (value or "").strip()
        if value.isdigit() and int(value) > 0:
            self.body_limit = int(value)
            if self._limits is not None:
                with contextlib.suppress(OSError):
                    self._limits.learn(self.target.host, self.body_limit)

    def _done(self, kind: str, result: PingResult) -> PingResult:
        noun = "attempt" if result.attempts == 1 else "attempts"
        head = f"{kind} ping to {self.target.label} at {self.target.host}"
        message = f"{head}: {result.message} ({result.attempts} {noun})"
        if not result.ok:
            log.warning(
                "ping_failed",
                check=self.target.label,
                host=self.target.host,
                kind=kind,
                status=result.status,
                attempts=result.attempts,
                reason=result.message,
            )
        return dataclasses.replace(result, message=message)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(str(v) for v in value) or "-"
    return " ".join(str(value).split())  # one line per field, whatever the caller passed


def ping(
    target: PingTarget,
    kind: str | int,
    body: bytes | str = b"",
    *,
    rid: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    budget: float = DEFAULT_BUDGET,
    secrets: Iterable[str] = (),
    limits: BodyLimits | None = None,
) -> PingResult:
    """Send one ping for a script (``opskit ping``) within ``budget``; no rid unless given."""
    pinger = Pinger(
        target,
        timeout=timeout,
        budget=budget,
        start_budget=budget,
        secrets=secrets,
        rid=rid,
        limits=limits,
    )
    return pinger.send(kind, body)
