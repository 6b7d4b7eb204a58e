"""The procedures compared for each engine: the limit, the handbook, django-dbbackup, opskit."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH, ROOT
from datasets import (
    MY_DUMP_FLAGS,
    PG_DUMP_FLAGS,
    Dataset,
    backup_dir,
    dbbackup_dir,
    mysql_create,
    mysql_drop,
    pg_create,
    pg_drop,
)
from support.services import MY, PG, mysql, psql

from opskit.engines.mysql import DUMP_OPTIONS

DBBACKUP_PYTHON = BENCH / ".venv-dbbackup" / "bin" / "python"

# opskit's own mariadb-dump flags (its character set aside: the server's default here),
# for an informative second MariaDB limit.
OPSKIT_MY_FLAGS = [f for f in DUMP_OPTIONS if not f.startswith("--default-character-set")]


@dataclass
class Procedure:
    key: str  # stable id, e.g. "opskit_zstd"
    label: str  # the table row
    phase: str  # "backup", "restore" or "cli"
    role: str  # "limit", "handbook", "peer", "opskit" or "tool"
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    mode: str = ""  # opskit: zstd, gzip, none, directory
    python_leader: bool = False  # the first process is opskit's or dbbackup's Python
    archive: Callable[[], int | None] | None = None
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    needs: tuple[str, ...] = ()  # programs that must be on PATH
    runs: int | None = None  # overrides --runs (the CLI rows)

    def missing(self) -> list[str]:
        return [tool for tool in self.needs if not shutil.which(tool)]


@dataclass
class Context:
    opskit: Path  # the project venv's opskit script
    prefix: str
    work: Path
    peers: bool
    directory_format: bool  # `opskit backup --help` lists --format
    base_env: dict[str, str]


def sh(cmd: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", cmd]


def q(value: str | Path) -> str:
    return shlex.quote(str(value))


def file_size(path: Path) -> Callable[[], int | None]:
    def size() -> int | None:
        return path.stat().st_size if path.exists() else None

    return size


def tree_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def opskit_archive(folder: Path) -> Path | None:
    """The archive ``latest`` points at in an opskit backup folder (or the newest one)."""
    latest = [p for p in folder.glob("latest*") if not p.name.endswith(".json")]
    for link in latest:
        if link.exists():
            return link.resolve()
    candidates = [
        p
        for p in folder.iterdir()
        if not p.name.startswith((".", "latest", "pre-restore"))
        and not p.name.endswith(".json")
        and not p.name.endswith(".lock")
    ]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def opskit_size(folder: Path) -> Callable[[], int | None]:
    def size() -> int | None:
        found = opskit_archive(folder) if folder.is_dir() else None
        return tree_size(found) if found else None

    return size


def remove(*paths: Path) -> Callable[[], None]:
    def clean() -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    return clean


def chain(*steps: Callable[[], None] | None) -> Callable[[], None]:
    def run() -> None:
        for step in steps:
            if step:
                step()

    return run


def clear_folder(folder: Path, pattern: str) -> Callable[[], None]:
    def clean() -> None:
        for path in folder.glob(pattern):
            remove(path)()

    return clean


def pg_checkpoint() -> None:
    psql("CHECKPOINT")


def pg_drop_derived(db: str) -> Callable[[], None]:
    """Drop what a failed opskit restore may leave: ``<db>__pre_restore_*``, scratch dbs."""

    def clean() -> None:
        pattern = db.replace("_", "\\_") + "\\_\\_%"
        names = psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}'")
        for name in names.split():
            pg_drop(name)

    return clean


# --------------------------------------------------------------------------- builders


def _archives(ctx: Context, ds: Dataset) -> Path:
    folder = ctx.work / "archives" / f"{ds.engine}_{ds.size}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _opskit_env(ctx: Context, ds: Dataset, mode: str) -> dict[str, str]:
    env = {**ctx.base_env, "OPSKIT_BACKUP_DIR": str(backup_dir(ds, mode))}
    if mode in ("zstd", "gzip", "none"):
        env["OPSKIT_COMPRESS"] = mode
    return env


def _dbbackup_env(ctx: Context, ds: Dataset, target: str | None = None) -> dict[str, str]:
    env = {**ctx.base_env, "DJANGO_SETTINGS_MODULE": ds.dbbackup_settings_module}
    if target:
        env["BENCH_DB_NAME"] = target
    return env


def _opskit(
    ctx: Context,
    ds: Dataset,
    mode: str,
    key: str,
    label: str,
    phase: str,
    argv: list[str],
    archive: Callable[[], int | None] | None,
    before: Callable[[], None] | None,
    after: Callable[[], None] | None = None,
) -> Procedure:
    """A row that runs opskit itself in the dataset's project, with one compression mode."""
    return Procedure(
        key=key,
        label=label,
        phase=phase,
        role="opskit",
        argv=argv,
        cwd=ds.project_dir,
        env=_opskit_env(ctx, ds, mode),
        mode=mode,
        python_leader=True,
        archive=archive,
        before=before,
        after=after,
    )


def opskit_backups(ctx: Context, ds: Dataset, before: Callable[[], None] | None) -> list[Procedure]:
    directory = ctx.directory_format and ds.engine == "pg"  # pg_dump -Fd: PostgreSQL only
    modes = ["zstd", "gzip", "none"] + (["directory"] if directory else [])
    procs = []
    for mode in modes:
        argv = [str(ctx.opskit), "backup"]
        label = f"opskit backup (OPSKIT_COMPRESS={mode})"
        if mode == "zstd":
            label = "opskit backup (default: zstd)"
        if mode == "directory":
            argv += ["--format", "directory"]
            label = "opskit backup --format directory"
        size = opskit_size(backup_dir(ds, mode))
        procs.append(_opskit(ctx, ds, mode, f"opskit_{mode}", label, "backup", argv, size, before))
    return procs


def opskit_restores(
    ctx: Context,
    ds: Dataset,
    before: Callable[[], None] | None,
    after: Callable[[], None] | None,
) -> list[Procedure]:
    directory = ctx.directory_format and ds.engine == "pg"
    modes = ["zstd", "gzip"] + (["directory"] if directory else [])
    procs = []
    for mode in modes:
        argv = [str(ctx.opskit), "restore", "--yes"]
        if ds.engine == "pg":
            argv.append("--drop-old")
        label = f"opskit restore --yes{' --drop-old' if ds.engine == 'pg' else ''} ({mode} archive)"
        key = f"opskit_restore_{mode}"
        procs.append(_opskit(ctx, ds, mode, key, label, "restore", argv, None, before, after))
    return procs


def dbbackup_backups(
    ctx: Context, ds: Dataset, before: Callable[[], None] | None
) -> list[Procedure]:
    if not ctx.peers:
        return []
    folder = dbbackup_dir(ds)
    procs = []
    for key, flags, name in (
        ("dbbackup", [], "bench.dump"),
        ("dbbackup_z", ["-z"], "bench.dump.gz"),
    ):
        target = folder / name
        procs.append(
            Procedure(
                key=key,
                label=f"django-dbbackup: manage.py dbbackup{' -z' if flags else ''}",
                phase="backup",
                role="peer",
                argv=[str(DBBACKUP_PYTHON), "manage.py", "dbbackup", *flags, "-o", name],
                cwd=ds.project_dir,
                env=_dbbackup_env(ctx, ds),
                python_leader=True,
                archive=file_size(target),
                before=chain(before, remove(target, folder / f"{name}.metadata")),
                needs=(),
            )
        )
    return procs


def dbbackup_restore(
    ctx: Context,
    ds: Dataset,
    target: str,
    before: Callable[[], None] | None,
    after: Callable[[], None] | None,
) -> list[Procedure]:
    if not ctx.peers:
        return []
    return [
        Procedure(
            key="dbrestore",
            label="django-dbbackup: manage.py dbrestore --noinput",
            phase="restore",
            role="peer",
            argv=[str(DBBACKUP_PYTHON), "manage.py", "dbrestore", "--noinput", "-i", "bench.dump"],
            cwd=ds.project_dir,
            env=_dbbackup_env(ctx, ds, target),
            python_leader=True,
            before=before,
            after=after,
        )
    ]


@dataclass
class Server:
    """What the rows of a server engine (PostgreSQL, MariaDB) differ in."""

    dump_tool: str  # "pg_dump"
    dump: str  # the dump command, to stdout
    stem: str  # the piped dumps' key and file stem: pg_dump_zstd, pg_dump.sql.zst
    load_tool: str  # "psql"
    load_label: str  # how the rows name the load: "psql --single-transaction"
    load: str  # the command loading stdin into the scratch database, with its redirects
    fresh: Callable[[], None]  # an empty scratch database
    drop: Callable[[], None]  # the scratch database gone
    before_backup: Callable[[], None] | None = None
    before_restore: Callable[[], None] | None = None  # opskit's restores
    after_restore: Callable[[], None] | None = None  # opskit's restores
    limits: list[Procedure] = field(default_factory=list)  # more limits after the first


def server_procedures(ctx: Context, ds: Dataset, scratch: str, s: Server) -> list[Procedure]:
    """The limit, the piped dumps, the handbook, django-dbbackup and opskit, then the same
    for the restores, into ``scratch`` or (opskit) the dataset's own database."""
    a = _archives(ctx, ds)
    env = dict(ctx.base_env)
    zst, pgz = a / f"{s.stem}.sql.zst", a / f"{s.stem}.pigz.sql.gz"
    hb = a / "handbook.sql"
    hbgz = hb.with_name(hb.name + ".gz")
    dump, load, before = s.dump, s.load, s.before_backup
    return [
        Procedure(
            "limit",
            f"limit: {s.dump_tool} > /dev/null",
            "backup",
            "limit",
            sh(f"{dump} > /dev/null"),
            a,
            env,
            before=before,
            needs=(s.dump_tool,),
        ),
        *s.limits,
        *(
            Procedure(
                f"{s.stem}_{tool}",
                f"{s.dump_tool} | {label} > file",
                "backup",
                "tool",
                sh(f"{dump} | {compress} > {q(path)}"),
                a,
                env,
                archive=file_size(path),
                before=before,
                needs=(s.dump_tool, tool),
            )
            for tool, label, compress, path in (
                ("zstd", "zstd -T0 -3", "zstd -q -T0 -3", zst),
                ("pigz", "pigz", "pigz", pgz),
            )
        ),
        Procedure(
            "handbook",
            f"handbook: {s.dump_tool} > f.sql && gzip f.sql",
            "backup",
            "handbook",
            sh(f"{dump} > {q(hb)} && gzip {q(hb)}"),
            a,
            env,
            archive=file_size(hbgz),
            before=chain(before, remove(hb, hbgz)),
            needs=(s.dump_tool, "gzip"),
        ),
        *dbbackup_backups(ctx, ds, before),
        *opskit_backups(ctx, ds, before),
        *(
            Procedure(
                f"restore_{role}",
                f"{role}: {decompress} {name} | {s.load_label} (fresh db)",
                "restore",
                role,
                sh(f"{decompress} {q(path)} | {load}"),
                a,
                env,
                before=s.fresh,
                after=s.drop,
                needs=(tool, s.load_tool),
            )
            for role, decompress, name, path, tool in (
                ("limit", "zstd -dc", "f", zst, "zstd"),
                ("handbook", "gunzip -c", "f.sql.gz", hbgz, "gzip"),
            )
        ),
        *dbbackup_restore(ctx, ds, scratch, s.fresh, s.drop),
        *opskit_restores(ctx, ds, s.before_restore, s.after_restore),
    ]


def pg_procedures(ctx: Context, ds: Dataset) -> list[Procedure]:
    conn = f"-h {PG['host']} -p {PG['port']} -U {PG['user']}"
    scratch = f"{ds.name}_restore"
    load = f"psql -X -q {conn} --single-transaction -v ON_ERROR_STOP=1 -d {q(scratch)}"
    server = Server(
        dump_tool="pg_dump",
        dump=f"pg_dump {conn} {' '.join(PG_DUMP_FLAGS)} {q(ds.name)}",
        stem="pg_dump",
        load_tool="psql",
        load_label="psql --single-transaction",
        load=f"{load} > /dev/null",
        fresh=chain(pg_checkpoint, lambda: pg_create(scratch)),
        drop=chain(lambda: pg_drop(scratch)),
        before_backup=pg_checkpoint,
        before_restore=pg_checkpoint,
        after_restore=pg_drop_derived(ds.name),
    )
    return server_procedures(ctx, ds, scratch, server)


def mysql_procedures(ctx: Context, ds: Dataset) -> list[Procedure]:
    conn = f"-h {MY['host']} -P {MY['port']} -u {MY['user']}"
    dump_opskit_flags = f"mariadb-dump {conn} {' '.join(OPSKIT_MY_FLAGS)} {q(ds.name)}"
    scratch = f"{ds.name}_restore"

    def fresh() -> None:
        mysql_create(scratch)

    def drop() -> None:
        mysql_drop(scratch)

    def drop_safety_copies() -> None:
        for mode in ("zstd", "gzip"):
            clear_folder(backup_dir(ds, mode), "pre-restore-*")()

    opskit_flags = Procedure(
        "limit_opskit_flags",
        "mariadb-dump with opskit's flags (--skip-add-locks …) > /dev/null",
        "backup",
        "tool",
        sh(f"{dump_opskit_flags} > /dev/null"),
        _archives(ctx, ds),
        dict(ctx.base_env),
        needs=("mariadb-dump",),
    )
    server = Server(
        dump_tool="mariadb-dump",
        dump=f"mariadb-dump {conn} {' '.join(MY_DUMP_FLAGS)} {q(ds.name)}",
        stem="dump",
        load_tool="mariadb",
        load_label="mariadb",
        load=f"mariadb {conn} {q(scratch)}",
        fresh=fresh,
        drop=drop,
        after_restore=drop_safety_copies,
        limits=[opskit_flags],
    )
    return server_procedures(ctx, ds, scratch, server)


def sqlite_procedures(ctx: Context, ds: Dataset) -> list[Procedure]:
    a = _archives(ctx, ds)
    src = Path(ds.name)
    zst, hb = a / "db.sqlite3.zst", a / "handbook.sqlite3"
    hbgz = hb.with_name(hb.name + ".gz")
    scratch = src.with_name("restore.sqlite3")
    env = dict(ctx.base_env)
    if shutil.which("sqlite3"):
        copy, copy_label = f"sqlite3 {q(src)} {q('.backup ' + str(hb))}", "sqlite3 .backup"
    else:
        copy, copy_label = f"cp {q(src)} {q(hb)}", "cp"
    fresh = remove(scratch)
    return [
        Procedure(
            "limit",
            "limit: zstd -T0 -3 -c db.sqlite3 > file",
            "backup",
            "limit",
            sh(f"zstd -q -T0 -3 -c {q(src)} > {q(zst)}"),
            a,
            env,
            archive=file_size(zst),
            needs=("zstd",),
        ),
        Procedure(
            "handbook",
            f"handbook: {copy_label} then gzip",
            "backup",
            "handbook",
            sh(f"{copy} && gzip {q(hb)}"),
            a,
            env,
            archive=file_size(hbgz),
            before=remove(hb, hbgz),
            needs=("gzip",),
        ),
        *dbbackup_backups(ctx, ds, None),
        *opskit_backups(ctx, ds, None),
        Procedure(
            "restore_limit",
            "limit: zstd -dc f > new file",
            "restore",
            "limit",
            sh(f"zstd -q -dc {q(zst)} > {q(scratch)}"),
            a,
            env,
            before=fresh,
            after=fresh,
            needs=("zstd",),
        ),
        Procedure(
            "restore_handbook",
            "handbook: gunzip -c f.gz > new file",
            "restore",
            "handbook",
            sh(f"gunzip -c {q(hbgz)} > {q(scratch)}"),
            a,
            env,
            before=fresh,
            after=fresh,
            needs=("gzip",),
        ),
        *dbbackup_restore(ctx, ds, str(scratch), fresh, fresh),
        *opskit_restores(ctx, ds, None, None),
    ]


def procedures_for(ctx: Context, ds: Dataset) -> list[Procedure]:
    build = {"pg": pg_procedures, "mysql": mysql_procedures, "sqlite": sqlite_procedures}
    return build[ds.engine](ctx, ds)


def cli_procedures(ctx: Context, datasets: list[Dataset], runs: int) -> list[Procedure]:
    """``opskit --help`` once, ``opskit list`` in each dataset's project (archives present)."""
    procs = [
        Procedure(
            "opskit_help",
            "opskit --help",
            "cli",
            "opskit",
            [str(ctx.opskit), "--help"],
            ctx.work,
            dict(ctx.base_env),
            python_leader=True,
            runs=runs,
        )
    ]
    for ds in datasets:
        procs.append(
            Procedure(
                f"opskit_list_{ds.engine}_{ds.size}",
                f"opskit list ({ds.engine} {ds.size} project)",
                "cli",
                "opskit",
                [str(ctx.opskit), "list"],
                ds.project_dir,
                _opskit_env(ctx, ds, "zstd"),
                python_leader=True,
                runs=runs,
            )
        )
    return procs


def opskit_has_directory_format(opskit: Path, env: dict[str, str]) -> bool:
    done = subprocess.run(
        [str(opskit), "backup", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    return "--format" in done.stdout


def base_env() -> dict[str, str]:
    """The environment minus anything that would steer opskit or Django from outside."""
    return {
        k: v
        for k, v in os.environ.items()
        if k != "DJANGO_SETTINGS_MODULE" and not k.startswith(("OPSKIT_", "PG"))
    }


def still_intact(ds: Dataset) -> bool:
    """After the restores the dataset must still be there with its bench_meta."""
    try:
        if ds.engine == "pg":
            return bool(psql("SELECT value FROM bench_meta WHERE key = 'size'", ds.name))
        if ds.engine == "mysql":
            return bool(mysql("SELECT value FROM bench_meta WHERE `key` = 'size'", ds.name))
    except RuntimeError:
        return False
    return Path(ds.name).is_file()
