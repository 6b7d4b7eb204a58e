"""Reading a pg_dump plain-SQL stream on its way: who owns what, who is granted what, which
extensions it creates; and, at restore time, leaving out ownership, privileges, or the
dump's own transaction lines (an in-place load runs in opskit's one transaction).

The stream is read line by line outside ``COPY ... FROM stdin`` blocks; inside them (where
nearly all the bytes are) only the end marker ``\\.`` is looked for, so the cost stays small.
"""

from __future__ import annotations

import re
from typing import Any

from opskit import proc
from opskit.engines.base import Content
from opskit.errors import ArchiveError, CommandFailed

# pg_dump writes each of these on one line of its own.
_OWNER = re.compile(rb"^ALTER (?P<kind>[A-Z][A-Z ]*?) (?P<name>.+) OWNER TO (?P<role>.+);$")
_GRANT = re.compile(
    rb"^(?:GRANT|REVOKE) .*? ON (?P<what>.+?) (?:TO|FROM) (?P<role>.+?)(?: WITH GRANT OPTION)?;$"
)
_DEFAULT = re.compile(
    rb"^ALTER DEFAULT PRIVILEGES FOR ROLE (?P<owner>\S+) .* (?:TO|FROM) (?P<role>\S+?)"
    rb"(?: WITH GRANT OPTION)?;$"
)
_KEPT_EXTENSION = re.compile(
    rb"^(?:DROP EXTENSION IF EXISTS |COMMENT ON EXTENSION )(?P<name>\"(?:[^\"]|\"\")+\"|[^ ;]+)"
)
_EXTENSION = re.compile(rb"^CREATE EXTENSION (?:IF NOT EXISTS )?(?P<name>\S+)")
# pg_dump's TOC comment before each entry: "-- Data for Name: BLOBS; Type: BLOBS; ..."
_TOC = re.compile(rb"^-- (?:Data for )?Name: .*?; Type: (?P<type>[A-Z ]+?);")
# The sections where pg_dump writes its own BEGIN; ... COMMIT; (large objects' data).
_OWN_TRANSACTION = {b"BLOBS", b"BLOB DATA", b"LARGE OBJECTS", b"LARGE OBJECT DATA"}
_COPY_END = b"\n\\.\n"
_COMPLETE = b"-- PostgreSQL database dump complete"
_KEEP = 5  # objects named per role


def unquote(ident: bytes) -> str:
    """A quoted identifier without its quotes (doubled ones undone); a bare name as it is."""
    text = ident.decode("utf-8", "replace").strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text


class DumpScanner:
    """A ContentObserver (backup) and a Transform (restore) over pg_dump's plain output."""

    def __init__(
        self,
        *,
        no_owner: bool = False,
        no_privileges: bool = False,
        single_transaction: bool = False,
        emit: bool = True,
        keep_extensions: frozenset[str] = frozenset(),
    ) -> None:
        self.no_owner = no_owner
        self.no_privileges = no_privileges
        self.single_transaction = single_transaction  # drop the dump's BEGIN/COMMIT lines
        self.emit = emit
        # Extensions installed by a role this one is not: left as they are (in place).
        self.keep_extensions = keep_extensions
        self.held = b""
        self.in_copy = False
        self.line_start = True
        self.owners: dict[str, list[str]] = {}
        self.grantees: dict[str, list[str]] = {}
        self.extensions: list[str] = []
        self.left_out = {"owner": 0, "privileges": 0, "transaction": 0}
        # Set by the engine at backup time: the tables whose data the dump left out.
        self.excluded: list[str] | None = None
        self.not_found: list[str] = []
        self.complete = False  # pg_dump's last words were seen
        self.section = b""  # the Type of the TOC entry being read

    # --- Transform / ContentObserver -------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        buf = self.held + data if self.held else data
        self.held = b""
        out: list[bytes] = []
        pos, n = 0, len(buf)
        while pos < n:
            if self.in_copy:
                if self.line_start and n - pos < 3 and b"\\.\n".startswith(buf[pos:]):
                    break  # maybe the end marker: wait for more
                if self.line_start and buf.startswith(b"\\.\n", pos):
                    end = pos + 3
                else:
                    found = buf.find(_COPY_END, pos)
                    if found < 0:
                        cut = max(pos, n - 3)
                        out.append(buf[pos:cut])
                        self.line_start = (
                            buf[cut - 1 : cut] == b"\n" if cut > pos else self.line_start
                        )
                        pos = cut
                        break
                    end = found + 4
                out.append(buf[pos:end])
                self.in_copy, self.line_start, pos = False, True, end
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line = buf[pos : nl + 1]
            pos = nl + 1
            if self._keep(line[:-1]):
                out.append(line)
        self.held = buf[pos:]
        return b"".join(out) if self.emit else b""

    def finish(self) -> bytes:
        rest, self.held = self.held, b""
        kept = rest if rest and (self.in_copy or self._keep(rest.rstrip(b"\n"))) else b""
        return kept if self.emit else b""

    def check_complete(self) -> None:
        """Raise unless pg_dump's last line went past: a whole compressed file holding part
        of a dump must never commit."""
        if not self.complete:
            raise ArchiveError(
                'the archive ends before pg_dump\'s last line ("dump complete"): it holds'
                " part of a dump; nothing was committed",
                "use another backup",
            )

    def result(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "owners": self.owners,
            "grantees": self.grantees,
            "extensions": self.extensions,
        }
        if self.excluded is not None:
            found["excluded_tables"] = self.excluded
            found["excluded_not_found"] = self.not_found
        return found

    # --- one line outside COPY -------------------------------------------------------------

    def _keep(self, line: bytes) -> bool:
        """Note what the line says; return whether it goes on to the loader.

        The kinds of line are tested in this order, cheapest first: this is the hot path."""
        head = line[:8]
        if head.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
            self.in_copy, self.line_start = True, True
            return True
        if head.startswith(b"ALTER ") and b" OWNER TO " in line:
            return self._owner_line(line)
        if head.startswith((b"GRANT ", b"REVOKE ")):
            return self._grant_line(line)
        if line.startswith(b"ALTER DEFAULT PRIVILEGES "):
            return self._default_privileges_line(line)
        if self.single_transaction and line.startswith((b"\\restrict ", b"\\unrestrict ")):
            # pg_dump's own restricted-mode lines: the load runs under opskit's key instead.
            self.left_out["restrict"] = self.left_out.get("restrict", 0) + 1
            return False
        if (
            self.keep_extensions
            and head.startswith((b"DROP EXT", b"COMMENT "))
            and self._names_kept_extension(line)
        ):
            return False
        if head.startswith(b"CREATE E"):
            self._extension_line(line)
            return True
        if line == _COMPLETE:
            self.complete = True
            return True
        if head.startswith(b"-- "):
            m = _TOC.match(line)
            if m:
                self.section = m["type"]
            return True
        if (
            self.single_transaction
            and line in (b"BEGIN;", b"COMMIT;")
            and self.section in _OWN_TRANSACTION
        ):
            # Only pg_dump's own lines around large objects: a function body's are its own.
            self.left_out["transaction"] += 1
            return False
        return True

    def _owner_line(self, line: bytes) -> bool:
        m = _OWNER.match(line)
        if m and not line.startswith(b"ALTER DEFAULT"):
            what = f"{m['kind'].decode()} {m['name'].decode('utf-8', 'replace')}"
            self._note(self.owners, unquote(m["role"]), what)
            if self.no_owner:
                self.left_out["owner"] += 1
                return False
        return True

    def _grant_line(self, line: bytes) -> bool:
        m = _GRANT.match(line)
        if m:
            self._note(self.grantees, unquote(m["role"]), m["what"].decode("utf-8", "replace"))
        return self._privileges_kept()

    def _default_privileges_line(self, line: bytes) -> bool:
        m = _DEFAULT.match(line)
        if m:
            self._note(self.owners, unquote(m["owner"]), "DEFAULT PRIVILEGES")
            self._note(self.grantees, unquote(m["role"]), "DEFAULT PRIVILEGES")
        return self._privileges_kept()

    def _privileges_kept(self) -> bool:
        if self.no_privileges:
            self.left_out["privileges"] += 1
            return False
        return True

    def _names_kept_extension(self, line: bytes) -> bool:
        """A DROP or COMMENT of an extension that stays as installed (in place)."""
        m = _KEPT_EXTENSION.match(line)
        return bool(m and unquote(m["name"]) in self.keep_extensions)

    def _extension_line(self, line: bytes) -> None:
        m = _EXTENSION.match(line)
        if m:
            name = unquote(m["name"].rstrip(b";"))
            if name not in self.extensions:
                self.extensions.append(name)

    @staticmethod
    def _note(table: dict[str, list[str]], role: str, what: str) -> None:
        if role.upper() == "PUBLIC":
            return
        seen = table.setdefault(role, [])
        if len(seen) < _KEEP and what not in seen:
            seen.append(what)


class DumpObserver:
    """The scanner as a backup's ContentObserver (it passes nothing on)."""

    def __init__(self) -> None:
        self.scanner = DumpScanner(emit=False)

    def feed(self, data: bytes) -> None:
        self.scanner.feed(data)

    def result(self) -> dict[str, Any]:
        self.scanner.finish()
        return self.scanner.result()


class CompleteContent:
    """The content, whose end is proven only when pg_dump's last line went past too (after
    the archive's own checks: a damaged archive is named as such first)."""

    def __init__(self, content: Content, scanner: DumpScanner) -> None:
        self.content = content
        self.scanner = scanner

    def read(self, size: int = -1) -> bytes:
        return self.content.read(size)

    def check_end(self) -> None:
        self.content.check_end()
        self.scanner.check_complete()

    def settle(self) -> ArchiveError | None:
        settle = getattr(self.content, "settle", None)
        return settle() if settle is not None else None

    def abandon(self) -> None:
        abandon = getattr(self.content, "abandon", None)
        if abandon is not None:
            abandon()


class ToolContent:
    """A program's output (pg_restore writing a directory archive as SQL), read as content:
    its end is proven when the program exited cleanly."""

    def __init__(self, child: proc.Child) -> None:
        self.child = child
        self.reader = proc.interruptible(child.stdout)
        self.checked = False

    def read(self, size: int = -1) -> bytes:
        return self.reader.read(size if size > 0 else 1 << 20)

    def check_end(self) -> None:
        if not self.checked:
            try:
                self.child.wait()
            except CommandFailed as exc:
                raise ArchiveError(exc.message, "use another backup") from None
            self.checked = True

    def settle(self) -> ArchiveError | None:
        try:
            while self.read(1 << 20):
                pass
            self.check_end()
        except ArchiveError as exc:
            return exc
        return None

    def abandon(self) -> None:
        if not self.checked:
            self.child.kill()
