"""Progress on a terminal: a live status line that log lines never garble; none in a pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.project import OPSKIT, write_project

from opskit.engines import DbParams
from opskit.progress import Console, ago, human, human_age

ERASE = "\r\033[K"


def test_a_log_line_erases_the_status_line_and_redraws_it_after() -> None:
    out = io.StringIO()
    ticks = iter([10.0, 12.0, 12.1, 14.0])
    console = Console(out, clock=lambda: next(ticks))
    console.update("restore default", 0, 4 * 1024**2)
    console.update("restore default", 2 * 1024**2, 4 * 1024**2)
    console.write("event=restore_note\n")
    console.update("restore default", 3 * 1024**2, 4 * 1024**2)  # 0.1 s later: not redrawn
    console.update("restore default", 4 * 1024**2, 4 * 1024**2)
    console.update("restore default", 4 * 1024**2, 4 * 1024**2, True)
    text = out.getvalue()
    status = "restore default: 2.0 MB of 4.0 MB (50%), 1.0 MB/s, 2 s"
    assert text.count(status) == 2  # drawn, then redrawn under the log line
    assert f"{status}{ERASE}event=restore_note\n{status}" in text
    assert "3.0 MB" not in text
    assert "4.0 MB of 4.0 MB (100%), 1.0 MB/s, 4 s" in text
    assert text.endswith(ERASE)  # the status line is gone when the stream ends


def run_on_a_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run a command with stderr on a pseudo-terminal and return its status and what it drew."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_backup_restore_and_verify_show_progress_on_a_terminal_and_none_in_a_pipe(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    adapter_for(sqlite_db).populate()
    site = write_project(tmp_path / "project", {"default": sqlite_db})
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["OPSKIT_PROGRESS_DELAY"] = "0"  # a small test database is done within the usual 0.5 s
    status, drawn = run_on_a_terminal([str(OPSKIT), "backup"], site, env)
    assert status == 0, drawn
    assert re.search(r"dump default: [\d.]+ [KM]B, [\d.]+ [KMG]?B/s, \d+ s", drawn)
    # Every log line starts on a clean line: the status line was erased before it.
    for line in drawn.split("\n"):
        if "dump default:" in line and "dump_started" in line:
            assert ERASE in line.split("dump_started")[0]

    status, drawn = run_on_a_terminal([str(OPSKIT), "restore", "--yes"], site, env)
    assert status == 0, drawn
    # Restore progress counts the archive read, so the total is the archive's size.
    size = (site / "db_backups" / "latest.sqlite3.zst").stat().st_size
    assert f"of {human(size)} (100%)" in drawn
    assert re.search(r"restore default: [\d.]+ [KM]B of [\d.]+ [KM]B \(100%\)", drawn)

    status, drawn = run_on_a_terminal([str(OPSKIT), "verify"], site, env)
    assert status == 0, drawn
    assert re.search(r"verify [\w.-]+: [\d.]+ KB of [\d.]+ KB \(100%\)", drawn)

    piped = subprocess.run(
        [str(OPSKIT), "backup"], cwd=site, env=env, capture_output=True, text=True, check=False
    )
    assert piped.returncode == 0
    assert "\r" not in piped.stderr
    assert "dump default:" not in piped.stderr


@pytest.mark.parametrize(
    ("n", "said"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KB"),
        (5 * 1024**3, "5.0 GB"),
        (3 * 1024**5, "3072.0 TB"),
    ],
)
def test_sizes_read_the_same_in_every_command(n: int, said: str) -> None:
    assert human(n) == said


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (None, "?"),
        (-121, "in the future"),
        (-60, "0m ago"),  # a clock a little behind another host's
        (359, "5m ago"),
        (3 * 3600 + 1800, "3h ago"),
        (6 * 86400 + 7200, "6d ago"),
    ],
)
def test_an_archives_age_reads_the_same_in_the_list_and_on_the_page(
    seconds: int | None, said: str
) -> None:
    assert ago(seconds) == said


def test_the_checks_say_lengths_of_time_with_one_decimal_past_an_hour() -> None:
    assert [human_age(s) for s in (2700, 26 * 3600, 3.5 * 86400)] == ["45m", "26.0h", "3.5d"]
