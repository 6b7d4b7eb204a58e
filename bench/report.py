"""Summaries, targets and the RESULTS.md text, from the raw measurements."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from datasets import parse_size

ENGINE_NAMES = {"pg": "PostgreSQL", "mysql": "MariaDB", "sqlite": "SQLite"}
MB = 1_000_000

# Targets: opskit backup (default zstd) over the limit, at 1 GB.
BACKUP_LIMIT = {"pg": 1.15, "mysql": 1.4, "sqlite": 1.2}
HANDBOOK_SPEEDUP = 4.0
GZIP_VS_HANDBOOK = 0.6
OWN_RSS_MB = 150.0
RSS_SPREAD = 0.10
PG_RESTORE_LIMIT = 1.1
HELP_S = 0.3
LIST_S = 1.0

# The ``## `` sections ``markdown`` writes; RESULTS.md's others come from other bench scripts.
WRITTEN = ("Machine", "Versions", "Datasets", "Method", "Results", "Targets", "Notes")


@dataclass
class Row:
    """One procedure on one dataset: its runs and their summary."""

    engine: str
    size: str
    phase: str
    key: str
    label: str
    role: str
    mode: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmups: list[dict[str, Any]] = field(default_factory=list)
    skipped: str = ""  # why it was not run (a missing tool)

    @property
    def ok_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["ok"]]

    @property
    def median(self) -> float | None:
        ok = self.ok_runs
        return statistics.median(r["seconds"] for r in ok) if ok else None

    @property
    def min_max(self) -> tuple[float, float] | None:
        ok = [r["seconds"] for r in self.ok_runs]
        return (min(ok), max(ok)) if ok else None

    @property
    def tree_peak_mb(self) -> float | None:
        ok = [r["tree_peak_kb"] for r in self.ok_runs]
        return max(ok) * 1024 / MB if ok else None

    @property
    def own_peak_mb(self) -> float | None:
        ok = [r["own_hwm_kb"] for r in self.ok_runs if r.get("own_hwm_kb")]
        return max(ok) * 1024 / MB if ok else None

    @property
    def archive_mb(self) -> float | None:
        sizes = [r["archive_bytes"] for r in self.ok_runs if r.get("archive_bytes") is not None]
        return sizes[-1] / MB if sizes else None

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.runs + self.warmups if not r["ok"]]

    def summary(self) -> dict[str, Any]:
        mm = self.min_max
        return {
            "median_s": self.median,
            "min_s": mm[0] if mm else None,
            "max_s": mm[1] if mm else None,
            "tree_peak_mb": self.tree_peak_mb,
            "own_peak_mb": self.own_peak_mb,
            "archive_mb": self.archive_mb,
            "ok_runs": len(self.ok_runs),
            "runs": len(self.runs),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "size": self.size,
            "phase": self.phase,
            "key": self.key,
            "label": self.label,
            "role": self.role,
            "mode": self.mode,
            "skipped": self.skipped,
            "summary": self.summary(),
            "warmups": self.warmups,
            "runs": self.runs,
        }


def find(rows: Iterable[Row], engine: str, size: str, phase: str, key: str) -> Row | None:
    for row in rows:
        if (row.engine, row.size, row.phase, row.key) == (engine, size, phase, key):
            return row
    return None


def ratio(a: Row | None, b: Row | None) -> float | None:
    if a is None or b is None or a.median is None or not b.median:
        return None
    return a.median / b.median


def fmt_s(value: float | None) -> str:
    if value is None:
        return "\u2013"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_mb(value: float | None) -> str:
    if value is None:
        return "\u2013"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def fmt_x(value: float | None) -> str:
    return "\u2013" if value is None else f"{value:.2f}\u00d7"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def time_cell(row: Row) -> str:
    if row.skipped:
        return f"not run: {row.skipped}"
    median, mm = row.median, row.min_max
    fails = [r for r in row.runs if not r["ok"]]
    if median is None or mm is None:
        err = (row.failures[-1]["error"] if row.failures else "no run") or "failed"
        return f"FAILED ({len(fails)}/{len(row.runs)}): {cell(err)}"
    text = f"{fmt_s(median)} ({fmt_s(mm[0])}\u2013{fmt_s(mm[1])})"
    if fails:
        text += f"; {len(fails)}/{len(row.runs)} FAILED: {cell(fails[-1]['error'])}"
    return text


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    figure: str
    verdict: str  # PASS, FAIL or "n/a"

    def as_json(self) -> dict[str, str]:
        return {"target": self.name, "figure": self.figure, "verdict": self.verdict}


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _largest(rows: list[Row], engine: str) -> str | None:
    sizes = {r.size for r in rows if r.engine == engine and r.phase != "cli"}
    return max(sizes, key=parse_size) if sizes else None


def _sizes(rows: list[Row], engine: str) -> list[str]:
    return sorted({r.size for r in rows if r.engine == engine and r.phase != "cli"}, key=parse_size)


def _size_note(size: str) -> str:
    return "" if size == "1g" else f" (measured on {size}: the 1g dataset was not run)"


def evaluate(rows: list[Row], engines: list[str], peers: bool) -> list[Target]:  # noqa: C901, PLR0912, PLR0915 — one target after another, each read from the same results
    out: list[Target] = []
    for engine in engines:
        size = _largest(rows, engine)
        if size is None:
            continue
        name = ENGINE_NAMES[engine]
        limit_key = "limit"
        r = ratio(
            find(rows, engine, size, "backup", "opskit_zstd"),
            find(rows, engine, size, "backup", limit_key),
        )
        cap = BACKUP_LIMIT[engine]
        limit_label = {
            "pg": "pg_dump > /dev/null",
            "mysql": "mariadb-dump > /dev/null",
            "sqlite": "zstd -T0 -3 -c file",
        }[engine]
        out.append(
            Target(
                f"{name}: opskit backup (zstd) of 1 GB ≤ {cap}\u00d7 `{limit_label}`"
                + _size_note(size),
                fmt_x(r),
                _verdict(None if r is None else r <= cap),
            )
        )
    for engine in engines:
        name = ENGINE_NAMES[engine]
        for size in _sizes(rows, engine):
            opskit = find(rows, engine, size, "backup", "opskit_zstd")
            hb = find(rows, engine, size, "backup", "handbook")
            r = ratio(hb, opskit)
            out.append(
                Target(
                    f"{name} {size}: opskit backup (zstd) ≥ {HANDBOOK_SPEEDUP:g}\u00d7 faster than "
                    "the handbook",
                    f"handbook / opskit = {fmt_x(r)}",
                    _verdict(None if r is None else r >= HANDBOOK_SPEEDUP),
                )
            )
            for key, label in (("dbbackup", "dbbackup"), ("dbbackup_z", "dbbackup -z")):
                peer = find(rows, engine, size, "backup", key)
                r = ratio(opskit, peer)
                figure = f"opskit / {label} = {fmt_x(r)}" if peers else "peers not run"
                out.append(
                    Target(
                        f"{name} {size}: opskit backup (zstd) faster than django-dbbackup {label}",
                        figure,
                        _verdict(None if r is None else r < 1.0),
                    )
                )
            r = ratio(find(rows, engine, size, "backup", "opskit_gzip"), hb)
            out.append(
                Target(
                    f"{name} {size}: opskit backup with gzip ≤ {GZIP_VS_HANDBOOK}\u00d7 "
                    "the handbook",
                    fmt_x(r),
                    _verdict(None if r is None else r <= GZIP_VS_HANDBOOK),
                )
            )
    opskit_rows = [r for r in rows if r.role == "opskit" and r.own_peak_mb is not None]
    if opskit_rows:
        worst = max(opskit_rows, key=lambda r: r.own_peak_mb or 0.0)
        peak = worst.own_peak_mb or 0.0
        out.append(
            Target(
                f"opskit's own process peak RSS ≤ {OWN_RSS_MB:g} MB (every opskit row)",
                f"max {fmt_mb(peak)} MB ({ENGINE_NAMES.get(worst.engine, worst.engine)} "
                f"{worst.size}: {worst.label})",
                _verdict(peak <= OWN_RSS_MB),
            )
        )
    else:
        out.append(Target(f"opskit's own process peak RSS ≤ {OWN_RSS_MB:g} MB", "\u2013", "n/a"))
    spread_checked = False
    for engine in engines:
        sizes = _sizes(rows, engine)
        if "100m" not in sizes or "1g" not in sizes:
            continue
        for small in [r for r in rows if r.engine == engine and r.size == "100m"]:
            if small.role != "opskit" or small.phase == "cli":
                continue
            big = find(rows, engine, "1g", small.phase, small.key)
            a, b = small.own_peak_mb, big.own_peak_mb if big else None
            if a is None or b is None:
                continue
            spread_checked = True
            spread = abs(b - a) / min(a, b)
            out.append(
                Target(
                    f"{ENGINE_NAMES[engine]} {small.label}: own peak RSS 1g within "
                    f"{RSS_SPREAD:.0%} of 100m",
                    f"{fmt_mb(a)} → {fmt_mb(b)} MB ({spread:+.1%})",
                    _verdict(spread <= RSS_SPREAD),
                )
            )
    if not spread_checked:
        out.append(
            Target(
                f"opskit own peak RSS within {RSS_SPREAD:.0%} between 100m and 1g",
                "not measured (needs both --size 100m and --size 1g)",
                "n/a",
            )
        )
    if "pg" in engines and (size := _largest(rows, "pg")):
        limit = find(rows, "pg", size, "restore", "restore_limit")
        r = ratio(find(rows, "pg", size, "restore", "opskit_restore_zstd"), limit)
        out.append(
            Target(
                f"PostgreSQL: opskit restore (zstd) of 1 GB ≤ {PG_RESTORE_LIMIT}\u00d7 "
                f"`zstd -dc | psql --single-transaction`{_size_note(size)}",
                fmt_x(r),
                _verdict(None if r is None else r <= PG_RESTORE_LIMIT),
            )
        )
        directory = find(rows, "pg", size, "restore", "opskit_restore_directory")
        if directory is None:
            figure = "not measured: `opskit backup --help` lists no --format"
        else:
            figure = f"{fmt_s(directory.median)} s, {fmt_x(ratio(directory, limit))} the limit"
        out.append(Target(f"PostgreSQL {size}: directory-format restore (reported)", figure, "n/a"))
    help_row = next((r for r in rows if r.key == "opskit_help"), None)
    if help_row:
        m = help_row.median
        out.append(
            Target(
                f"`opskit --help` ≤ {HELP_S} s",
                f"{fmt_s(m)} s",
                _verdict(None if m is None else m <= HELP_S),
            )
        )
    lists = [r for r in rows if r.key.startswith("opskit_list_")]
    if lists:
        medians = [r.median for r in lists]
        m = None if any(x is None for x in medians) else max(x for x in medians if x is not None)
        out.append(
            Target(
                f"`opskit list` ≤ {LIST_S:g} s (slowest project)",
                f"{fmt_s(m)} s",
                _verdict(None if m is None else m <= LIST_S),
            )
        )
    return out


# --------------------------------------------------------------------------- markdown


def _table(rows: list[Row]) -> list[str]:
    out = [
        "| procedure | median wall s (min\u2013max) | \u00d7 limit | tree peak RSS MB "
        "| opskit peak RSS MB | archive MB |",
        "|---|---|---|---|---|---|",
    ]
    limit = next((r for r in rows if r.role == "limit"), None)
    for row in rows:
        own = fmt_mb(row.own_peak_mb) if row.role in ("opskit", "peer") else "\u2013"
        if row.role == "peer" and row.own_peak_mb is not None:
            own += " (dbbackup)"
        out.append(
            f"| {cell(row.label)} | {time_cell(row)} | {fmt_x(ratio(row, limit))} "
            f"| {fmt_mb(row.tree_peak_mb)} | {own} | {fmt_mb(row.archive_mb)} |"
        )
    return out


def markdown(data: dict[str, Any], rows: list[Row], targets: list[Target]) -> str:
    m, v = data["machine"], data["versions"]
    lines = [
        "# opskit benchmark results",
        "",
        f"Written by `bench/bench.py` on {data['finished']}, started {data['started']} "
        f"(run took {data['duration_s'] / 60:.1f} min). Command: `{data['command']}`",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores)",
        f"- RAM: {m['ram_gib']:.1f} GiB",
        f"- Kernel: {m['kernel']}",
        f"- Load average (1/5/15 min) at the start: {m['loadavg_start']}; at the end: "
        f"{m.get('loadavg_end', '(running)')}. Other work on the machine while the "
        "benchmark ran would show here and skews the timings.",
        "",
        "## Versions",
        "",
        "| component | version |",
        "|---|---|",
        *[f"| {k} | {val} |" for k, val in v.items()],
        "",
        "## Datasets",
        "",
        "Sizes are of a plain dump (`pg_dump --format=plain --clean --if-exists --no-owner "
        "--no-privileges`; `mariadb-dump --single-transaction --routines --triggers`) or, for "
        "SQLite, of the database file. About half is a pgbench-like accounts table "
        "(very compressible), half a Django-like `app_document` table (text of repeated words "
        "and md5 hex, a small JSON object, a blob that is partly random, partly repetitive).",
        "",
        "| engine | size | database | plain dump / file MB | tables (rows, MB on disk) | built |",
        "|---|---|---|---|---|---|",
    ]
    for ds in data["datasets"]:
        tables = ", ".join(
            f"{name} ({t['rows']:,}, {t['bytes'] / MB:.1f})" for name, t in ds["tables"].items()
        )
        built = "reused" if ds["reused"] else f"built in {ds['build_seconds']:.0f} s"
        lines.append(
            f"| {ENGINE_NAMES[ds['engine']]} | {ds['size']} | `{ds['name']}` "
            f"| {ds['dump_bytes'] / MB:.1f} | {tables} | {built} |"
        )
    lines += [
        "",
        "## Method",
        "",
        f"- Interleaved: for each engine and size, the backups then the restores run as "
        f"`for run in 1..N: for procedure in list: run it once`, N = {data['args']['runs']}; "
        "the time is the median (min\u2013max) of the N timed runs. Restores load the archives "
        "written by the last backup run.",
        f"- Warm-up: {data['args']['warmup']} untimed interleaved pass(es) of every procedure "
        "before the timed runs. The OS page cache is not dropped (not permitted everywhere), "
        "so reads of the database files and archives are mostly served from memory.",
        "- PostgreSQL: a `CHECKPOINT` runs (untimed) before each PostgreSQL procedure. A "
        "restore that loads into a scratch database gets a freshly created empty one "
        "(created and dropped outside the timed part). `opskit restore` restores the "
        "dataset's own database, as it would in production (PostgreSQL: load into a scratch "
        "database and swap by rename, `--drop-old`; MariaDB: safety copy, then load; SQLite: "
        "decompress, check, copy in); its safety copies are deleted after each run, untimed.",
        f"- CLI rows: median of {data['args']['cli_runs']} runs each.",
        "- Tree peak RSS: every procedure starts in a new session (`start_new_session=True`); "
        "a sampler thread polls /proc every 20 ms and sums the resident set (VmRSS, from "
        "`/proc/<pid>/statm`) of every process whose `/proc/<pid>/stat` names that session "
        "(bash, pg_dump, zstd, psql, opskit, …); the column is the largest sum seen in any "
        "timed run. Database server processes are not in the session and are not counted.",
        "- opskit peak RSS: opskit is started directly (no shell), so the session's first "
        "process is opskit's Python; the sampler reads its `VmHWM` (kernel high-water mark of "
        "its resident set) from `/proc/<pid>/status` on every poll and keeps the last value "
        "read before it exits (so a rise in its last 20 ms would be missed). The same is "
        "shown for django-dbbackup's `manage.py` process. `results.json` also holds "
        "`wait4_maxrss_kb` from `os.wait4` (the largest of the process and its children).",
        "- \u00d7 limit: the procedure's median / the median of the limit of that table.",
        "- Archive MB: size of the file written (10^6 bytes). "
        "django-dbbackup runs with its defaults "
        "(PostgreSQL: `pg_dump --format=custom`, compressed by pg_dump; MariaDB: `mysqldump "
        "--quick`; SQLite: the backup API); `-z` adds its own gzip.",
        "- opskit's MariaDB dump adds `--quick --events --skip-add-locks --no-tablespaces "
        "--max-allowed-packet=1G` (and `--dump-history` where the server has it); the row "
        '"mariadb-dump with opskit\'s flags" shows what that costs the dump tool alone.',
        "",
        "## Results",
    ]
    order = [("backup", "backup"), ("restore", "restore")]
    for engine in data["args"]["engines"]:
        for size in sorted(
            {r.size for r in rows if r.engine == engine and r.phase != "cli"}, key=parse_size
        ):
            for phase, title in order:
                part = [r for r in rows if (r.engine, r.size, r.phase) == (engine, size, phase)]
                if not part:
                    continue
                lines += ["", f"### {ENGINE_NAMES[engine]} {size}: {title}", ""]
                lines += _table(part)
                if phase == "backup":
                    hb = find(rows, engine, size, "backup", "handbook")
                    for mode in ("zstd", "gzip"):
                        op = find(rows, engine, size, "backup", f"opskit_{mode}")
                        lines.append("")
                        lines.append(
                            f"handbook median / opskit ({mode}) median: {fmt_x(ratio(hb, op))}"
                        )
    cli = [r for r in rows if r.phase == "cli"]
    if cli:
        lines += ["", "### CLI", ""]
        lines += [
            "| command | median wall s (min\u2013max) | tree peak RSS MB | opskit peak RSS MB |",
            "|---|---|---|---|",
        ]
        for row in cli:
            lines.append(
                f"| {cell(row.label)} | {time_cell(row)} | {fmt_mb(row.tree_peak_mb)} "
                f"| {fmt_mb(row.own_peak_mb)} |"
            )
    lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {cell(t.name)} | {cell(t.figure)} | {t.verdict} |" for t in targets]
    counts = {k: sum(t.verdict == k for t in targets) for k in ("PASS", "FAIL", "n/a")}
    lines += ["", f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['n/a']} n/a.", ""]
    if data.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in data["notes"]], ""]
    return "\n".join(lines)


def keeping_others(new: str, old: str) -> str:
    """``new`` followed by the ``## `` sections of ``old`` that ``markdown`` does not write
    (the figures of bench/restore_postgresql.py, offsite.py, restore_mysql.py, added by
    hand), unchanged and in their order: rewriting RESULTS.md never loses them."""
    kept = [
        part.rstrip("\n")
        for part in re.split(r"(?m)^(?=## )", old)[1:]
        if part.split("\n", 1)[0].removeprefix("## ").strip() not in WRITTEN
    ]
    return new.rstrip("\n") + "\n" + "".join(f"\n{part}\n" for part in kept)
