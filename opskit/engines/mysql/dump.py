"""Read a mariadb-dump stream statement by statement: measure it, and rewrite its DDL lines.

mariadb-dump escapes every newline inside a value, so a raw newline in a dump only ends a
line of SQL text. Data comes as ``INSERT ...`` statements whose rows follow on lines of their
own and whose last line ends with ``;``: once a line starts with ``INSERT``, everything up to
the next ``;`` + newline is data and is passed on untouched. Only the other lines (DDL,
``SET``, comments) are ever looked at, so no value in a table can be rewritten, whatever it
holds.

The same scanner serves two purposes:

* at backup time it observes the dump: the longest statement (which the server's
  ``max_allowed_packet`` must admit) and the DEFINER of every view, trigger, routine and
  event, for the manifest's properties;
* at restore time it rewrites what would otherwise touch another schema than the one being
  loaded or fail there: ``ALTER DATABASE `<name>``` (the dump's collation switches around
  routines) applies to the schema being loaded, sequence defaults and trigger headers that
  name the dumped schema name the target, ``LOCK TABLES`` of older archives is dropped (it
  fails on tables with sequence defaults), and with ``definer="current-user"`` every DEFINER
  becomes CURRENT_USER.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_DATA = (b"INSERT ", b"REPLACE ")
_STATEMENT_END = b";\n"
# re finds it with memchr on ";" (C all the way): bytes.find of a 2-byte needle is ~3x slower.
_END = re.compile(re.escape(_STATEMENT_END))

# A DEFINER clause at the start of a DDL line, as mariadb-dump and mysqldump write them:
# routines "CREATE DEFINER=", views "/*!50013 DEFINER=", triggers "/*!50003 CREATE*/
# /*!50017 DEFINER=", events "/*!50106 CREATE*/ /*!50117 DEFINER=".
_QUOTED = rb"`(?:[^`]|``)*`"
_ACCOUNT = rb"(?:" + _QUOTED + rb"@" + _QUOTED + rb"|" + _QUOTED + rb"|CURRENT_USER(?:\(\))?)"
_DEFINER = re.compile(
    rb"^(?P<lead>CREATE |/\*!\d{5} CREATE\*/ /\*!\d{5} |/\*!\d{5} )DEFINER=(?P<who>"
    + _ACCOUNT
    + rb")"
)
# What the DEFINER line defines: its kind and name, on the same line or (views) the next.
_OBJECT = re.compile(
    rb"\s*(?:\*/\s*)?(?:/\*!\d{5}\s+)?(?:SQL SECURITY \w+\s+)?"
    rb"(?P<kind>PROCEDURE|FUNCTION|TRIGGER|EVENT|VIEW|PACKAGE BODY|PACKAGE)\s+"
    rb"(?P<name>(?:(?:" + _QUOTED + rb"|[\w$]+)\s*\.\s*)?(?:" + _QUOTED + rb"|[\w$]+))",
    re.I,
)
_LAST_NAME = re.compile(rb"(" + _QUOTED + rb"|[\w$]+)$")
_VIEW_LINE = re.compile(rb"^/\*!\d{5} VIEW (?P<name>" + _QUOTED + rb")")
_ALTER_DATABASE = re.compile(
    rb"^(?P<lead>(?:/\*!\d{5} )?ALTER DATABASE )(?P<name>" + _QUOTED + rb")"
)
_LOCKS = (b"LOCK TABLES ", b"UNLOCK TABLES")


def _unquote(quoted: bytes) -> str:
    text = quoted.decode("utf-8", "replace")
    if text.startswith("`") and text.endswith("`"):
        return text[1:-1].replace("``", "`")
    return text


def account_name(clause: bytes) -> str:
    """``user``@``host`` as written in a DEFINER clause -> user@host."""
    if clause.upper().startswith(b"CURRENT_USER"):
        return "CURRENT_USER"
    user, sep, host = clause.partition(b"`@`")
    if not sep:
        return _unquote(clause)
    return f"{_unquote(user + b'`')}@{_unquote(b'`' + host)}"


def quote_name(name: str) -> bytes:
    return ("`" + name.replace("`", "``") + "`").encode()


@dataclasses.dataclass(frozen=True)
class Rewrite:
    """What to change in a dump on its way into schema ``target`` (dumped as ``source``)."""

    source: str  # the schema the dump was made of (its name appears in some DDL)
    target: str  # the schema it is loaded into
    definer_current_user: bool = False


class DumpScanner:
    """Walk a dump in chunks; measure statements, note definers, rewrite DDL lines."""

    def __init__(self, rewrite: Rewrite | None = None, emit: bool = True) -> None:
        self.rewrite = rewrite
        self.emit = emit
        self.pending = b""  # the start of a non-data line whose end has not arrived yet
        self.in_data = False
        self.after_semicolon = False  # in data: the last byte seen was ";"
        self.statement = 0  # bytes of the current statement so far
        self.longest = 0
        self.definers: dict[str, list[str]] = {}
        self.awaiting_view: str | None = None  # a view's DEFINER line seen, its name next
        self.rewritten = 0
        if rewrite is not None:
            source, target = quote_name(rewrite.source), quote_name(rewrite.target)
            self._sequence = re.compile(
                rb"\b(nextval|lastval|setval)\(" + re.escape(source) + rb"\."
            )
            self._sequence_to = rb"\1(" + target.replace(b"\\", b"\\\\") + rb"."
            plain = re.escape(rewrite.source.encode())
            self._qualified = re.compile(
                rb"(\bTRIGGER\s+|\bON\s+)(?:" + re.escape(source) + rb"|" + plain + rb")\s*\.\s*",
                re.I,
            )
            self._source, self._target = source, target

    # --- the stream ------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        buf = self.pending + data if self.pending else data
        self.pending = b""
        edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement) of DDL lines
        i, size, cut = 0, len(buf), len(buf)
        if self.in_data and self.after_semicolon and buf[:1] == b"\n":
            self._end_statement(1)
            self.in_data = False
            i = 1
        self.after_semicolon = False
        while i < size:
            if self.in_data:
                found = _END.search(buf, i)
                if found is None:
                    self.statement += size - i
                    self.after_semicolon = buf.endswith(b";")
                    break
                self._end_statement(found.end() - i)
                self.in_data = False
                i = found.end()
                continue
            if buf.startswith(_DATA, i):
                self.in_data = True
                continue
            newline = buf.find(b"\n", i)
            if newline < 0:
                cut = i
                self.pending = bytes(buf[i:])
                break
            line = buf[i : newline + 1]
            new = self._line(line)
            if new != line:
                edits.append((i, newline + 1, new))
            if line.endswith(_STATEMENT_END):
                self._end_statement(len(line))
            else:
                self.statement += len(line)
            i = newline + 1
        if not self.emit:
            return b""
        if not edits:  # nearly always: the rows go on as they came, without a copy
            return buf if cut == size else buf[:cut]
        pieces, at = [], 0
        for start, end, new in edits:
            pieces += [buf[at:start], new]
            at = end
        pieces.append(buf[at:cut])
        return b"".join(pieces)

    def finish(self) -> bytes:
        rest, self.pending = self.pending, b""
        if not rest:
            return b""
        self.statement += len(rest)
        self.longest = max(self.longest, self.statement)
        return self._line(rest) if self.emit else b""

    def result(self) -> dict[str, Any]:
        """Facts for the manifest: the longest statement in bytes, and who defines what."""
        self.longest = max(self.longest, self.statement)
        return {"longest_statement": self.longest, "definers": self.definers}

    # --- pieces ----------------------------------------------------------------------------

    def _end_statement(self, tail: int) -> None:
        self.longest = max(self.longest, self.statement + tail)
        self.statement = 0

    def _line(self, line: bytes) -> bytes:
        """Look at one non-data line; return it as it goes on (maybe rewritten)."""
        if self.awaiting_view is not None:
            found = _VIEW_LINE.match(line)
            what = f"view {_unquote(found['name'])}" if found else "a view"
            self._note(self.awaiting_view, what)
            self.awaiting_view = None
        definer = _DEFINER.match(line)
        if definer:
            line = self._definer(line, definer)
        if self.rewrite is None:
            return line
        if line.startswith(_LOCKS):
            self.rewritten += 1
            return b"\n"  # the same number of lines: the loader's line numbers stay true
        altered = _ALTER_DATABASE.match(line)
        if altered and altered["name"] == self._source:
            self.rewritten += 1
            return altered["lead"] + self._target + line[altered.end() :]
        if line.startswith(b"  `") and b"val(" in line:  # a column of CREATE TABLE
            new = self._sequence.sub(self._sequence_to, line)
            if new != line:
                self.rewritten += 1
                return new
        return line

    def _definer(self, line: bytes, found: re.Match[bytes]) -> bytes:
        who = account_name(found["who"])
        obj = _OBJECT.match(line, found.end())
        if obj:
            kind = obj["kind"].decode().lower()
            last = _LAST_NAME.search(obj["name"])
            self._note(who, f"{kind} {_unquote(last[1] if last else obj['name'])}")
        else:
            self.awaiting_view = who
        if self.rewrite is None:
            return line
        if obj and obj["kind"].upper() == b"TRIGGER":
            line = self._trigger_header(line, obj.start())
        if not self.rewrite.definer_current_user or who == "CURRENT_USER":
            return line
        self.rewritten += 1
        return line[: found.start("who")] + b"CURRENT_USER" + line[found.end("who") :]

    def _trigger_header(self, line: bytes, start: int) -> bytes:
        """Let ``TRIGGER `db`.t ... ON `db`.t`` (the user's own text) name the target."""
        end = line.upper().find(b" FOR EACH ROW", start)
        end = len(line) if end < 0 else end
        header = self._qualified.sub(
            rb"\1" + self._target.replace(b"\\", b"\\\\") + b".", line[start:end]
        )
        if header == line[start:end]:
            return line
        self.rewritten += 1
        return line[:start] + header + line[end:]

    def _note(self, who: str, what: str) -> None:
        objects = self.definers.setdefault(who, [])
        if what not in objects and len(objects) < 1000:
            objects.append(what)
