"""A Flask app whose failed requests arrive as one alert email per bug.

Set the SMTP_ALERTS_* variables (see the README), then serve it:

    flask --app examples/flask_app.py run

or run it as a script: it sends a few requests through Flask's test client and exits.

    python examples/flask_app.py

The ten requests to /orders/<id> hit one bug: the email shows one problem with
ten events, named by its URL rule and exception, with the method, endpoint,
status, field names and user id; never the cookie, the Authorization header or
the password the requests carried.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, g

from smtp_alerts.integrations.flask import init_app

app = Flask(__name__)
init_app(app)  # the one line: unhandled exceptions become alerts

PRICES = {1: 300}


@dataclass
class User:
    """What a login extension leaves in ``g.user``; only its id is shown."""

    id: int
    email: str


@app.before_request
def load_user() -> None:
    """Pretend the session named a user."""
    g.user = User(id=7, email="ada@example.com")


@app.post("/orders/<int:order_id>")
def order(order_id: int) -> dict[str, int]:
    """Price an order; a KeyError for every order not in the table (the bug)."""
    return {"total": PRICES[order_id]}


def main() -> None:
    """Ten requests to the bug, one that works; alerts are sent at exit."""
    client = app.test_client()
    client.set_cookie("session", "example-session-cookie")
    for order_id in range(2, 12):
        client.post(
            f"/orders/{order_id}",
            data={"password": "example-password", "quantity": "1"},
            headers={"Authorization": "Bearer example-token"},
        )
    client.post("/orders/1")


if __name__ == "__main__":
    main()
