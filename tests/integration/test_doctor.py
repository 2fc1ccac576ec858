"""``smtp-alerts doctor`` and ``send-test`` against the Gmail-like server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from smtp_alerts.cli import main
from smtp_alerts.cli.doctor import run_doctor
from smtp_alerts.testing import Faults, GmailServer

if TYPE_CHECKING:
    from collections.abc import Iterator

WRONG_PASSWORD = "wrong-app-password-q7z9"


def _use(monkeypatch: pytest.MonkeyPatch, server: GmailServer, **overrides: str) -> None:
    """Point the ``SMTP_ALERTS_*`` environment at ``server``; "" removes a variable."""
    for name, value in server.environ(**overrides).items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in-process; its exit status and everything it wrote."""
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _line(output: str, mark: str, label: str) -> str:
    """The first line of ``output`` for step ``label`` with ``mark``."""
    prefix = f"{mark} {label} "
    return next(line for line in output.splitlines() if line.startswith(prefix))


def _labels(output: str) -> list[str]:
    """The step labels of ``output``, in order (diagnosis lines are indented)."""
    return [line.split()[1] for line in output.splitlines() if line and not line[0].isspace()]


@pytest.fixture
def pair() -> Iterator[tuple[GmailServer, GmailServer]]:
    """A STARTTLS server and a second one for the other port, both trusted by one CA file."""
    with GmailServer() as first, GmailServer() as second:
        yield first, second


def _both_cas(tmp_path: Path, *servers: GmailServer) -> str:
    bundle = tmp_path / "cas.pem"
    bundle.write_text("".join(server.ca_file.read_text() for server in servers))
    return str(bundle)


class TestDoctorHealthy:
    """Against healthy servers every step passes, with exactly one AUTH."""

    def test_every_step_passes_starttls(
        self,
        pair: tuple[GmailServer, GmailServer],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """DNS, both ports, STARTTLS and the certificate on each, one login: all ✔."""
        server, other = pair
        _use(
            monkeypatch,
            server,
            ALTERNATE_PORT=str(other.port),
            CA_FILE=_both_cas(tmp_path, server, other),
        )
        status, output = _doctor(capsys, "doctor")
        assert status == 0, output
        assert "✘" not in output
        assert "!" not in output
        assert _labels(output) == [
            "settings",
            "resolve",
            *(["connect", "starttls", "certificate"] * 2),
            "login",
            "send",
            "result",
        ]
        for label in ("settings", "resolve", "login", "result"):
            assert _line(output, "✔", label)
        connects = [line for line in output.splitlines() if line.startswith("✔ connect ")]
        assert [str(server.port) in connects[0], str(other.port) in connects[1]] == [True, True]
        assert output.count("✔ starttls ") == 2
        certificate = _line(output, "✔", "certificate")
        assert "valid for 127.0.0.1 (IP:127.0.0.1)" in certificate
        assert "expires in" in certificate
        assert "ms)" in _line(output, "✔", "login")
        assert server.auth_attempts == [("PLAIN", server.username, True)]
        assert other.auth_attempts == []
        assert server.messages == []

    def test_every_step_passes_implicit_tls(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """On a 465-style server the TLS handshake step passes, and the other port's STARTTLS."""
        with GmailServer(mode="tls") as server, GmailServer() as other:
            _use(
                monkeypatch,
                server,
                ALTERNATE_PORT=str(other.port),
                CA_FILE=_both_cas(tmp_path, server, other),
            )
            status, output = _doctor(capsys, "doctor")
            assert status == 0, output
            assert "TLS from the first byte" in _line(output, "✔", "tls")
            assert _line(output, "✔", "starttls")
            assert _line(output, "✔", "login")
            assert len(server.auth_attempts) == 1

    def test_send_delivers_a_test_message(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With --send a rendered, auto-submitted test message arrives, still with one AUTH."""
        with GmailServer() as server:
            _use(monkeypatch, server, ALTERNATE_PORT="0")
            status, output = _doctor(capsys, "doctor", "--send")
            assert status == 0, output
            (received,) = server.messages
            assert received.recipients == ("oncall@example.com",)
            assert "smtp-alerts test message" in received.subject
            assert received.message["Auto-Submitted"] == "auto-generated"
            assert received.message["Message-ID"] in _line(output, "✔", "send")
            assert len(server.auth_attempts) == 1

    def test_other_port_failure_is_only_a_warning(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The other port refusing connections is a ``!`` line; the exit status stays 0."""
        with (
            GmailServer() as server,
            GmailServer(faults=Faults(refuse_connections=True)) as other,
        ):
            _use(monkeypatch, server, ALTERNATE_PORT=str(other.port))
            status, output = _doctor(capsys, "doctor")
            assert status == 0, output
            warning = _line(output, "!", "connect")
            assert str(other.port) in warning
            assert "Connection refused" in warning
            assert "1 warning" in _line(output, "✔", "result")

    def test_hint_when_only_the_other_port_works(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """When only the other port answers, the doctor fails and says to switch to it."""
        with (
            GmailServer(faults=Faults(refuse_connections=True)) as server,
            GmailServer() as other,
        ):
            _use(
                monkeypatch,
                server,
                ALTERNATE_PORT=str(other.port),
                CA_FILE=_both_cas(tmp_path, server, other),
            )
            status, output = _doctor(capsys, "doctor")
            assert status == 1
            assert f"SMTP_ALERTS_PORT={other.port}" in _line(output, "·", "hint")
            assert other.auth_attempts == []


AUTH_FAULTS = {
    "535": ("535 5.7.8", "https://myaccount.google.com/apppasswords"),
    "534-5.7.9": ("534 5.7.9", "Create an app password"),
    "534-5.7.14": ("534 5.7.14", "once in a browser"),
    "530": ("530 5.7.0", "SMTP_ALERTS_SECURITY=starttls"),
    "454": ("454 4.7.0", "Wait before trying again"),
}


class TestDoctorDiagnoses:
    """Each failure gets its own fix, the steps after it are skipped, and the exit is 1."""

    @pytest.mark.parametrize("fault", AUTH_FAULTS, ids=AUTH_FAULTS)
    def test_auth_refusals(
        self, fault: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Gmail's AUTH refusals each get their code and fix, after exactly one AUTH."""
        code, fix = AUTH_FAULTS[fault]
        with GmailServer() as server:
            server.faults.auth_reply = fault  # type: ignore[assignment]
            _use(monkeypatch, server, ALTERNATE_PORT="0")
            status, output = _doctor(capsys, "doctor", "--send")
            assert status == 1
            assert _line(output, "✘", "login")
            assert f"{code}: " in output
            assert fix in " ".join(output.split())
            assert _line(output, "-", "send")
            assert len(server.auth_attempts) == 1
            assert server.messages == []

    def test_xoauth2_refusal(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A refused OAuth token is explained as expired, revoked or missing the mail scope."""
        with GmailServer(xoauth2_token="ya29.current") as server:
            _use(monkeypatch, server, ALTERNATE_PORT="0", PASSWORD="")
            status = run_doctor(token_provider=lambda: "ya29.expired")
            output = capsys.readouterr().out
            assert status == 1
            assert "with OAuth2 (XOAUTH2)" in _line(output, "✔", "settings")
            assert "refused the OAuth2 access token" in output
            assert "https://mail.google.com/" in output
            assert "ya29.expired" not in output
            assert server.auth_attempts == [("XOAUTH2", server.username, False)]

    def test_connection_refused(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A refused connection fails the connect step; no TLS check and no login follow."""
        with GmailServer(faults=Faults(refuse_connections=True)) as server:
            _use(monkeypatch, server, ALTERNATE_PORT="0")
            status, output = _doctor(capsys, "doctor")
            assert status == 1
            assert _line(output, "✘", "connect")
            assert "Connection refused" in output
            assert "firewall" in output
            assert _labels(output) == ["settings", "resolve", "connect", "login", "result"]
            assert _line(output, "-", "login")

    def test_no_starttls(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A server without STARTTLS fails the STARTTLS step and never sees the credentials."""
        with GmailServer(faults=Faults(offer_starttls=False)) as server:
            _use(monkeypatch, server, ALTERNATE_PORT="0")
            status, output = _doctor(capsys, "doctor", "--send")
            assert status == 1
            assert _line(output, "✘", "starttls")
            assert "no STARTTLS: " in output
            assert "strips STARTTLS" in " ".join(output.split())
            assert _line(output, "-", "login")
            assert server.auth_attempts == []
            assert server.messages == []

    def test_untrusted_certificate(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without CA_FILE the private CA is not trusted: the fix names SMTP_ALERTS_CA_FILE."""
        with GmailServer() as server:
            _use(monkeypatch, server, ALTERNATE_PORT="0", CA_FILE="")
            status, output = _doctor(capsys, "doctor")
            assert status == 1
            assert _line(output, "✘", "starttls")
            assert "certificate: " in output
            assert "SMTP_ALERTS_CA_FILE" in output
            assert server.auth_attempts == []

    def test_security_none_on_a_starttls_port(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """SECURITY=none where the server offers STARTTLS: warned, and the login fix says why."""
        with GmailServer() as server:
            _use(monkeypatch, server, ALTERNATE_PORT="0", SECURITY="none")
            status, output = _doctor(capsys, "doctor")
            assert status == 1
            assert "although the server offers STARTTLS" in _line(output, "!", "encryption")
            assert "no AUTH: " in output
            assert server.auth_attempts == []

    def test_bad_settings(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Unusable settings give one line naming the variable, and exit 2."""
        monkeypatch.setenv("SMTP_ALERTS_USERNAME", "alerts@example.com")
        status, output = _doctor(capsys, "doctor")
        assert status == 2
        assert "SMTP_ALERTS_TO" in _line(output, "✘", "settings")
        assert "Traceback" not in output


class TestSecrets:
    """The password is never printed, whatever happens."""

    @pytest.mark.parametrize("command", [["doctor", "--send"], ["send-test"]])
    def test_password_absent_from_output(
        self,
        command: list[str],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Neither a wrong nor the right password appears in stdout or stderr."""
        with GmailServer() as server:
            _use(monkeypatch, server, ALTERNATE_PORT="0", PASSWORD=WRONG_PASSWORD)
            wrong_status, wrong_output = _doctor(capsys, *command)
            _use(monkeypatch, server, ALTERNATE_PORT="0")
            right_status, right_output = _doctor(capsys, *command)
        assert (wrong_status, right_status) == (1, 0)
        assert "535 5.7.8" in wrong_output
        for output in (wrong_output, right_output):
            for secret in (WRONG_PASSWORD, server.password, server.password.replace(" ", "")):
                assert secret not in output


class TestSendTest:
    """``send-test``: one message through the delivery chain, one line per channel."""

    def test_success(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The message arrives, the channel that took it is named, and the exit status is 0."""
        with GmailServer() as server:
            _use(monkeypatch, server, ALTERNATE_PORT="0")
            status, output = _doctor(capsys, "send-test")
            assert status == 0, output
            (received,) = server.messages
            assert "send-test" in received.subject
            assert "took the test message" in _line(output, "✔", server.host + f":{server.port}")
            assert f"through {server.host}:{server.port}" in _line(output, "✔", "send-test")

    def test_fallback_channel_takes_it(
        self,
        pair: tuple[GmailServer, GmailServer],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """When the first channel fails, its diagnosis is shown and the next one takes it."""
        server, other = pair
        server.faults.offer_starttls = False
        _use(
            monkeypatch,
            server,
            ALTERNATE_PORT=str(other.port),
            CA_FILE=_both_cas(tmp_path, server, other),
        )
        status, output = _doctor(capsys, "send-test")
        assert status == 0, output
        assert _line(output, "✘", f"{server.host}:{server.port}")
        assert "no STARTTLS: " in output
        assert _line(output, "✔", f"{other.host}:{other.port}")
        assert len(other.messages) == 1
        assert server.messages == []

    def test_failure(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """When no channel takes it the exit status is 1 and the diagnosis is printed."""
        with GmailServer() as server:
            server.faults.auth_reply = "534-5.7.9"
            _use(monkeypatch, server, ALTERNATE_PORT="0")
            status, output = _doctor(capsys, "send-test")
            assert status == 1
            assert "534 5.7.9: " in output
            assert "no channel took the test message" in _line(output, "✘", "send-test")
            assert len(server.auth_attempts) == 1


class TestConsoleScript:
    """The installed ``smtp-alerts`` script, as a user runs it."""

    def test_doctor_with_ascii_output(self) -> None:
        """On a terminal that cannot show ✔ the marks fall back to ASCII; the exit is 0."""
        script = Path(sys.executable).with_name("smtp-alerts")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "smtp_alerts.cli"]
        with GmailServer() as server:
            environ = {
                **{k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")},
                **server.environ(ALTERNATE_PORT="0"),
                "PYTHONIOENCODING": "ascii",
            }
            result = subprocess.run(  # noqa: S603 - our own script, fixed arguments
                [*command, "doctor"],
                env=environ,
                capture_output=True,
                text=True,
                encoding="ascii",
                timeout=60,
                check=False,
            )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[ok]   login " in result.stdout
        assert "[skip] send " in result.stdout
        assert result.stderr == ""
        assert server.password not in result.stdout
