"""Passwords never reach a command line, a log, a manifest or an error message."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
from support.project import OPSKIT, write_project
from support.services import MY, PG, mysql, psql

from opskit.engines import DbParams

# Every character an option file, a passfile, a shell or SQL could trip over.
ODD = "p#w\"#d\\x'y$z :=;`\\t"
DUMP_TOOLS = {"pg_dump", "mariadb-dump", "mysqldump"}
DB_TOOLS = DUMP_TOOLS | {"psql", "mariadb", "mysql"}


def new_password() -> tuple[str, str]:
    """Return a password with odd characters and its random part (which a leak must contain)."""
    token = secrets.token_hex(8)
    return f"{ODD}{token}", token


def sql_in(argv: list[str], sql: str, env: dict[str, str] | None = None) -> None:
    """Run SQL through a client's stdin, so the test itself never puts a password on argv."""
    done = subprocess.run(
        argv, input=sql, capture_output=True, text=True, env=env, check=False, timeout=60
    )
    if done.returncode:
        raise RuntimeError(done.stderr)


def mysql_stdin(sql: str) -> None:
    sql_in(["mariadb", "-h", MY["host"], "-P", MY["port"], "-u", MY["user"]], sql)


def psql_stdin(sql: str, db: str = "postgres") -> None:
    env = {**os.environ, "PGHOST": PG["host"], "PGPORT": PG["port"], "PGUSER": PG["user"]}
    sql_in(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db], sql, env)


def my_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- watching every process while opskit runs --------------------------------------------------


@dataclasses.dataclass
class Watched:
    """What a watched opskit run did and what every process on the machine showed meanwhile."""

    returncode: int
    stdout: str
    stderr: str
    scans: int = 0
    dump_seen: int = 0  # scans during which a dump tool was running
    leaks: list[list[str]] = dataclasses.field(default_factory=list)
    # Credential files named by a database tool's argv or environment: path -> (mode, content).
    credential_files: dict[str, tuple[int, int, str]] = dataclasses.field(default_factory=dict)
    tool_envs: list[dict[str, str]] = dataclasses.field(default_factory=list)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _note_credential_file(watch: Watched, path: str) -> None:
    if path in watch.credential_files:
        return
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        folder_mode = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
        content = Path(path).read_text()
    except OSError:
        return  # gone already: the tool finished between two reads
    watch.credential_files[path] = (mode, folder_mode, content)


def _environ(pid: str) -> dict[str, str]:
    raw = _read(f"/proc/{pid}/environ") or b""
    pairs = (item.decode("utf-8", "replace").partition("=") for item in raw.split(b"\0"))
    return {key: value for key, sep, value in pairs if sep}


def _scan(watch: Watched, needles: tuple[bytes, ...], tmpdir: Path) -> None:
    """Look at every process once: argv for the needles; our run's tools for their secrets."""
    dump_running = False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        raw = _read(f"/proc/{entry.name}/cmdline")
        if not raw:
            continue
        argv = [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")]
        if any(n in raw for n in needles):
            watch.leaks.append(argv)
        tool = os.path.basename(argv[0])
        if tool not in DB_TOOLS:
            continue
        env = _environ(entry.name)
        if env.get("TMPDIR") != str(tmpdir):
            continue  # another test's tool (or already gone): not this run's
        watch.tool_envs.append(env)
        dump_running = dump_running or tool in DUMP_TOOLS
        for arg in argv:
            if arg.startswith("--defaults-extra-file="):
                _note_credential_file(watch, arg.split("=", 1)[1])
        if env.get("PGPASSFILE"):
            _note_credential_file(watch, env["PGPASSFILE"])
    watch.scans += 1
    watch.dump_seen += dump_running


def run_watched(*args: str | Path, cwd: Path, tmpdir: Path, needles: tuple[str, ...]) -> Watched:
    """Run opskit and scan every process's argv (and the tools' environments) until it exits."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["TMPDIR"] = str(tmpdir)  # opskit's credential files land here, where we can check
    out, err = cwd / ".watched.out", cwd / ".watched.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [str(OPSKIT), *map(str, args)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        watch = Watched(0, "", "")
        raw_needles = tuple(n.encode() for n in needles)
        try:
            while proc.poll() is None:
                _scan(watch, raw_needles, tmpdir)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=120)
    watch.returncode = proc.returncode
    watch.stdout, watch.stderr = out.read_text(), err.read_text()
    out.unlink()
    err.unlink()
    return watch


def text_outputs(site: Path, watch: Watched) -> dict[str, str]:
    """Everything opskit wrote that a human or a log shipper reads."""
    found = {"stdout": watch.stdout, "stderr": watch.stderr}
    for path in [*(site / "logs").glob("*"), *(site / "db_backups").rglob("*.json")]:
        found[str(path)] = path.read_text()
    return found


def assert_nowhere(texts: dict[str, str], *needles: str) -> None:
    for where, text in texts.items():
        for needle in needles:
            assert needle not in text, f"the password shows in {where}"


# --- MariaDB ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Account:
    db: DbParams
    token: str

    @property
    def needles(self) -> tuple[str, str]:
        return (self.db.password, self.token)


def backup_watched(account: Account, tmp_path: Path) -> tuple[Path, Path, Watched]:
    """``opskit backup`` of a project on the account's database, every process watched: it
    succeeds, no process showed the password, a dump tool ran, its credentials were in files.
    The project, the TMPDIR the credential files went to, and what was watched."""
    site = write_project(tmp_path / "site", {"default": account.db})
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    backup = run_watched("backup", cwd=site, tmpdir=tmpdir, needles=account.needles)
    assert backup.returncode == 0, backup.stderr
    assert backup.leaks == []
    assert backup.dump_seen >= 1, f"no dump tool seen in {backup.scans} scans"
    assert backup.credential_files, "no credential file caught while the tools ran"
    return site, tmpdir, backup


def restore_watched(
    account: Account,
    site: Path,
    tmpdir: Path,
    fingerprint: Callable[[DbParams], str],
    run_sql: Callable[[str, str], str],
    *flags: str,
) -> Watched:
    """Rows deleted after the backup, then ``opskit restore --yes``, every process watched: it
    succeeds, no process showed the password, the rows are back, no credential file is left."""
    db = account.db
    before = fingerprint(db)
    run_sql("DELETE FROM big WHERE id <= 1000", db.name)
    assert fingerprint(db) != before
    restore = run_watched(
        "restore", "--yes", *flags, cwd=site, tmpdir=tmpdir, needles=account.needles
    )
    assert restore.returncode == 0, restore.stderr
    assert restore.leaks == []
    assert fingerprint(db) == before
    assert list(tmpdir.iterdir()) == []
    return restore


def outputs_of(site: Path, backup: Watched, restore: Watched) -> dict[str, str]:
    """What the backup and then the restore wrote for a human or a log shipper to read."""
    texts = text_outputs(site, restore)
    texts.update({f"backup {k}": v for k, v in text_outputs(site, backup).items()})
    return texts


@contextlib.contextmanager
def mysql_user(mysql_db: DbParams, password: str) -> Iterator[DbParams]:
    """A MariaDB user (at 127.0.0.1 and localhost) with all rights on ``mysql_db``."""
    user = f"opskit_u_{secrets.token_hex(5)}"
    hosts = ("127.0.0.1", "localhost")
    mysql_stdin(
        "".join(f"CREATE USER '{user}'@'{h}' IDENTIFIED BY {my_literal(password)};" for h in hosts)
        + "".join(
            f"GRANT ALL PRIVILEGES ON `{pattern}`.* TO "
            + ", ".join(f"'{user}'@'{h}'" for h in hosts)
            + ";"
            # the database, and the scratch and previous schemas a restore makes beside it
            for pattern in (mysql_db.name, mysql_db.name.replace("_", "\\_") + "\\_\\_%")
        )
    )
    try:
        yield dataclasses.replace(mysql_db, user=user, password=password)
    finally:
        mysql_stdin("".join(f"DROP USER IF EXISTS '{user}'@'{h}';" for h in hosts))


@pytest.fixture
def mysql_account(mysql_db: DbParams) -> Iterator[Account]:
    """A MariaDB user with an odd password and all rights on a 200k-row database."""
    password, token = new_password()
    with mysql_user(mysql_db, password) as db:
        # The server really checks this password: prove the test set it up as intended.
        conn = pymysql.connect(
            host=db.host, port=int(db.port), user=db.user, password=password, database=db.name
        )
        conn.close()
        mysql(
            "CREATE TABLE big (id INT PRIMARY KEY, t TEXT NOT NULL);"
            " INSERT INTO big SELECT seq, CONCAT(MD5(RAND()), MD5(RAND()), MD5(RAND()))"
            " FROM seq_1_to_200000;",
            db.name,
        )
        yield Account(db, token)


def mysql_fingerprint(db: DbParams) -> str:
    return mysql("SELECT COUNT(*), SUM(CRC32(t)) FROM big", db.name)


def test_mariadb_password_never_on_a_command_line_or_in_a_log(
    mysql_account: Account, tmp_path: Path
) -> None:
    site, tmpdir, backup = backup_watched(mysql_account, tmp_path)
    assert "Using a password on the command line" not in backup.stderr
    for path, (mode, folder_mode, content) in backup.credential_files.items():
        assert Path(path).is_relative_to(tmpdir)
        assert (mode, folder_mode) == (0o600, 0o700), path
        assert "password=" in content
    for env in backup.tool_envs:
        assert "MYSQL_PWD" not in env
    assert list(tmpdir.iterdir()) == []
    assert (site / "db_backups" / "latest.sql.zst").exists()

    restore = restore_watched(mysql_account, site, tmpdir, mysql_fingerprint, mysql)
    assert "Using a password on the command line" not in restore.stderr

    texts = outputs_of(site, backup, restore)
    assert any(name.endswith("opskit.json.log") for name in texts)
    assert any(name.endswith(".sql.zst.json") for name in texts)
    assert_nowhere(texts, *mysql_account.needles)


def test_mariadb_wrong_password_error_does_not_show_the_password(
    mysql_db: DbParams, tmp_path: Path
) -> None:
    wrong, token = new_password()
    with mysql_user(mysql_db, new_password()[0]) as db:
        db = dataclasses.replace(db, password=wrong)
        site = write_project(tmp_path / "site", {"default": db})
        tmpdir = tmp_path / "tmp"
        tmpdir.mkdir()
        watch = run_watched("backup", cwd=site, tmpdir=tmpdir, needles=(wrong, token))
    assert watch.returncode == 1
    assert "Access denied" in watch.stderr
    assert watch.leaks == []
    assert_nowhere(text_outputs(site, watch), wrong, token)
    assert list(tmpdir.iterdir()) == []


def test_mariadb_password_with_a_newline_works_and_its_parts_never_show(
    mysql_db: DbParams, tmp_path: Path
) -> None:
    head, tail = f"first{secrets.token_hex(4)}", f"second{secrets.token_hex(4)}"
    with mysql_user(mysql_db, f"{head}\n{tail}") as db:
        site = write_project(tmp_path / "site", {"default": db})
        tmpdir = tmp_path / "tmp"
        tmpdir.mkdir()
        watch = run_watched("backup", cwd=site, tmpdir=tmpdir, needles=(head, tail))
        assert_nowhere(text_outputs(site, watch), head, tail)
        assert watch.leaks == []
        assert watch.returncode == 0, watch.stderr


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def pg_account(pg_db: DbParams) -> Iterator[Account]:
    """A PostgreSQL role with a password that owns a 200k-row database."""
    password, token = new_password()
    role = f"opskit_u_{secrets.token_hex(5)}"
    psql_stdin(
        f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD {pg_literal(password)};"
        f' ALTER DATABASE "{pg_db.name}" OWNER TO {role};'
    )
    try:
        psql(
            f"SET ROLE {role}; CREATE TABLE big AS SELECT g AS id,"
            " md5(random()::text) || md5(random()::text) || md5(random()::text) AS t"
            " FROM generate_series(1, 200000) g",
            pg_db.name,
        )
        yield Account(dataclasses.replace(pg_db, user=role, password=password), token)
    finally:
        # Restores create databases owned by the role: drop them before the role.
        leftovers = psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{pg_db.name}%'")
        for name in leftovers.split():
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        psql(f"DROP ROLE IF EXISTS {role}")


def passfile_entry(content: str) -> list[str]:
    """Split a libpq passfile line into its five fields, undoing the backslash escapes."""
    (line,) = content.splitlines()
    fields: list[str] = []
    current, escaped = "", False
    for ch in line:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ":" and len(fields) < 4:
            fields.append(current)
            current = ""
        else:
            current += ch
    return [*fields, current]


def pg_fingerprint(db: DbParams) -> str:
    return psql("SELECT count(*), sum(hashtext(t)) FROM big", db.name)


def test_postgresql_password_only_in_a_private_passfile(
    pg_account: Account, tmp_path: Path
) -> None:
    db, token = pg_account.db, pg_account.token
    site, tmpdir, backup = backup_watched(pg_account, tmp_path)
    assert backup.tool_envs, "no PostgreSQL tool's environment could be read"
    for env in backup.tool_envs:
        assert env["PGUSER"] == db.user
        assert "PGPASSWORD" not in env
        assert env["PGPASSFILE"].startswith(str(tmpdir / "opskit-pg-"))
        assert token not in "".join(env.values())
    for path, (mode, folder_mode, content) in backup.credential_files.items():
        assert (mode, folder_mode) == (0o600, 0o700), path
        # Trust auth does not check it, so check the file says exactly the password.
        assert passfile_entry(content) == ["*", "*", "*", "*", db.password]
    assert not [p for p in tmpdir.iterdir() if p.name.startswith("opskit-pg-")]
    assert list(tmpdir.iterdir()) == []

    restore = restore_watched(pg_account, site, tmpdir, pg_fingerprint, psql, "--drop-old")

    texts = outputs_of(site, backup, restore)
    assert any(name.endswith(".sql.zst.json") for name in texts)
    assert_nowhere(texts, *pg_account.needles)


# --- failed connections -----------------------------------------------------------------------


def test_failed_connections_with_passwords_do_not_show_them(tmp_path: Path) -> None:
    pg_password, pg_token = new_password()
    my_password, my_token = new_password()
    dbs = {
        "default": DbParams(
            alias="default",
            django_engine="django.db.backends.postgresql",
            name="nowhere",
            user="someone",
            password=pg_password,
            host="127.0.0.1",
            port="1",
        ),
        "shop": DbParams(
            alias="shop",
            django_engine="django.db.backends.mysql",
            name="nowhere",
            user="someone",
            password=my_password,
            host="127.0.0.1",
            port="1",
        ),
    }
    site = write_project(tmp_path / "site", dbs)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    needles = (pg_password, pg_token, my_password, my_token)
    watch = run_watched("backup", cwd=site, tmpdir=tmpdir, needles=needles)
    assert watch.returncode == 2, watch.stderr
    assert watch.stderr.count("event=step_failed") == 2
    assert watch.leaks == []
    texts = text_outputs(site, watch)
    assert "step_failed" in texts[str(site / "logs" / "opskit.json.log")]
    assert_nowhere(texts, *needles)
    assert list(tmpdir.iterdir()) == []
