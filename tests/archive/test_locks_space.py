"""The per-job lock and the free-space check, on their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dbdata import adapter_for

from opskit.archive import locks, space
from opskit.engines import DbParams
from opskit.errors import OpsError


def test_a_second_holder_is_refused_with_the_first_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / ".opskit-backup.lock"
    with (
        locks.hold(path, what="opskit backup of 'default'"),
        pytest.raises(locks.LockBusy) as caught,
        locks.hold(path, what="opskit backup of 'default'"),
    ):
        pass
    assert f"another opskit backup of 'default' is running (pid {os.getpid()})" in str(caught.value)
    assert "--lock-wait" in str(caught.value)


def test_waiting_gives_up_after_the_wait_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    clock = iter(range(100)).__next__
    slept: list[float] = []
    with (
        locks.hold(path, what="job"),
        pytest.raises(locks.LockBusy, match="after waiting 3 s"),
        locks.hold(path, what="job", wait=3, clock=clock, sleep=slept.append),
    ):
        pass
    assert slept  # it did wait before giving up


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from opskit.archive import locks\n"
            f"with locks.hold(__import__('pathlib').Path({str(path)!r}), what='job'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(locks.LockBusy, match=f"pid {holder.pid}"), locks.hold(path, what="job"):
        pass
    holder.kill()
    holder.wait()
    assert path.read_text().split()[0] == str(holder.pid)  # the file stays; the flock died
    with locks.hold(path, what="job"):
        assert path.read_text().split()[0] == str(os.getpid())


def test_space_check_refuses_with_the_numbers(tmp_path: Path) -> None:
    with pytest.raises(OpsError) as caught:
        space.check(tmp_path, 100 * 1024**2, "the previous archive", free=50 * 1024**2)
    message = str(caught.value)
    assert "not enough free space" in message
    assert "50.0 MB free, 110.0 MB needed (the previous archive plus 10%)" in message
    space.check(tmp_path, 100 * 1024**2, "the previous archive", free=120 * 1024**2)
    space.check(tmp_path, 0, "nothing to compare with", free=0)  # no basis: no refusal


def test_the_expected_size_is_the_newest_archive_of_the_same_format(tmp_path: Path) -> None:
    old = tmp_path / "0-Sunday.sql.zst"
    old.write_bytes(b"x" * 10)
    new = tmp_path / "1-Monday.sql.zst"
    new.write_bytes(b"x" * 30)
    os.utime(old, (1, 1))
    (tmp_path / "2-Tuesday.sql.gz").write_bytes(b"x" * 99)
    assert space.expected_size(tmp_path, tmp_path / "3-Wednesday.sql.zst") == 30
    assert space.expected_size(tmp_path / "nothing", tmp_path / "nothing" / "x.sql.zst") == 0


def test_credential_folders_of_killed_runs_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    from opskit.proc import sweep_secret_dirs

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stale = tmp_path / f"opskit-pg-{dead}-abc123"
    stale.mkdir()
    (stale / "credentials").write_text("*:*:*:*:secret")
    live = tmp_path / f"opskit-my-{os.getpid()}-def456"
    live.mkdir()
    unrelated = tmp_path / "opskit-other-1-x"
    unrelated.mkdir()
    assert sweep_secret_dirs(tmp_path) == [stale]
    assert not stale.exists()
    assert live.exists()
    assert unrelated.exists()


def test_every_engine_tells_the_size_of_its_tables(any_db: DbParams) -> None:
    from opskit.engines import Tools, engine_for

    engine = engine_for(any_db, Tools())
    data = adapter_for(any_db)
    data.populate()
    before = engine.size(any_db)
    assert before > 0
    data.insert([("more", os.urandom(2_000_000), None, {}, None)])  # random: stored as is
    if data.kind == "mysql":
        data.execute("ANALYZE TABLE item")  # InnoDB's size statistics lag behind otherwise
    assert engine.size(any_db) > before + 1_500_000
