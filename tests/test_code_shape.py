"""Every function in opskit is at most 50 lines, or says why it is longer in a ``# long:``
comment on its ``def`` line or the line above it (or above its first decorator).

Lines are counted as ``ast`` gives them: from the ``def`` line to the function's last line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "opskit"
MAX_LINES = 50
REASON = "# long:"


def long_functions(source: str, max_lines: int = MAX_LINES) -> list[tuple[int, str, int]]:
    """(line, name, length) of each function longer than ``max_lines`` without a reason."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length <= max_lines:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        # 0-based: the def line, the line above it, the line above the first decorator
        candidates = {node.lineno - 1, node.lineno - 2, first - 2}
        if any(0 <= i < len(lines) and REASON in lines[i] for i in candidates):
            continue
        found.append((node.lineno, node.name, length))
    return found


def test_every_long_function_says_why() -> None:
    """A function over 50 lines is split into steps, or its ``# long:`` comment says why not."""
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({length} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name, length in long_functions(path.read_text())
    ]
    assert not offenders, "split these, or say why with '# long: <reason>':\n" + "\n".join(
        offenders
    )


def _function(lines: int, above: str = "", decorator: bool = False, on_def: str = "") -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(lines - 1))
    head = "@decorate\n" if decorator else ""
    return f"{above}\n{head}def f():{on_def}\n{body}"


def test_a_51_line_function_without_a_reason_is_named() -> None:
    """The check reports a function one line over the limit, with its name and length."""
    assert long_functions(_function(51)) == [(2, "f", 51)]


def test_a_50_line_function_passes() -> None:
    """Exactly 50 lines is within the limit."""
    assert long_functions(_function(50)) == []


@pytest.mark.parametrize(
    "source",
    [
        _function(51, above="# long: one linear sequence"),
        _function(51, on_def="  # long: one linear sequence"),
        _function(51, above="# long: a click command", decorator=True),
    ],
    ids=["line-above", "def-line", "above-the-decorator"],
)
def test_a_long_reason_excuses_the_function(source: str) -> None:
    """A ``# long:`` comment on the def line, or above it or its first decorator, is heard."""
    assert long_functions(source) == []


def test_a_reason_inside_the_body_does_not_count() -> None:
    """A ``# long:`` comment anywhere but at the head of the function excuses nothing."""
    source = _function(51).replace("    x25 = 25\n", "    # long: too late\n    x25 = 25\n")
    assert long_functions(source) == [(2, "f", 52)]
