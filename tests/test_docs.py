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


def _configuration_rows() -> dict[str, list[str]]:
    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        match = re.match(r"\| `([A-Z_]+)`", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


def test_the_configuration_reference_lists_exactly_the_settings() -> None:
    """Every OPSKIT key is documented, and the docs list no key that does not exist."""
    from opskit.config import DEFAULTS

    documented = set(_configuration_rows())
    assert documented == set(DEFAULTS), (
        f"undocumented: {sorted(set(DEFAULTS) - documented)}; "
        f"documented but unknown: {sorted(documented - set(DEFAULTS))}"
    )


def test_the_configuration_reference_gives_each_scalar_default() -> None:
    """The default column says the default Config really uses (numbers, words, True/False)."""
    from opskit.config import DEFAULTS

    wrong = []
    for key, cells in _configuration_rows().items():
        value = DEFAULTS.get(key)
        scalar = isinstance(value, bool | int | float) or (
            isinstance(value, str) and len(value) < 40
        )
        if scalar and str(value) not in cells[-1]:
            wrong.append(f"{key}: docs say {cells[-1]!r}, Config uses {value!r}")
    assert not wrong, wrong
