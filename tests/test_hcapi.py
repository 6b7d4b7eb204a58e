"""`opskit hc sync` against a fake Healthchecks management API v3 on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import run_opskit, write_project

from opskit import hcapi
from opskit.cron import ScheduleLine
from opskit.engines import DbParams
from opskit.errors import ConfigError

KEY = secrets.token_urlsafe(24)[:32]  # Healthchecks API keys are 32 characters
CRONTAB = "0 1 * * * opskit clear-sessions\n@daily opskit backup\n30 3 * * 0 opskit backup\n"
FIELDS = ("name", "slug", "schedule", "tz", "grace", "channels", "tags", "desc")


class FakeApi:
    """GET and POST /api/v3/checks/ with Healthchecks' key check and upsert semantics."""

    def __init__(self, key: str = KEY) -> None:
        self.key = key
        self.checks: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v3/"

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, **fields: Any) -> dict[str, Any]:
        """Put a check on the server, as if made in the web UI."""
        check = {"name": "", "slug": "", "tags": "", "desc": "", "grace": 3600, "channels": ""}
        check.update(schedule="* * * * *", tz="UTC", uuid=str(uuid.uuid4()), status="new")
        check.update(fields)
        self.checks.append(check)
        return check

    def methods(self) -> list[str]:
        return [method for method, _ in self.requests]

    def posted(self) -> list[dict[str, Any]]:
        return [body for method, body in self.requests if method == "POST"]

    def answer(self, method: str, key: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        body = json.loads(raw) if raw else {}
        with self.lock:
            self.requests.append((method, body))
            if key != self.key:
                return 401, {"error": "wrong api key" if len(key) == 32 else "missing api key"}
            if method == "GET":
                return 200, {"checks": [dict(c) for c in self.checks]}
            return self.upsert(body)

    def upsert(self, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        grace = spec.get("grace", 3600)
        if not isinstance(grace, int) or not 60 <= grace <= 31536000:
            return 400, {"error": "json validation error: grace is too small"}
        if "tz" in spec and spec["tz"] not in ("UTC", "Etc/UTC", "Europe/Riga", "Asia/Tokyo"):
            return 400, {"error": "json validation error: tz is not a valid timezone"}
        if len(str(spec.get("schedule", "* * * * *")).split()) != 5:
            return 400, {"error": "json validation error: schedule is not a valid cron expression"}
        unique = spec.get("unique") or []
        found = None
        if unique and all(field in spec for field in unique):
            matches = [c for c in self.checks if all(c.get(f) == spec[f] for f in unique)]
            found = matches[0] if matches else None
        check = found or self.add()
        for field in FIELDS:
            if field in spec:
                check[field] = spec[field]
        return (200 if found else 201), check

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/api/v3/checks/":
                    status, doc = 404, {"error": "not found"}
                else:
                    status, doc = api.answer(self.command, self.headers.get("X-Api-Key", ""), raw)
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi() as server:
        yield server


@pytest.fixture
def site(tmp_path: Path) -> Path:
    db = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name="db.sqlite3")
    folder = write_project(tmp_path / "site", {"default": db})
    (folder / "crontab.txt").write_text(CRONTAB)
    return folder


def sync(
    site: Path,
    api: FakeApi,
    *args: str,
    key: str = KEY,
    before: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}, **(env or {})}
    env.update(OPSKIT_HEALTHCHECKS_API_URL=api.url, OPSKIT_HEALTHCHECKS_API_KEY=key)
    done = run_opskit(*before, "hc", "sync", "--tz", "Europe/Riga", *args, cwd=site, env=env)
    return done.returncode, done.stdout, done.stderr


def states(stdout: str) -> dict[str, str]:
    """Map each table row's check slug to its state."""
    rows = [line.split() for line in stdout.splitlines()[1:]]
    return {row[2]: row[1] for row in rows}


def test_first_sync_creates_one_check_per_job_with_the_crontab_schedule(
    site: Path, api: FakeApi
) -> None:
    code, out, err = sync(site, api)
    assert code == 0, err
    assert states(out) == {
        "site-clear-sessions": "created",
        "site-backup": "created",
        "site-backup-2": "created",
    }
    assert "3 created" in err
    first, *_ = api.posted()
    assert first == {
        "name": "site clear-sessions",
        "slug": "site-clear-sessions",
        "schedule": "0 1 * * *",
        "tz": "Europe/Riga",
        "unique": ["slug"],
        "grace": 3600,
        "channels": "*",
        "tags": "opskit site",
        "desc": "opskit clear-sessions of project site, created by 'opskit hc sync'",
    }
    by_slug = {c["slug"]: c for c in api.checks}
    assert by_slug["site-backup"]["schedule"] == "0 0 * * *"  # @daily spelled out
    assert by_slug["site-backup-2"]["schedule"] == "30 3 * * 0"
    assert api.methods() == ["GET", "POST", "POST", "POST"]


def test_a_second_sync_changes_nothing(site: Path, api: FakeApi) -> None:
    sync(site, api)
    api.requests.clear()
    code, out, err = sync(site, api)
    assert code == 0, err
    assert set(states(out).values()) == {"unchanged"}
    assert api.methods() == ["GET"]


def test_drift_is_reported_by_a_dry_run_and_fixed_by_a_sync(site: Path, api: FakeApi) -> None:
    sync(site, api)
    backup = next(c for c in api.checks if c["slug"] == "site-backup")
    backup.update(schedule="0 5 * * *", tz="UTC")
    api.requests.clear()

    code, out, _ = sync(site, api, "--dry-run")
    assert code == 1
    assert states(out)["site-backup"] == "drifted"
    assert "schedule '0 5 * * *' -> '0 0 * * *'; tz 'UTC' -> 'Europe/Riga'" in out
    assert api.methods() == ["GET"]

    code, out, _ = sync(site, api)
    assert code == 0
    assert states(out)["site-backup"] == "updated"
    (update,) = api.posted()
    assert update == {
        "name": "site backup",
        "slug": "site-backup",
        "schedule": "0 0 * * *",
        "tz": "Europe/Riga",
        "unique": ["slug"],
    }
    assert (backup["schedule"], backup["tz"]) == ("0 0 * * *", "Europe/Riga")


def test_a_dry_run_on_an_empty_project_lists_missing_checks_and_writes_nothing(
    site: Path, api: FakeApi
) -> None:
    code, out, err = sync(site, api, "--dry-run")
    assert code == 3
    assert set(states(out).values()) == {"missing"}
    assert "(dry run): 3 missing" in err
    assert api.methods() == ["GET"] and api.checks == []


def test_checks_of_this_project_without_a_crontab_job_are_reported(
    site: Path, api: FakeApi
) -> None:
    api.add(name="site restore", slug="site-restore")
    api.add(name="site-blog backup", slug="site-blog-backup")  # another project's
    api.add(name="Website", slug="website")
    code, out, _ = sync(site, api)
    assert code == 1
    found = states(out)
    assert found["site-restore"] == "orphan"
    assert "site-blog-backup" not in found and "website" not in found
    assert "delete or pause the check" in out


def test_grace_is_set_on_creation_kept_afterwards_and_enforced_when_given(
    site: Path, api: FakeApi
) -> None:
    api.add(name="site backup", slug="site-backup", schedule="0 0 * * *", tz="Europe/Riga")
    api.checks[0]["grace"] = 7200  # tuned by hand in the web UI
    code, out, _ = sync(site, api)
    assert code == 0 and states(out)["site-backup"] == "unchanged"
    assert api.checks[0]["grace"] == 7200

    code, out, _ = sync(site, api, "--grace", "600")
    assert code == 0 and states(out)["site-backup"] == "updated"
    assert "grace 7200 -> 600 s" in out
    assert all(c["grace"] == 600 for c in api.checks)


def test_a_grace_below_a_minute_is_a_usage_error(site: Path, api: FakeApi) -> None:
    code, _, _ = sync(site, api, "--grace", "30")
    assert code == 64 and api.requests == []


def test_a_wrong_api_key_fails_with_one_clear_line_and_never_shows_the_key(
    site: Path, api: FakeApi
) -> None:
    wrong = secrets.token_hex(16)
    code, out, err = sync(site, api, key=wrong)
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("opskit: error: the Healthchecks API refused the API key")
    assert "wrong api key" in line and "OPSKIT_HEALTHCHECKS_API_KEY" in line
    assert wrong not in err
    assert api.methods() == ["GET"]


def test_a_missing_api_key_is_a_one_line_error(site: Path, api: FakeApi) -> None:
    code, _, err = sync(site, api, key="")
    assert code == 1
    assert err.strip() == (
        "opskit: error: no Healthchecks API key "
        "(set OPSKIT_HEALTHCHECKS_API_KEY to the project's read-write API key)"
    )
    assert api.requests == []


def test_the_api_key_never_reaches_output_or_logs(site: Path, api: FakeApi) -> None:
    outputs = [sync(site, api, before=("-v",)), sync(site, api, "--dry-run")]
    outputs.append(sync(site, api, "--tz", "X/Y"))
    api.checks[0]["schedule"] = "1 1 * * *"
    outputs.append(sync(site, api))
    for _, out, err in outputs:
        assert KEY not in out and KEY not in err
    assert all(code in (0, 1) for code, _, _ in outputs)
    for log in (site / "logs").glob("*"):
        assert KEY not in log.read_text()


def test_an_unknown_time_zone_is_refused_before_any_request(site: Path, api: FakeApi) -> None:
    code, _, err = sync(site, api, "--tz", "Mars/Olympus")
    assert code == 1 and "unknown time zone 'Mars/Olympus'" in err
    assert api.requests == []


def test_a_server_error_on_one_check_fails_that_row_only(site: Path, api: FakeApi) -> None:
    (site / "crontab.txt").write_text("0 1 * * * opskit clear-sessions\n0 2 * * * opskit backup\n")
    api.add(name="site backup", slug="site-backup", schedule="0 2 * * *", tz="Europe/Riga")
    api.add(name="site backup", slug="site-backup", schedule="0 2 * * *", tz="Europe/Riga")
    code, out, _ = sync(site, api)
    assert code == 1
    assert states(out) == {"site-clear-sessions": "created", "site-backup": "failed"}
    assert "2 checks share this slug" in out


def test_notes_say_which_jobs_will_not_ping_the_check_made_for_them(
    site: Path, api: FakeApi
) -> None:
    _, _, err = sync(site, api, env={"OPSKIT_HC_BACKUP": "pingkey/site-backup"})
    notes = [line for line in err.splitlines() if line.startswith("opskit: note: ")]
    assert notes == [
        "opskit: note: job 'clear-sessions' pings no check yet: set"
        " OPSKIT['HEALTHCHECKS']['clear-sessions'] to '<ping key>/site-clear-sessions'"
        " or the check's UUID",
        f"opskit: note: {site / 'crontab.txt'} line 3 pings the 'backup' check, not"
        " site-backup-2: add '--hc <ping key>/site-backup-2' to it",
    ]
    (site / "crontab.txt").write_text("0 1 * * * opskit backup --hc k/site-backup\n")
    _, _, err = sync(site, api)
    assert "note" not in err


def test_run_lines_get_a_check_named_after_the_job_they_ping_as(site: Path, api: FakeApi) -> None:
    (site / "crontab.txt").write_text(
        "15 4 * * * opskit run --timeout 600 -- /srv/bin/export.sh --full\n"
        "45 4 * * * opskit run --job mirror -- rsync -a /srv/media /mnt/media\n"
    )
    code, out, err = sync(site, api, env={"OPSKIT_HC_EXPORT_SH": "k/site-export-sh"})
    assert code == 0, err
    assert states(out) == {"site-export-sh": "created", "site-mirror": "created"}
    notes = [line for line in err.splitlines() if line.startswith("opskit: note: ")]
    assert notes == [
        "opskit: note: job 'mirror' pings no check yet: set OPSKIT['HEALTHCHECKS']['mirror']"
        " to '<ping key>/site-mirror' or the check's UUID"
    ]
    assert {c["name"] for c in api.checks} == {"site export.sh", "site mirror"}


# --- the pieces ----------------------------------------------------------------------------


def line(schedule: str, *args: str) -> ScheduleLine:
    return ScheduleLine(Path("crontab.txt"), 1, schedule, args)


def test_wanted_checks_number_repeated_jobs_like_the_cron_tags_and_expand_macros() -> None:
    lines = [line("@hourly", "backup"), line("0 2  * * *", "backup"), line("@weekly", "check")]
    wanted = hcapi.wanted_checks(lines, project="My.Site", tz="UTC", grace=None)
    assert [(w.job, w.slug, w.name, w.schedule) for w in wanted] == [
        ("backup", "my-site-backup", "My.Site backup", "0 * * * *"),
        ("backup-2", "my-site-backup-2", "My.Site backup-2", "0 2 * * *"),
        ("check", "my-site-check", "My.Site check", "0 0 * * 0"),
    ]


def test_a_period_check_with_the_same_slug_counts_as_drift() -> None:
    want = hcapi.Wanted("backup", "site-backup", "site backup", "0 2 * * *", "UTC", None)
    check = {"name": "site backup", "slug": "site-backup", "timeout": 86400, "grace": 3600}
    assert hcapi.differences(check, want) == [
        "is a period check (every 86400 s), not a cron schedule"
    ]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/usr/share/zoneinfo/Europe/Riga", "Europe/Riga"),
        ("../usr/share/zoneinfo/Asia/Tokyo", "Asia/Tokyo"),
        ("/usr/share/zoneinfo/posix/America/New_York", "America/New_York"),
        ("/usr/share/zoneinfo/Etc/UTC", "Etc/UTC"),
    ],
)
def test_cron_time_zone_comes_from_the_localtime_link(
    tmp_path: Path, target: str, expected: str
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "localtime").symlink_to(target)
    assert hcapi.zone_name(tmp_path / "etc" / "localtime", tmp_path / "none") == expected
    ZoneInfo(expected)


def test_a_copied_localtime_falls_back_to_etc_timezone(tmp_path: Path) -> None:
    localtime, timezone = tmp_path / "localtime", tmp_path / "timezone"
    localtime.write_bytes(b"TZif")
    timezone.write_text("Europe/Riga\n")
    assert hcapi.zone_name(localtime, timezone) == "Europe/Riga"
    timezone.unlink()
    with pytest.raises(ConfigError, match="pass --tz"):
        hcapi.zone_name(localtime, timezone)


def test_no_localtime_at_all_means_utc(tmp_path: Path) -> None:
    assert hcapi.zone_name(tmp_path / "missing", tmp_path / "also-missing") == "UTC"


def test_the_api_url_must_be_http_and_the_key_present() -> None:
    with pytest.raises(ConfigError, match="not an http"):
        hcapi.Api("ftp://example.com/api/v3/", KEY)
    with pytest.raises(ConfigError, match="no Healthchecks API key"):
        hcapi.Api("https://healthchecks.io/api/v3/", "")
