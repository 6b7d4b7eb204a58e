"""`opskit hc sync` against the test suite's Healthchecks server (v3 API) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hcserver import HCServer
from support.clock import FakeTime
from support.project import run_opskit, write_project

from opskit.cron import timezones
from opskit.cron.install import ScheduleLine, build_entries
from opskit.engines import DbParams
from opskit.errors import ConfigError
from opskit.healthchecks import api as hcapi
from opskit.healthchecks import sync as hcsync
from opskit.monitoring import durations as runs

KEY = secrets.token_urlsafe(24)[:32]  # Healthchecks API keys are 32 characters
CRONTAB = "0 1 * * * opskit clear-sessions\n@daily opskit backup\n30 3 * * 0 opskit backup\n"
UUID = "5b8c1d2e-3f40-4a51-8b62-7c9d0e1f2a3b"


@pytest.fixture
def api() -> Iterator[HCServer]:
    with HCServer(api_key=KEY) as server:
        yield server


def methods(api: HCServer) -> list[str]:
    return [method for method, _ in api.api_calls()]


def posted(api: HCServer) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in api.requests if r.api and r.method == "POST" and r.body]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    db = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name="db.sqlite3")
    folder = write_project(tmp_path / "site", {"default": db})
    (folder / "crontab.txt").write_text(CRONTAB)
    return folder


def sync(
    site: Path,
    api: HCServer,
    *args: str,
    key: str = KEY,
    before: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    tz: str = "Europe/Riga",
    url: str = "",
) -> tuple[int, str, str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}, **(env or {})}
    env.update(OPSKIT_HEALTHCHECKS_API_URL=url or api.api_url, OPSKIT_HEALTHCHECKS_API_KEY=key)
    zone = ("--tz", tz) if tz else ()
    done = run_opskit(*before, "hc", "sync", *zone, *args, cwd=site, env=env)
    return done.returncode, done.stdout, done.stderr


def states(stdout: str) -> dict[str, str]:
    """Map each table row's check slug to its state."""
    rows = [line.split() for line in stdout.splitlines()[1:]]
    return {row[2]: row[1] for row in rows}


def log_runs(site: Path, job: str, *durations: float) -> None:
    """Record finished runs in the project's JSON log, as the jobs do."""
    (site / "logs").mkdir(exist_ok=True)
    with (site / "logs" / "opskit.json.log").open("a") as fh:
        for seconds in durations:
            event = {"event": "job_finished", "job": job, "errors": 0, "duration": seconds}
            fh.write(json.dumps(event) + "\n")


def test_first_sync_creates_one_check_per_job_with_the_crontab_schedule(
    site: Path, api: HCServer
) -> None:
    code, out, err = sync(site, api)
    assert code == 0, err
    assert states(out) == {
        "site-clear-sessions": "created",
        "site-backup": "created",
        "site-backup-2": "created",
    }
    assert "3 created" in err
    first, *_ = posted(api)
    assert first == {
        "name": "site clear-sessions",
        "slug": "site-clear-sessions",
        "schedule": "0 1 * * *",
        "tz": "Europe/Riga",
        "methods": "POST",
        "unique": ["slug"],
        "grace": 3600,
        "channels": "*",
        "tags": "opskit site",
        "desc": "opskit clear-sessions of project site, created by 'opskit hc sync'",
    }
    assert api.check("site-backup")["schedule"] == "0 0 * * *"  # @daily spelled out
    assert api.check("site-backup-2")["schedule"] == "30 3 * * 0"
    assert methods(api) == ["GET", "POST", "POST", "POST"]


def test_a_second_sync_changes_nothing_and_a_dry_run_then_exits_0(
    site: Path, api: HCServer
) -> None:
    sync(site, api)
    before = len(api.requests)
    code, out, err = sync(site, api)
    assert code == 0, err
    assert set(states(out).values()) == {"unchanged"}
    assert sync(site, api, "--dry-run")[0] == 0
    assert methods(api)[-2:] == ["GET", "GET"]
    assert len(api.requests) == before + 2


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("US/Eastern", "America/New_York"),
        ("Europe/Kiev", "Europe/Kyiv"),
        ("Asia/Calcutta", "Asia/Kolkata"),
    ],
)
def test_alias_time_zones_converge_in_one_sync(
    site: Path, api: HCServer, given: str, stored: str
) -> None:
    code, _, err = sync(site, api, tz=given)
    assert code == 0, err
    assert {c["tz"] for c in api.checks} == {stored}
    code, out, _ = sync(site, api, "--dry-run", tz=given)
    assert code == 0
    assert set(states(out).values()) == {"unchanged"}
    assert f"{stored}" in out


def test_a_check_stored_under_the_current_name_matches_an_alias_without_a_write(
    site: Path, api: HCServer
) -> None:
    (site / "crontab.txt").write_text("0 2 * * * opskit backup\n")
    api.add(
        name="site backup",
        slug="site-backup",
        schedule="0 2 * * *",
        tz="Europe/Kyiv",
        methods="POST",
        tags="opskit site",
    )
    code, out, _ = sync(site, api, tz="Europe/Kiev")
    assert code == 0
    assert states(out) == {"site-backup": "unchanged"}
    assert methods(api) == ["GET"]


def test_a_zone_the_server_does_not_know_is_refused_with_one_line(
    site: Path, api: HCServer
) -> None:
    code, out, err = sync(site, api, tz="America/Coyhaique")
    assert code == 1
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(
        "opskit: error: the Healthchecks server does not know the time zone 'America/Coyhaique'"
    )
    assert "pass --tz" in line
    assert api.checks == []


def test_the_cron_zone_comes_from_the_localtime_link_as_the_server_names_it(
    tmp_path: Path,
) -> None:
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/US/Eastern")
    zone = timezones.system_zone(link, tmp_path / "none")
    assert zone == "US/Eastern"
    assert timezones.for_server(zone) == "America/New_York"
    assert timezones.same_zone("US/Eastern", "America/New_York")
    assert not timezones.same_zone("Europe/Riga", "Europe/Tallinn")


def test_drift_is_reported_by_a_dry_run_and_fixed_by_a_sync(site: Path, api: HCServer) -> None:
    sync(site, api)
    backup = api.check("site-backup")
    backup.update(schedule="0 5 * * *", tz="UTC")
    code, out, _ = sync(site, api, "--dry-run")
    assert code == 1
    assert states(out)["site-backup"] == "drifted"
    assert "schedule '0 5 * * *' -> '0 0 * * *'; tz 'UTC' -> 'Europe/Riga'" in out

    before = len(posted(api))
    code, out, _ = sync(site, api)
    assert code == 0
    assert states(out)["site-backup"] == "updated"
    (update,) = posted(api)[before:]
    assert update == {
        "name": "site backup",
        "slug": "site-backup",
        "schedule": "0 0 * * *",
        "tz": "Europe/Riga",
        "methods": "POST",
        "unique": ["slug"],
    }
    assert (backup["schedule"], backup["tz"]) == ("0 0 * * *", "Europe/Riga")


def test_a_check_that_takes_get_pings_too_is_set_to_post_only(site: Path, api: HCServer) -> None:
    (site / "crontab.txt").write_text("0 2 * * * opskit backup\n")
    api.add(name="site backup", slug="site-backup", schedule="0 2 * * *", tz="Europe/Riga")
    code, out, _ = sync(site, api)
    assert code == 0
    assert "methods '' -> 'POST'" in out
    assert api.check("site-backup")["methods"] == "POST"


def test_a_dry_run_on_an_empty_project_lists_missing_checks_and_writes_nothing(
    site: Path, api: HCServer
) -> None:
    code, out, err = sync(site, api, "--dry-run")
    assert code == 3
    assert set(states(out).values()) == {"missing"}
    assert "(dry run): 3 missing" in err
    assert methods(api) == ["GET"]
    assert api.checks == []


def test_only_checks_with_opskits_tags_can_be_orphans(site: Path, api: HCServer) -> None:
    api.add(name="site restore", slug="site-restore", tags="opskit site")
    api.add(name="site reports", slug="site-reports")  # made by hand: not opskit's
    api.add(name="site-blog backup", slug="site-blog-backup", tags="opskit site-blog")
    code, out, _ = sync(site, api)
    assert code == 1
    found = states(out)
    assert found["site-restore"] == "orphan"
    assert "site-reports" not in found
    assert "site-blog-backup" not in found
    assert "--prune pause or --prune delete" in out


def test_a_paused_orphan_is_no_longer_a_failure(site: Path, api: HCServer) -> None:
    api.add(name="site restore", slug="site-restore", tags="opskit site", status="paused")
    code, out, _ = sync(site, api, "--dry-run")
    assert states(out)["site-restore"] == "paused"
    assert code == 3  # the three missing checks, not the paused orphan


@pytest.mark.parametrize("mode", ["pause", "delete"])
def test_prune_acts_on_orphans_only(site: Path, api: HCServer, mode: str) -> None:
    orphan = api.add(name="site restore", slug="site-restore", tags="opskit site")
    mine = api.add(name="site reports", slug="site-reports")
    code, out, _ = sync(site, api, "--prune", mode, "--dry-run")
    assert f"would {mode} it" in out
    assert orphan in api.checks
    assert orphan["status"] == "new"
    code, out, _ = sync(site, api, "--prune", mode)
    assert code == 0
    assert states(out)["site-restore"] == {"pause": "paused", "delete": "deleted"}[mode]
    if mode == "pause":
        assert orphan["status"] == "paused"
    else:
        assert orphan not in api.checks
    assert mine in api.checks
    assert mine["status"] == "new"


def test_grace_is_set_from_the_jobs_recorded_durations(site: Path, api: HCServer) -> None:
    log_runs(site, "backup", 400.0, 1200.0, 900.0)  # the longest: 20 minutes
    log_runs(site, "clear-sessions", 2.0)
    code, out, err = sync(site, api)
    assert code == 0, err
    assert api.check("site-backup")["grace"] == 2400  # twice the longest
    assert api.check("site-backup-2")["grace"] == 2400
    assert api.check("site-clear-sessions")["grace"] == runs.GRACE_FLOOR
    log_runs(site, "backup", *[700.0] * 7)  # faster now: 1500 s would do, 2400 still fits
    code, out, _ = sync(site, api, "--dry-run")
    assert code == 0
    assert set(states(out).values()) == {"unchanged"}
    log_runs(site, "backup", 3000.0)  # much slower: the grace must grow
    code, out, _ = sync(site, api)
    assert "grace 2400 -> 6000 s" in out
    assert api.check("site-backup")["grace"] == 6000


def test_a_backup_without_logs_takes_its_durations_from_the_manifests(tmp_path: Path) -> None:
    folder = tmp_path / "db_backups"
    (folder / "reports").mkdir(parents=True)
    for where, slot, seconds in [(folder, "1-Monday", 500), (folder / "reports", "1-Monday", 400)]:
        archive = where / f"{slot}.sql.zst"
        archive.write_bytes(b"x")
        manifest = {"engine": "sqlite", "sha256": "0" * 64, "size": 1, "duration": seconds}
        (where / f"{slot}.sql.zst.json").write_text(json.dumps(manifest))
    assert runs.from_manifests(folder) == [900.0]
    assert runs.grace_for([900.0]) == 1800


def test_grace_given_is_enforced_and_without_runs_a_hand_tuned_one_is_kept(
    site: Path, api: HCServer
) -> None:
    api.add(
        name="site backup", slug="site-backup", schedule="0 0 * * *", tz="Europe/Riga",
        methods="POST", tags="opskit site",
    )  # fmt: skip
    api.checks[0]["grace"] = 7200  # tuned by hand in the web UI
    code, out, _ = sync(site, api)
    assert code == 0
    assert states(out)["site-backup"] == "unchanged"
    assert api.checks[0]["grace"] == 7200

    code, out, _ = sync(site, api, "--grace", "600")
    assert code == 0
    assert states(out)["site-backup"] == "updated"
    assert "grace 7200 -> 600 s" in out
    assert all(c["grace"] == 600 for c in api.checks)


def test_a_grace_below_a_minute_is_a_usage_error(site: Path, api: HCServer) -> None:
    code, _, _ = sync(site, api, "--grace", "30")
    assert code == 64
    assert api.requests == []


def test_a_long_project_name_is_shortened_to_the_servers_limits(site: Path, api: HCServer) -> None:
    name = "the-" + "very-" * 30 + "long-project"
    code, out, err = sync(site, api, "--name", name)
    assert code == 0, err
    assert all(len(c["name"]) <= 100 and len(c["slug"]) <= 100 for c in api.checks)
    assert len({c["slug"] for c in api.checks}) == 3
    assert all(c["name"].endswith(("clear-sessions", "backup", "backup-2")) for c in api.checks)
    code, out, _ = sync(site, api, "--name", name, "--dry-run")
    assert code == 0
    assert set(states(out).values()) == {"unchanged"}


def test_an_api_url_at_the_site_root_finds_the_api(site: Path, api: HCServer) -> None:
    code, _, err = sync(site, api, url=api.url)
    assert code == 0, err
    assert {path for _, path in api.api_calls()} == {"/api/v3/checks/"}


def test_an_api_url_that_is_not_the_api_says_so(site: Path, api: HCServer) -> None:
    code, _, err = sync(site, api, url=api.url + "dashboard/api/v3/")
    assert code == 1
    assert "HTTP 404 (no Healthchecks API there)" in err
    assert "HEALTHCHECKS_API_URL" in err
    with pytest.raises(ConfigError, match="older API version"):
        hcapi.api_base("https://hc.example.com/api/v1/")
    assert hcapi.api_base("https://hc.example.com/hc") == "https://hc.example.com/hc/api/v3/"


def test_a_line_whose_hc_names_another_check_syncs_that_check(site: Path, api: HCServer) -> None:
    code_check = api.add(name="hourly check", slug="", schedule="5 * * * *", tz="UTC")
    (site / "crontab.txt").write_text(
        "0 2 * * * opskit backup --hc pingkey/nightly-db\n"
        f"0 * * * * opskit check --hc {code_check['uuid']}\n"
        f"0 3 * * * opskit run --hc {UUID} -- true\n"
    )
    code, out, err = sync(site, api)
    assert states(out) == {"nightly-db": "created", code_check["uuid"][:8] + "…": "updated"} | {
        UUID[:8] + "…": "failed"
    }
    assert code == 1
    assert "not in this API key's project" in out
    assert api.check("nightly-db")["schedule"] == "0 2 * * *"
    assert (code_check["schedule"], code_check["name"]) == ("0 * * * *", "hourly check")
    assert "note" not in err  # each line pings the check synced for it


def test_a_wrong_api_key_fails_with_one_clear_line_and_never_shows_the_key(
    site: Path, api: HCServer
) -> None:
    wrong = secrets.token_hex(16)
    code, out, err = sync(site, api, key=wrong)
    assert code == 1
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("opskit: error: the Healthchecks API refused the API key")
    assert "wrong api key" in line
    assert "OPSKIT_HEALTHCHECKS_API_KEY" in line
    assert wrong not in err
    assert methods(api) == ["GET"]


def test_a_missing_api_key_is_a_one_line_error(site: Path, api: HCServer) -> None:
    code, _, err = sync(site, api, key="")
    assert code == 1
    assert err.strip() == (
        "opskit: error: no Healthchecks API key "
        "(set OPSKIT_HEALTHCHECKS_API_KEY to the project's read-write API key)"
    )
    assert api.requests == []


def test_the_api_key_never_reaches_output_or_logs(site: Path, api: HCServer) -> None:
    outputs = [sync(site, api, before=("-v",)), sync(site, api, "--dry-run")]
    outputs.append(sync(site, api, tz="X/Y"))
    api.checks[0]["schedule"] = "1 1 * * *"
    outputs.append(sync(site, api))
    for _, out, err in outputs:
        assert KEY not in out
        assert KEY not in err
    assert all(code in (0, 1) for code, _, _ in outputs)
    for log in (site / "logs").glob("*"):
        assert KEY not in log.read_text()


def test_an_unknown_time_zone_is_refused_before_any_request(site: Path, api: HCServer) -> None:
    code, _, err = sync(site, api, tz="Mars/Olympus")
    assert code == 1
    assert "unknown time zone 'Mars/Olympus'" in err
    assert api.requests == []


def test_a_server_error_on_one_check_fails_that_row_only(site: Path, api: HCServer) -> None:
    (site / "crontab.txt").write_text("0 1 * * * opskit clear-sessions\n0 2 * * * opskit backup\n")
    api.add(name="site backup", slug="site-backup", schedule="0 2 * * *", tz="Europe/Riga")
    api.add(name="site backup", slug="site-backup", schedule="0 2 * * *", tz="Europe/Riga")
    code, out, _ = sync(site, api)
    assert code == 1
    assert states(out) == {"site-clear-sessions": "created", "site-backup": "failed"}
    assert "2 checks share this slug" in out


def test_notes_say_which_jobs_will_not_ping_the_check_made_for_them(
    site: Path, api: HCServer
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


def test_a_job_configured_with_another_slug_gets_that_check(site: Path, api: HCServer) -> None:
    (site / "crontab.txt").write_text("0 2 * * * opskit backup\n")
    code, out, _ = sync(site, api, env={"OPSKIT_HC_BACKUP": "pingkey/db-nightly"})
    assert code == 0
    assert states(out) == {"db-nightly": "created"}


def test_run_lines_get_a_check_named_after_the_job_they_ping_as(site: Path, api: HCServer) -> None:
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


def test_wanted_checks_number_repeated_jobs_and_expand_macros() -> None:
    lines = [line("@hourly", "backup"), line("0 2  * * *", "backup"), line("@weekly", "check")]
    wanted = hcsync.wanted_checks(lines, project="My.Site", tz="UTC", grace=None)
    assert [(w.job, w.slug, w.name, w.schedule) for w in wanted] == [
        ("backup", "my-site-backup", "My.Site backup", "0 * * * *"),
        ("backup-2", "my-site-backup-2", "My.Site backup-2", "0 2 * * *"),
        ("check", "my-site-check", "My.Site check", "0 0 * * 0"),
    ]


def test_each_lines_cron_tag_and_check_name_the_same_job() -> None:
    """Repeated jobs, run lines and their --job: the tag and the check agree on every line."""
    lines = [
        line("0 1 * * *", "backup"),
        line("0 2 * * *", "run", "--timeout", "600", "--", "/srv/bin/export.sh", "--full"),
        line("0 3 * * *", "run", "--job", "report", "--", "/srv/bin/report.sh"),
        line("0 4 * * *", "backup", "--database", "other"),
        line("0 5 * * *", "run", "--", "/srv/bin/export.sh", "--delta"),
        line("0 6 * * *", "run", "--job=nightly report", "true"),
    ]
    entries = build_entries(
        lines,
        opskit_bin="/srv/venv/bin/opskit",
        project_dir="/srv/site",
        settings="site.settings",
        log_dir="/srv/site/logs",
        project="site",
    )
    wanted = hcsync.wanted_checks(lines, project="site", tz="UTC", grace=None)
    jobs = ["backup", "export.sh", "report", "backup-2", "export.sh-2", "nightly report"]
    assert [w.job for w in wanted] == [e.job for e in entries] == jobs
    assert [e.tag.removeprefix("opskit:site:") for e in entries] == [
        "backup",
        "export.sh",
        "report",
        "backup-2",
        "export.sh-2",
        "nightly-report",  # a tag holds no space
    ]
    assert [w.slug for w in wanted] == [f"site-{hcsync.slugify(job)}" for job in jobs]


def test_a_period_check_with_the_same_slug_counts_as_drift() -> None:
    want = hcsync.Wanted("backup", "site-backup", "site backup", "0 2 * * *", "UTC", None)
    check = {"name": "site backup", "slug": "site-backup", "timeout": 86400, "grace": 3600}
    assert hcsync.differences(check, want) == [
        "is a period check (every 86400 s), not a cron schedule"
    ]


def test_the_grace_rule_has_a_floor_rounds_up_and_tolerates_twice() -> None:
    assert runs.grace_for([]) is None
    assert runs.grace_for([10.0]) == 600
    assert runs.grace_for([301.0, 100.0]) == 900
    assert runs.grace_fits(900, 900)
    assert runs.grace_fits(1800, 900)
    assert not runs.grace_fits(899, 900)
    assert not runs.grace_fits(1801, 900)


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
    assert timezones.system_zone(tmp_path / "etc" / "localtime", tmp_path / "none") == expected
    ZoneInfo(expected)


def test_a_copied_localtime_falls_back_to_etc_timezone(tmp_path: Path) -> None:
    localtime, timezone = tmp_path / "localtime", tmp_path / "timezone"
    localtime.write_bytes(b"TZif")
    timezone.write_text("Europe/Riga\n")
    assert timezones.system_zone(localtime, timezone) == "Europe/Riga"
    timezone.unlink()
    with pytest.raises(ConfigError, match="pass --tz"):
        timezones.system_zone(localtime, timezone)


def test_no_localtime_at_all_means_utc(tmp_path: Path) -> None:
    assert timezones.system_zone(tmp_path / "missing", tmp_path / "also-missing") == "UTC"


def test_a_copied_localtime_still_gives_cron_show_the_zones_rules(tmp_path: Path) -> None:
    """cron show needs no name for the zone: the rules of a copied /etc/localtime do."""
    localtime = tmp_path / "localtime"
    localtime.write_bytes(Path("/usr/share/zoneinfo/Europe/Riga").read_bytes())
    zone = timezones.local_zone(localtime)
    assert datetime(2024, 7, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=3)
    assert datetime(2024, 1, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=2)


def test_the_api_url_must_be_http_and_the_key_present() -> None:
    with pytest.raises(ConfigError, match="not an http"):
        hcapi.Api("ftp://example.com/api/v3/", KEY)
    with pytest.raises(ConfigError, match="no Healthchecks API key"):
        hcapi.Api("https://healthchecks.io/api/v3/", "")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_api_is_retried_with_the_pings_backoff_then_fails_once() -> None:
    fake = FakeTime()
    url = f"http://127.0.0.1:{closed_port()}/api/v3/"
    client = hcapi.Api(url, KEY, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(hcapi.ApiError, match="cannot reach GET") as raised:
        client.list_checks()
    assert fake.sleeps == [0.5, 1.0]  # three attempts, the same waits as a ping's retries
    assert raised.value.hint == "try again later"


def test_an_api_call_stops_retrying_before_its_time_bound() -> None:
    fake = FakeTime()
    url = f"http://127.0.0.1:{closed_port()}/api/v3/"
    client = hcapi.Api(url, KEY, attempts=10, budget=2.0, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(hcapi.ApiError, match="cannot reach"):
        client.list_checks()
    assert fake.sleeps == [0.5, 1.0]  # a third wait (2 s) would pass the 2 s bound
