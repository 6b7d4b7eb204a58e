"""Healthchecks pings against a real recording HTTP server on 127.0.0.1."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hcserver import HCServer, Reply
from support.clock import FakeTime

from opskit import __version__
from opskit.config import build_config
from opskit.errors import ConfigError
from opskit.healthchecks.ping import (
    BodyLimits,
    Pinger,
    PingTarget,
    limits_file,
    parse_check,
    ping,
    quiet_success,
    tail_body,
)

UUID = "5b8c1d2e-3f40-4a51-8b62-7c9d0e1f2a3b"
KEY = "Xq3vT9bLmN2pR7sK4wYz1A"  # shaped like a Healthchecks ping key
PASSWORD = "s3cr3t-db-pass"
SUMMARY = {"job": "backup", "databases": ["default", "analytics"], "errors": 0, "duration": 1.5}


@pytest.fixture
def hc() -> Iterator[HCServer]:
    with HCServer() as server:
        yield server


def pinger(hc: HCServer, spec: str = UUID, **kwargs: Any) -> Pinger:
    fake = FakeTime()
    options: dict[str, Any] = {"sleep": fake.sleep, "clock": fake.clock, **kwargs}
    return Pinger(parse_check(spec, hc.url), **options)


# --- lifecycle ---------------------------------------------------------------


@pytest.mark.parametrize("exit_status", [0, 3, 130])
def test_start_and_finish_share_one_rid_and_finish_path_is_the_exit_status(
    hc: HCServer, exit_status: int
) -> None:
    p = pinger(hc)
    assert p.start().ok
    assert p.finish(exit_status, "done\n", SUMMARY).ok
    start, final = hc.requests
    assert (start.method, start.path) == ("POST", f"/{UUID}/start")
    assert final.path == f"/{UUID}/{exit_status}"
    assert start.rid == final.rid == p.rid
    assert len(p.rid) == 36


def test_each_pinger_gets_its_own_rid(hc: HCServer) -> None:
    assert pinger(hc).rid != pinger(hc).rid


def test_finish_body_is_the_log_tail_then_the_summary_block(hc: HCServer) -> None:
    pinger(hc).finish(3, "dumping default\ndumped 12 MB\n", {**SUMMARY, "errors": 3})
    body = hc.requests[0].body.decode()
    assert body.startswith("dumping default\ndumped 12 MB\n--- opskit summary ---\n")
    for line in [
        "job: backup",
        "databases: default, analytics",
        "errors: 3",
        "duration: 1.50",
        "exit_status: 3",
        f"host: {socket.gethostname()}",
        f"opskit: {__version__}",
    ]:
        assert line in body.splitlines()


def test_a_good_runs_body_holds_no_failure_words_for_keyword_filters(hc: HCServer) -> None:
    log = (
        "level=info event=dump_started database=default\n"
        "level=warning event=ping_failed kind=start reason='timed out'\n"
        "level=info event=database_done database=default errors=0 bytes=12\n"
        "level=info event=job_finished job=backup errors=0 duration=1.2\n"
    )
    pinger(hc).finish(0, log, SUMMARY)
    body = hc.requests[0].body.decode()
    assert not re.search("error|fail", body, re.I), body
    assert "event=database_done database=default bytes=12" in body
    assert "[1 log line of this good run left out; see the log files]" in body
    assert "exit_status: 0" in body
    assert "job: backup" in body


def test_a_failed_runs_body_keeps_every_line(hc: HCServer) -> None:
    log = "level=error event=step_failed step=dump\nlevel=info event=job_finished errors=1\n"
    pinger(hc).finish(1, log, {**SUMMARY, "errors": 1})
    body = hc.requests[0].body.decode()
    assert body.startswith(log)
    assert "errors: 1" in body


def test_a_commands_own_output_is_kept_in_a_good_runs_body(hc: HCServer) -> None:
    pinger(hc).finish(0, "0 errors found\n", {"job": "lint"}, own_log=False)
    assert hc.requests[0].body.decode().startswith("0 errors found\n")


def test_finish_body_redacts_database_password_and_ping_key(hc: HCServer) -> None:
    p = pinger(hc, f"{KEY}/nightly-backup", secrets=[PASSWORD])
    log = f"PGPASSWORD={PASSWORD} pg_dump ...\ncurl {hc.url}{KEY}/nightly-backup\n"
    p.finish(1, log, {**SUMMARY, "note": f"pw {PASSWORD}"})
    body = hc.requests[0].body.decode()
    assert PASSWORD not in body
    assert KEY not in body
    assert "PGPASSWORD=********" in body


def test_sends_opskit_user_agent(hc: HCServer) -> None:
    pinger(hc).start()
    assert hc.requests[0].headers["User-Agent"] == f"opskit/{__version__}"


# --- body size -------------------------------------------------------------------


def test_tail_body_keeps_the_end_and_never_splits_a_character() -> None:
    assert tail_body("abc", 10) == b"abc"
    assert tail_body("abcdef", 3) == b"def"
    assert tail_body("a日本", 4) == "本".encode()  # the cut falls inside 日: drop all of it
    assert tail_body("xé", 1) == b""
    assert tail_body("abc", 0) == b""


def test_body_limit_learned_from_start_ping_cuts_log_at_a_character_boundary(
    hc: HCServer,
) -> None:
    limit = 200
    hc.script(Reply(200, headers={"Ping-Body-Limit": str(limit)}))  # only the start ping says so
    p = pinger(hc)
    p.start()
    assert p.body_limit == limit
    cut_mid_character = False
    for pad in range(4):  # shift the text so the cut lands at every byte of a character
        log = "début " * 40 + "日本語のログ é" * 10 + "\nthe last line" + "x" * pad + "\n"
        p.finish(0, log, SUMMARY)
        body = hc.requests[-1].body
        assert len(body) <= limit
        text = body.decode("utf-8")  # strict: raises if a character was split
        kept, summary = text.split("--- opskit summary ---\n")
        assert "the last line" in kept
        assert log.endswith(kept)
        assert "job: backup" in summary
        cut_mid_character |= len(body) < limit
    assert cut_mid_character


def test_a_limit_announced_by_a_refusal_cuts_the_retry(hc: HCServer) -> None:
    hc.script(Reply(503, headers={"Ping-Body-Limit": "100"}))
    fake = FakeTime()
    p = Pinger(parse_check(UUID, hc.url), sleep=fake.sleep, clock=fake.clock)
    assert p.send("log", "x" * 5000 + "the end").ok
    first, retry = hc.requests
    assert len(first.body) == 5007
    assert retry.body == (b"x" * 93 + b"the end")


def test_learned_limits_are_remembered_per_server(tmp_path: Path) -> None:
    limits = BodyLimits(tmp_path / "cache" / "limits.json")
    with HCServer(body_limit=3000) as small, HCServer(body_limit=50_000) as big:
        for server in (small, big):
            ping(parse_check(UUID, server.url), "start", limits=limits)
        text = "".join(f"line {i}\n" for i in range(20_000)) + "THE END\n"
        ping(parse_check(UUID, small.url), "fail", text, limits=limits)
        ping(parse_check(UUID, big.url), "fail", text, limits=limits)
        cut = small.requests[-1].body, big.requests[-1].body
        assert small.kept[-1] == cut[0]  # the server kept it whole: nothing lost at its end
    assert [len(b) for b in cut] == [3000, 50_000]
    assert all(b.endswith(b"THE END\n") for b in cut)
    assert (tmp_path / "cache" / "limits.json").stat().st_mode & 0o777 == 0o600


def test_the_limits_file_follows_the_cache_variables(tmp_path: Path) -> None:
    """OPSKIT_CACHE_DIR, else $XDG_CACHE_HOME/opskit; a relative one is the project's."""

    def limits(environ: dict[str, str]) -> Path:
        config = build_config(project_dir=tmp_path, settings_module="s", environ=environ)
        return limits_file(config.cache_dir)

    assert limits({"OPSKIT_CACHE_DIR": "/c"}) == Path("/c/ping-body-limits.json")
    assert limits({"XDG_CACHE_HOME": "/x"}) == Path("/x/opskit/ping-body-limits.json")
    assert limits({"OPSKIT_CACHE_DIR": "cache"}) == tmp_path / "cache/ping-body-limits.json"


def test_quiet_success_drops_zero_error_counts_and_failure_lines() -> None:
    text = 'a errors=0 b\n{"event": "x", "errors": 0}\nwarn fail here\nplain\n'
    assert quiet_success(text) == (
        'a b\n{"event": "x"}\nplain\n[1 log line of this good run left out; see the log files]\n'
    )


def test_default_body_limit_is_10000_bytes(hc: HCServer) -> None:
    pinger(hc).finish(0, "é" * 20_000, SUMMARY)
    body = hc.requests[0].body
    assert 9_990 < len(body) <= 10_000
    body.decode("utf-8")


@pytest.mark.parametrize("as_bytes", [False, True])
def test_bodies_sent_by_scripts_are_redacted_and_truncated(hc: HCServer, as_bytes: bool) -> None:
    hc.body_limit = 50
    p = pinger(hc, secrets=[PASSWORD])
    p.start()
    text = "old " * 100 + f"password={PASSWORD}"
    p.send("log", text.encode() if as_bytes else text)
    body = hc.requests[-1].body.decode()
    assert body.endswith("password=********")
    assert len(body) <= 50


# --- statuses and retries -------------------------------------------------------


def test_201_counts_as_success(hc: HCServer) -> None:
    hc.script(201)
    fake = FakeTime()
    target = parse_check(f"{KEY}/new-check", hc.url, create=True)
    result = Pinger(target, sleep=fake.sleep, clock=fake.clock).start()
    assert (result.ok, result.status, result.attempts) == (True, 201, 1)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retries_transient_errors_with_backoff_then_succeeds(hc: HCServer, status: int) -> None:
    hc.script(status, status, 200)
    fake = FakeTime()
    p = Pinger(parse_check(UUID, hc.url), sleep=fake.sleep, clock=fake.clock)
    result = p.start()
    assert (result.ok, result.status, result.attempts) == (True, 200, 3)
    assert fake.sleeps == [0.5, 1.0]
    assert len({r.rid for r in hc.requests}) == 1


def test_retry_after_header_stretches_the_backoff(hc: HCServer) -> None:
    hc.script(Reply(429, headers={"Retry-After": "3"}))
    fake = FakeTime()
    Pinger(parse_check(UUID, hc.url), sleep=fake.sleep, clock=fake.clock).start()
    assert fake.sleeps == [3.0]


def test_backoff_doubles_and_stops_before_the_budget_runs_out(hc: HCServer) -> None:
    hc.default = Reply(503)
    fake = FakeTime()
    result = Pinger(parse_check(UUID, hc.url), sleep=fake.sleep, clock=fake.clock).start()
    assert not result.ok
    assert result.status == 503
    assert fake.sleeps == [0.5, 1, 2, 4]  # 8 more would pass the start ping's 10 s
    assert result.attempts == len(hc.requests) == 5
    assert "10s bound of this ping" in result.message


def test_the_final_ping_has_its_full_bound_whatever_the_start_ping_spent(hc: HCServer) -> None:
    hc.default = Reply(500)
    fake = FakeTime()
    p = Pinger(parse_check(UUID, hc.url), budget=30, sleep=fake.sleep, clock=fake.clock)
    assert p.start().attempts == 5  # sleeps 0.5 + 1 + 2 + 4: within the start's 10 s
    assert p.finish(2, "log", SUMMARY).attempts == 6  # its own 30 s: 0.5 + 1 + 2 + 4 + 8
    assert sum(fake.sleeps) == 7.5 + 15.5


def test_the_start_bound_is_never_longer_than_the_final_ones(hc: HCServer) -> None:
    hc.default = Reply(500)
    fake = FakeTime()
    p = Pinger(parse_check(UUID, hc.url), budget=2, sleep=fake.sleep, clock=fake.clock)
    assert p.start().attempts == 3
    assert fake.sleeps == [0.5, 1]


def test_no_budget_left_skips_the_ping_without_a_request(hc: HCServer) -> None:
    result = pinger(hc, start_budget=0.01).start()
    assert (result.ok, result.status, result.attempts) == (False, None, 0)
    assert "skipped" in result.message
    assert hc.requests == []


def test_retries_stop_within_the_budget_in_real_time(hc: HCServer) -> None:
    hc.default = Reply(500)
    began = time.monotonic()
    result = Pinger(parse_check(UUID, hc.url), start_budget=2).start()
    elapsed = time.monotonic() - began
    assert not result.ok
    assert result.attempts >= 2
    assert elapsed < 2 + 0.5


def test_hanging_server_times_out_each_attempt_and_retries(hc: HCServer) -> None:
    hc.default = Reply(hang=30)
    target = parse_check(UUID, hc.url)
    began = time.monotonic()
    result = Pinger(target, timeout=0.3, start_budget=1.5, sleep=lambda s: None).start()
    elapsed = time.monotonic() - began
    assert (result.ok, result.status, result.attempts) == (False, None, 2)
    assert "timed out after 0.3s" in result.message
    assert 0.6 <= elapsed < 1.5


def test_hanging_server_is_cut_off_when_the_budget_runs_out(hc: HCServer) -> None:
    hc.default = Reply(hang=30)
    began = time.monotonic()
    result = Pinger(parse_check(UUID, hc.url), timeout=10, start_budget=0.6).start()
    elapsed = time.monotonic() - began
    assert not result.ok
    assert result.attempts == 1
    assert elapsed < 0.6 + 0.4  # the 10 s timeout was clamped to the budget left


def test_dead_server_returns_failure_without_raising() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = parse_check(UUID, f"http://127.0.0.1:{port}/")
    result = Pinger(target, budget=1, sleep=lambda s: None).finish(2, "log", SUMMARY)
    assert not result.ok
    assert result.status is None
    assert result.attempts >= 1
    assert "Connection" in result.message


@pytest.mark.parametrize(
    ("status", "explanation"),
    [
        (400, "bad request"),
        (404, "unknown check: check the UUID/slug and ping key, or use create=1"),
        (409, "ambiguous slug: two checks in the project share this slug"),
    ],
)
def test_client_errors_fail_at_once_with_an_explanation(
    hc: HCServer, status: int, explanation: str
) -> None:
    hc.default = Reply(status)
    fake = FakeTime()
    p = Pinger(parse_check(f"{KEY}/backup", hc.url), sleep=fake.sleep, clock=fake.clock)
    result = p.start()
    assert (result.ok, result.status, result.attempts) == (False, status, 1)
    assert explanation in result.message
    assert len(hc.requests) == 1
    assert fake.sleeps == []


def test_redirects_are_not_followed_because_they_would_drop_the_body(hc: HCServer) -> None:
    hc.script(Reply(301, headers={"Location": f"{hc.url}elsewhere"}))
    result = pinger(hc).finish(0, "log", SUMMARY)
    assert not result.ok
    assert result.status == 301
    assert "redirected" in result.message
    assert len(hc.requests) == 1


def test_failed_ping_logs_a_warning_without_the_ping_key(hc: HCServer) -> None:
    hc.default = Reply(404)
    with structlog.testing.capture_logs() as logs:
        result = pinger(hc, f"{KEY}/backup").start()
    [event] = [e for e in logs if e["event"] == "ping_failed"]
    assert event["check"] == "…/backup"
    assert event["status"] == 404
    assert event["host"] == hc.url.split("/")[2]
    assert KEY not in repr(logs)
    assert KEY not in result.message
    assert f"start ping to …/backup at {hc.url.split('/')[2]}: HTTP 404" in result.message


# --- addressing --------------------------------------------------------------------


def test_ping_key_and_slug_with_create_build_the_url(hc: HCServer) -> None:
    p = Pinger(parse_check(f"{KEY}/db-backup", hc.url, create=True))
    p.start()
    p.finish(0, "", SUMMARY)
    start, final = hc.requests
    assert start.path == f"/{KEY}/db-backup/start"
    assert final.path == f"/{KEY}/db-backup/0"
    assert start.query == {"create": "1", "rid": p.rid}


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [
        ("start", "/start"),
        ("success", ""),
        ("fail", "/fail"),
        ("log", "/log"),
        ("0", "/0"),
        ("7", "/7"),
        (255, "/255"),
    ],
)
def test_send_kinds_map_to_paths(hc: HCServer, kind: str, suffix: str) -> None:
    assert pinger(hc).send(kind, b"hello").ok
    [request] = hc.requests
    assert request.path == f"/{UUID}{suffix}"
    assert request.body == b"hello"


@pytest.mark.parametrize("kind", ["256", "-1", "bogus", ""])
def test_unknown_kind_is_a_config_error(hc: HCServer, kind: str) -> None:
    with pytest.raises(ConfigError):
        pinger(hc).send(kind)
    assert hc.requests == []


def test_script_ping_sends_no_rid_unless_given(hc: HCServer) -> None:
    target = parse_check(UUID, hc.url)
    assert ping(target, "success", "all good").ok
    assert ping(target, "fail", rid="r-1").ok
    first, second = hc.requests
    assert first.query == {}
    assert first.body == b"all good"
    assert second.path == f"/{UUID}/fail"
    assert second.rid == "r-1"


@pytest.mark.parametrize(
    ("spec", "base", "url", "label"),
    [
        (UUID, "https://hc-ping.com/", f"https://hc-ping.com/{UUID}", "5b8c1d2e…"),
        (UUID.upper(), "https://hc-ping.com", f"https://hc-ping.com/{UUID}", "5b8c1d2e…"),
        (UUID, "http://127.0.0.1:8000/ping", f"http://127.0.0.1:8000/ping/{UUID}", "5b8c1d2e…"),
        (f"https://hc-ping.com/{UUID}", "", f"https://hc-ping.com/{UUID}", "5b8c1d2e…"),
        (f"http://hc.lan:8000/ping/{UUID}/", "", f"http://hc.lan:8000/ping/{UUID}", "5b8c1d2e…"),
        (f"{KEY}/db", "https://hc-ping.com/", f"https://hc-ping.com/{KEY}/db", "…/db"),
        (f"https://hc.lan/ping/{KEY}/db", "", f"https://hc.lan/ping/{KEY}/db", "…/db"),
    ],
)
def test_parse_check_accepts_uuid_url_and_key_slug(
    spec: str, base: str, url: str, label: str
) -> None:
    target = parse_check(spec, base)
    assert (target.url, target.label, target.create) == (url, label, False)


def test_ping_url_with_create_query_turns_create_on() -> None:
    target = parse_check(f"https://hc-ping.com/{KEY}/db?create=1")
    assert target.create
    assert target.url == f"https://hc-ping.com/{KEY}/db"


def test_target_repr_hides_the_ping_key() -> None:
    target = parse_check(f"{KEY}/db")
    assert KEY not in repr(target)
    assert KEY not in target.label
    assert isinstance(target, PingTarget)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "not a check",
        "key/slug/extra",
        "https://hc-ping.com/",
        "https://hc-ping.com/just-one",
        f"https://hc-ping.com/{UUID}/start",
        f"https://hc-ping.com/{UUID}?foo=1",
        "ftp://hc-ping.com/x/y",
    ],
)
def test_parse_check_rejects_garbage_with_a_one_line_fix(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_check(spec)
    assert "\n" not in str(info.value)
    assert "(" in str(info.value)


@pytest.mark.parametrize(
    "spec", [f"{KEY}/Backup", f"https://hc-ping.com/{KEY}/DB-Backup", f"{KEY}/MySite"]
)
def test_an_upper_case_slug_is_refused_saying_why(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_check(spec)
    assert "upper-case letters; Healthchecks slugs are lower case" in info.value.line()
    assert repr(spec.rsplit("/", 1)[1].lower()) in info.value.line()


def test_create_with_a_uuid_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="slug"):
        parse_check(UUID, create=True)


def test_bad_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="base URL"):
        parse_check(UUID, "hc-ping.com")
