"""The layers of docs/architecture.md hold: each module imports only from the layers below it,
only the named modules touch subprocess, Django and click, and there is no import cycle.

The rules are read from the source with ``ast`` (module-level imports, not those under
``TYPE_CHECKING`` or inside a function), so breaking one fails here before review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "opskit"

FOUNDATION, SERVICES, JOBS, EDGE = 0, 1, 2, 3
LAYER_NAMES = {FOUNDATION: "foundation", SERVICES: "services", JOBS: "jobs", EDGE: "edge"}

# A name ending in ".*" is a package with everything in it; a more specific name wins.
_LAYERS = {
    FOUNDATION: [
        "opskit.errors",
        "opskit.status",
        "opskit.config",
        "opskit.django_project",
        # The one project bootstrap: settings, Config, databases, secrets (no click).
        "opskit.project",
        "opskit.report",
        "opskit.logs",
        "opskit.progress",
        "opskit.signals",
        "opskit.redact",
        "opskit.proc.*",
        "opskit.killpoints",
        "opskit.files",
        # The subpackages' __init__ modules hold only their docstring.
        "opskit.archive",
        "opskit.healthchecks",
        "opskit.monitoring",
        "opskit.cron",
        # What compressions exist: config, manifests and the command line name them.
        "opskit.archive.codec",
        # IANA names: config validates a TZ, and the schedule and Healthchecks use them.
        "opskit.cron.timezones",
        # The engine Protocol and DbParams are the vocabulary every layer speaks.
        "opskit.engines",
        "opskit.engines.base",
        # OPSKIT["OFFSITE"], parsed by config.
        "opskit.offsite",
        "opskit.offsite.settings",
    ],
    SERVICES: [
        "opskit.archive.*",
        "opskit.engines.*",
        "opskit.healthchecks.*",
        "opskit.monitoring.*",
        "opskit.cron.*",
        # The switch that the restore job, the command and the site's middleware share.
        "opskit.maintenance",
        "opskit.offsite.restic",
        "opskit.offsite.catalog",
        "opskit.offsite.push",
        "opskit.offsite.media",
    ],
    JOBS: [
        "opskit.backup",
        "opskit.restore",
        "opskit.verify",
        "opskit.restoretest",
        "opskit.sessions",
        "opskit.check",
        "opskit.catalog",
        "opskit.mail",
        "opskit.overview",
        "opskit.offsite.fetch",
        "opskit.offsite.health",
    ],
}

# A job may use another job only where one is a step of the other, and never in a cycle.
JOB_USES = {
    ("opskit.backup", "opskit.restoretest"): "backup --verify-restore runs the restore test",
    ("opskit.verify", "opskit.restoretest"): "verify --restore-test runs the restore test",
    ("opskit.restore", "opskit.backup"): "a restore's safety copy is a backup of the live database",
    ("opskit.verify", "opskit.restore"): "verify resolves SOURCE the way restore does",
    ("opskit.check", "opskit.verify"): "check verifies the newest archive of each database",
    ("opskit.overview", "opskit.catalog"): "the backups page lists what catalog lists",
    ("opskit.offsite.fetch", "opskit.restore"): "an off-site restore goes the safe restore path",
    ("opskit.offsite.health", "opskit.check"): "check --offsite gives check's verdict lines",
}

# Besides the named module, the site's edge (Django apps must import Django) may.
DJANGO_EDGE = ("opskit.web", "opskit.apps", "opskit.migrations", "opskit.management")
ONLY = {
    "subprocess": ("opskit.proc",),
    "django": ("opskit.django_project", *DJANGO_EDGE),
    "click": ("opskit.cli", "opskit.management"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    """The layer of the most specific name that covers ``module``; the rest is the edge."""
    best, best_len = EDGE, 0  # the command line, the site, the package itself
    for layer, names in _LAYERS.items():
        for name in names:
            base = name.removesuffix(".*")
            covers = module == base or (name.endswith(".*") and module.startswith(base + "."))
            if covers and (len(base), name == base) > (best_len, False):
                best, best_len = layer, len(base)
    return best


def _top_level_imports(module: str) -> Iterator[tuple[str, int]]:  # noqa: C901 — one branch per statement that can hold an import
    """Yield (imported module, line) for imports that run when ``module`` is imported."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(body: list[ast.stmt]) -> Iterator[tuple[str, int]]:  # noqa: C901 — one branch per statement that can hold an import
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, node.lineno
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                submodules = [a.name for a in node.names if f"{base}.{a.name}" in MODULES]
                if len(submodules) < len(node.names):  # a name defined in ``base`` itself
                    yield base, node.lineno
                for name in submodules:
                    yield f"{base}.{name}", node.lineno

            elif isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    continue
                yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                yield from walk(node.body)
                for handler in node.handlers:
                    yield from walk(handler.body)
                yield from walk(node.orelse)
                yield from walk(node.finalbody)
            elif isinstance(node, (ast.With, ast.ClassDef)):
                yield from walk(node.body)

    yield from walk(tree.body)


def _opskit_edges(module: str) -> Iterator[tuple[str, int]]:
    """What importing ``module`` imports of opskit, parents included (Python imports them).

    A module's own packages are left out when only implied: Python has begun importing them
    before the module runs, so ``from opskit.engines.mysql import swap`` inside
    ``opskit.engines.mysql.restore`` depends on ``swap``, not on the package's ``__init__``.
    A name taken from such a package (``from opskit.proc import run`` where ``run`` is not a
    submodule) is a real edge and stays.
    """
    for name, line in _top_level_imports(module):
        parts = name.split(".")
        for end in range(2, len(parts) + 1):  # "opskit" itself only holds the version
            target = ".".join(parts[:end])
            implied = end < len(parts)
            if target not in MODULES or target == module:
                continue
            if implied and module.startswith(target + "."):
                continue
            yield target, line


def test_every_module_is_in_a_layer_or_the_edge() -> None:
    """A new module is placed on purpose: the lists above name every one below the edge."""
    listed = {name.removesuffix(".*") for names in _LAYERS.values() for name in names}
    assert listed <= set(MODULES), f"listed but missing: {sorted(listed - set(MODULES))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    """A module imports only from its own layer or the ones below (jobs: as JOB_USES says)."""
    mine = _layer(module)
    wrong = []
    for target, line in _opskit_edges(module):
        theirs = _layer(target)
        if theirs > mine:
            wrong.append(f"line {line}: {target} ({LAYER_NAMES[theirs]})")
        elif mine == theirs == JOBS and (module, target) not in JOB_USES:
            wrong.append(f"line {line}: job {target} (not in JOB_USES)")
    assert not wrong, f"{module} ({LAYER_NAMES[mine]}) imports upwards: {wrong}"


@pytest.mark.parametrize("library", sorted(ONLY))
def test_only_the_named_modules_import(library: str) -> None:
    """subprocess only in proc, Django only in django_project and the site, click only in cli."""
    allowed = ONLY[library]
    offenders = []
    for module, path in MODULES.items():
        if module.startswith(allowed):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):  # anywhere, functions included
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(n == library or n.startswith(library + ".") for n in names):
                offenders.append(f"{module}:{node.lineno}")
    assert not offenders, f"{library} imported outside {allowed}: {offenders}"


# The project set-up, and the only modules that may call each step of it.
BOOTSTRAP = {
    "find_settings": ("opskit.django_project", "opskit.project"),
    "setup": ("opskit.django_project", "opskit.project"),
    "build_config": ("opskit.config", "opskit.project"),
}


def _calls(tree: ast.AST, name: str) -> Iterator[int]:
    """Lines that call ``name`` or ``anything.name``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == name:
                yield node.lineno


@pytest.mark.parametrize("step", sorted(BOOTSTRAP))
def test_project_load_is_the_only_set_up_path(step: str) -> None:
    """Every command sets the project up through project.load: no second copy of the chain."""
    offenders = [
        f"{module}:{line}"
        for module, path in MODULES.items()
        if module not in BOOTSTRAP[step]
        for line in _calls(ast.parse(path.read_text(), str(path)), step)
    ]
    assert not offenders, f"{step}() called outside {BOOTSTRAP[step]}: {offenders}"


def test_the_set_up_check_sees_a_call() -> None:
    """The walk finds both spellings of a call (so a passing run means something)."""
    tree = ast.parse("django_project.setup(d, m)\nbuild_config(project_dir=d)\n")
    assert list(_calls(tree, "setup")) == [1]
    assert list(_calls(tree, "build_config")) == [2]
    assert list(_calls(ast.parse(MODULES["opskit.project"].read_text()), "setup"))


def test_no_import_cycles() -> None:
    """Importing any module never comes back to itself (the engines register lazily)."""
    graph = {m: {t for t, _ in _opskit_edges(m)} for m in MODULES}
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_walker_sees_what_python_imports() -> None:
    """Known edges are seen, TYPE_CHECKING imports are not (so a passing run means something)."""
    assert "opskit.backup" in {t for t, _ in _opskit_edges("opskit.restore")}
    # engines.base names Journal only for the type checker.
    assert "opskit.engines.journal" not in {t for t, _ in _opskit_edges("opskit.engines.base")}
    # `from opskit.engines.base import X` imports the package first.
    assert "opskit.engines" in {t for t, _ in _opskit_edges("opskit.backup")}
    assert _layer("opskit.cli") == EDGE
    assert _layer("opskit.proc") == FOUNDATION
    assert _layer("opskit.engines.mysql") == SERVICES
