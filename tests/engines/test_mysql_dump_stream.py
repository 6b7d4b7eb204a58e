"""The dump scanner measures statements, finds definers and rewrites only DDL lines."""

from __future__ import annotations

import random

import pytest

from opskit.engines.base import DumpObserver
from opskit.engines.mysql.dump import DumpScanner, Rewrite

DDL = b"\n".join(
    [
        b"/*M!999999\\- enable the sandbox mode */ ",
        b"/*!40101 SET NAMES utf8mb4 */;",
        b"DROP TABLE IF EXISTS `d`;",
        b"CREATE TABLE `d` (",
        b"  `id` int(11) DEFAULT nextval(`live`.`s`),",
        b"  `x` longblob",
        b") ENGINE=InnoDB;",
        b"LOCK TABLES `d` WRITE;",
        b"INSERT INTO `d` VALUES",
        b"(1,'CREATE DEFINER=`root`@`localhost` PROCEDURE `p`()'),",
        b"(2,'\\n/*!50013 DEFINER=`root`@`localhost` SQL "
        b"SECURITY DEFINER */\\nALTER DATABASE `live` ;'),",
        b"(3,'x;\\nLOCK TABLES `d` WRITE;\\n/*!50003 CREATE*"
        b"/ /*!50017 DEFINER=`a`@`b`*/ nextval(`live`.`s`)');",
        b"UNLOCK TABLES;",
        b"DELIMITER ;;",
        b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`%`*/ /*!50003 TRIGGER live.trg AFTER"
        b" INSERT ON `live`.d FOR EACH ROW INSERT INTO d VALUES (NEW.id, 'ON live.d') */;;",
        b"DELIMITER ;",
        b"ALTER DATABASE `live` CHARACTER SET latin1 COLLATE latin1_swedish_ci ;",
        b"DELIMITER ;;",
        b"CREATE DEFINER=`app`@`%` PROCEDURE `p`()",
        b"BEGIN SELECT 1; END ;;",
        b"DELIMITER ;",
        b"/*!50106 CREATE*/ /*!50117 DEFINER=`ro``ot`@`local@host`*/ "
        b"/*!50106 EVENT `e` ON SCHEDULE EVERY 1 DAY DO SELECT 1 */ ;;",
        b"/*!50001 CREATE ALGORITHM=UNDEFINED */",
        b"/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */",
        b"/*!50001 VIEW `v` AS select 1 AS `a` */;",
        b"",
    ]
)


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def feed_in(scanner: DumpScanner, data: bytes, size: int) -> bytes:
    out = b"".join(scanner.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + scanner.finish()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_without_a_rewrite_the_stream_passes_unchanged_in_any_chunking(size: int) -> None:
    assert feed_in(DumpScanner(), DDL, size) == DDL


@pytest.mark.parametrize("size", [1, 5, 1 << 20])
def test_rewrites_touch_ddl_lines_only_and_keep_the_line_count(size: int) -> None:
    out = feed_in(DumpScanner(Rewrite("live", "scratch", definer_current_user=True)), DDL, size)
    before, after = lines(DDL), lines(out)
    assert len(after) == len(before)
    changed = {n for n, (a, b) in enumerate(zip(before, after, strict=True)) if a != b}
    data = {n for n, line in enumerate(before) if line.startswith((b"INSERT", b"("))}
    assert not changed & data  # no row was touched, whatever it holds
    text = out.decode()
    assert "nextval(`scratch`.`s`)" in text
    assert "\nALTER DATABASE `scratch` CHARACTER SET latin1" in text
    assert "LOCK TABLES `d` WRITE;\nINSERT" not in text
    assert "\nUNLOCK TABLES;" not in text
    assert "TRIGGER `scratch`.trg AFTER INSERT ON `scratch`.d FOR EACH ROW" in text
    assert "'ON live.d'" in text  # the trigger's body is not its header
    assert text.count("DEFINER=CURRENT_USER") == 4
    assert "DEFINER=`" not in text.split("INSERT INTO `d`")[0]
    assert "(1,'CREATE DEFINER=`root`@`localhost` PROCEDURE" in text


def test_the_observer_measures_the_longest_statement_and_names_each_definer() -> None:
    rows = b",\n".join(b"(%d,'%s')" % (n, b"x" * n) for n in range(1, 400))
    insert = b"INSERT INTO `t` VALUES\n" + rows + b";\n"
    observer = DumpObserver(DumpScanner(emit=False))
    data = DDL + insert
    for start in range(0, len(data), 333):
        observer.feed(data[start : start + 333])
    facts = observer.result()
    assert facts["longest_statement"] >= len(insert)
    assert facts["longest_statement"] < len(insert) + 200  # a comment line or two at most
    assert facts["definers"] == {
        "root@%": ["trigger trg"],
        "app@%": ["procedure p"],
        "ro`ot@local@host": ["event e"],
        "root@localhost": ["view v"],
    }


def test_random_binary_rows_pass_a_rewriting_scanner_byte_for_byte() -> None:
    rng = random.Random(7)
    junk = bytes(rng.randrange(256) for _ in range(200_000))
    # As mariadb-dump escapes them: no raw newline can be inside a value.
    escaped = junk.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"'", b"\\'")
    dump = b"INSERT INTO `b` VALUES\n(1,'" + escaped + b"'),\n(2,'" + escaped[::-1] + b"');\n"
    out = feed_in(DumpScanner(Rewrite("x", "y", True)), DDL + dump, 4093)
    assert out.endswith(dump)
