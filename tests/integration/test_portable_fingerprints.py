"""The same code installed at two paths is one problem: fingerprints do not name the install."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from smtp_alerts.testing import GmailServer
from tests.helpers import server_env, wait_for

PACKAGE = """
import logging

log = logging.getLogger("shopx.api")


def charge(order):
    try:
        {}["card-" + str(order)]
    except KeyError:
        log.exception("charging order %s failed", order)
    log.error(f"gateway timed out for order {order}")
"""

APP = """
import logging, pathlib, sys, time
import smtp_alerts, shopx.api
logging.getLogger().addHandler(smtp_alerts.AlertHandler())
shopx.api.charge(int(sys.argv[1]))
pathlib.Path(sys.argv[2], "logged-" + sys.argv[1]).touch()
while not pathlib.Path(sys.argv[2], "stop").exists():
    time.sleep(0.01)
"""


def install(root: Path) -> Path:
    """``shopx`` installed in a virtualenv-like site-packages under ``root``."""
    site = root / "lib" / "python3" / "site-packages"
    (site / "shopx").mkdir(parents=True)
    (site / "shopx" / "__init__.py").write_text("")
    (site / "shopx" / "api.py").write_text(textwrap.dedent(PACKAGE))
    return site


def test_the_same_code_in_two_installs_is_one_problem(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    sites = [install(tmp_path / "venv-a"), install(tmp_path / "srv" / "b" / ".venv")]
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path / "spool"), GROUP_WAIT="60s")
        workers = [
            subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [sys.executable, str(app), str(n), str(tmp_path)],
                env={**env, "PYTHONPATH": str(site)},
                stderr=subprocess.PIPE,
                text=True,
            )
            for n, site in enumerate(sites)
        ]
        assert wait_for(lambda: all((tmp_path / f"logged-{n}").exists() for n in range(2)))
        (tmp_path / "stop").touch()
        for worker in workers:
            _, stderr = worker.communicate(timeout=60)
            assert worker.returncode == 0, stderr
        assert wait_for(lambda: len(server.messages) >= 1)
        (received,) = server.messages
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None
    body = part.get_content()
    rows = re.findall(r"^ +events +([\d,]+) event", body, re.MULTILINE)
    assert rows == ["2", "2"], body  # the exception and the f-string, each from both installs
