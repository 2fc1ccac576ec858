"""Settings: environment variables, durations, and errors that name the variable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smtp_alerts import Settings
from smtp_alerts.errors import ConfigurationError
from smtp_alerts.settings import parse_duration

MINIMAL = {"SMTP_ALERTS_TO": "oncall@example.com", "SMTP_ALERTS_USERNAME": "me@gmail.com"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in MINIMAL.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("30", 30.0),
            (30, 30.0),
            (2.5, 2.5),
            ("500ms", 0.5),
            ("30s", 30.0),
            ("5m", 300.0),
            ("4h", 14400.0),
            ("1d", 86400.0),
            ("1.5h", 5400.0),
            (" 10S ", 10.0),
            ("0", 0.0),
        ],
    )
    def test_forms(self, text: object, seconds: float) -> None:
        """Seconds as a number, or a number with ms/s/m/h/d."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["", "5 minutes", "-1", "1w", "inf", True, None, "nan"])
    def test_rejected(self, text: object) -> None:
        """Anything else is refused with a message showing the accepted forms."""
        with pytest.raises(ValueError, match="duration"):
            parse_duration(text)


class TestFromEnvironment:
    def test_defaults(self, env: pytest.MonkeyPatch) -> None:
        """With only TO and USERNAME set, the documented defaults apply."""
        settings = Settings()
        assert (settings.host, settings.port, settings.effective_security) == (
            "smtp.gmail.com",
            587,
            "starttls",
        )
        assert settings.sender == "me@gmail.com"
        assert (settings.timeout, settings.group_wait, settings.group_interval) == (30, 10, 300)
        assert (settings.repeat_interval, settings.shutdown_timeout) == (14400, 10)
        assert (settings.max_per_hour, settings.max_per_day) == (20, 100)
        assert (settings.auth_failure_threshold, settings.auth_failure_window) == (3, 600)

    def test_every_variable(self, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Every documented variable is read, lists split on commas and spaces."""
        ca = tmp_path / "ca.pem"
        ca.write_text("x")
        values = {
            "HOST": "smtp.example.com",
            "PORT": "465",
            "SECURITY": "tls",
            "PASSWORD": "app pw",
            "FROM": "alerts@example.com",
            "TO": "a@example.com, b@example.com c@example.com",
            "CA_FILE": str(ca),
            "TIMEOUT": "20s",
            "GROUP_WAIT": "500ms",
            "GROUP_INTERVAL": "2m",
            "REPEAT_INTERVAL": "1d",
            "FALLBACK_URLS": "json://127.0.0.1:9/ ntfy://topic",
            "SPOOL_DIR": str(tmp_path),
            "AUTH_FAILURE_THRESHOLD": "5",
            "AUTH_FAILURE_WINDOW": "15m",
            "MAX_PER_HOUR": "7",
            "MAX_PER_DAY": "70",
            "SHUTDOWN_TIMEOUT": "3s",
        }
        for name, value in values.items():
            env.setenv(f"SMTP_ALERTS_{name}", value)
        s = Settings()
        assert (s.host, s.port, s.effective_security) == ("smtp.example.com", 465, "tls")
        assert s.read_password() == "app pw"
        assert s.sender == "alerts@example.com"
        assert s.to == ["a@example.com", "b@example.com", "c@example.com"]
        assert s.ca_file == ca
        assert (s.timeout, s.group_wait, s.group_interval, s.repeat_interval) == (
            20,
            0.5,
            120,
            86400,
        )
        assert [u.get_secret_value() for u in s.fallback_urls] == [
            "json://127.0.0.1:9/",
            "ntfy://topic",
        ]
        assert s.spool_dir == tmp_path
        assert (s.auth_failure_threshold, s.auth_failure_window) == (5, 900)
        assert (s.max_per_hour, s.max_per_day, s.shutdown_timeout) == (7, 70, 3)

    @pytest.mark.skipif(sys.platform != "linux", reason="XDG_STATE_HOME is the Linux convention")
    def test_spool_dir_defaults_to_the_user_state_dir(
        self, env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without SPOOL_DIR the spool lives in the user's state directory."""
        env.setenv("XDG_STATE_HOME", str(tmp_path))
        assert Settings().spool_path == tmp_path / "smtp-alerts"
        env.setenv("SMTP_ALERTS_SPOOL_DIR", str(tmp_path / "elsewhere"))
        assert Settings().spool_path == tmp_path / "elsewhere"

    def test_port_465_means_tls(self, env: pytest.MonkeyPatch) -> None:
        """SECURITY defaults from the port: 465 is implicit TLS."""
        env.setenv("SMTP_ALERTS_PORT", "465")
        assert Settings().effective_security == "tls"

    def test_keyword_overrides_win(self, env: pytest.MonkeyPatch) -> None:
        """Keyword arguments override the environment; FROM is spelled from_."""
        settings = Settings(to=["x@example.com"], from_="f@example.com", group_wait="1m")
        assert (settings.to, settings.sender, settings.group_wait) == (
            ["x@example.com"],
            "f@example.com",
            60,
        )

    def test_password_file_is_read_each_time(self, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """PASSWORD_FILE is read when asked, so a rotated password is picked up."""
        secret = tmp_path / "pw"
        secret.write_text("first\n")
        env.setenv("SMTP_ALERTS_PASSWORD_FILE", str(secret))
        settings = Settings()
        assert settings.read_password() == "first"
        secret.write_text("second\n")
        assert settings.read_password() == "second"


class TestErrors:
    @pytest.mark.parametrize(
        ("name", "value", "expected"),
        [
            ("PORT", "abc", "SMTP_ALERTS_PORT"),
            ("PORT", "70000", "SMTP_ALERTS_PORT"),
            ("TIMEOUT", "soon", "SMTP_ALERTS_TIMEOUT"),
            ("SECURITY", "ssl", "SMTP_ALERTS_SECURITY"),
            ("MAX_PER_HOUR", "0", "SMTP_ALERTS_MAX_PER_HOUR"),
            ("TO", "not-an-address", "SMTP_ALERTS_TO"),
            ("CA_FILE", "/nonexistent/ca.pem", "SMTP_ALERTS_CA_FILE"),
            ("FROM", "a@b.com\r\nBcc: x@evil.com", "SMTP_ALERTS_FROM"),
        ],
    )
    def test_wrong_value_names_the_variable(
        self, env: pytest.MonkeyPatch, name: str, value: str, expected: str
    ) -> None:
        """A wrong value fails at construction, naming the environment variable."""
        env.setenv(f"SMTP_ALERTS_{name}", value)
        with pytest.raises(ConfigurationError, match=expected):
            Settings()

    def test_missing_recipients(self) -> None:
        """Without TO, the error says TO is required and what it holds."""
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_TO is required"):
            Settings(username="me@gmail.com")

    def test_missing_sender(self) -> None:
        """Without FROM or USERNAME, the error names both."""
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_FROM or SMTP_ALERTS_USERNAME"):
            Settings(to=["a@example.com"])

    def test_recipient_injection_refused(self) -> None:
        """A recipient list cannot smuggle a header or an extra address."""
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_TO"):
            Settings(to=["a@example.com>\r\nBcc: evil@example.com"], username="me@gmail.com")

    def test_unknown_override(self) -> None:
        """A misspelt keyword fails instead of being ignored."""
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_GROUP_WIAT"):
            Settings(to=["a@example.com"], username="me@gmail.com", group_wiat="1s")

    def test_clear_text_password_refused_off_loopback(self) -> None:
        """SECURITY=none with a password is refused unless the host is loopback."""
        common = {"to": ["a@example.com"], "username": "me@example.com", "password": "pw"}
        with pytest.raises(ConfigurationError, match="clear text"):
            Settings(host="mail.example.com", security="none", **common)
        assert Settings(host="127.0.0.1", security="none", **common).effective_security == "none"


class TestUnknownVariables:
    def test_misspelt_variable_names_the_closest_setting(self, env: pytest.MonkeyPatch) -> None:
        """A misspelt SMTP_ALERTS_* variable fails, naming it and the setting it resembles."""
        env.setenv("SMTP_ALERTS_GROUP_WAT", "5s")
        with pytest.raises(ConfigurationError) as caught:
            Settings()
        assert "SMTP_ALERTS_GROUP_WAT is not a setting" in str(caught.value)
        assert "did you mean SMTP_ALERTS_GROUP_WAIT?" in str(caught.value)
        assert "5s" not in str(caught.value)  # the value may be a secret: never echoed

    def test_unknown_variable_without_a_close_name(self, env: pytest.MonkeyPatch) -> None:
        """A variable like no setting fails too, without a guess."""
        env.setenv("SMTP_ALERTS_COLOUR", "blue")
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_COLOUR is not a setting") as e:
            Settings()
        assert "did you mean" not in str(e.value)

    def test_every_documented_variable_is_known(self, env: pytest.MonkeyPatch) -> None:
        """Each setting's own variable (FROM included) is accepted."""
        env.setenv("SMTP_ALERTS_FROM", "alerts@example.com")
        env.setenv("SMTP_ALERTS_SUBJECT_PREFIX", "[web]")
        env.setenv("smtp_alerts_queue_size", "100")  # names are case-insensitive
        settings = Settings()
        assert (settings.from_, settings.subject_prefix, settings.queue_size) == (
            "alerts@example.com",
            "[web]",
            100,
        )

    def test_redis_url_on_loopback_or_tls_is_accepted(self, env: pytest.MonkeyPatch) -> None:
        """A password may go in clear text to this machine, or anywhere over TLS."""
        for url in ("redis://:s3cret@127.0.0.1:6379/0", "rediss://:s3cret@redis.example.com/2"):
            env.setenv("SMTP_ALERTS_REDIS_URL", url)
            settings = Settings()
            assert settings.redis_url is not None
            assert settings.redis_url.get_secret_value() == url
            assert "s3cret" not in repr(settings)
            assert "s3cret" not in str(settings.model_dump())
        env.setenv("SMTP_ALERTS_REDIS_URL", "redis://10.0.0.1:6379/0")  # no password: fine
        assert Settings().redis_url is not None
        env.setenv("SMTP_ALERTS_REDIS_URL", "")
        assert Settings().redis_url is None

    def test_redis_password_in_clear_text_to_another_host_is_refused(
        self, env: pytest.MonkeyPatch
    ) -> None:
        """redis://:password@ a remote host names the variable and the fix, not the password."""
        env.setenv("SMTP_ALERTS_REDIS_URL", "redis://user:s3cret@10.0.0.1:6379/0")
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_REDIS_URL: would send") as e:
            Settings()
        assert "rediss://" in str(e.value)
        assert "10.0.0.1:6379" in str(e.value)
        assert "s3cret" not in str(e.value)

    @pytest.mark.parametrize(
        "url", ["http://:s3cret@host/", "s3cret", "redis://:s3cret@/0", "redis://h:s3cret/0"]
    )
    def test_a_bad_redis_url_says_so_without_echoing_it(
        self, env: pytest.MonkeyPatch, url: str
    ) -> None:
        """Not a Redis URL: one line naming the variable; the URL (maybe a password) unseen."""
        env.setenv("SMTP_ALERTS_REDIS_URL", url)
        with pytest.raises(ConfigurationError, match="SMTP_ALERTS_REDIS_URL: ") as e:
            Settings()
        assert "s3cret" not in str(e.value)


class TestSecrets:
    def test_secrets_never_shown(self, env: pytest.MonkeyPatch) -> None:
        """The password and fallback URLs are hidden in repr and str."""
        env.setenv("SMTP_ALERTS_PASSWORD", "hunter2-app-password")
        env.setenv("SMTP_ALERTS_FALLBACK_URLS", "slack://T000/B000/XXXXSECRETXXXX")
        settings = Settings()
        for text in (repr(settings), str(settings), repr(settings.model_dump())):
            assert "hunter2" not in text
            assert "XXXXSECRETXXXX" not in text

    def test_secret_not_in_error(self, env: pytest.MonkeyPatch) -> None:
        """A validation error elsewhere never echoes the password."""
        env.setenv("SMTP_ALERTS_PASSWORD", "hunter2-app-password")
        env.setenv("SMTP_ALERTS_PORT", "nope")
        with pytest.raises(ConfigurationError) as caught:
            Settings()
        assert "hunter2" not in str(caught.value)
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None or "hunter2" not in str(caught.value.__context__)
