"""A flood of distinct problems that starts with the engine loses nothing to the intake."""

from __future__ import annotations

from pathlib import Path

from smtp_alerts.testing import GmailServer
from tests.helpers import run_code, server_env

FLOOD = """
import logging, smtp_alerts
engine = smtp_alerts.get_engine()
logging.getLogger().addHandler(smtp_alerts.AlertHandler())
letters = "ghijklmnopqrstuvwxyz"  # nothing a masking rule takes for a number
for i in range(100_000):
    name = letters[i % 20] + letters[i // 20 % 20] + letters[i // 400 % 20] + letters[i // 8000]
    logging.error(f"user {name} could not log in")
stats = engine.stats()
engine.close()
stats = engine.stats()
print(stats.accepted, stats.dropped)
"""


def test_a_flood_of_distinct_problems_at_start_is_not_dropped(tmp_path: Path) -> None:
    """The engine's thread is still loading when the flood starts; the intake must not overflow.

    A store push used to take seconds (one sqlite3 call per problem, each giving the
    GIL to the logging thread) and the starting thread could not drain meanwhile.
    """
    with GmailServer() as server:
        env = server_env(server, SPOOL_DIR=str(tmp_path), QUEUE_SIZE="20000")
        result = run_code(FLOOD, env, timeout=120)
        assert result.returncode == 0, result.stderr
        accepted, dropped = map(int, result.stdout.split())
        assert (accepted, dropped) == (100_000, 0)
        (received,) = server.messages
    body = received.message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "more problems from root, counted together" in body.get_content()
