"""Connection values: the security a port speaks, loopback hosts and EHLO names."""

from __future__ import annotations

import socket

import pytest

import smtp_alerts.settings
from smtp_alerts._util import net
from smtp_alerts._util.net import ehlo_hostname, is_ehlo_name, is_loopback, security_for_port


class TestSecurity:
    @pytest.mark.parametrize(
        ("port", "security"), [(465, "tls"), (587, "starttls"), (25, "starttls")]
    )
    def test_security_for_port(self, port: int, security: str) -> None:
        """465 speaks TLS from the first byte; every other port STARTTLS."""
        assert security_for_port(port) == security

    def test_settings_still_exports_the_helpers(self) -> None:
        """smtp_alerts.settings keeps offering Security and its helpers."""
        assert smtp_alerts.settings.Security is net.Security
        assert smtp_alerts.settings.security_for_port is security_for_port
        assert smtp_alerts.settings.is_loopback is is_loopback


class TestLoopback:
    @pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.3.2.1", "::1"])
    def test_loopback(self, host: str) -> None:
        """localhost and the loopback addresses are loopback."""
        assert is_loopback(host)

    @pytest.mark.parametrize("host", ["smtp.gmail.com", "10.0.0.1", "localhost.example", ""])
    def test_not_loopback(self, host: str) -> None:
        """Other names and addresses are not, and no name is looked up."""
        assert not is_loopback(host)


class TestEhloName:
    @pytest.mark.parametrize(
        ("name", "fits"),
        [
            ("client.example", True),
            ("", False),
            ("two words", False),
            ("tab\tname", False),
            ("caf\u00e9", False),
        ],
    )
    def test_is_ehlo_name(self, name: str, fits: bool) -> None:
        """Printable ASCII without spaces fits on the EHLO line."""
        assert is_ehlo_name(name) is fits

    def test_host_name_that_does_not_fit_falls_back(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A host name that cannot be sent with EHLO is replaced by localhost."""
        monkeypatch.setattr(socket, "gethostname", lambda: "my laptop")
        assert ehlo_hostname() == "localhost"
        monkeypatch.setattr(socket, "gethostname", lambda: "web-1")
        assert ehlo_hostname() == "web-1"
