"""MariaDB restores through a scratch schema and a swap bring back exactly the archive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mysql_site import backed_up_then_changed, built_site, change, derived
from support.mysql_state import (
    App,
    app_user,
    backup,
    params,
    q,
    restore,
    run,
    schemas,
    state,
    without_definers,
)

from opskit.engines import DbParams
from opskit.errors import RestoreRefused


@pytest.fixture
def site(mysql_server: None) -> Iterator[tuple[str, App]]:
    """The site of ``built_site``, with its big row."""
    with built_site() as made:
        yield made


def test_root_restore_brings_back_every_row_object_and_setting_exactly(
    site: tuple[str, App], tmp_path: Path
) -> None:
    name, app = site
    db = params(name)
    archive, before = backed_up_then_changed(name, app, db, tmp_path / "b")
    assert state(name) != before
    ctx = restore(db, archive, tmp_path)
    assert state(name) == before
    previous = f"{name}__pre_restore_20261122020000"
    assert previous in schemas()
    assert any(previous in note and "DROP DATABASE" in note for note in ctx.notes)
    assert not [s for s in schemas() if "__opskit_" in s and s.startswith(name)]


def as_app(name: str, app: App) -> DbParams:
    return params(name, app)


def test_definers_the_app_may_not_create_are_refused_and_nothing_changes(
    site: tuple[str, App], tmp_path: Path
) -> None:
    name, app = site
    archive = backup(as_app(name, app), tmp_path / "b")
    change(name, app)
    before = state(name)
    with pytest.raises(RestoreRefused) as refused:
        restore(as_app(name, app), archive, tmp_path)
    message = refused.value.line()
    assert "view parent_names (root@localhost)" in message
    assert "trigger child_ai (root@localhost)" in message
    assert "--definer=current-user" in message
    assert "SET USER" in message
    assert state(name) == before
    assert not [s for s in schemas() if s.startswith(name + "__")]
    assert not (tmp_path / ".opskit-restore-journal.json").exists()


def test_definer_current_user_restores_with_the_app_as_definer(
    site: tuple[str, App], tmp_path: Path
) -> None:
    name, app = site
    archive, expected = backed_up_then_changed(name, app, as_app(name, app), tmp_path / "b")
    restore(as_app(name, app), archive, tmp_path, definer="current-user")
    after = state(name)
    assert without_definers(after) == without_definers(expected)
    # The rows themselves, byte for byte: some look like the DEFINER lines that were rewritten.
    assert after["data"] == expected["data"] | {
        k: v for k, v in after["data"].items() if k in ("parent_names", "busy_parents")
    }
    definers = {row[7] for row in after["triggers"]} | {row[4] for row in after["views"]}
    definers |= {row[10] for row in after["routines"]} | {row[1] for row in after["events"]}
    assert definers == {app.account}
    assert not (tmp_path / ".opskit-restore-journal.json").exists()


@pytest.fixture
def small(mysql_server: None) -> Iterator[tuple[str, App]]:
    """The same site without its big row: for tests about something else."""
    with built_site(big=False) as made:
        yield made


def test_kept_previous_schema_holds_the_replaced_tables_and_objects(
    small: tuple[str, App], tmp_path: Path
) -> None:
    name, app = small
    db = params(name)
    archive = backup(db, tmp_path / "b")
    change(name, app)
    replaced = state(name)
    restore(db, archive, tmp_path)
    (previous,) = derived(name)
    kept = state(previous)
    # Everything but the events' status (disabled there, so that they do not run) and the
    # sequence default, which names the previous schema's own sequence now.
    assert kept["data"].keys() == replaced["data"].keys()
    for table in ("parent", "child", "blobs", "extra", "price", "ticket_seq"):
        assert kept["data"][table] == replaced["data"][table]
    assert kept["triggers"] == replaced["triggers"]
    assert [v[0] for v in kept["views"]] == [v[0] for v in replaced["views"]]
    assert kept["routines"] == replaced["routines"]
    statuses = {e[0]: e[12] for e in kept["events"]}
    assert statuses == {"later_event": "DISABLED", "nightly": "DISABLED"}
    assert f"nextval(`{previous}`.`ticket_seq`)" in kept["data"]["ticket (create)"][1]


def test_drop_old_drops_the_previous_schema(small: tuple[str, App], tmp_path: Path) -> None:
    name, app = small
    db = params(name)
    archive, before = backed_up_then_changed(name, app, db, tmp_path / "b")
    ctx = restore(db, archive, tmp_path, drop_old=True)
    assert state(name) == before
    assert derived(name) == []
    assert any("dropped the previous schema" in note for note in ctx.notes)


def test_two_restores_in_the_same_second_keep_both_previous_schemas(
    small: tuple[str, App], tmp_path: Path
) -> None:
    name, app = small
    db = params(name)
    archive, before = backed_up_then_changed(name, app, db, tmp_path / "b")
    changed = state(name)
    restore(db, archive, tmp_path)
    restore(db, archive, tmp_path)  # the same "now": names must still differ
    assert state(name) == before
    first, second = f"{name}__pre_restore_20261122020000", f"{name}__pre_restore_20261122020000_2"
    assert derived(name) == [first, second]
    assert state(first)["data"]["extra"] == changed["data"]["extra"]
    assert "extra" not in state(second)["data"]


def test_without_a_grant_on_the_restore_schemas_it_refuses_with_the_grant(
    small: tuple[str, App], tmp_path: Path
) -> None:
    name, _ = small
    run("DROP PROCEDURE add_parent", name)  # another account's: this one may not read it
    with app_user(name, grant_scratch=False) as other:
        db = params(name, other)
        archive = backup(params(name), tmp_path / "b")
        before = state(name)
        with pytest.raises(RestoreRefused) as refused:
            restore(db, archive, tmp_path, definer="current-user")
        message = refused.value.line()
        assert f"GRANT ALL ON `{name.replace('_', chr(92) + '_')}\\_\\_%`.* TO" in message
        assert f"'{other.user}'@'%'" in message
        assert "--in-place" in message
        assert state(name) == before
        assert derived(name) == []
        assert not (tmp_path / ".opskit-restore-journal.json").exists()


def test_leftovers_name_the_previous_schema_with_a_drop_command_that_works(
    small: tuple[str, App], tmp_path: Path
) -> None:
    import subprocess

    from opskit.engines.mysql import MySQL

    name, _ = small
    db = params(name)
    restore(db, backup(db, tmp_path / "b"), tmp_path)
    run(f"CREATE DATABASE {q(name + '__opskit_verify_20261122020000')}")  # a killed test's
    found = MySQL().leftovers(db)
    assert sorted((x.kind, x.name) for x in found) == [
        ("previous", f"{name}__pre_restore_20261122020000"),
        ("scratch", f"{name}__opskit_verify_20261122020000"),
    ]
    assert all(x.size is not None for x in found)
    for leftover in found:
        shell = leftover.drop.replace("mariadb -e", "mariadb -h 127.0.0.1 -u root -e", 1)
        subprocess.run(shell, shell=True, check=True)
    assert derived(name) == []
    assert MySQL().leftovers(db) == []


def test_in_place_restores_after_a_safety_copy_with_the_same_result(
    small: tuple[str, App], tmp_path: Path
) -> None:
    name, app = small
    db = params(name)
    archive, before = backed_up_then_changed(name, app, db, tmp_path / "b")
    copies: list[Path] = []

    def safety(target: DbParams) -> Path:
        copies.append(backup(target, tmp_path / "safety").path)
        return copies[-1]

    ctx = restore(db, archive, tmp_path, in_place=True, save_safety_copy=safety)
    assert state(name) == before
    assert len(copies) == 1
    assert any(str(copies[0]) in note for note in ctx.notes)
    assert derived(name) == []


def test_in_place_refuses_definers_first_and_takes_no_safety_copy(
    small: tuple[str, App], tmp_path: Path
) -> None:
    name, app = small
    db = params(name, app)
    archive = backup(db, tmp_path / "b")
    archive.manifest["properties"] = {}  # an older archive: the engine reads it to find out
    change(name, app)
    before = state(name)

    def safety(target: DbParams) -> Path:
        raise AssertionError("no safety copy before the checks passed")

    with pytest.raises(RestoreRefused) as refused:
        restore(db, archive, tmp_path, in_place=True, save_safety_copy=safety)
    assert "view parent_names (root@localhost)" in refused.value.line()
    assert state(name) == before


def test_a_restore_test_as_the_app_loads_objects_defined_by_others(
    small: tuple[str, App], tmp_path: Path
) -> None:
    from support.mysql_state import STAMP

    from opskit.engines.mysql import MySQL

    name, app = small
    db = params(name, app)
    archive = backup(db, tmp_path / "b")
    engine = MySQL()
    with engine.scratch_copy(db, archive.opener(), STAMP, tmp_path) as scratch:
        assert scratch.name == f"{name}__opskit_verify_20261122020000"
        counts = engine.table_counts(scratch)
        copy = state(scratch.name)
    assert counts == engine.table_counts(db)
    assert copy["data"]["blobs"] == state(name)["data"]["blobs"]
    assert derived(name) == []


def test_an_archive_of_the_old_dump_form_loads(small: tuple[str, App], tmp_path: Path) -> None:
    # --hex-blob and LOCK TABLES around the rows: LOCK TABLES failed on the table whose
    # default takes the sequence's next value (ERROR 1100).
    import subprocess

    from support.mysql_state import archive_with

    name, app = small
    old = subprocess.run(
        [
            "mariadb-dump",
            "-h127.0.0.1",
            "-uroot",
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--add-locks",
            "--",
            name,
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert b"LOCK TABLES `ticket` WRITE" in old
    before = state(name)
    archive = archive_with(old, tmp_path / "old", None)
    archive.manifest["database"] = name
    change(name, app)
    restore(params(name), archive, tmp_path)
    after = state(name)
    assert after["data"] == before["data"] | {"price": after["data"]["price"]}
    assert len(after["data"]["price"]) == 1  # without --dump-history: the current row only
