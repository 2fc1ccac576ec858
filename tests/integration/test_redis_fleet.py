"""A fleet on one Redis: processes on several "hosts" (each its own SPOOL_DIR and subject
prefix, one REDIS_URL) send one email per incident, share one quota, and lose nothing
when a claimer dies or Redis stops answering."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from smtp_alerts import Engine, Settings
from smtp_alerts.testing import GmailServer, ManualClock
from smtp_alerts.transports import MemoryTransport
from tests.helpers import STEPS, event_counts, next_start, server_env, start_script, wait_for
from tests.redis_support import RedisServer, free_port

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
    pytest.mark.slow,
]

WORKER = """
import logging, os, pathlib, time, redis, smtp_alerts
log = logging.getLogger("worker")
log.addHandler(smtp_alerts.AlertHandler())
for _ in range({n}):
    log.error("the shared database refused a connection")
# Workers of a fleet live side by side: wait until every one has logged and its
# engine has joined the store (an engine that joins after the last one left
# would flush on its own at exit: one email more, nothing lost).
client = redis.Redis.from_url(os.environ["SMTP_ALERTS_REDIS_URL"])
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not any(
    client.scard(k) >= {processes} for k in client.scan_iter("{{smtp-alerts:*}}:members")
):
    time.sleep(0.01)
ready = pathlib.Path({ready!r})
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < {processes} and time.monotonic() < deadline:
    time.sleep(0.01)
"""


def host_env(
    server: GmailServer, redis_url: str, tmp_path: Path, host: int, **extra: str
) -> dict[str, str]:
    """The environment of a process on "host" number ``host``: its own spool and prefix."""
    return server_env(
        server,
        SPOOL_DIR=str(tmp_path / f"host-{host}"),
        SUBJECT_PREFIX=f"[host-{host}]",
        REDIS_URL=redis_url,
        **extra,
    )


@pytest.mark.parametrize(("hosts", "per_host", "errors"), [(2, 1, 500), (4, 2, 250)])
def test_one_incident_on_many_hosts_is_one_email_with_summed_counts(
    tmp_path: Path, redis_url: str, hosts: int, per_host: int, errors: int
) -> None:
    """Processes on several hosts log one error: one email (two if windows allow), exact sum."""
    processes = hosts * per_host
    with GmailServer() as server:
        ready = tmp_path / "ready"
        ready.mkdir()
        code = WORKER.format(n=errors, ready=str(ready), processes=processes)
        workers = [
            start_script(code, host_env(server, redis_url, tmp_path, host, GROUP_WAIT="1s"))
            for host in range(hosts)
            for _ in range(per_host)
        ]
        for worker in workers:
            _, stderr = worker.communicate(timeout=60)
            assert worker.returncode == 0, stderr
            assert "on its own" not in stderr  # Redis answered throughout
        # Whatever a handed-over window left is sent by the next start, on any host.
        next_start(host_env(server, redis_url, tmp_path, 0))
        found = event_counts(server)
    assert 1 <= len(found) <= 2, found
    assert sum(found) == processes * errors, found


def test_quota_is_shared_by_the_hosts(tmp_path: Path, redis_url: str) -> None:
    """6 processes on 3 hosts with MAX_PER_HOUR=2, each its own incident: 2 emails in all."""
    code = (
        "import logging, os, smtp_alerts\n"
        "logging.getLogger().addHandler(smtp_alerts.AlertHandler())\n"
        "logging.error('worker failed', extra={'alert_group': str(os.getpid())})\n"
    )
    with GmailServer() as server:
        envs = [
            host_env(server, redis_url, tmp_path, host, GROUP_WAIT="0s", MAX_PER_HOUR="2")
            for host in range(3)
        ]
        workers = [start_script(code, envs[n % 3]) for n in range(6)]
        said = "".join(worker.communicate(timeout=60)[1] for worker in workers)
        assert len(server.messages) == 2, said
        assert "held back by the email quota" in said
        # Held back, not lost: a later start with a higher cap sends the rest.
        next_start({**envs[1], "SMTP_ALERTS_MAX_PER_HOUR": "20"})
        assert len(server.messages) == 6


CLAIM_AND_DIE = """
import os, signal, sys, pathlib
from smtp_alerts import Settings
from smtp_alerts._delivery.spool import Spool
from smtp_alerts._engine.core import EngineCore
from smtp_alerts._store import Quota, Windows
from smtp_alerts._store.redis import RedisStore, namespace_for
from smtp_alerts.models import Alert, Digest, Problem
import time

settings = Settings()
spool = Spool(settings.spool_path)
store = RedisStore(
    settings.redis_url.get_secret_value(), spool, Windows(0, 0, 3600), clock=time.time,
    namespace=namespace_for(settings.to), lease=1.0,
)
now = time.time()
alert = Alert(("worker", "refused"), 40, "worker", "the shared database refused a connection", now)
store.push([Digest("default", "", 0, (Problem(alert, 42, 42, now, now, is_new=True),), now)])

def die(digest):
    # Between the claim and its acknowledgement: the digest is in no outbox.
    os.kill(os.getpid(), signal.SIGKILL)

store.claim_due(die, Quota(20, 100, notice=lambda *_: "", delayed=lambda *_: ""), force=True)
"""


def test_a_claimer_killed_between_claim_and_ack_is_sent_once_by_another_host(
    tmp_path: Path, redis_url: str
) -> None:
    """SIGKILL after the claim: after its lease another host sends the counts, once."""
    with GmailServer() as server:
        victim = start_script(CLAIM_AND_DIE, host_env(server, redis_url, tmp_path, 0))
        victim.communicate(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        with redis.Redis.from_url(redis_url) as client:
            (lease,) = client.zrange(_key(client, "leases"), 0, -1)
            assert wait_for(lambda: client.zscore(_key(client, "leases"), lease) < _now(client))
        assert server.messages == []
        next_start(host_env(server, redis_url, tmp_path, 1))
        assert event_counts(server) == [42]
        assert server.messages[0].message["Subject"].startswith("[host-1]")
        next_start(host_env(server, redis_url, tmp_path, 2))  # given back once only
        assert event_counts(server) == [42]


def _key(client: redis.Redis, name: str) -> str:
    (key,) = [bytes(k).decode() for k in client.scan_iter(f"{{smtp-alerts:*}}:{name}")]
    return key


def _now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


OUTAGE = (
    STEPS
    + """
import logging, smtp_alerts
log = logging.getLogger("worker")
log.addHandler(smtp_alerts.AlertHandler())
for _ in range(100):
    log.error("the shared database refused a connection")
wait("redis-frozen")
for _ in range(50):
    log.error("the shared database refused a connection")
wait("done")
"""
)


def test_redis_frozen_mid_incident_loses_nothing_and_says_so(
    tmp_path: Path, redis_url: str, redis_server: RedisServer
) -> None:
    """Redis stops answering mid-incident, then answers again: every count is sent, the
    host says once on stderr that it sends on its own, and the emails say so.

    How the 150 occurrences fall into emails depends on timing: a push whose
    reply the freeze cut off was applied in Redis but counts as failed, so the
    host sends those occurrences too (the email after the outage says
    "duplicates possible"), and what the host counted on its own may go out in
    two digests of its own store. Nothing may be missing, and any surplus must
    have been announced.
    """
    steps = tmp_path / "steps"
    steps.mkdir()
    with GmailServer() as server:
        env = host_env(server, redis_url, tmp_path, 0, GROUP_WAIT="2s")
        worker = start_script(OUTAGE, env, str(steps))
        try:
            with redis.Redis.from_url(redis_url) as client:
                assert wait_for(lambda: list(client.scan_iter("{smtp-alerts:*}:w:default")))
            redis_server.pause()  # the first 100 are in Redis, not yet due
            (steps / "redis-frozen").touch()
            # The next 50 go to the host's own store and out from there, said.
            assert wait_for(lambda: len(server.messages) == 1, 30)
            redis_server.resume()
            # Redis answers again: its window (the first 100) is claimed and sent.
            assert wait_for(lambda: len(server.messages) == 2, 30)
        finally:
            redis_server.resume()
            (steps / "done").touch()
            _, said = worker.communicate(timeout=60)
        found = event_counts(server)
        texts = [_plain(m.message) for m in server.messages]
    assert worker.returncode == 0, said
    assert sum(found) >= 150, found  # nothing lost
    assert len(found) >= 2, found  # the host's own email, then Redis's window
    assert said.count("this host sends on its own") == 1, said
    assert said.count("answers again; sharing through it") == 1, said
    assert "did not answer" in said
    assert "unreachable since" in texts[0]  # the first email, sent by the host alone
    after = [text for text in texts if "was unreachable from" in text]
    assert after, texts
    assert all("duplicates possible" in text for text in after)


def _plain(message: object) -> str:
    part = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    return str(part.get_content())


def test_a_password_in_redis_url_is_never_shown(tmp_path: Path, redis_url: str) -> None:
    """Redis unreachable: the host sends on its own and says why without the password."""
    bad = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    with GmailServer() as server:
        env = host_env(server, bad, tmp_path, 0, GROUP_WAIT="0s")
        code = (
            "import logging, smtp_alerts\n"
            "logging.getLogger().addHandler(smtp_alerts.AlertHandler())\n"
            "logging.error('db down')\n"
        )
        worker = start_script(code, env)
        _, said = worker.communicate(timeout=60)
        assert worker.returncode == 0, said
        assert len(server.messages) == 1  # sent on its own: never silence
        email = server.messages[0].message.as_string()
    assert "this host sends on its own" in said
    assert "s3cret-pw" not in said
    assert "s3cret-pw" not in email
    assert os.environ.get("SMTP_ALERTS_REDIS_URL") is None


def test_hosts_with_clocks_minutes_apart_follow_redis_clock(tmp_path: Path, redis_url: str) -> None:
    """Two engines whose (frozen) clocks are 10 minutes behind and ahead: the incident's
    window opens and closes by Redis's clock, one email carries both occurrences."""
    transports = [MemoryTransport(), MemoryTransport()]
    engines = [
        Engine(
            Settings(
                to=["b@example.com"],
                from_="a@example.com",
                spool_dir=tmp_path / f"host-{n}",
                redis_url=redis_url,
                group_wait="1s",
            ),
            transport=transports[n],
            clock=ManualClock(time.time() + skew),
        )
        for n, skew in enumerate((-600.0, +600.0))
    ]
    try:
        for engine in engines:
            engine.alert("the shared database refused a connection", key="db-refused")
        # Neither clock moves: only Redis's can make GROUP_WAIT pass.
        assert wait_for(lambda: sum(len(t.sent) for t in transports) == 1, 20)
        (message,) = [m for t in transports for m in t.sent]
        assert message.digest is not None
        assert message.digest.events == 2
        assert message.digest.reason == "new"
    finally:
        for engine in engines:
            engine.close(timeout=10)
    assert sum(len(t.sent) for t in transports) == 1
