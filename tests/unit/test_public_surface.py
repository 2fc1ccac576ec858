"""The public surface, pinned: each public package's names, and where they say they live.

A name added to or removed from a public package is a decision, so this test
makes it one (as httpx's ``tests/test_exported_members.py`` does). Every public
class and function reports a public module, so reprs, ``help()`` and docs never
name a private path such as ``smtp_alerts._engine.core``.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import typing

import pytest

PUBLIC = {
    "smtp_alerts": [
        "Alert",
        "AlertHandler",
        "ConfigurationError",
        "DeliveryError",
        "Digest",
        "Engine",
        "EngineStats",
        "MetaAlert",
        "OAuthToken",
        "OutgoingMessage",
        "Problem",
        "SMTPAlertsError",
        "Settings",
        "__version__",
        "get_engine",
        "install_crash_hooks",
    ],
    "smtp_alerts.checks": [
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
    ],
    "smtp_alerts.testing": [
        "AlertCapture",
        "AuthAttempt",
        "Faults",
        "GmailServer",
        "ManualClock",
        "ReceivedMessage",
        "WebhookListener",
        "WebhookRequest",
        "capture_alerts",
    ],
    "smtp_alerts.transports": ["MemoryTransport", "Transport"],
    "smtp_alerts.errors": [
        "AuthenticationError",
        "CertificateVerifyError",
        "ConfigurationError",
        "ConnectError",
        "DeliveryError",
        "DeliveryTimeoutError",
        "MessageTooLargeError",
        "PermanentReplyError",
        "QuotaExceededError",
        "RecipientsRefusedError",
        "ReplyError",
        "SMTPAlertsError",
        "StartTLSNotOfferedError",
        "TLSError",
        "TemporaryReplyError",
    ],
    "smtp_alerts.models": [
        "EMAIL_POLICY",
        "Alert",
        "Digest",
        "Fingerprint",
        "OutgoingMessage",
        "Problem",
        "fingerprint_id",
    ],
    "smtp_alerts.handler": ["AlertHandler"],
}


def _public_names() -> list[tuple[str, str]]:
    return [(package, name) for package, names in PUBLIC.items() for name in names]


class TestPublicSurface:
    """Each public package exports exactly its pinned names, from public modules."""

    @pytest.mark.parametrize("package", sorted(PUBLIC))
    def test_all_is_pinned(self, package: str) -> None:
        """A public package's ``__all__`` is exactly the pinned list, sorted."""
        module = importlib.import_module(package)
        assert list(module.__all__) == PUBLIC[package]

    @pytest.mark.parametrize(("package", "name"), _public_names())
    def test_name_resolves(self, package: str, name: str) -> None:
        """Every name in ``__all__`` can be looked up, and ``dir()`` lists it."""
        module = importlib.import_module(package)
        assert getattr(module, name) is not None
        assert name in dir(module)

    @pytest.mark.parametrize(("package", "name"), _public_names())
    def test_reports_a_public_module(self, package: str, name: str) -> None:
        """A public class or function names a module without a private part."""
        value = getattr(importlib.import_module(package), name)
        if typing.get_origin(value) is not None:
            return  # a type alias such as Fingerprint (a class to inspect on Python 3.10)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            return
        parts = value.__module__.split(".")
        assert parts[0] == "smtp_alerts"
        assert not any(part.startswith("_") for part in parts), value.__module__

    def test_private_definitions_report_their_package(self) -> None:
        """A name defined in a private module reports the package that exports it."""
        import smtp_alerts
        import smtp_alerts.testing

        assert smtp_alerts.Engine.__module__ == "smtp_alerts"
        assert smtp_alerts.get_engine.__module__ == "smtp_alerts"
        assert smtp_alerts.testing.GmailServer.__module__ == "smtp_alerts.testing"
        assert "smtp_alerts._" not in repr(smtp_alerts.Engine)

    def test_import_loads_nothing_heavy(self) -> None:
        """``import smtp_alerts`` loads none of the engine, aiosmtplib or apprise."""
        code = (
            "import sys, smtp_alerts, smtp_alerts.testing, smtp_alerts.checks\n"
            "heavy = [m for m in ('aiosmtplib', 'apprise', 'aiosmtpd', 'smtp_alerts._engine')"
            " if m in sys.modules]\n"
            "print(','.join(heavy))\n"
        )
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == ""
