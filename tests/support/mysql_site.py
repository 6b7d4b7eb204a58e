"""A small site's schema with everything a MariaDB restore must bring back, and the changes
a site makes after its backup that the restore must undo."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.mysql_state import (
    App,
    Backup,
    app_user,
    backup,
    connect,
    drop_schemas,
    lit,
    q,
    run,
    schemas,
    state,
)
from support.services import random_name

from opskit.engines import DbParams

# Bytes a dump must carry through untouched, some of them looking like the DDL lines a
# restore rewrites (they are values: no rewrite may touch them).
NASTY = [
    bytes(range(256)),
    b"\x00\r\n\x1a\\'\"" * 40,
    b"\xe3'\xe3\\\xc3\x27\xf0\x9f\x98 invalid utf-8 \xff\xfe\x80",
    b"\nCREATE DEFINER=`root`@`localhost` PROCEDURE `p`()\n",
    b"\n/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */\n",
    b"\n/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`%`*/ /*!50003 TRIGGER x.t AFTER INSERT ON x.t",
    b"\n/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`%`*/ /*!50106 EVENT `e`\n",
    b"\nALTER DATABASE `x` CHARACTER SET latin1 COLLATE latin1_bin ;\nLOCK TABLES `t` WRITE;\n",
    b";\nINSERT INTO `x` VALUES (1);\n\\! touch /tmp/opskit-never\n",
    b"\nsystem touch /tmp/opskit-never\n",
]
TEXTS = [
    "CREATE DEFINER=`root`@`localhost` VIEW v AS SELECT 1",
    "line one\n/*!50013 DEFINER=`a`@`b` */\nline three",
    "Grüße aus Köln; DROP TABLE parent;\n",
]


def packet(**server: Any) -> int:
    return int(run("SELECT @@global.max_allowed_packet", **server)[0][0])


def build(schema: str, app: App, big: bool = True, **server: Any) -> None:
    """Create the site as root: objects defined by root, a routine and an event by the app;
    ``big``: a row just over half the server's max_allowed_packet."""
    s = q(schema)
    run(
        f"""
        CREATE TABLE {s}.parent (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(60) NOT NULL);
        CREATE TABLE {s}.child (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT NOT NULL,
            note TEXT CHARACTER SET utf8mb4, CONSTRAINT child_parent FOREIGN KEY (parent_id)
            REFERENCES {s}.parent (id) ON DELETE CASCADE);
        CREATE TABLE {s}.audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100));
        CREATE TABLE {s}.blobs (id INT PRIMARY KEY, data LONGBLOB,
            t MEDIUMTEXT CHARACTER SET utf8mb4);
        CREATE SEQUENCE {s}.ticket_seq START WITH 100 INCREMENT BY 5;
        CREATE TABLE {s}.ticket (id BIGINT DEFAULT (NEXT VALUE FOR {s}.ticket_seq) PRIMARY KEY,
            title VARCHAR(40));
        CREATE TABLE {s}.price (id INT PRIMARY KEY, amount INT) WITH SYSTEM VERSIONING;
        """,
        **server,
    )
    run(
        "CREATE DEFINER=`root`@`localhost` TRIGGER child_ai AFTER INSERT ON child FOR EACH ROW"
        " INSERT INTO audit (what) VALUES (CONCAT('child ', NEW.id, ' für ', NEW.parent_id))",
        schema,
        **server,
    )
    run(
        "CREATE DEFINER=`root`@`localhost` TRIGGER child_ai2 AFTER INSERT ON child FOR EACH ROW"
        " FOLLOWS child_ai SET @last_child = NEW.id",
        schema,
        **server,
    )
    run(
        "CREATE DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW parent_names AS"
        " SELECT p.id, p.name, COUNT(c.id) AS children FROM parent p"
        " LEFT JOIN child c ON c.parent_id = p.id GROUP BY p.id, p.name",
        schema,
        **server,
    )
    run(
        "CREATE DEFINER=`root`@`localhost` VIEW busy_parents AS"
        " SELECT name FROM parent_names WHERE children > 1",
        schema,
        **server,
    )
    run(
        f"CREATE DEFINER={lit(app.user)}@'%' PROCEDURE add_parent(IN n VARCHAR(60))"
        " BEGIN INSERT INTO parent (name) VALUES (n); SELECT LAST_INSERT_ID(); END",
        schema,
        **server,
    )
    run(
        f"CREATE DEFINER={lit(app.user)}@'%' EVENT nightly ON SCHEDULE EVERY 1 DAY"
        " STARTS '2026-01-01 03:00:00' DISABLE COMMENT 'sweeps the audit'"
        " DO DELETE FROM audit WHERE id < 0",
        schema,
        **server,
    )
    with connect(schema, **server) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO parent (name) VALUES (%s)", [("Ärger",), ("Öl",), ("tmp",), ("Ünd",)]
        )
        cur.execute("DELETE FROM parent WHERE name = 'tmp'")  # AUTO_INCREMENT moves past it
        cur.executemany(
            "INSERT INTO child (parent_id, note) VALUES (%s, %s)",
            [(1, "ünïcødé 🚀"), (1, None), (2, "tab\tnewline\n")],
        )
        # Just over half the packet: as hex, the row would not fit it. (Sent in pieces:
        # the driver itself sends bytes at twice their size.)
        cur.execute("INSERT INTO blobs VALUES (0, '', NULL)")
        size, piece = (packet(**server) // 2 + 65536 if big else 4096), 1 << 20
        for start in range(0, size, piece):
            chunk = os.urandom(min(piece, size - start))
            cur.execute("UPDATE blobs SET data = CONCAT(data, %s) WHERE id = 0", (chunk,))
        for n, value in enumerate(NASTY, 1):
            cur.execute("INSERT INTO blobs VALUES (%s, %s, %s)", (n, value, TEXTS[n % len(TEXTS)]))
        cur.executemany("INSERT INTO ticket (title) VALUES (%s)", [("a",), ("b",), ("c",)])
        cur.execute("INSERT INTO price VALUES (1, 10), (2, 20)")
        cur.execute("UPDATE price SET amount = amount + 1")
        cur.execute("UPDATE price SET amount = 99 WHERE id = 2")
        cur.execute("DELETE FROM price WHERE id = 1")


def change(schema: str, app: App, **server: Any) -> None:
    """What a site does after its backup, as the app user: all of it must go."""
    s = q(schema)
    conn_server = {**server, "user": app.user, "password": app.password}
    run(
        f"""
        UPDATE {s}.parent SET name = 'changed' WHERE id = 1;
        INSERT INTO {s}.parent (name) VALUES ('new one');
        DELETE FROM {s}.blobs WHERE id = 0;
        UPDATE {s}.blobs SET data = 'x' WHERE id = 2;
        INSERT INTO {s}.ticket (title) VALUES ('after');
        UPDATE {s}.price SET amount = 1000;
        DROP TABLE {s}.audit;
        CREATE TABLE {s}.extra (id INT PRIMARY KEY);
        DROP VIEW {s}.busy_parents;
        CREATE VIEW {s}.later_view AS SELECT 1 AS one;
        ALTER DATABASE {s} COLLATE latin1_swedish_ci;
        """,
        **conn_server,
    )
    run(
        "CREATE PROCEDURE later_proc() BEGIN SELECT COUNT(*) FROM parent; END",
        schema,
        **conn_server,
    )
    run(
        "CREATE EVENT later_event ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM child",
        schema,
        **conn_server,
    )
    run(
        "CREATE TRIGGER parent_bi BEFORE INSERT ON parent FOR EACH ROW"
        " SET NEW.name = UPPER(NEW.name)",
        schema,
        **conn_server,
    )
    run("DROP TRIGGER child_ai2", schema, **conn_server)


@contextlib.contextmanager
def built_site(big: bool = True) -> Iterator[tuple[str, App]]:
    """A latin1 schema (german collation) built by root, and an app user without SUPER; the
    schema is dropped afterwards with every one a restore derived from it."""
    name = random_name()
    run(f"CREATE DATABASE {q(name)} CHARACTER SET latin1 COLLATE latin1_german1_ci")
    try:
        with app_user(name) as app:
            build(name, app, big=big)
            yield name, app
    finally:
        drop_schemas(name)


def derived(name: str, **server: Any) -> list[str]:
    """The schemas a restore made beside ``name`` (scratch or previous), sorted."""
    return sorted(s for s in schemas(**server) if s.startswith(name + "__"))


def backed_up_then_changed(
    name: str, app: App, db: DbParams, folder: Path
) -> tuple[Backup, dict[str, Any]]:
    """``name`` backed up as ``db`` into ``folder``, then changed as the site would: the
    archive, and the state it holds (what a restore of it must bring back)."""
    archive = backup(db, folder)
    held = state(name)
    change(name, app)
    return archive, held
