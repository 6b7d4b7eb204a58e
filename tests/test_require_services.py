"""OPSKIT_REQUIRE_SERVICES=1 turns every skip for a missing tool or server into a failure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PROBE = """
from support.services import need_tools

def test_needs_a_tool_nobody_has():
    need_tools("opskit-no-such-tool", package="opskit-no-such-package")
"""


@pytest.mark.parametrize(("require", "outcome"), [("", "1 skipped"), ("1", "1 failed")])
def test_a_missing_tool_skips_or_fails_as_ci_asks(
    tmp_path: Path, require: str, outcome: str
) -> None:
    probe = TESTS / f"test_zz_probe_{os.getpid()}_{require or 0}.py"
    probe.write_text(PROBE)
    try:
        env = {**os.environ, "OPSKIT_REQUIRE_SERVICES": require}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", probe],
            cwd=TESTS.parent,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        probe.unlink()
    assert outcome in done.stdout, done.stdout
    assert "opskit-no-such-tool (apt-get install opskit-no-such-package)" in done.stdout


def test_no_test_skips_for_a_missing_tool_on_its_own() -> None:
    """Skips go through support.services.unavailable (need_tools), so CI can require them all."""
    own = re.compile(r"pytest\.skip\(|mark\.skipif\(|importorskip\(")
    found = [
        f"{path.relative_to(TESTS)}:{no}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != TESTS / "support" / "services.py" and path != Path(__file__)
        for no, line in enumerate(path.read_text().splitlines(), 1)
        if own.search(line)
    ]
    assert not found, f"skip through support.services.unavailable or need_tools instead: {found}"
