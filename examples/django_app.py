"""A one-file Django project whose failed requests arrive as one alert email per bug.

Set the SMTP_ALERTS_* variables (see the README), then serve it:

    python examples/django_app.py runserver

or run it as a script with no arguments: it sends a few requests through
Django's test client and exits.

    python examples/django_app.py

The ten requests to orders/<int:id>/ hit one bug: one problem with ten events,
named by its route template and exception, with the method, view, status and
host. The requests from five bogus hosts (DisallowedHost, answered 400) are one
more problem with five events, not five problems.
"""

from __future__ import annotations

import sys

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="example-only-not-a-secret",
    ALLOWED_HOSTS=["testserver", "localhost", "127.0.0.1"],
    ROOT_URLCONF=__name__,
    # The one line: failed requests and security events become alerts.
    INSTALLED_APPS=["smtp_alerts.integrations.django"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
)

PRICES = {1: 300}


def order(_request: HttpRequest, id: int) -> HttpResponse:  # noqa: A002 - the route's name
    """Price an order; a KeyError for every order not in the table (the bug)."""
    return JsonResponse({"total": PRICES[id]})


urlpatterns = [path("orders/<int:id>/", order)]


def main() -> None:
    """Ten requests to the bug, five from bogus hosts; alerts are sent at exit."""
    from django.test import Client  # noqa: PLC0415 - needs the settings above

    client = Client(raise_request_exception=False)
    for order_id in range(2, 12):
        client.get(f"/orders/{order_id}/", headers={"Authorization": "Bearer example-token"})
    for n in range(5):
        client.get("/orders/1/", headers={"host": f"bogus-{n}.example"})


if __name__ == "__main__":
    django.setup()
    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    else:
        main()
