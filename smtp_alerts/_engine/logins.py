"""The engine's side of the auth watcher: probes, meta-alerts and the user's hooks.

:class:`~smtp_alerts._delivery.auth_watch.AuthWatch` decides, without I/O,
when a login was refused too often and when a resting login is due a probe.
:class:`LoginWatcher` does what it decides, on the engine's loop: it probes
the resting logins, sends each meta-alert on every channel (keeping it in the
spool when none takes it), and runs the ``on_meta_alert`` hooks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._delivery.auth_watch import AuthEvent, AuthRecovered, AuthWatch
from .._delivery.meta_alert import MetaAlert, meta_alert, meta_digest
from .._delivery.rounds import Delivery
from .._delivery.spool import Spool
from .._util.clock import Clock
from .._util.stderr import warn
from .render import RenderContext, render

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["LoginWatcher", "MetaHook"]

log = logging.getLogger("smtp_alerts.engine")

MetaHook = Callable[[MetaAlert], object]
"""Called with every meta-alert; may return an awaitable (an ``async def`` hook)."""


class LoginWatcher:
    """Acts on what the auth watcher sees: probes, meta-alerts, hooks.

    Args:
        settings: the engine's settings (thresholds, ``TIMEOUT``, ``SPOOL_DIR``).
        clock: the engine's clock.
        context: what meta-alerts are rendered with.
        hooks: the ``on_meta_alert`` hooks; the engine's own list, which
            outlives this watcher (a forked child makes a new watcher).

    Attributes:
        watch: the auth watcher (the chain's gate).
        raised: how many meta-alerts were raised.
    """

    def __init__(
        self, settings: Settings, *, clock: Clock, context: RenderContext, hooks: list[MetaHook]
    ) -> None:
        self._settings = settings
        self._context = context
        self._hooks = hooks
        self.watch = AuthWatch(
            threshold=settings.auth_failure_threshold,
            window=settings.auth_failure_window,
            clock=clock,
        )
        self._threads: dict[str, tuple[float, str]] = {}  # credential -> (since, subject)
        self.raised = 0

    def resting(self) -> tuple[str, ...]:
        """The logins refused repeatedly and not used until a probe succeeds."""
        watch = self.watch
        return tuple(c for c in watch.states() if watch.is_tripped(c))

    async def run(self, delivery: Delivery) -> bool:
        """Probe the resting logins that are due; announce what the watcher saw.

        Returns:
            False when a meta-alert or a spooled digest is still undelivered.
        """
        watch = self.watch
        for credential in watch.due_probes():
            # A bare login, no message at risk; PASSWORD_FILE is read again for it.
            error = await delivery.chain.probe_login(credential)
            if error is not None:
                log.warning("the login %s is still refused: %s", credential, error)
        ok = True
        for event in watch.pop_events():
            ok = await self._announce(event, delivery) and ok
        return ok

    async def _announce(self, event: AuthEvent, delivery: Delivery) -> bool:
        """Send the meta-alert for ``event`` everywhere it can go; run the hooks."""
        credential = event.credential
        chain = delivery.chain
        recovered = isinstance(event, AuthRecovered)
        if isinstance(event, AuthRecovered):
            since, thread_subject = self._threads.pop(credential, (event.tripped_at, None))
            waiting = delivery.pending
            now_text = (
                f"The {waiting} digest(s) kept while it was refused are sent now."
                if waiting
                else "No alerts were waiting."
            )
        else:
            since, thread_subject = event.at, None
            others = [c.name for c in chain.channels if c.transport.credential != credential]
            now_text = (
                f"Alerts meanwhile go through {', '.join(others)}."
                if others
                else "No other channel is configured, so alerts meanwhile are kept in the "
                f"spool ({self._spool_where(delivery)}) and sent once the login works. "
                "SMTP_ALERTS_FALLBACK_URLS or a backup server would carry them meanwhile."
            )
        meta = meta_alert(event, delivery_now=now_text)
        message = render(
            meta_digest(meta, since=since, thread_subject=thread_subject), self._context
        )
        if not recovered:
            self._threads[credential] = (since, message.title)
        self.raised += 1
        warn(meta.text if not recovered else meta.subject)
        # Everyone watching any channel must see it: every channel, not the first
        # that takes it; a failure avoids the channels that use the refused login.
        results = await chain.broadcast(message, avoid=None if recovered else credential)
        await chain.aclose()
        ok = True
        if not any(error is None for error in results.values()):
            # Nowhere to go now: keep it; it goes out with the first channel that works.
            delivery.spool.add(message, claimed=False)
            ok = False
        await self._run_hooks(meta)
        if recovered:
            ok = await delivery.retry(force=True) and ok
        return ok

    def _spool_where(self, delivery: Delivery) -> str:
        if isinstance(delivery.spool, Spool):
            return str(self._settings.spool_path)
        return "in memory"

    async def _run_hooks(self, meta: MetaAlert) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._settings.timeout
        for hook in list(self._hooks):
            try:
                if inspect.iscoroutinefunction(hook):
                    await asyncio.wait_for(hook(meta), timeout)
                    continue
                # A sync hook may block (it might send a text message): not on our loop.
                result = await asyncio.wait_for(loop.run_in_executor(None, hook, meta), timeout)
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, timeout)
            except Exception as exc:  # noqa: BLE001 - a user's hook must not stop us
                log.warning("the on_meta_alert hook %r failed: %r", hook, exc)
                warn(f"smtp-alerts: the on_meta_alert hook {hook!r} failed: {exc!r}")
