"""The docs hold: every test a guarantee names exists, every page the README links to is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
LINK = re.compile(r"\]\(((?!https?:|#)[^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_test_exists(page: Path) -> None:
    """A guarantee that names a test names one that is there (renaming a test updates the docs)."""
    missing = []
    for file, name in TEST_REF.findall(page.read_text()):
        path = ROOT / file
        if not path.is_file() or not re.search(
            rf"^\s*(async )?def {name}\(", path.read_text(), re.M
        ):
            missing.append(f"{file}::{name}")
    assert not missing, f"{page.name} names tests that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    """Links between the README and docs/ point at files that exist."""
    broken = [
        target
        for target, _ in LINK.findall(page.read_text())
        if not (page.parent / target).exists()
    ]
    assert not broken, f"{page.name} links to missing files: {broken}"
