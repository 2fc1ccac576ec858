"""The integration's Django app: ``"smtp_alerts.integrations.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig


class SmtpAlertsConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    """Connects the integration when Django is ready (the one line of DESIGN section 3)."""

    name = "smtp_alerts.integrations.django"
    label = "smtp_alerts"
    verbose_name = "smtp-alerts"

    def ready(self) -> None:
        """Report failed requests and security events to the process's default engine."""
        from . import install  # noqa: PLC0415 - the package imports this module's framework first

        install()
