"""Running a command like runitor: output passed through, tail kept, status and pings right."""

from __future__ import annotations

import io
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hcserver import HCServer

from opskit import __version__, proc
from opskit.cron.jobs import job_of
from opskit.healthchecks.ping import parse_check
from opskit.healthchecks.run import RunOptions, run_monitored

UUID = "5b8c1d2e-3f40-4a51-8b62-7c9d0e1f2a3b"
KEY = "Xq3vT9bLmN2pR7sK4wYz1A"
PY = sys.executable


@pytest.fixture
def hc() -> Iterator[HCServer]:
    with HCServer() as server:
        yield server


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def passthrough(argv: list[str], **kwargs: Any) -> tuple[proc.Finished, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    finished = proc.passthrough(argv, out=out, err=err, **kwargs)
    return finished, out.getvalue(), err.getvalue()


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more: connection refused


# --- proc.passthrough --------------------------------------------------------------------


def test_stdout_and_stderr_go_to_their_own_streams_and_the_tail_holds_both() -> None:
    finished, out, err = passthrough(sh("echo to-out; echo to-err >&2; exit 3"))
    assert (finished.status, out, err) == (3, b"to-out\n", b"to-err\n")
    assert b"to-out" in finished.tail
    assert b"to-err" in finished.tail
    assert finished.started
    assert not finished.timed_out
    assert finished.reason == ""


def test_the_tail_is_bounded_while_all_output_is_passed_through() -> None:
    script = "import sys; sys.stdout.write(''.join(f'line {i:06}\\n' for i in range(100000)))"
    finished, out, _ = passthrough([PY, "-c", script], keep=1000)
    assert len(out) == 100000 * 12
    assert len(finished.tail) == 1000
    assert finished.tail == out[-1000:]
    assert finished.tail.endswith(b"line 099999\n")


def test_a_program_killed_by_a_signal_exits_128_plus_the_signal_like_a_shell() -> None:
    finished, _, _ = passthrough(sh("kill -9 $$"))
    assert finished.status == 137
    assert finished.reason == "killed by SIGKILL"


def test_a_missing_program_is_127_and_one_that_cannot_run_is_126(tmp_path: Path) -> None:
    missing, _, _ = passthrough([str(tmp_path / "no-such-program")])
    assert (missing.status, missing.started) == (127, False)
    assert missing.reason.endswith("no-such-program: command not found")
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    refused, _, _ = passthrough([str(script)])
    assert (refused.status, refused.started) == (126, False)
    assert "Permission denied" in refused.reason


def test_a_timeout_stops_the_program_and_its_children_and_exits_124() -> None:
    began = time.monotonic()
    finished, out, _ = passthrough(sh("echo started; sleep 30 & wait"), timeout=0.5)
    assert time.monotonic() - began < 5  # the backgrounded sleep died too: the pipes closed
    assert (finished.status, finished.timed_out) == (124, True)
    assert finished.reason == "timed out after 0.5 s: sent SIGTERM"
    assert out == b"started\n"


def test_a_program_that_ignores_sigterm_gets_sigkill_after_the_grace() -> None:
    began = time.monotonic()
    script = "trap '' TERM; echo ready; sleep 30"  # the ignored TERM is inherited by sleep
    finished, _, _ = passthrough(sh(script), timeout=0.3, kill_after=0.3)
    assert time.monotonic() - began < 5
    assert finished.status == 124
    assert finished.reason == "timed out after 0.3 s: sent SIGTERM, then SIGKILL 0.3 s later"


def test_a_background_child_holding_the_pipes_does_not_hold_up_the_end() -> None:
    began = time.monotonic()
    finished, _, _ = passthrough(sh("sleep 4 & echo parent done"))
    assert time.monotonic() - began < 3.5
    assert finished.status == 0
    assert finished.tail == b"parent done\n"


def test_a_closed_stdout_of_ours_never_stops_the_program() -> None:
    class Closed(io.BytesIO):
        def write(self, data: object) -> int:
            raise BrokenPipeError

    err = io.BytesIO()
    script = "for i in 1 2 3; do echo line $i; done; echo fine >&2"
    finished = proc.passthrough(sh(script), out=Closed(), err=err)
    assert finished.status == 0
    assert finished.tail.endswith(b"line 3\nfine\n")
    assert err.getvalue() == b"fine\n"


def test_the_program_inherits_the_environment() -> None:
    finished, out, _ = passthrough(sh('echo "$OPSKIT_T_VALUE"'), env={"OPSKIT_T_VALUE": "x1"})
    assert out == b"x1\n"
    assert finished.status == 0


# --- runner.run_monitored ------------------------------------------------------------------


def monitored(
    argv: list[str], hc: HCServer | None, spec: str = UUID, **options: Any
) -> tuple[int, bytes, str]:
    target = parse_check(spec, hc.url) if hc is not None else None
    out, err = io.BytesIO(), io.BytesIO()
    opts = RunOptions(**{"job": "nightly", **options})
    result = run_monitored(argv, target, opts, out=out, err=err, stdin=None)
    return result.exit_status, out.getvalue(), result.ping_problem


def test_start_then_exit_status_pings_share_a_rid_and_carry_the_tail_and_summary(
    hc: HCServer,
) -> None:
    status, out, problem = monitored(sh("echo working; echo warned >&2; exit 3"), hc)
    assert (status, out, problem) == (3, b"working\n", "")
    start, final = hc.requests
    assert (start.path, final.path) == (f"/{UUID}/start", f"/{UUID}/3")
    assert start.rid
    assert start.rid == final.rid
    body = final.body.decode()
    assert body.index("working") < body.index("warned") < body.index("--- opskit summary ---")
    for line in ("job: nightly", f"host: {socket.gethostname()}", "command: sh"):
        assert line in body
    assert "exit_status: 3" in body
    assert f"opskit: {__version__}" in body
    assert "duration: " in body


def test_the_ping_body_names_the_program_but_never_its_arguments(hc: HCServer) -> None:
    monitored(["env", "OPSKIT_T_TOKEN=tok-123-secret", "true"], hc)
    body = hc.requests[-1].body.decode()
    assert "command: env" in body
    assert "tok-123-secret" not in body


def test_the_ping_key_is_redacted_from_the_commands_output(hc: HCServer) -> None:
    status, out, _ = monitored(["echo", f"key is {KEY}"], hc, spec=f"{KEY}/nightly")
    assert status == 0
    assert KEY.encode() in out
    assert hc.requests[-1].path == f"/{KEY}/nightly/0"
    body = hc.requests[-1].body.decode()
    assert KEY not in body
    assert "key is ********" in body


def test_a_command_that_cannot_start_pings_its_status_127_with_the_reason(hc: HCServer) -> None:
    status, _, _ = monitored(["opskit-no-such-command"], hc)
    assert status == 127
    assert [r.path for r in hc.requests] == [f"/{UUID}/start", f"/{UUID}/127"]
    assert "reason: opskit-no-such-command: command not found" in hc.requests[-1].body.decode()


def test_a_timeout_pings_124_with_the_reason(hc: HCServer) -> None:
    status, _, _ = monitored(sh("echo begun; sleep 30"), hc, timeout=0.3)
    assert status == 124
    body = hc.requests[-1].body.decode()
    assert hc.requests[-1].path == f"/{UUID}/124"
    assert "begun" in body
    assert "reason: timed out after 0.3 s: sent SIGTERM" in body


def test_a_dead_server_never_changes_the_commands_status() -> None:
    target = parse_check(UUID, dead_url())
    for script, expected in (("exit 0", 0), ("exit 5", 5)):
        options = RunOptions("nightly", ping_budget=0.5)
        result = run_monitored(sh(script), target, options, out=io.BytesIO(), err=io.BytesIO())
        assert result.exit_status == expected
        assert "ConnectionRefusedError" in result.ping_problem


def test_strict_ping_fails_a_successful_run_whose_ping_failed_but_keeps_a_failure() -> None:
    target = parse_check(UUID, dead_url())
    for script, expected in (("exit 0", 1), ("exit 5", 5)):
        options = RunOptions("nightly", strict_ping=True, ping_budget=0.5)
        result = run_monitored(sh(script), target, options, out=io.BytesIO(), err=io.BytesIO())
        assert result.exit_status == expected


def test_without_a_check_the_command_still_runs_and_nothing_is_pinged(hc: HCServer) -> None:
    status, out, problem = monitored(sh("echo alone; exit 2"), None)
    assert (status, out, problem) == (2, b"alone\n", "")
    assert hc.requests == []


def test_a_server_body_limit_keeps_the_summary_and_the_end_of_the_output() -> None:
    with HCServer(body_limit=400) as hc:
        script = "import sys; sys.stdout.write('x' * 50000 + 'THE-END\\n')"
        monitored([PY, "-c", script], hc)
        body = hc.requests[-1].body
    assert len(body) <= 400
    assert b"THE-END" in body
    assert b"exit_status: 0" in body


def test_the_environment_reaches_the_command_unchanged(hc: HCServer) -> None:
    os.environ["OPSKIT_T_PASSED"] = "yes"
    try:
        _, out, _ = monitored(sh('echo "$OPSKIT_T_PASSED"'), hc)
    finally:
        del os.environ["OPSKIT_T_PASSED"]
    assert out == b"yes\n"


@pytest.mark.parametrize(
    ("args", "job"),
    [
        (("backup", "--database", "default"), "backup"),
        (("run", "--", "/srv/bin/reports.sh", "--job", "x"), "reports.sh"),
        (("run", "--timeout", "60", "--hc", "k/s", "rsync", "-a", "/a", "/b"), "rsync"),
        (("run", "--job", "nightly-export", "--", "export"), "nightly-export"),
        (("run", "--job=sync", "true"), "sync"),
        (("run",), "run"),
    ],
)
def test_the_job_of_a_crontab_line_is_what_it_pings_as(args: tuple[str, ...], job: str) -> None:
    assert job_of(args) == job
