"""Public names that load their module on first use (PEP 562), for the package ``__init__``s.

``import smtp_alerts`` (and the pytest plugin's ``import smtp_alerts.testing``)
must cost almost nothing inside a program that never alerts; each name pulls
in its module the first time it is looked up, then is kept in the package's
namespace so later look-ups are plain attribute reads.

A public name defined in a private module reports the package that exports it
as its ``__module__`` (as httpx does), so reprs, ``help()`` and docs show
``smtp_alerts.Engine``, never ``smtp_alerts._engine.core.Engine``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports", "present_as"]


def lazy_exports(
    package: str, modules: Mapping[str, str], public: Iterable[str], *, present: bool = True
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names load lazily.

    Args:
        package: the package's ``__name__``.
        modules: each lazy name, with the module (relative to ``package``) defining it.
        public: the package's ``__all__``.
        present: make classes and functions report ``package`` as their module
            (see :func:`present_as`); False for a private package.

    Returns:
        ``(__getattr__, __dir__)``, to assign at the package's top level.
    """
    public = tuple(public)

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's own name
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        if present:
            present_as(package, value)
        vars(sys.modules[package])[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the module hook's own name
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__


def present_as(package: str, *values: object) -> None:
    """Make each class or function defined in a private module report ``package``.

    Args:
        package: the public package that exports the values.
        values: the exported objects; anything else than a class or a function,
            or one already in a public module, is left as it is.
    """
    for value in values:
        if typing.get_origin(value) is not None:
            continue  # a type alias: a class to inspect on Python 3.10, with no module of its own
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if any(part.startswith("_") for part in value.__module__.split(".")):
            value.__module__ = package
