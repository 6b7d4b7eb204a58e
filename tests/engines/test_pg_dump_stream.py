"""The pg_dump stream scanner: the same lines out however the stream is cut into chunks."""

from __future__ import annotations

import random

import pytest

from opskit.engines.postgresql.dump import DumpScanner
from opskit.errors import ArchiveError

DUMP = b'''--
-- PostgreSQL database dump
--
SET client_encoding = 'UTF8';
CREATE TABLE public.t (v text);
ALTER TABLE public.t OWNER TO "App ""One""";
COPY public.t (v) FROM stdin;
GRANT SELECT ON TABLE public.t TO reader;
ALTER TABLE public.x OWNER TO nobody;
a\\\\.
\\\\.
.\\.
\\.
GRANT SELECT ON TABLE public.t TO reader;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO reader;
CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;
CREATE PROCEDURE public.p() LANGUAGE plpgsql AS $$
BEGIN
COMMIT;
END;
$$;
--
-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -
--
BEGIN;
SELECT pg_catalog.lo_open('1', 131072);
COMMIT;
--
-- PostgreSQL database dump complete
--
'''


def run(scanner: DumpScanner, sizes: list[int]) -> bytes:
    out, pos, n = [], 0, 0
    while pos < len(DUMP):
        size = sizes[n % len(sizes)]
        out.append(scanner.feed(DUMP[pos : pos + size]))
        pos, n = pos + size, n + 1
    out.append(scanner.finish())
    return b"".join(out)


@pytest.mark.parametrize("sizes", [[1], [2], [3], [5], [7, 1, 2], [4096]])
def test_the_copy_data_passes_untouched_whatever_the_chunks(sizes: list[int]) -> None:
    scanner = DumpScanner(no_owner=True, no_privileges=True, single_transaction=True)
    out = run(scanner, sizes)
    # The COPY block (with lines that look like statements and like its end) is whole.
    copy = DUMP[DUMP.index(b"COPY") : DUMP.index(b"\n\\.\n") + 4]
    assert copy in out
    lines = out.split(b"\n")
    assert b'ALTER TABLE public.t OWNER TO "App ""One""";' not in lines
    assert lines.count(b"GRANT SELECT ON TABLE public.t TO reader;") == 1  # the COPY's one
    assert b"REVOKE ALL ON SCHEMA public FROM PUBLIC;" not in lines
    assert not any(line.startswith(b"ALTER DEFAULT PRIVILEGES") for line in lines)
    # pg_dump's own BEGIN/COMMIT around large objects go; the procedure's body stays.
    assert b"$$\nBEGIN\nCOMMIT;\nEND;\n$$;" in out
    assert b"\nBEGIN;\n" not in out
    assert lines.count(b"COMMIT;") == 1
    assert scanner.owners == {'App "One"': ["TABLE public.t"], "app": ["DEFAULT PRIVILEGES"]}
    assert scanner.grantees == {"reader": ["TABLE public.t", "DEFAULT PRIVILEGES"]}
    assert scanner.extensions == ["citext"]
    scanner.check_complete()


def test_random_chunks_give_the_same_stream() -> None:
    rng = random.Random(7)
    want = run(DumpScanner(single_transaction=True), [len(DUMP)])
    for _ in range(50):
        sizes = [rng.randint(1, 40) for _ in range(20)]
        assert run(DumpScanner(single_transaction=True), sizes) == want


def test_part_of_a_dump_never_counts_as_complete() -> None:
    scanner = DumpScanner(single_transaction=True)
    scanner.feed(DUMP[: len(DUMP) // 2])
    scanner.finish()
    with pytest.raises(ArchiveError, match="dump complete"):
        scanner.check_complete()
