"""Framework integrations, imported as ``smtp_alerts.integrations.<name>``."""
