"""The bottom layer: small utilities that know nothing of alerts."""
