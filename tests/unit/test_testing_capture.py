"""capture_alerts(): the helper users test their own alerting with."""

from __future__ import annotations

import logging

from smtp_alerts import get_engine
from smtp_alerts.testing import capture_alerts


class TestCaptureAlerts:
    def test_captures_log_records(self) -> None:
        """Records logged in the block appear as counted problems, no server needed."""
        log = logging.getLogger("tests.capture.shop")
        with capture_alerts() as captured:
            for order in range(3):
                log.error("payment failed for order %s", order)
            log.warning("below the default level")
        assert captured.count("payment failed") == 3
        assert captured.count("below the default level") == 0
        (digest,) = captured.digests
        assert digest.problems[0].alert.logger == "tests.capture.shop"

    def test_captures_direct_alerts_through_the_default_engine(self) -> None:
        """get_engine() inside the block is the capturing engine."""
        with capture_alerts() as captured:
            get_engine().alert("backup failed", name="cron")
        assert [p.alert.message for p in captured.problems] == ["backup failed"]

    def test_handler_removed_afterwards(self) -> None:
        """After the block nothing is attached and nothing is captured."""
        root = logging.getLogger()
        before = list(root.handlers)
        with capture_alerts(logging.WARNING) as captured:
            logging.getLogger("tests.capture").warning("inside")
        assert root.handlers == before
        logging.getLogger("tests.capture").warning("outside")
        assert captured.count("outside") == 0
        assert captured.count("inside") == 1

    def test_rendered_messages_available(self) -> None:
        """The rendered email is there too, for asserting on subjects and bodies."""
        with capture_alerts(subject_prefix="[test]") as captured:
            logging.getLogger("tests.capture").error("disk full on %s", "/var")
        (message,) = captured.messages
        assert str(message.email["Subject"]).startswith("[test] ERROR: ")
