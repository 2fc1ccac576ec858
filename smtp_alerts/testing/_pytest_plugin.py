"""pytest fixtures for smtp-alerts."""
