"""Flask: ``init_app(app)``: one problem per bug, keyed by URL rule, with the request's context."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

pytest.importorskip("flask", reason="flask is in the test extra")

from flask import Flask, abort, g

from smtp_alerts.integrations.flask import init_app

from .web_support import (
    BEARER,
    COOKIE,
    PASSWORD,
    SECRET_SETTING,
    Sent,
    assert_named_and_safe,
    context_of,
    import_without,
    memory_engine,
)


def make_app() -> Flask:
    """A small shop: one view with a bug, one that works, one that answers 404 on purpose."""
    app = Flask("shop")
    app.config["SECRET_KEY"] = SECRET_SETTING

    @app.before_request
    def load_user() -> None:
        g.user = SimpleNamespace(id=42, username="alice", email="alice@example.com")

    @app.route("/orders/<int:order_id>", methods=["GET", "POST"])
    def order(order_id: int) -> str:
        prices: dict[int, int] = {}
        return str(prices[order_id])  # the bug: a KeyError for every order

    @app.route("/health")
    def health() -> str:
        return "ok"

    return app


@pytest.fixture
def sent() -> Iterator[Sent]:
    with memory_engine() as sent:
        yield sent


class TestInitApp:
    def test_ten_requests_to_one_bug_are_one_problem_with_ten_events(self, sent: Sent) -> None:
        """Different ids, one rule: one problem, ten events, Flask's own log record not counted."""
        app = make_app()
        init_app(app, engine=sent.engine)
        client = app.test_client()
        client.set_cookie("session", COOKIE)
        for order_id in range(10):
            response = client.post(
                f"/orders/{order_id}?token=query-secret",
                data={"password": PASSWORD, "quantity": "2"},
                headers={"Authorization": f"Bearer {BEARER}"},
            )
            assert response.status_code == 500
        assert client.get("/health").status_code == 200
        (problem,) = sent.problems()
        assert problem.count == 10
        assert problem.alert.exc_type == "KeyError"
        assert problem.alert.message == "POST /orders/<int:order_id> raised KeyError: 0"
        assert context_of(problem) == {
            "method": "POST",
            "route": "/orders/<int:order_id>",
            "status": "500",
            "endpoint": "order",
            "host": "localhost",
            "path": "/orders/0",
            "fields": "password, quantity",
            "user": "42",
        }
        assert_named_and_safe(
            sent, "KeyError in POST /orders/<int:order_id>", "query-secret", "alice"
        )  # subject

    def test_json_bodies_show_their_field_names_only(self, sent: Sent) -> None:
        """A JSON body's keys are shown, never its values."""
        app = make_app()
        init_app(app, engine=sent.engine)
        response = app.test_client().post("/orders/3", json={"card": PASSWORD, "amount": 12})
        assert response.status_code == 500
        (problem,) = sent.problems()
        assert context_of(problem)["fields"] == "amount, card"  # the test client sorts them
        assert PASSWORD not in sent.text()

    def test_calling_init_app_twice_reports_once(self, sent: Sent) -> None:
        """A second init_app replaces the first: one event per failed request."""
        app = make_app()
        init_app(app, engine=sent.engine)
        init_app(app, engine=sent.engine)
        for order_id in range(3):
            app.test_client().get(f"/orders/{order_id}")
        assert [p.count for p in sent.problems()] == [3]

    def test_two_bugs_on_one_rule_are_two_problems(self, sent: Sent) -> None:
        """The exception type is part of the key: a KeyError and a ZeroDivisionError differ."""
        app = Flask("shop")
        init_app(app, engine=sent.engine)

        @app.route("/split/<int(signed=True):parts>")
        def split(parts: int) -> str:
            if parts < 0:
                raise KeyError(parts)
            return str(100 // parts)

        client = app.test_client()
        for parts in (0, 0, -1):
            assert client.get(f"/split/{parts}").status_code == 500
        counts = {p.alert.exc_type: p.count for p in sent.problems()}
        assert counts == {"ZeroDivisionError": 2, "KeyError": 1}

    def test_server_errors_answered_by_the_apps_handlers_are_reported(self, sent: Sent) -> None:
        """A handler answering 503 and abort(500) are reported; a 404 and a 400 are not."""
        app = Flask("shop")
        init_app(app, engine=sent.engine)

        class PaymentDeclinedError(Exception):
            pass

        @app.errorhandler(PaymentDeclinedError)
        def declined(error: PaymentDeclinedError) -> tuple[str, int]:
            return "payment unavailable", 503

        @app.errorhandler(ValueError)
        def invalid(error: ValueError) -> tuple[str, int]:
            return "bad input", 400

        @app.route("/pay/<int:order_id>")
        def pay(order_id: int) -> str:
            raise PaymentDeclinedError(f"card declined for order {order_id}")

        @app.route("/reports/<name>")
        def report(name: str) -> str:
            abort(500)

        @app.route("/check/<int:n>")
        def check(n: int) -> str:
            raise ValueError(n)

        client = app.test_client()
        statuses = [client.get(path).status_code for path in ("/pay/1", "/pay/2", "/reports/a")]
        statuses += [client.get(path).status_code for path in ("/reports/b", "/check/1", "/nope")]
        assert statuses == [503, 503, 500, 500, 400, 404]
        problems = {p.alert.logger: p for p in sent.problems()}
        assert {name: p.count for name, p in problems.items()} == {
            "GET /pay/<int:order_id>": 2,
            "GET /reports/<name>": 2,
        }
        assert context_of(problems["GET /pay/<int:order_id>"])["status"] == "503"
        assert (
            problems["GET /reports/<name>"].alert.exc_type
            == "werkzeug.exceptions.InternalServerError"
        )


def test_without_flask_the_import_names_the_package() -> None:
    """Importing the integration without Flask says what to install."""
    result = import_without("smtp_alerts.integrations.flask", "flask")
    assert result.returncode == 0, result.stderr
    assert "pip install 'smtp-alerts[flask]'" in result.stdout
