"""Uptime checks: results into UP / DOWN / RECOVERED emails, never a flood.

Push results from your own code (the engine keeps each check's state)::

    import smtp_alerts

    engine = smtp_alerts.get_engine()
    engine.report("database", ok=False, detail="connection refused")

or let a runner probe things at intervals on the engine's loop::

    from smtp_alerts.checks import CheckPolicy, CheckRunner, HttpCheck, TcpCheck

    runner = CheckRunner(engine, [
        HttpCheck(name="website", url="https://example.com/health", max_latency=2.0),
        TcpCheck(name="database", host="db.internal", port=5432,
                 policy=CheckPolicy(retries=0)),
    ])
    runner.start()

or describe them in a TOML file for ``smtp-alerts watch checks.toml`` (see
:mod:`smtp_alerts.checks._config` for the format).

A check is DOWN after ``retries + 1`` failures in a row, reminds every
``resend_interval`` while down, and RECOVERED (with the downtime) after
``recovery`` successes; a check that flaps raises one alert and then keeps
quiet until it is calm. The state survives restarts, in ``SPOOL_DIR``.

The names load on first use: importing this package costs almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from ._builtin import CallableCheck, CommandCheck, HttpCheck, TcpCheck, TlsExpiryCheck
    from ._check import Check, CheckResult
    from ._config import CheckConfigError, WatchConfig, load_config
    from ._monitor import CheckMonitor
    from ._runner import CheckOutcome, CheckRunner
    from ._state import CheckEvent, CheckMachine, CheckPolicy, CheckState, CheckStatus, EventKind

__all__ = [
    "CallableCheck",
    "Check",
    "CheckConfigError",
    "CheckEvent",
    "CheckMachine",
    "CheckMonitor",
    "CheckOutcome",
    "CheckPolicy",
    "CheckResult",
    "CheckRunner",
    "CheckState",
    "CheckStatus",
    "CommandCheck",
    "EventKind",
    "HttpCheck",
    "TcpCheck",
    "TlsExpiryCheck",
    "WatchConfig",
    "load_config",
]

_LAZY = {
    "CallableCheck": "._builtin",
    "Check": "._check",
    "CheckConfigError": "._config",
    "CheckEvent": "._state",
    "CheckMachine": "._state",
    "CheckMonitor": "._monitor",
    "CheckOutcome": "._runner",
    "CheckPolicy": "._state",
    "CheckResult": "._check",
    "CheckRunner": "._runner",
    "CheckState": "._state",
    "CheckStatus": "._state",
    "CommandCheck": "._builtin",
    "EventKind": "._state",
    "HttpCheck": "._builtin",
    "TcpCheck": "._builtin",
    "TlsExpiryCheck": "._builtin",
    "WatchConfig": "._config",
    "load_config": "._config",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
