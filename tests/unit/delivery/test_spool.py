"""Tests for smtp_alerts._delivery.spool: the durable, bounded, multi-process spool."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_alerts._delivery.spool import (
    DEFAULT_LEASE,
    SPOOL_FILENAME,
    Attempt,
    Spool,
    process_identity,
)
from smtp_alerts._engine.render import RenderContext, render
from smtp_alerts.models import Alert, Digest, OutgoingMessage, Problem
from smtp_alerts.testing import ManualClock

NOW = 1_795_000_000.0
CONTEXT = RenderContext(
    sender="alerts@example.com", recipients=("ops@example.com",), hostname="web-1"
)
OTHER_HOST_A = "host-a.invalid:100:1"  # claims another host made: only a lease ends them
OTHER_HOST_B = "host-b.invalid:200:2"
SRC = str(Path(__file__).resolve().parents[3])


def make_message(n: int = 0, *, created: float = NOW, message: str = "") -> OutgoingMessage:
    """A message rendered by the real renderer; ``n`` makes its Message-ID unique."""
    alert = Alert(
        fingerprint=("test", n, ("nested", 1.5, None, True)),
        level=logging.ERROR,
        logger=f"shop.worker{n}",
        message=message or f"Job {n} failed: ünïcødé",
        created=created - 60,
        exc_type="KeyError",
        traceback=f"Traceback (most recent call last):\n  ...\nKeyError: {n}\n",
    )
    problem = Problem(
        alert=alert, count=2, total=2, first_seen=created - 60, last_seen=created, is_new=True
    )
    digest = Digest(
        group="default",
        incident_id=f"incident-{n}",
        sequence=1,
        problems=(problem,),
        created=created,
    )
    return render(digest, CONTEXT)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=SRC,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def spool(tmp_path: Path, clock: ManualClock) -> Iterator[Spool]:
    with Spool(tmp_path / "spool", clock=clock) as spool:
        yield spool


class TestLifecycle:
    def test_creates_private_directory_and_database(self, tmp_path: Path) -> None:
        """The directory is created owner-only and holds a WAL-mode SQLite database."""
        directory = tmp_path / "state" / "spool"
        with Spool(directory):
            pass
        assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
        conn = sqlite3.connect(directory / SPOOL_FILENAME)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            conn.close()

    def test_add_is_claimed_by_default(self, spool: Spool) -> None:
        """An added entry is owned by this process and not claimable again by it."""
        entry_id = spool.add(make_message())
        [entry] = spool.entries()
        assert entry.id == entry_id
        assert entry.owner == spool.owner
        assert entry.created == NOW
        assert entry.attempts == 0
        assert entry.message is None
        assert spool.claim_due() == []

    def test_delivered_deletes(self, spool: Spool) -> None:
        """A delivered entry is gone."""
        entry_id = spool.add(make_message())
        spool.delivered(entry_id)
        assert len(spool) == 0
        assert spool.entries() == []

    def test_failed_counts_and_reschedules(self, spool: Spool, clock: ManualClock) -> None:
        """A failed attempt is counted, its error kept, and the entry due again later."""
        entry_id = spool.add(make_message())
        spool.failed(entry_id, error="421 try later", next_attempt=NOW + 60)
        [entry] = spool.entries()
        assert (entry.attempts, entry.last_error, entry.owner) == (1, "421 try later", None)
        assert spool.next_due() == NOW + 60
        assert spool.claim_due() == []
        clock.advance(60)
        [claimed] = spool.claim_due()
        assert claimed.id == entry_id
        assert claimed.attempts == 1
        assert claimed.owner == spool.owner

    def test_force_claims_entries_not_yet_due(self, spool: Spool) -> None:
        """force=True claims an entry whose next attempt lies in the future."""
        entry_id = spool.add(make_message())
        spool.failed(entry_id, error="timeout", next_attempt=NOW + 3600)
        assert spool.claim_due() == []
        assert [entry.id for entry in spool.claim_due(force=True)] == [entry_id]

    def test_claim_order_and_limit(self, spool: Spool, clock: ManualClock) -> None:
        """Entries are claimed earliest due first, at most ``limit`` at a time."""
        ids = []
        for n in range(5):
            ids.append(spool.add(make_message(n), claimed=False))
            clock.advance(1)
        assert [entry.id for entry in spool.claim_due(limit=2)] == ids[:2]
        assert [entry.id for entry in spool.claim_due()] == ids[2:]

    def test_unclaimed_add_is_due_now(self, spool: Spool) -> None:
        """An entry added unclaimed is due at once."""
        spool.add(make_message(), claimed=False)
        assert spool.next_due() == NOW
        assert len(spool.claim_due()) == 1
        assert spool.next_due() is None

    def test_release_frees_own_claims(self, spool: Spool) -> None:
        """release() makes this owner's claimed entries claimable again."""
        spool.add(make_message(1))
        spool.add(make_message(2))
        spool.release()
        assert [entry.owner for entry in spool.entries()] == [None, None]
        assert len(spool.claim_due()) == 2

    def test_idempotent_add(self, spool: Spool) -> None:
        """Adding a message already spooled returns the existing id and stores nothing."""
        message = make_message()
        first = spool.add(message, claimed=False)
        assert spool.add(message) == first
        assert len(spool) == 1
        [entry] = spool.entries()
        assert entry.owner == spool.owner  # claimed=True took the free entry

    def test_purge_keeps_history(self, spool: Spool) -> None:
        """purge() deletes every entry, says how many, and keeps the history."""
        for n in range(3):
            spool.add(make_message(n))
        spool.record_attempt(attempt(NOW))
        assert spool.purge() == 3
        assert len(spool) == 0
        assert len(spool.history()) == 1

    def test_closed_spool_refuses_work(self, tmp_path: Path) -> None:
        """A closed spool raises RuntimeError; closing twice is fine."""
        spool = Spool(tmp_path)
        spool.close()
        spool.close()
        with pytest.raises(RuntimeError, match="closed"):
            len(spool)

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A database written by a newer schema raises ValueError instead of being altered."""
        with Spool(tmp_path):
            pass
        conn = sqlite3.connect(tmp_path / SPOOL_FILENAME)
        try:
            conn.execute("PRAGMA user_version = 99")
            conn.commit()
        finally:
            conn.close()
        with pytest.raises(ValueError, match="newer"):
            Spool(tmp_path)

    def test_threads_share_one_spool(self, spool: Spool) -> None:
        """Many threads adding and claiming through one Spool object lose nothing."""

        def work(base: int) -> None:
            for n in range(base, base + 10):
                spool.add(make_message(n), claimed=False)
                spool.claim_due(limit=1)

        threads = [threading.Thread(target=work, args=(base,)) for base in range(0, 80, 10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(spool) == 80
        assert len({entry.message_id for entry in spool.entries()}) == 80


class TestDurability:
    def test_entries_survive_a_new_spool_object(self, tmp_path: Path, clock: ManualClock) -> None:
        """What one Spool object stored, a later one on the same directory finds."""
        with Spool(tmp_path, clock=clock, owner=OTHER_HOST_A) as first:
            entry_id = first.add(make_message(), claimed=False)
            first.failed(entry_id, error="boom", next_attempt=NOW)
        clock.advance(300)
        with Spool(tmp_path, clock=clock) as second:
            [entry] = second.claim_due()
        assert (entry.id, entry.attempts, entry.last_error) == (entry_id, 1, "boom")
        assert entry.created == NOW  # the original time, for "delayed" in the resend

    def test_message_round_trip(self, tmp_path: Path, clock: ManualClock) -> None:
        """A message claimed from the spool equals the original: bytes, headers, digest."""
        original = make_message(7, message="Zahlung fehlgeschlagen ✗ 🚨")
        with Spool(tmp_path, clock=clock) as first:
            first.add(original, claimed=False)
        with Spool(tmp_path, clock=clock) as second:
            [entry] = second.claim_due()
        copy = entry.message
        assert copy is not None
        assert copy.email.as_bytes() == original.email.as_bytes()
        assert copy.email.items() == original.email.items()
        assert (copy.message_id, copy.sender, copy.recipients) == (
            original.message_id,
            original.sender,
            original.recipients,
        )
        assert (copy.title, copy.summary) == (original.title, original.summary)
        assert copy.digest == original.digest
        assert entry.size == len(original.email.as_bytes())

    def test_unreadable_entry_is_parked(self, spool: Spool, clock: ManualClock) -> None:
        """An entry that cannot be read is parked with its error instead of failing claims."""
        spool.add(make_message(1), claimed=False)
        good = spool.add(make_message(2), claimed=False)
        conn = sqlite3.connect(spool.path)
        try:
            conn.execute("UPDATE entries SET meta = '{\"v\": 99}' WHERE id != ?", (good,))
            conn.commit()
        finally:
            conn.close()
        assert [entry.id for entry in spool.claim_due()] == [good]
        parked = next(entry for entry in spool.entries() if entry.id != good)
        assert parked.owner is None
        assert parked.last_error is not None
        assert "newer" in parked.last_error
        assert parked.next_attempt > NOW


class TestClaims:
    def test_two_owners_never_claim_the_same_entry(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """Two live owners on one directory split the entries between them."""
        with (
            Spool(tmp_path, clock=clock, owner=OTHER_HOST_A) as a,
            Spool(tmp_path, clock=clock, owner=OTHER_HOST_B) as b,
        ):
            for n in range(10):
                a.add(make_message(n), claimed=False)
            got_a = a.claim_due(limit=4)
            got_b = b.claim_due()
            assert len(got_a) == 4
            assert len(got_b) == 6
            assert not {e.id for e in got_a} & {e.id for e in got_b}
            assert a.claim_due() == []
            assert b.claim_due() == []
            assert a.next_due() is None

    def test_live_owner_in_another_pid_namespace_keeps_its_claim(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """Same host name, a pid that is dead here: its held lock says it lives elsewhere."""
        from smtp_alerts._delivery.spool.liveness import hold

        # A container sharing the host name and the spool: its pid means nothing here.
        elsewhere = f"{socket.gethostname()}:999999999:1:feedface"
        hold(tmp_path, elsewhere)  # the lock its process holds for its lifetime
        with (
            Spool(tmp_path, clock=clock, owner=elsewhere) as theirs,
            Spool(tmp_path, clock=clock) as ours,
        ):
            theirs.add(make_message())
            assert ours.claim_due() == []
            assert ours.next_due() is None

    def test_owner_whose_lock_is_free_is_dead(self, tmp_path: Path, clock: ManualClock) -> None:
        """An owner that took a lock and died (the kernel freed it): its claim is taken over."""
        dead = f"{socket.gethostname()}:999999999:1:deadbeef"
        lock = tmp_path / "owners"
        lock.mkdir()
        from smtp_alerts._delivery.spool.liveness import _path

        _path(tmp_path, dead).touch()  # its file outlived it, unlocked
        with (
            Spool(tmp_path, clock=clock, owner=dead) as theirs,
            Spool(tmp_path, clock=clock) as ours,
        ):
            theirs.add(make_message())
            assert len(ours.claim_due()) == 1
        assert not _path(tmp_path, dead).exists()  # tidied up

    def test_other_hosts_claim_expires_after_the_lease(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """A claim by another host's process is taken over once the lease has passed."""
        with (
            Spool(tmp_path, clock=clock, owner=OTHER_HOST_A) as a,
            Spool(tmp_path, clock=clock) as local,
        ):
            a.add(make_message())
            clock.advance(DEFAULT_LEASE - 1)
            assert local.claim_due() == []
            clock.advance(1)
            [entry] = local.claim_due()
            assert entry.owner == local.owner
            a.failed(entry.id, error="late", next_attempt=NOW)  # no longer a's: ignored
            assert local.entries()[0].owner == local.owner

    def test_reused_pid_is_a_dead_owner(self, tmp_path: Path, clock: ManualClock) -> None:
        """A claim naming a live pid with another start time is claimable at once."""
        if process_identity().endswith(":"):
            pytest.skip("no /proc start times on this system")
        ghost = f"{socket.gethostname()}:{os.getpid()}:1"
        with (
            Spool(tmp_path, clock=clock, owner=ghost) as dead,
            Spool(tmp_path, clock=clock) as local,
        ):
            dead.add(make_message())
            assert len(local.claim_due()) == 1

    def test_process_that_exited_leaves_a_claimable_claim(self, tmp_path: Path) -> None:
        """An entry claimed by a process that exited without releasing is claimable at once."""
        child = run_python(
            """
            import sys
            from pathlib import Path
            from tests.unit.delivery.test_spool import make_message
            from smtp_alerts._delivery.spool import Spool
            with Spool(Path(sys.argv[1])) as spool:
                spool.add(make_message())
                print(spool.owner)
            """,
            str(tmp_path),
        )
        with Spool(tmp_path) as spool:
            [held] = spool.entries()
            assert held.owner == child.stdout.strip()
            assert spool.next_due() is not None
            [entry] = spool.claim_due()
            assert entry.owner == spool.owner
            assert entry.message is not None

    def test_killed_process_claim_is_taken_over(self, tmp_path: Path) -> None:
        """A live process's claim is respected; after SIGKILL it is claimable at once."""
        code = """
            import sys, time
            from pathlib import Path
            from tests.unit.delivery.test_spool import make_message
            from smtp_alerts._delivery.spool import Spool
            spool = Spool(Path(sys.argv[1]))
            spool.add(make_message())
            print("ready", flush=True)
            time.sleep(60)
        """
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", textwrap.dedent(code), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=SRC,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            with Spool(tmp_path) as spool:
                assert spool.claim_due() == []
                assert spool.next_due() is None
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=10)
                assert len(spool.claim_due()) == 1
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
            assert child.stdout is not None
            child.stdout.close()

    @pytest.mark.slow
    def test_processes_racing_claim_each_entry_once(self, tmp_path: Path) -> None:
        """Four processes claiming from one spool of 200 entries claim each exactly once."""
        with Spool(tmp_path) as spool:
            expected = {spool_message_id(spool, n) for n in range(200)}
        go = tmp_path / "go"
        code = """
            import sys, time
            from pathlib import Path
            from smtp_alerts._delivery.spool import Spool
            go = Path(sys.argv[2])
            claimed = []
            with Spool(Path(sys.argv[1])) as spool:
                print("ready", flush=True)
                while not go.exists():  # start together, once all four are ready
                    time.sleep(0.001)
                while True:
                    entries = spool.claim_due(limit=1)
                    if not entries and len(spool) == 0:
                        break
                    for entry in entries:
                        claimed.append(entry.message_id)
                        spool.delivered(entry.id)
                    # Sending takes a while outside the lock; without this pause the
                    # first process to start takes every lock (SQLite's busy handler
                    # sleeps, it does not queue) and there is no race to test. One
                    # entry per claim and 10 ms per "send" spread 200 entries over
                    # half a second, so all four race even on a loaded machine.
                    time.sleep(0.01)
            print("\\n".join(claimed))
        """
        children = [
            subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [sys.executable, "-c", textwrap.dedent(code), str(tmp_path), str(go)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=SRC,
            )
            for _ in range(4)
        ]
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
        go.touch()
        outputs = [child.communicate(timeout=60)[0] for child in children]
        assert [child.returncode for child in children] == [0, 0, 0, 0]
        claimed = [line for output in outputs for line in output.split()]
        assert sorted(claimed) == sorted(expected)  # every entry, none twice
        assert sum(1 for output in outputs if output.split()) > 1  # they did race

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
    def test_forked_child_claims_under_its_own_name(self, spool: Spool) -> None:
        """A forked child reconnects and claims as itself; the parent's spool keeps working."""
        spool.add(make_message(1), claimed=False)
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            # 3.12+ warns about forking a threaded process; the child only touches SQLite.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            status = 1
            try:
                [entry] = spool.claim_due()
                os.write(write_end, f"{spool.owner}\n{entry.owner}".encode())
                spool.close()
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            child_owner, entry_owner = pipe.read().split("\n")
        expected = process_identity(pid)  # before reaping: a zombie keeps its /proc entry
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_owner == entry_owner
        assert child_owner.startswith(expected + ":")  # then its own nonce
        assert child_owner != spool.owner
        assert len(spool.claim_due()) == 1  # the child is dead: its claim is free again


def spool_message_id(spool: Spool, n: int) -> str:
    message = make_message(n)
    spool.add(message, claimed=False)
    return message.message_id


class TestBound:
    def test_oldest_are_merged_into_one_summary(self, tmp_path: Path, clock: ManualClock) -> None:
        """Past max_entries the oldest entries become one summary naming them."""
        with Spool(tmp_path, clock=clock, max_entries=5) as spool:
            titles = []
            for n in range(7):
                message = make_message(n)
                titles.append(message.title)
                spool.add(message, claimed=False)
                clock.advance(10)
            entries = spool.entries()
            assert len(entries) == 5
            summary_entry = entries[0]
            assert summary_entry.title == "3 undelivered alert digests merged"
            assert summary_entry.created == NOW  # the oldest merged entry's time
            [claimed, *_] = spool.claim_due()
        assert claimed.id == summary_entry.id
        summary = claimed.message
        assert summary is not None
        plain = summary.email.get_body(("plain",))
        assert plain is not None
        text = plain.get_content()
        # The first merge took entries 0 and 1, the second that summary and entry 2.
        assert summary.email["X-Smtp-Alerts-Merged"] == "3"
        for title in titles[:3]:
            assert title in text
        assert "2026-11-18 11:06:40 UTC" in text  # NOW, the first entry's spool time
        assert text.count("\n- ") == 3  # one flat list, the first summary not listed
        assert summary.email["Subject"] == summary_entry.title
        assert summary.email["To"] == "ops@example.com"
        assert [entry.title for entry in entries[1:]] == titles[3:]

    def test_custom_summarizer_gets_the_oldest(self, tmp_path: Path, clock: ManualClock) -> None:
        """The configured summarizer receives the oldest messages, oldest first."""
        seen: list[list[str]] = []

        def summarize(messages: list[OutgoingMessage]) -> OutgoingMessage:
            seen.append([message.message_id for message in messages])
            return make_message(1000)

        with Spool(tmp_path, clock=clock, max_entries=3, summarize=summarize) as spool:
            ids = []
            for n in range(4):
                ids.append(spool_message_id(spool, n))
                clock.advance(1)
            assert seen == [ids[:2]]
            assert [entry.message_id for entry in spool.entries()] == [
                make_message(1000).message_id,
                *ids[2:],
            ]

    def test_failing_summarizer_falls_back(self, tmp_path: Path, clock: ManualClock) -> None:
        """A summarizer that raises still yields a summary; nothing is lost."""

        def summarize(messages: list[OutgoingMessage]) -> OutgoingMessage:
            raise RuntimeError("render failed")

        with Spool(tmp_path, clock=clock, max_entries=2, summarize=summarize) as spool:
            for n in range(3):
                spool.add(make_message(n), claimed=False)
            [summary] = [entry for entry in spool.claim_due() if entry.title.endswith("merged")]
        assert summary.message is not None
        assert "RuntimeError: render failed" in summary.message.summary
        assert summary.title == "2 undelivered alert digests merged"

    def test_summary_with_a_spooled_message_id_falls_back(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """A summary whose Message-ID is already spooled is replaced by the built-in one."""
        with Spool(
            tmp_path, clock=clock, max_entries=2, summarize=lambda _: make_message(2)
        ) as spool:
            for n in range(3):
                spool.add(make_message(n), claimed=False)
                clock.advance(1)
            titles = [entry.title for entry in spool.entries()]
        assert titles == ["2 undelivered alert digests merged", make_message(2).title]

    def test_entries_being_attempted_are_not_merged(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """Entries claimed by a live owner stay as they are, even past the bound."""
        with Spool(tmp_path, clock=clock, max_entries=2) as spool:
            for n in range(3):
                spool.add(make_message(n))
            assert len(spool) == 3
            assert all(not entry.title.endswith("merged") for entry in spool.entries())

    def test_max_entries_below_two_is_refused(self, tmp_path: Path) -> None:
        """A bound with no room for a summary raises ValueError."""
        with pytest.raises(ValueError, match="max_entries"):
            Spool(tmp_path, max_entries=1)


def attempt(at: float, *, ok: bool = False) -> Attempt:
    return Attempt(
        at=at,
        message_id="<1@example.com>",
        title="1 problem",
        channel="gmail",
        step="data" if ok else "rcpt",
        code=250 if ok else 451,
        reply="OK" if ok else "4.7.1 try again",
        duration=0.25,
        ok=ok,
    )


class TestHistory:
    def test_attempts_are_recorded_newest_first(self, spool: Spool) -> None:
        """Recorded attempts come back whole, newest first, up to the limit."""
        first, second = attempt(NOW - 5), attempt(NOW, ok=True)
        spool.record_attempt(first)
        spool.record_attempt(second)
        assert spool.history() == [second, first]
        assert spool.history(limit=1) == [second]

    def test_old_attempts_are_pruned(self, tmp_path: Path, clock: ManualClock) -> None:
        """Attempts older than the retention are deleted when a new one is recorded."""
        with Spool(tmp_path, clock=clock, history_retention=3600) as spool:
            spool.record_attempt(attempt(NOW))
            clock.advance(3601)
            spool.record_attempt(attempt(clock.now, ok=True))
            assert [a.at for a in spool.history()] == [clock.now]

    def test_history_survives_reopening(self, tmp_path: Path, clock: ManualClock) -> None:
        """The audit trail is kept in the database, not in memory."""
        with Spool(tmp_path, clock=clock) as spool:
            spool.record_attempt(attempt(NOW))
        with Spool(tmp_path, clock=clock) as spool:
            assert spool.history() == [attempt(NOW)]


class TestProcessIdentity:
    def test_names_host_pid_and_start_time(self) -> None:
        """The owner name is host:pid:start-time:nonce, stable for a process."""
        identity = process_identity()
        host, pid, start, nonce = identity.split(":")
        assert len(nonce) == 8  # tells processes of different pid namespaces apart
        assert (host, pid) == (socket.gethostname(), str(os.getpid()))
        assert process_identity() == identity
        if Path("/proc/self/stat").exists():
            assert start.isdigit()
