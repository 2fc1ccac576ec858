"""The engine knows none of its front-ends, which know only the sink it offers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import smtp_alerts

PACKAGE = Path(smtp_alerts.__file__).parent

#: What sits above the engine (docs/architecture.md).
ABOVE_THE_ENGINE = (
    "smtp_alerts._facade",
    "smtp_alerts._sources",
    "smtp_alerts.checks",
    "smtp_alerts.cli",
    "smtp_alerts.handler",
    "smtp_alerts.integrations",
    "smtp_alerts.testing",
)

#: Front-ends typed against the sink, never against an engine class.
FRONT_ENDS = (
    "_sources/crash.py",
    "_sources/heartbeats.py",
    "_sources/jobs.py",
    "checks/_monitor.py",
    "checks/_runner.py",
    "cli/watch.py",
)

#: What a front-end may import from the engine layer.
OFFERED = ("smtp_alerts._engine.sink", "smtp_alerts._engine.process")


def imports_of(path: Path) -> set[str]:
    """Every name ``path`` imports, made absolute: at the top, in functions, for type checking."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


def hook_registrations(path: Path) -> list[str]:
    """The calls in ``path`` that hook the process: ``os.register_at_fork``, ``atexit.register``."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = f"{owner.id if isinstance(owner, ast.Name) else '?'}.{node.func.attr}"
            if name in ("os.register_at_fork", "atexit.register"):
                calls.append(name)
    return sorted(calls)


class TestEngineBoundaries:
    @pytest.mark.parametrize(
        "path", sorted((PACKAGE / "_engine").glob("*.py")), ids=lambda path: path.name
    )
    def test_engine_imports_nothing_above_it(self, path: Path) -> None:
        """No engine module imports a front-end, the facade or the top, not even lazily."""
        upward = sorted(name for name in imports_of(path) if name.startswith(ABOVE_THE_ENGINE))
        assert upward == []

    @pytest.mark.parametrize("relative", FRONT_ENDS)
    def test_front_ends_know_only_the_sink(self, relative: str) -> None:
        """A front-end takes from the engine layer only the sink protocol and the process hooks."""
        imports = imports_of(PACKAGE / relative)
        engine_layer = {name for name in imports if name.startswith("smtp_alerts._engine.")}
        assert sorted(name for name in engine_layer if not name.startswith(OFFERED)) == []
        assert sorted(name for name in imports if name.endswith((".Engine", ".EngineCore"))) == []

    def test_one_module_hooks_forks_and_exit(self) -> None:
        """Only the process module registers fork and exit hooks, so their order is in one place."""
        hooking = {
            str(path.relative_to(PACKAGE)): calls
            for path in sorted(PACKAGE.rglob("*.py"))
            if (calls := hook_registrations(path))
        }
        assert hooking == {
            str(Path("_engine/process.py")): ["atexit.register", "os.register_at_fork"]
        }
