"""The README's two first commands: pasted one after the other, they work; CI runs the second."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e . && "


def commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", README, re.S)[:2]


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    last = (ROOT / ".ci" / "run").read_text().rstrip("\n").splitlines()[-1]

    assert last == commands()[1]


def test_ci_installs_every_prerequisite_the_readme_names() -> None:
    paragraph = README.split("need these programs", 1)[1].split("`.ci/run`", 1)[0]
    named = {w for w in re.findall(r"`([a-z0-9-]+)`", paragraph)}
    named -= {"useradd", "su", "runuser", "mount"}  # programs, of passwd and util-linux
    ci = (ROOT / ".ci" / "run").read_text()

    assert {"shellcheck", "pigz", "restic", "faketime", "chromium-driver"} <= named
    assert not [p for p in sorted(named) if not re.search(rf"[ (]{re.escape(p)}[)\n]", ci)]


def test_the_quick_start_leaves_the_shell_where_it_was(tmp_path: Path) -> None:
    first = commands()[0]
    assert first.startswith(INSTALL)
    demo_part = first[len(INSTALL) :]
    assert demo_part.startswith("(cd examples/demo && ")
    assert demo_part.endswith(")")
    # The demo part as pasted, in a copy of the checkout whose .venv is the one running this.
    repo = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "examples" / "demo",
        repo / "examples" / "demo",
        ignore=shutil.ignore_patterns("db.sqlite3", "db_backups", "logs", ".opskit", "__pycache__"),
    )
    (repo / ".venv").symlink_to(sys.prefix)

    done = subprocess.run(
        ["bash", "-c", f"{demo_part} && pwd"], cwd=repo, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(repo)
    assert "verified" in done.stdout
    assert not (repo / "examples" / "demo" / ".venv").exists()
