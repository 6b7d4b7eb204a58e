"""`opskit ping` and `opskit run` from the command line, against a real ping server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hcserver import HCServer, Reply
from support.project import OPSKIT, run_opskit, write_project

from opskit.cli import cli
from opskit.engines import DbParams
from opskit.healthchecks.run import env_name

UUID = "5b8c1d2e-3f40-4a51-8b62-7c9d0e1f2a3b"
OTHER = "0e1f2a3b-3f40-4a51-8b62-7c9d5b8c1d2e"
RID = "9a7b5c3d-1e2f-4a5b-8c6d-0e1f2a3b4c5d"
# Variables a developer's shell might set; every test starts without them.
CLEAN = {
    "OPSKIT_HC_PING": None,
    "OPSKIT_HC_BACKUP": None,
    "OPSKIT_HC_SH": None,
    "OPSKIT_HEALTHCHECKS_PING_URL": None,
    "OPSKIT_STRICT_PING": None,
    "DJANGO_SETTINGS_MODULE": None,
}


@pytest.fixture
def hc() -> Iterator[HCServer]:
    with HCServer() as server:
        yield server


def opskit(*args: str, env: Mapping[str, str | None] | None = None, stdin: str = "") -> Result:
    """Run opskit in this process, outside any Django project."""
    with tempfile.TemporaryDirectory() as nowhere:
        argv = ["--project-dir", nowhere, *args]
        return CliRunner().invoke(cli, argv, env={**CLEAN, **(env or {})}, input=stdin)


def real_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env.update(extra)
    return env


# --- opskit ping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [("start", "/start"), ("success", ""), ("fail", "/fail"), ("log", "/log"), ("0", "/0")],
)
def test_ping_kinds_go_to_their_healthchecks_paths(hc: HCServer, kind: str, suffix: str) -> None:
    result = opskit("ping", kind, "--hc", UUID, "--ping-url", hc.url)
    assert result.exit_code == 0, result.output
    (request,) = hc.requests
    assert (request.method, request.path, request.rid) == ("POST", f"/{UUID}{suffix}", None)


@pytest.mark.parametrize("kind", ["finish", "256", "1.5", ""])
def test_a_bad_ping_kind_is_a_usage_error_64(hc: HCServer, kind: str) -> None:
    result = opskit("ping", kind, "--hc", UUID, "--ping-url", hc.url)
    assert result.exit_code == 64
    assert "start, success, fail, log or 0-255" in result.output
    assert hc.requests == []


def test_a_bad_check_or_run_id_is_a_usage_error_64(hc: HCServer) -> None:
    assert opskit("ping", "success", "--hc", "not a check").exit_code == 64
    bad_rid = opskit("ping", "start", "--hc", UUID, "--ping-url", hc.url, "--rid", "42")
    assert bad_rid.exit_code == 64
    assert "UUID" in bad_rid.output
    assert hc.requests == []


def test_ping_sends_the_run_id_given(hc: HCServer) -> None:
    assert opskit("ping", "start", "--hc", UUID, "--ping-url", hc.url, "--rid", RID).exit_code == 0
    assert hc.requests[0].rid == RID


def test_ping_data_comes_from_text_a_file_or_stdin(hc: HCServer, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("first line\nlast line\n")
    args = ("ping", "log", "--hc", UUID, "--ping-url", hc.url, "--data")
    assert opskit(*args, "plain text").exit_code == 0
    assert opskit(*args, f"@{log}").exit_code == 0
    assert opskit(*args, "-", stdin="from stdin\n").exit_code == 0
    assert [r.body for r in hc.requests] == [
        b"plain text",
        b"first line\nlast line\n",
        b"from stdin\n",
    ]


def test_a_big_data_file_sends_its_end(hc: HCServer, tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_bytes(b"x" * 1_000_000 + b"\nTHE END\n")
    assert (
        opskit("ping", "fail", "--hc", UUID, "--ping-url", hc.url, "--data", f"@{log}").exit_code
        == 0
    )
    body = hc.requests[0].body
    assert len(body) == 10_000
    assert body.endswith(b"THE END\n")


def test_an_unreadable_data_file_is_a_usage_error(hc: HCServer, tmp_path: Path) -> None:
    result = opskit("ping", "log", "--hc", UUID, "--ping-url", hc.url, "--data", "@/nonexistent")
    assert result.exit_code == 64
    assert "cannot read /nonexistent" in result.output


def test_a_failed_ping_exits_1_and_says_why(hc: HCServer) -> None:
    hc.script(404)
    result = opskit("ping", "success", "--hc", UUID, "--ping-url", hc.url)
    assert result.exit_code == 1
    assert "unknown check" in result.stderr


def test_an_unreachable_server_exits_1_within_max_time() -> None:
    began = time.monotonic()
    dead = ("--hc", UUID, "--ping-url", "http://127.0.0.1:1/")
    result = opskit("ping", "success", *dead, "--max-time", "1")
    assert result.exit_code == 1
    assert "ConnectionRefusedError" in result.stderr
    assert time.monotonic() - began < 5


def test_the_check_and_base_url_can_come_from_the_environment(hc: HCServer) -> None:
    env = {"OPSKIT_HC_PING": UUID, "OPSKIT_HEALTHCHECKS_PING_URL": hc.url}
    assert opskit("ping", "success", env=env).exit_code == 0
    env = {"OPSKIT_HC_BACKUP": OTHER, "OPSKIT_HEALTHCHECKS_PING_URL": hc.url}
    assert opskit("ping", "start", "--job", "backup", env=env).exit_code == 0
    assert [r.path for r in hc.requests] == [f"/{UUID}", f"/{OTHER}/start"]


def test_the_hc_flag_beats_the_environment(hc: HCServer) -> None:
    env = {"OPSKIT_HC_PING": OTHER, "OPSKIT_HEALTHCHECKS_PING_URL": hc.url}
    assert opskit("ping", "success", "--hc", UUID, env=env).exit_code == 0
    assert hc.requests[0].path == f"/{UUID}"


def test_a_full_ping_url_needs_no_base_url(hc: HCServer) -> None:
    assert opskit("ping", "fail", "--hc", f"{hc.url}{UUID}").exit_code == 0
    assert hc.requests[0].path == f"/{UUID}/fail"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OPSKIT_STRICT_PING", "maybe", "OPSKIT_STRICT_PING='maybe' is not yes or no"),
        (
            "OPSKIT_HEALTHCHECKS_CREATE",
            "sure",
            "OPSKIT_HEALTHCHECKS_CREATE='sure' is not yes or no",
        ),
        (
            "OPSKIT_HEALTHCHECKS_TIMEOUT",
            "soon",
            "OPSKIT_HEALTHCHECKS_TIMEOUT='soon' is not a positive number of seconds",
        ),
        (
            "OPSKIT_HEALTHCHECKS_START_BUDGET",
            "0",
            "OPSKIT_HEALTHCHECKS_START_BUDGET='0' is not a positive number of seconds",
        ),
        (
            "OPSKIT_HEALTHCHECKS_BUDGET",
            "-3",
            "OPSKIT_HEALTHCHECKS_BUDGET='-3' is not a positive number of seconds",
        ),
    ],
)
def test_outside_a_project_a_bad_ping_variable_is_one_line_naming_it_and_no_ping(
    hc: HCServer, name: str, value: str, message: str
) -> None:
    """ping reads its variables through Config outside a project too: a typo is not ignored."""
    result = opskit("ping", "success", "--hc", f"{hc.url}{UUID}", env={name: value})
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"opskit: error: {message}")
    assert f"e.g. {name}=" in line or "use one of" in line
    assert hc.requests == []


def test_outside_a_project_run_with_a_bad_ping_variable_runs_unmonitored_naming_it(
    hc: HCServer,
) -> None:
    """Monitoring never stops the command; the warning says which variable to fix."""
    env = {"OPSKIT_HEALTHCHECKS_TIMEOUT": "soon"}
    result = opskit("run", "--hc", f"{hc.url}{UUID}", "--", "sh", "-c", "echo ran", env=env)
    assert result.exit_code == 0
    assert result.stdout == "ran\n"
    assert "not monitored: OPSKIT_HEALTHCHECKS_TIMEOUT='soon' is not a positive" in result.stderr
    assert hc.requests == []


def test_outside_a_project_the_ping_variables_still_apply(hc: HCServer) -> None:
    """OPSKIT_HEALTHCHECKS_CREATE and OPSKIT_STRICT_PING count without any project."""
    slug = "Xq3vT9bLmN2pR7sK4wYz1A/nightly"
    env = {"OPSKIT_HEALTHCHECKS_PING_URL": hc.url, "OPSKIT_HEALTHCHECKS_CREATE": "yes"}
    assert opskit("ping", "success", "--hc", slug, env=env).exit_code == 0
    (request,) = hc.requests
    assert (request.path, request.query.get("create")) == (f"/{slug}", "1")
    dead = {"OPSKIT_HEALTHCHECKS_PING_URL": "http://127.0.0.1:1/", "OPSKIT_STRICT_PING": "on"}
    budget = ("--ping-budget", "0.3")
    assert opskit("run", "--hc", UUID, *budget, "--", "true", env=dead).exit_code == 1


def test_without_a_check_outside_a_project_ping_says_what_to_set() -> None:
    result = opskit("ping", "success")
    assert result.exit_code == 1
    assert "no check for job 'ping'" in result.stderr
    assert "OPSKIT_HC_PING" in result.stderr


def test_ping_with_hc_does_not_set_django_up(hc: HCServer, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom opskit.cli import main\n"
        f"sys.argv = ['opskit', 'ping', 'success', '--hc', '{UUID}', '--ping-url', '{hc.url}']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n"
        "    print(exc.code, 'django' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=real_env(), capture_output=True, text=True
    )
    assert done.stdout.split() == ["0", "False"], done.stderr
    assert len(hc.requests) == 1


def test_ping_reads_the_check_from_the_project_settings(hc: HCServer, tmp_path: Path) -> None:
    db = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name="db.sqlite3")
    opskit_settings = f"{{'HEALTHCHECKS': {{'ping': '{UUID}', 'backup': '{OTHER}'}}, "
    opskit_settings += f"'HEALTHCHECKS_PING_URL': '{hc.url}'}}"
    site = write_project(tmp_path / "site", {"default": db}, opskit=opskit_settings)
    assert run_opskit("ping", "start", cwd=site, env=real_env()).returncode == 0
    done = run_opskit("ping", "fail", "--job", "backup", cwd=site, env=real_env())
    assert done.returncode == 0, done.stderr
    assert [r.path for r in hc.requests] == [f"/{UUID}/start", f"/{OTHER}/fail"]


def test_env_name_maps_job_names_to_variables() -> None:
    assert env_name("clear-sessions") == "OPSKIT_HC_CLEAR_SESSIONS"
    assert env_name("backup.sh") == "OPSKIT_HC_BACKUP_SH"


# --- opskit run --------------------------------------------------------------------------


def test_run_passes_output_through_and_exits_with_the_commands_status(hc: HCServer) -> None:
    script = "echo to-out; echo to-err >&2; exit 3"
    result = opskit("run", "--hc", UUID, "--ping-url", hc.url, "--", "sh", "-c", script)
    assert result.exit_code == 3
    assert result.stdout == "to-out\n"
    assert "to-err\n" in result.stderr
    start, final = hc.requests
    assert (start.path, final.path) == (f"/{UUID}/start", f"/{UUID}/3")
    assert start.rid == final.rid
    assert b"to-out\nto-err\n" in final.body
    assert b"job: sh" in final.body


def test_run_needs_no_double_dash_before_the_command(hc: HCServer) -> None:
    result = opskit("run", "--hc", UUID, "--ping-url", hc.url, "ls", "-la", "/")
    assert result.exit_code == 0
    assert hc.requests[-1].path == f"/{UUID}/0"


def test_run_without_a_command_is_a_usage_error() -> None:
    assert opskit("run", "--hc", UUID).exit_code == 64


def test_run_of_a_missing_command_exits_127_and_pings_why(hc: HCServer) -> None:
    result = opskit("run", "--hc", UUID, "--ping-url", hc.url, "--", "opskit-t-missing")
    assert result.exit_code == 127
    assert "opskit run: opskit-t-missing: command not found" in result.stderr
    assert hc.requests[-1].path == f"/{UUID}/127"
    assert b"command not found" in hc.requests[-1].body


def test_run_of_a_file_that_is_not_executable_exits_126(hc: HCServer, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\necho never\n")
    result = opskit("run", "--hc", UUID, "--ping-url", hc.url, "--", str(script))
    assert result.exit_code == 126
    assert hc.requests[-1].path == f"/{UUID}/126"


def test_run_timeout_exits_124_and_pings_the_reason(hc: HCServer) -> None:
    began = time.monotonic()
    args = ("run", "--hc", UUID, "--ping-url", hc.url, "--timeout", "0.5", "--", "sleep", "30")
    result = opskit(*args)
    assert result.exit_code == 124
    assert time.monotonic() - began < 5
    assert "timed out after 0.5 s" in result.stderr
    assert hc.requests[-1].path == f"/{UUID}/124"
    assert b"reason: timed out after 0.5 s: sent SIGTERM" in hc.requests[-1].body


def test_run_looks_the_check_up_by_job_name_in_the_environment(hc: HCServer) -> None:
    env = {"OPSKIT_HC_SH": UUID, "OPSKIT_HC_NIGHTLY": OTHER, "OPSKIT_HEALTHCHECKS_PING_URL": hc.url}
    assert opskit("run", "--", "sh", "-c", "true", env=env).exit_code == 0
    assert opskit("run", "--job", "nightly", "--", "true", env=env).exit_code == 0
    paths = [r.path for r in hc.requests]
    assert paths == [f"/{UUID}/start", f"/{UUID}/0", f"/{OTHER}/start", f"/{OTHER}/0"]
    assert b"job: nightly" in hc.requests[-1].body


def test_run_without_any_check_warns_and_still_runs_the_command() -> None:
    result = opskit("run", "--", "sh", "-c", "echo ran; exit 4")
    assert result.exit_code == 4
    assert result.stdout == "ran\n"
    assert "not monitored: no check for job 'sh'" in result.stderr


def test_a_failed_ping_never_changes_runs_exit_status_unless_strict() -> None:
    dead = ("--hc", UUID, "--ping-url", "http://127.0.0.1:1/", "--ping-budget", "0.3")
    assert opskit("run", *dead, "--", "true").exit_code == 0
    assert opskit("run", *dead, "--", "sh", "-c", "exit 6").exit_code == 6
    strict = opskit("run", *dead, "--", "true", env={"OPSKIT_STRICT_PING": "1"})
    assert strict.exit_code == 1
    assert opskit("--strict-ping", "run", *dead, "--", "true").exit_code == 1


def test_run_with_a_bad_hc_flag_is_a_usage_error_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = opskit("run", "--hc", "nonsense", "--", "touch", str(marker))
    assert result.exit_code == 64
    assert not marker.exists()


def start_real_run(hc: HCServer, *command: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [str(OPSKIT), "run", "--hc", UUID, "--ping-url", hc.url, "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=real_env(),
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"  # the command runs and its handlers are set
    return process


def test_sigterm_to_opskit_reaches_the_command_which_decides_the_exit(hc: HCServer) -> None:
    script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    process = start_real_run(hc, "sh", "-c", script)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 7, err
    assert out == "got-term\n"
    assert hc.requests[-1].path == f"/{UUID}/7"
    assert b"got-term" in hc.requests[-1].body


def test_sigint_to_opskit_stops_the_command_and_exits_130(hc: HCServer) -> None:
    process = start_real_run(hc, "sh", "-c", "echo ready; exec sleep 30")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    assert "killed by SIGINT (opskit received SIGINT and passed it on)" in err
    assert hc.requests[-1].path == f"/{UUID}/130"


def test_a_real_run_redacts_the_ping_key_from_the_body(hc: HCServer) -> None:
    key = "Xq3vT9bLmN2pR7sK4wYz1A"
    done = subprocess.run(
        [str(OPSKIT), "run", "--hc", f"{key}/nightly", "--ping-url", hc.url, "--", "echo", key],
        capture_output=True,
        text=True,
        env=real_env(),
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout == f"{key}\n"
    assert hc.requests[-1].path == f"/{key}/nightly/0"
    assert key.encode() not in hc.requests[-1].body


def test_a_hanging_server_delays_run_by_at_most_the_ping_budget() -> None:
    with HCServer(default=Reply(hang=30)) as hc:
        began = time.monotonic()
        result = opskit("run", "--hc", UUID, "--ping-url", hc.url, "--ping-budget", "1", "true")
        assert result.exit_code == 0
        assert time.monotonic() - began < 5


def test_run_passes_a_piped_stdin_on_to_the_command(hc: HCServer) -> None:
    done = subprocess.run(
        [str(OPSKIT), "run", "--hc", UUID, "--ping-url", hc.url, "--", "cat"],
        input="piped in\n",
        capture_output=True,
        text=True,
        env=real_env(),
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "piped in\n")


def test_run_in_a_project_uses_its_check_and_masks_its_database_passwords(
    hc: HCServer, tmp_path: Path
) -> None:
    password = "pw-run-7Hq2"
    db = DbParams(
        alias="default",
        django_engine="django.db.backends.sqlite3",
        name="db.sqlite3",
        password=password,
    )
    settings = f"{{'HEALTHCHECKS': {{'report': '{UUID}'}}, 'HEALTHCHECKS_PING_URL': '{hc.url}'}}"
    site = write_project(tmp_path / "site", {"default": db}, opskit=settings)
    done = run_opskit("run", "--job", "report", "--", "echo", password, cwd=site, env=real_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{password}\n"  # the terminal sees what the command wrote
    assert [r.path for r in hc.requests] == [f"/{UUID}/start", f"/{UUID}/0"]
    assert password.encode() not in hc.requests[-1].body
    assert b"********" in hc.requests[-1].body


def test_run_sets_a_project_with_media_snapshots_up_as_every_command_does(
    hc: HCServer, tmp_path: Path
) -> None:
    """MEDIA_SNAPSHOTS: True needs MEDIA_ROOT; run reads it through the same bootstrap."""
    db = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name="db.sqlite3")
    settings = (
        f"{{'HEALTHCHECKS': {{'report': '{UUID}'}}, 'HEALTHCHECKS_PING_URL': '{hc.url}',"
        " 'MEDIA_SNAPSHOTS': True}"
    )
    site = write_project(tmp_path / "site", {"default": db}, opskit=settings)
    (site / "media").mkdir()
    with next(site.glob("settings_*.py")).open("a") as fh:
        fh.write(f"MEDIA_ROOT = {str(site / 'media')!r}\n")
    done = run_opskit("run", "--job", "report", "--", "true", cwd=site, env=real_env())
    assert done.returncode == 0, done.stderr
    assert "not monitored" not in done.stderr
    assert [r.path for r in hc.requests] == [f"/{UUID}/start", f"/{UUID}/0"]


def test_run_in_a_broken_project_warns_and_still_runs_the_command(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "manage.py").write_text(
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'no_such_settings')\n"
    )
    done = run_opskit("run", "--", "sh", "-c", "echo ran; exit 3", cwd=site, env=real_env())
    assert (done.returncode, done.stdout) == (3, "ran\n")
    assert "opskit run: warning: not monitored: cannot import settings" in done.stderr


# --- body limits, project ping URLs ---------------------------------------------------------


@pytest.mark.parametrize("limit", [50_000, 3_000])
def test_ping_data_honours_the_limit_the_server_announced_keeping_the_tail(
    tmp_path: Path, limit: int
) -> None:
    log = tmp_path / "job.log"
    log.write_bytes(b"".join(b"line %06d\n" % i for i in range(20_000)) + b"THE END\n")
    env = {"OPSKIT_CACHE_DIR": str(tmp_path / "cache")}
    with HCServer(body_limit=limit) as hc:
        args = ("--hc", UUID, "--ping-url", hc.url)
        assert opskit("ping", "start", *args, env=env).exit_code == 0  # learns the limit
        assert opskit("ping", "fail", *args, "--data", f"@{log}", env=env).exit_code == 0
        sent, kept = hc.requests[-1].body, hc.kept[-1]
    assert len(sent) == limit
    assert sent == kept
    assert sent.endswith(b"line 019999\nTHE END\n")


def test_ping_inside_a_project_uses_its_ping_url_for_a_uuid(hc: HCServer, tmp_path: Path) -> None:
    db = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name="db.sqlite3")
    site = write_project(
        tmp_path / "site", {"default": db}, opskit=f"{{'HEALTHCHECKS_PING_URL': '{hc.url}'}}"
    )
    began = time.monotonic()
    done = run_opskit("ping", "success", "--hc", UUID, cwd=site, env=real_env())
    assert done.returncode == 0, done.stderr
    assert [r.path for r in hc.requests] == [f"/{UUID}"]
    ran = run_opskit("run", "--hc", UUID, "--", "true", cwd=site, env=real_env())
    assert ran.returncode == 0, ran.stderr
    assert [r.path for r in hc.requests][1:] == [f"/{UUID}/start", f"/{UUID}/0"]
    assert time.monotonic() - began < 30


def test_a_failed_ping_names_the_host_it_went_to() -> None:
    dead = ("--hc", UUID, "--ping-url", "http://127.0.0.1:1/", "--max-time", "1")
    result = opskit("ping", "success", *dead)
    assert result.exit_code == 1
    assert "host=127.0.0.1:1 " in result.stderr


def test_run_takes_the_start_and_final_bounds_from_flags_or_the_environment() -> None:
    with HCServer(default=Reply(hang=30)) as hc:
        began = time.monotonic()
        args = ("run", "--hc", UUID, "--ping-url", hc.url)
        result = opskit(*args, "--start-budget", "0.3", "--ping-budget", "0.5", "--", "true")
        assert result.exit_code == 0
        env = {"OPSKIT_HEALTHCHECKS_START_BUDGET": "0.3", "OPSKIT_HEALTHCHECKS_BUDGET": "0.5"}
        assert opskit(*args, "--", "true", env=env).exit_code == 0
    assert time.monotonic() - began < 4
    assert "0.3s bound" in result.stderr
    assert "0.5s bound" in result.stderr


@pytest.mark.parametrize("spec", [f"k/{'Nightly'}", "k/a b", "nonsense"])
def test_ping_and_run_refuse_a_malformed_check_with_the_reason(spec: str) -> None:
    for args in (("ping", "success", "--hc", spec), ("run", "--hc", spec, "--", "true")):
        result = opskit(*args)
        assert result.exit_code == 64, result.output
    assert "upper-case" in opskit("ping", "log", "--hc", "k/Nightly").output
