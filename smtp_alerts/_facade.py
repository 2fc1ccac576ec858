"""The public :class:`Engine`: the engine core with its front-ends, and the default engine.

The engine core (:mod:`smtp_alerts._engine.core`) knows none of the
front-ends: jobs, heartbeats, checks and the crash hooks are typed against
the :class:`~smtp_alerts._engine.sink.AlertSink` it offers. Users still ask
the engine for them (``engine.job("backup")``, ``engine.report(...)``), so
this module, above both layers, adds those methods to the core. It also keeps
the process's default engine (:func:`get_engine`), which must be this class,
and hands it down to the crash hooks (:func:`install_crash_hooks`), which may
not import it.

The front-ends' modules load when first used, not with this one: together
they cost about 25 ms of import, a tenth of what ``AlertHandler`` costs,
which a program that only logs would pay for nothing. This is import time
only, not a cycle: they import the sink protocol, never this module.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._engine.core import EngineCore
from ._engine.process import DefaultEngine

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._engine.sink import AlertSink
    from ._sources.crash import CrashHooks
    from ._sources.heartbeats import Heartbeat
    from ._sources.jobs import Job
    from ._store.silences import Silence
    from .checks import Check, CheckPolicy, CheckRunner
    from .settings import Settings

__all__ = ["Engine", "engine_for", "get_engine", "install_crash_hooks", "swap_default_engine"]

log = logging.getLogger("smtp_alerts.engine")


class Engine(EngineCore):
    """Collects alerts, batches them into digests and delivers them in the background.

    The engine starts its thread on the first alert, so a program that never
    alerts never runs it, and a process that forks before that (a pre-fork
    server) starts its own in each child. Besides alerts it runs checks
    (:meth:`report`, :meth:`watch`), jobs (:meth:`job`) and heartbeats
    (:meth:`heartbeat`, :meth:`beat`).

    Args:
        settings: the settings; read from the environment when omitted.
        transport: the channel to send through; SMTP per the settings when omitted.
        clock: the clock for windows and quotas.
        token_provider: for XOAUTH2, a callable returning a fresh access token
            (sync or async); used instead of the password.
        hostname: the name shown in subjects; the machine's when omitted.
        spool: keep undelivered digests in ``SPOOL_DIR`` (on disk, across
            restarts); False keeps them in memory only.
    """

    # -- checks (smtp_alerts.checks) ------------------------------------------------

    def report(
        self,
        name: str,
        ok: bool,  # noqa: FBT001 - report(name, ok) reads as the sentence it is
        detail: str = "",
        *,
        policy: CheckPolicy | None = None,
    ) -> None:
        """Report a check's result; never blocks, never raises.

        The engine's check monitor takes it on the engine's loop: it keeps the
        check's state (UP, PENDING, DOWN, across restarts in ``SPOOL_DIR``) and
        raises the DOWN, reminder, RECOVERED and flapping alerts
        (:mod:`smtp_alerts.checks`).

        Args:
            name: the check's name.
            ok: whether it passed.
            detail: what it saw, in a line.
            policy: the check's retries, recovery, reminders and flapping.
        """
        try:
            from .checks._monitor import monitor_for  # noqa: PLC0415 - import time (module docstring)

            monitor_for(self).submit(name, ok, detail, policy)
        except Exception:  # a report must never break the caller
            log.debug("the result of check %r was not taken", name, exc_info=True)

    def watch(self, checks: Iterable[Check]) -> CheckRunner:
        """Start running ``checks`` on the engine's loop; ``stop()`` the runner returned."""
        from .checks._runner import CheckRunner  # noqa: PLC0415 - import time (module docstring)

        runner = CheckRunner(self, checks)
        runner.start()
        return runner

    # -- jobs and heartbeats (smtp_alerts._sources) ---------------------------------

    def job(
        self,
        name: str,
        *,
        max_duration: float | str | None = None,
        level: int = logging.ERROR,
        group: str = "default",
    ) -> Job:
        """A monitored job: ``with engine.job("backup"):`` or ``@engine.job("backup")``.

        Works on sync and async functions and as an async context manager. An
        exception in the body sends an alert with its traceback (and
        propagates unchanged); a run longer than ``max_duration`` sends an
        alert while it still runs and when it ends; a successful run is a
        heartbeat of ``name``.

        Args:
            name: the job's name, in alerts and as its heartbeat name.
            max_duration: the longest a run may take (seconds or ``"30m"``); None: no limit.
            level: the :mod:`logging` level of its alerts.
            group: the notification group of its alerts.

        Returns:
            The job (context manager and decorator).

        Raises:
            ValueError: an empty name or a malformed ``max_duration``.
        """
        from ._sources.jobs import Job  # noqa: PLC0415 - import time (module docstring)

        return Job(self, name, max_duration=max_duration, level=level, group=group)

    def heartbeat(
        self,
        name: str,
        *,
        period: float | str,
        grace: float | str | None = None,
        level: int = logging.ERROR,
        group: str = "default",
    ) -> Heartbeat:
        """Expect ``name`` to beat every ``period``: a dead man's switch.

        When ``name`` has not beaten (:meth:`beat`, or a successful
        :meth:`job` of that name) within ``period`` plus ``grace``, one alert
        says when it was last seen; the next beat sends a recovery note. The
        last beats survive a restart (kept in ``SPOOL_DIR``) and are shared
        with other processes; a task on the engine's loop does the checking.

        Args:
            name: the heartbeat's name.
            period: the expected time between beats (seconds or ``"1d"``).
            grace: extra time before a beat counts as missed; a tenth of the period by default.
            level: the :mod:`logging` level of the missed-heartbeat alert.
            group: its notification group.

        Returns:
            The registration (with ``beat()`` and ``last_beat``).

        Raises:
            ValueError: an empty name or a malformed or zero period.
            RuntimeError: the engine is closed.
        """
        from ._sources.heartbeats import heartbeat_monitor  # noqa: PLC0415 - import time

        return heartbeat_monitor(self).register(
            name, period=period, grace=grace, level=level, group=group
        )

    def beat(self, name: str) -> None:
        """Record a success of ``name`` now (see :meth:`heartbeat`); never blocks.

        The beat is kept in memory; the engine's loop writes it to ``SPOOL_DIR``
        within a few seconds and when the engine closes, so a beat before a
        clean shutdown is kept and a crash loses at most the last few seconds.

        Args:
            name: the heartbeat's name; beats of names not registered in this
                process are kept too, for a process that watches them.
        """
        from ._sources.heartbeats import heartbeat_monitor  # noqa: PLC0415 - import time

        heartbeat_monitor(self).beat(name)

    # -- silences -------------------------------------------------------------------

    def silence(
        self,
        *,
        duration: float | str,
        logger: str | None = None,
        match: str | None = None,
        check: str | None = None,
        comment: str = "",
    ) -> Silence:
        """Silence what matches, for every engine on the store, for ``duration``.

        A silenced problem is counted, not emailed; the first digest after the
        silence ends says how many occurrences it held. Every criterion given
        must match; a meta-alert about a broken login is never silenced. Does
        I/O (the spool's file, or Redis with ``REDIS_URL``): not for a hot path.

        Args:
            duration: seconds, or ``"30m"``, ``"2h"``, ``"1d"``.
            logger: a logger name prefix (``app.db`` covers ``app.db.pool``).
            match: a text the message contains (case-insensitive).
            check: a check's name.
            comment: why, shown by ``smtp-alerts silence list``.

        Returns:
            The silence, with its ``id``.

        Raises:
            ValueError: no criterion, or a duration that is not positive.
            OSError: the store cannot be reached.
        """
        from ._store.silences import new_silence, silence_book  # noqa: PLC0415 - import time
        from .settings import parse_duration  # noqa: PLC0415

        seconds = parse_duration(duration)
        with silence_book(self.settings) as book:
            made = new_silence(
                book.now(), seconds, logger=logger, match=match, check=check, comment=comment
            )
            book.add(made)
        return made

    def silences(self) -> list[Silence]:
        """The store's silences, those that ended and were not yet reported included."""
        from ._store.silences import silence_book  # noqa: PLC0415 - import time

        with silence_book(self.settings) as book:
            return book.all()

    def unsilence(self, silence_id: str) -> bool:
        """End a silence now (the next digest says what it held); whether it existed."""
        from ._store.silences import silence_book  # noqa: PLC0415 - import time

        with silence_book(self.settings) as book:
            return book.end(silence_id)


# -- the process's default engine ------------------------------------------------------

_DEFAULT: DefaultEngine[Engine] = DefaultEngine(Engine)


def get_engine() -> Engine:
    """The process's default engine, built from the environment on first use.

    The handler (with no settings overrides), the check and job hooks and the
    crash hooks share it.

    Raises:
        ConfigurationError: the ``SMTP_ALERTS_*`` settings are missing or wrong.
    """
    return _DEFAULT.get()


def engine_for(settings: Settings) -> tuple[Engine, bool]:
    """The engine for settings given in code; and whether it is the caller's own to close.

    The first settings given in code (``AlertHandler(to=[...])``) configure
    the process's default engine, which :func:`get_engine`, the crash hooks,
    checks and jobs share, and which serves later handlers given the same
    settings. Settings that differ from it get an engine of their own.
    """
    return _DEFAULT.for_settings(settings, Engine)


def swap_default_engine(engine: Engine | None) -> Engine | None:
    """Make ``engine`` the default engine; return the previous one (for testing helpers)."""
    return _DEFAULT.swap(engine)


def install_crash_hooks(
    engine: AlertSink | None = None,
    *,
    force: bool = False,
    sigterm: bool = True,
) -> CrashHooks:
    """Email uncaught exceptions (main thread, other threads, asyncio) before the process ends.

    Call it once, early (in an asyncio program, at the top of ``main()`` also
    chains that loop's handler). A second call returns the hooks already
    installed. See :mod:`smtp_alerts._sources.crash` for what is hooked and how.

    Args:
        engine: the engine to report to; the process's default engine (from
            the ``SMTP_ALERTS_*`` environment) when omitted.
        force: install even in an interactive session.
        sigterm: deliver pending alerts on SIGTERM (only when SIGTERM has its
            default action and this is the main thread).

    Returns:
        The hooks, with ``uninstall()``.

    Raises:
        ConfigurationError: no engine given and the settings are missing or wrong.
    """
    from ._sources import crash  # noqa: PLC0415 - import time (module docstring)

    return crash.install_crash_hooks(
        engine, default_engine=get_engine, force=force, sigterm=sigterm
    )
