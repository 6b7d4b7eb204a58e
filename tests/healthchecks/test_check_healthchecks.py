"""`opskit check --healthchecks` reads the checks through the API, judges them, writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hcserver import HCServer
from test_check import check, lines, make_site

API_KEY = "a" * 32
READ_KEY = "r" * 32
PING_KEY = "Xq3vT9bLmN2pR7sK4wYz1A"
CRONTAB = "0 1 * * * opskit clear-sessions\n0 2 * * * opskit backup\n"


@pytest.fixture
def hc() -> Iterator[HCServer]:
    with HCServer(api_key=API_KEY, read_key=READ_KEY, ping_key=PING_KEY) as server:
        yield server


def site_for(tmp_path: Path, hc: HCServer, key: str = READ_KEY, extra: str = "") -> Path:
    settings = (
        f"{{'HEALTHCHECKS': {{'backup': '{PING_KEY}/site-backup',"
        f" 'clear-sessions': '{PING_KEY}/site-clear-sessions'{extra}}},"
        f" 'HEALTHCHECKS_PING_URL': '{hc.url}', 'HEALTHCHECKS_API_URL': '{hc.api_url}',"
        f" 'HEALTHCHECKS_API_KEY': '{key}'}}"
    )
    site = make_site(tmp_path, settings)
    (site / "crontab.txt").write_text(CRONTAB)
    return site


def add_up(hc: HCServer, job: str, schedule: str, **fields: object) -> dict[str, object]:
    check: dict[str, object] = {
        "name": f"site {job}",
        "slug": f"site-{job}",
        "schedule": schedule,
        "tz": "Etc/UTC",
    }
    check.update({"status": "up", "methods": "POST", "tags": "opskit site", **fields})
    return hc.add(**check)


def audit(site: Path, hc: HCServer) -> dict[str, tuple[str, str]]:
    before = len(hc.requests)
    done = check(site, "check", "--only", "healthchecks", "--healthchecks")
    assert [(r.method, r.api) for r in hc.requests[before:]] == [("GET", True)]  # no write
    return lines(done)


def test_checks_that_match_the_crontab_and_are_up_pass(tmp_path: Path, hc: HCServer) -> None:
    add_up(hc, "clear-sessions", "0 1 * * *")
    add_up(hc, "backup", "0 2 * * *")
    found = audit(site_for(tmp_path, hc), hc)
    assert found == {
        "healthchecks:clear-sessions": ("OK", "site-clear-sessions is up, grace 3600 s"),
        "healthchecks:backup": ("OK", "site-backup is up, grace 3600 s"),
    }


def test_drift_down_missing_and_paused_checks(tmp_path: Path, hc: HCServer) -> None:
    add_up(hc, "clear-sessions", "0 5 * * *", status="down")  # drifted and down
    add_up(hc, "backup", "0 2 * * *", tz="US/Eastern", status="paused")
    found = audit(site_for(tmp_path, hc, extra=", 'restore': 'k/site-restore'"), hc)
    status, text = found["healthchecks:clear-sessions"]
    assert status == "FAIL"
    assert "schedule '0 5 * * *' -> '0 1 * * *'" in text
    assert "fix: run opskit hc sync" in text
    status, text = found["healthchecks:backup"]
    assert status == "FAIL"
    assert "tz 'US/Eastern' -> 'Etc/UTC'" in text
    assert found["healthchecks:restore"][0] == "FAIL"
    assert "no check site-restore in Healthchecks" in found["healthchecks:restore"][1]

    hc.check("site-clear-sessions")["schedule"] = "0 1 * * *"
    hc.check("site-backup")["tz"] = "UTC"  # another name for the same zone: no drift
    hc.add(name="restore", slug="site-restore", status="down")
    found = audit(site_for(tmp_path / "again", hc, extra=", 'restore': 'k/site-restore'"), hc)
    assert found["healthchecks:clear-sessions"][0] == "FAIL"
    assert "site-clear-sessions is down" in found["healthchecks:clear-sessions"][1]
    assert found["healthchecks:backup"][0] == "WARN"
    assert "paused: Healthchecks will not alert" in found["healthchecks:backup"][1]
    assert found["healthchecks:restore"][0] == "FAIL"


def test_a_new_check_warns_that_it_cannot_alert_yet(tmp_path: Path, hc: HCServer) -> None:
    add_up(hc, "clear-sessions", "0 1 * * *")
    add_up(hc, "backup", "0 2 * * *", status="new")
    found = audit(site_for(tmp_path, hc), hc)
    assert found["healthchecks:backup"][0] == "WARN"
    assert "never been pinged" in found["healthchecks:backup"][1]


def test_a_run_longer_than_half_the_grace_warns(tmp_path: Path, hc: HCServer) -> None:
    add_up(hc, "clear-sessions", "0 1 * * *", grace=600, last_duration=400)
    add_up(hc, "backup", "0 2 * * *", grace=600)
    site = site_for(tmp_path, hc)
    (site / "logs").mkdir(exist_ok=True)
    event = {"event": "job_finished", "job": "backup", "errors": 0, "duration": 900.0}
    (site / "logs" / "opskit.json.log").write_text(json.dumps(event) + "\n")
    found = audit(site, hc)
    status, text = found["healthchecks:clear-sessions"]
    assert status == "WARN"
    assert "a recent run took 400 s, more than half its grace of 600 s" in text
    status, text = found["healthchecks:backup"]
    assert status == "FAIL"
    assert "has a grace of 600 s; its runs need 1800 s" in text


def test_without_an_api_key_nothing_is_read_and_it_warns(tmp_path: Path, hc: HCServer) -> None:
    found = lines(
        check(site_for(tmp_path, hc, key=""), "check", "--only", "healthchecks", "--healthchecks")
    )
    assert found["healthchecks"][0] == "WARN"
    assert "no API key" in found["healthchecks"][1]
    assert hc.requests == []


def test_a_refused_api_key_fails_without_showing_it(tmp_path: Path, hc: HCServer) -> None:
    site = site_for(tmp_path, hc, key="w" * 32)
    done = check(site, "check", "--only", "healthchecks", "--healthchecks")
    status, text = lines(done)["healthchecks"]
    assert status == "FAIL"
    assert "refused the API key" in text
    assert "w" * 32 not in done.stdout + done.stderr


def test_check_with_hc_pings_the_table_as_its_body(tmp_path: Path, hc: HCServer) -> None:
    add_up(hc, "clear-sessions", "0 1 * * *")
    add_up(hc, "backup", "0 2 * * *", status="paused")
    site = site_for(tmp_path, hc)
    done = check(
        site, "check", "--only", "healthchecks", "--healthchecks", "--hc", f"{hc.url}{UUID}"
    )
    assert done.returncode == 0
    final = hc.pings[-1]
    assert final.path == f"/{UUID}/0"
    body = final.body.decode()
    assert body.startswith("OK    healthchecks:clear-sessions: site-clear-sessions is up")
    assert "WARN  healthchecks:backup: site-backup is paused" in body
    assert "--- opskit summary ---" in body


UUID = "5bf68b1e-8a94-4bb2-9a5b-1c8e0b6f3a11"
