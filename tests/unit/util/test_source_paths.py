"""Source paths relative to their import root, so a fingerprint does not name the install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smtp_alerts._util.source_paths import portable_path


def test_the_same_code_in_two_installs_has_one_path(monkeypatch: pytest.MonkeyPatch) -> None:
    first = "/srv/a/venv/lib/python3.11/site-packages"
    second = "/srv/b/.venv/lib/python3.11/site-packages"
    monkeypatch.setattr(sys, "path", [*sys.path, "/srv/a/venv", first, second])
    assert portable_path(f"{first}/shopx/api.py") == "shopx/api.py"
    assert portable_path(f"{second}/shopx/api.py") == "shopx/api.py"


def test_the_deepest_root_wins_and_odd_names_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [*sys.path, "/opt/proj", "/opt/proj/src"])
    assert portable_path("/opt/proj/src/pkgy/mod.py") == "pkgy/mod.py"
    assert portable_path("/opt/proj/tool.py") == "tool.py"
    assert portable_path("<stdin>") == "<stdin>"
    assert portable_path("/elsewhere/script.py") == "/elsewhere/script.py"
    assert portable_path("/opt/projects/x.py") == "/opt/projects/x.py"  # a prefix, not a dir


def test_an_answer_stays_for_the_life_of_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fingerprint must not change under a problem when sys.path changes later."""
    path = "/late/root/pkgz/mod.py"
    assert portable_path(path) == path
    monkeypatch.setattr(sys, "path", [*sys.path, "/late/root"])
    assert portable_path(path) == path
    assert portable_path("/late/root/pkgz/other.py") == "pkgz/other.py"


def test_a_package_under_no_path_entry_is_relative_to_its_top(tmp_path: Path) -> None:
    """An editable install imports through a hook, not sys.path: the package still names it."""
    module = tmp_path / "checkout" / "shopw" / "api" / "views.py"
    module.parent.mkdir(parents=True)
    for package in (module.parent, module.parent.parent):
        (package / "__init__.py").write_text("", encoding="utf-8")
    module.write_text("", encoding="utf-8")
    script = tmp_path / "checkout" / "tool.py"
    script.write_text("", encoding="utf-8")
    assert portable_path(str(module)) == str(Path("shopw", "api", "views.py"))
    assert portable_path(str(script)) == str(script)  # in no package: kept as it is
