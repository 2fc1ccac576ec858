"""Reading SMTP replies: the RFC 3463 enhanced status code, and the text on one safe line."""

from __future__ import annotations

import pytest

from smtp_alerts._util.smtp_reply import enhanced_status, one_line

# Gmail's 535 as aiosmtplib hands it over: reply codes stripped from the line
# starts, the enhanced code kept on each line.
BAD_CREDENTIALS = (
    "5.7.8 Username and Password not accepted. For more information, go to\n"
    "5.7.8  https://support.google.com/mail/?p=BadCredentials a1-2sm3 - gsmtp"
)


class TestEnhancedStatus:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (BAD_CREDENTIALS, "5.7.8"),
            ("535-5.7.8 Username and Password not accepted.", "5.7.8"),
            ("the server refused the credentials (535 5.7.8) Username", "5.7.8"),
            ("4.7.0 Too many login attempts", "4.7.0"),
            ("2.0.0 OK", "2.0.0"),
            ("5.7.14 Please log in via your web browser", "5.7.14"),
            ("5.123.456 three digits each", "5.123.456"),
            ("Message rejected: 5.7.1.", "5.7.1"),
            ("refused (5.4.5)", "5.4.5"),
        ],
    )
    def test_finds_the_code(self, text: str, expected: str) -> None:
        """A code of class 2, 4 or 5 with a one-to-three-digit subject and detail is found."""
        assert enhanced_status(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "no code here",
            "5.7.8.1 is a dotted run, not a code",
            "relay 10.5.7.8 refused",
            "4.2.4.2 hides a code-shaped tail",
            "v5.7.8 is a version",
            "5.7.8a is not a code",
            "3.7.8 has no such class",
            "5.1234.1 has a four-digit subject",
            "5.1.1234 has a four-digit detail",
            "5.7 is two parts",
            "5.7.\u0668 is not an ASCII digit",
        ],
    )
    def test_finds_none(self, text: str) -> None:
        """Numbers that only look like a code, or are part of a longer dotted run, are not one."""
        assert enhanced_status(text) == ""

    def test_first_code_wins(self) -> None:
        """With several codes, the first one in the text is the reply's."""
        assert enhanced_status("4.7.0 first, then 5.7.8") == "4.7.0"


class TestOneLine:
    def test_joins_lines_without_repeated_codes(self) -> None:
        """Gmail's two-line reply reads as one sentence with its link."""
        assert one_line(BAD_CREDENTIALS) == (
            "Username and Password not accepted. For more information, go to "
            "https://support.google.com/mail/?p=BadCredentials a1-2sm3 - gsmtp"
        )

    def test_keeps_a_code_that_is_the_whole_reply(self) -> None:
        """A reply that is only a code keeps it: there is nothing else to show."""
        assert one_line("5.1.1") == "5.1.1"

    def test_keeps_codes_inside_the_text(self) -> None:
        """Only the code a line starts with is dropped."""
        assert one_line("Rejected with 5.7.1 by policy") == "Rejected with 5.7.1 by policy"

    def test_skips_empty_lines_and_line_ends(self) -> None:
        """CRLF, CR and blank lines all end a line, and blank ones vanish."""
        assert one_line("first\r\n\r\n  second \rthird\n") == "first second third"

    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            ("\x1b[31mred\x1b[0m text", "red text"),
            ("\x1b[2J\x1b[Hcleared", "cleared"),
            ("\x1b]0;new window title\x07rest", "rest"),
            ("\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\", "link"),
            ("\x9b31mC1 form", "C1 form"),
            ("\x1bcreset", "reset"),
            ("\x1b(Bcharset", "charset"),
            ("bell\x07 and back\x08space", "bell and backspace"),
            ("nul\x00 and del\x7f", "nul and del"),
            ("tab\tseparated", "tab separated"),
            ("\u202eevil\u202c text", "evil text"),
            ("cut \x1b]0;never terminated", "cut"),
        ],
    )
    def test_removes_what_a_terminal_would_act_on(self, reply: str, expected: str) -> None:
        """Escape sequences and control characters from a server never reach a terminal."""
        assert one_line(reply) == expected

    def test_strips_a_code_hidden_behind_an_escape(self) -> None:
        """A line's code is recognised once the escape in front of it is gone."""
        assert one_line("\x1b[1m5.7.8 Username\x1b[0m") == "Username"

    def test_nothing_printable_is_empty(self) -> None:
        """A reply of nothing but controls reads as an empty string."""
        assert one_line("\x1b[0m\r\n\x00") == ""
