"""Tools for testing code that uses smtp-alerts."""
