"""Source paths as the same code has them on every host: relative to where it is imported from.

A fingerprint names a problem's call site, and the same problem must get the
same fingerprint in every process and on every host: the same code installed
in two virtualenvs (``/srv/a/venv/.../site-packages/shop/api.py`` and
``/srv/b/venv/.../site-packages/shop/api.py``), or two checkouts of a project,
differ only in the directory they are imported from. :func:`portable_path`
strips the longest :data:`sys.path` entry the file lies under, so both are
``shop/api.py``. A module of a package imported through an import hook
rather than a :data:`sys.path` entry (an editable install: pip's finder maps
``shop`` to the checkout) is made relative to the directory above its
package's top, found by its ``__init__.py`` files, so it is ``shop/api.py``
too. A path under no entry and in no package (a script run by its full path
from elsewhere, ``<stdin>``, generated code) is kept as it is.
"""

from __future__ import annotations

import os
import sys

__all__ = ["portable_path"]

_CACHE_LIMIT = 10_000
_cache: dict[str, str] = {}
_roots: tuple[str, ...] | None = None
_roots_from: list[str] | None = None


def portable_path(path: str) -> str:
    """``path`` relative to the longest :data:`sys.path` entry it lies under.

    Cached per path: once a path is seen, its answer stays for the life of
    the process (a fingerprint must not change under a problem), whatever
    :data:`sys.path` does later. Never raises.
    """
    cached = _cache.get(path)
    if cached is not None:
        return cached
    try:
        portable = _strip_root(path, _import_roots())
    except Exception:  # noqa: BLE001 - an odd sys.path entry must not fail a capture
        portable = path
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[path] = portable
    return portable


def _import_roots() -> tuple[str, ...]:
    """The directories of :data:`sys.path`, absolute, longest first (so the deepest wins)."""
    global _roots, _roots_from  # noqa: PLW0603 - a cache of sys.path, read again as it changes
    if _roots is None or _roots_from != sys.path:
        # sys.path may hold what is not a str (a Path, bytes): import ignores those.
        path: list[object] = list(sys.path)
        entries = {_absolute(entry) for entry in path if isinstance(entry, str)}
        _roots = tuple(sorted(entries, key=len, reverse=True))
        _roots_from = list(sys.path)
    return _roots


def _absolute(entry: str) -> str:
    # Strings, not Paths: these are prefixes compared with code objects' file
    # names, and abspath normalises without touching the filesystem.
    return os.path.abspath(entry or os.curdir)  # noqa: PTH100


def _strip_root(path: str, roots: tuple[str, ...]) -> str:
    if not os.path.isabs(path):  # noqa: PTH117 - a string test, as above
        return path  # <stdin>, <string>, a frozen module's name
    for root in roots:
        prefix = root if root.endswith(os.sep) else root + os.sep
        if path.startswith(prefix):
            return path[len(prefix) :]
    return _from_package_top(path)


def _from_package_top(path: str) -> str:
    """``path`` relative to the directory that holds its top package; as it is in none.

    A few ``stat`` calls, once per file (:func:`portable_path` caches).
    """
    folder = os.path.dirname(path)  # noqa: PTH120 - strings, as above
    top = folder
    while os.path.isfile(os.path.join(top, "__init__.py")):  # noqa: PTH113, PTH118
        top = os.path.dirname(top)  # noqa: PTH120
    if top == folder:  # not in a package
        return path
    return os.path.relpath(path, top)
