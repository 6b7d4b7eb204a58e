"""The maintenance state file: switches, prefixes, restore holds, and what web workers see."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opskit import maintenance
from opskit.maintenance import Hold, State, Switch, Watcher


def test_nothing_is_on_before_the_first_switch(tmp_path: Path) -> None:
    assert maintenance.read(tmp_path / "state") is maintenance.OFF
    assert Watcher(tmp_path / "state").state().empty


def test_turning_on_writes_a_group_readable_file_in_a_new_private_folder(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    maintenance.turn_on(folder, message="Back at 3")
    mode = stat.S_IMODE(maintenance.path_in(folder).stat().st_mode)
    assert mode == 0o640
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    state = maintenance.read(folder)
    assert state.site is not None
    assert state.site.message == "Back at 3"
    assert state.applies("/anything", time.time()) == state.site


def test_a_path_switch_covers_only_its_prefix_and_the_longest_prefix_wins(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    maintenance.turn_on(folder, path="/shop/", message="shop")
    maintenance.turn_on(folder, path="/shop/cart/", message="cart")
    state = maintenance.read(folder)
    now = time.time()
    assert state.applies("/blog/", now) is None
    shop, cart = state.applies("/shop/item/1", now), state.applies("/shop/cart/", now)
    assert shop is not None
    assert shop.message == "shop"
    assert cart is not None
    assert cart.message == "cart"
    maintenance.turn_off(folder, path="/shop/cart/")
    assert set(maintenance.read(folder).paths) == {"/shop/"}


def test_off_turns_every_manual_switch_off(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    maintenance.turn_on(folder)
    maintenance.turn_on(folder, path="/shop/")
    assert maintenance.turn_off(folder).empty
    assert maintenance.read(folder).empty


def test_a_switch_with_an_end_time_is_off_after_it(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    now = 1_000_000.0
    maintenance.turn_on(folder, until=now + 60, now=now)
    state = maintenance.read(folder)
    assert state.site is not None
    assert state.applies("/", now + 59) is not None
    assert state.site.retry_after(now + 50, default=120) == 10
    assert state.applies("/", now + 60) is None


def test_a_restore_hold_puts_the_whole_site_in_maintenance_until_released(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    journal = tmp_path / "journal.json"
    journal.write_text("{}")
    maintenance.hold(folder, "default", journal)
    switch = maintenance.read(folder).applies("/any/path", time.time())
    assert switch is not None
    assert "restore of 'default'" in switch.by
    # A manual off leaves a restore's hold: its database may be half-swapped.
    assert set(maintenance.turn_off(folder).restores) == {"default"}
    assert maintenance.release(folder, "default")
    assert maintenance.read(folder).empty


def test_a_hold_whose_restore_died_without_a_journal_is_dropped_by_off(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = State(restores={"default": Hold("default", dead.pid, 1.0, str(tmp_path / "gone"))})
    folder.mkdir()
    maintenance.path_in(folder).write_text(json.dumps(state.as_dict()))
    assert maintenance.read(folder).restores["default"].stale()
    assert maintenance.turn_off(folder).empty


def test_force_drops_a_hold_whose_journal_is_still_there(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    journal = tmp_path / "journal.json"
    journal.write_text("{}")
    maintenance.hold(folder, "default", journal)
    assert maintenance.turn_off(folder, force=True).empty


def test_an_unreadable_file_is_an_error_for_writers_and_off_for_the_site(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    maintenance.path_in(folder).write_text("{not json")
    with pytest.raises(maintenance.MaintenanceError, match="unreadable"):
        maintenance.read(folder)
    watcher = Watcher(folder)
    assert watcher.state().empty
    assert "cannot read" in watcher.problem


def test_the_watcher_rereads_only_when_the_file_changes(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    clock = [0.0]
    watcher = Watcher(folder, clock=lambda: clock[0], reread=3600)
    assert watcher.state().empty
    maintenance.turn_on(folder, message="one")
    first = watcher.state()
    assert first.site is not None
    assert first.site.message == "one"
    assert watcher.state() is first  # unchanged file: the parsed state is reused
    maintenance.turn_on(folder, message="two")
    second = watcher.state()
    assert second.site is not None
    assert second.site.message == "two"
    maintenance.turn_off(folder)
    assert watcher.state().empty


_CHILD = """
import sys
from pathlib import Path
from opskit.maintenance import Watcher
watcher = Watcher(Path(sys.argv[1]))
for line in sys.stdin:
    state = watcher.state()
    print("on" if not state.empty else "off", flush=True)
"""


def test_another_process_sees_each_change_on_its_next_request(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = child.stdin, child.stdout
    assert stdin is not None
    assert stdout is not None

    def ask() -> str:
        stdin.write("?\n")
        stdin.flush()
        return stdout.readline().strip()

    try:
        assert ask() == "off"
        for _ in range(3):
            maintenance.turn_on(folder)
            assert ask() == "on"
            maintenance.turn_off(folder)
            assert ask() == "off"
    finally:
        stdin.close()
        child.wait(timeout=10)


def test_a_switch_round_trips_through_the_file(tmp_path: Path) -> None:
    state = State(
        site=Switch(since=1.0, message="m", until=2.0, by="me@host"),
        paths={"/shop/": Switch(since=3.0)},
        restores={"default": Hold("default", os.getpid(), 4.0, "/j", "host")},
    )
    assert maintenance.parse(json.loads(json.dumps(state.as_dict()))) == state
