"""Django: the app in INSTALLED_APPS makes one problem per bug, keyed by route, with its context.

Django is configured once for the test process (``settings.configure``), with
this module as the URLconf and no database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("django", reason="django is in the test extra")

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.functional import SimpleLazyObject

from smtp_alerts.testing import capture_alerts

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


def order(request: HttpRequest, id: int) -> HttpResponse:  # noqa: A002 - the route's own name
    """The bug: a KeyError for every order."""
    prices: dict[int, int] = {}
    return HttpResponse(prices[id])


async def async_order(request: HttpRequest, id: int) -> HttpResponse:  # noqa: A002
    """The same bug in an async view (answered on another thread under ASGI)."""
    prices: dict[int, int] = {}
    return HttpResponse(prices[id])


def charge(request: HttpRequest) -> HttpResponse:
    """A failure whose message quotes a secret setting."""
    raise RuntimeError(f"the gateway refused key {settings.PAYMENT_API_TOKEN}")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("orders/<int:id>/", order),
    path("lazy/orders/<int:id>/", order),
    path("async-orders/<int:id>/", async_order),
    path("charge/", charge),
    path("health/", health),
]


#: Users looked up from the "database" (a lazy user evaluated), by path.
LOOKED_UP: list[str] = []


def user_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """What an authentication middleware leaves on the request: a user, loaded or lazy."""

    def middleware(request: HttpRequest) -> Any:
        user = SimpleNamespace(
            pk=42, is_authenticated=True, username="alice", email="alice@example.com"
        )

        def look_up() -> SimpleNamespace:
            LOOKED_UP.append(request.path)
            return user

        lazy = request.path.startswith("/lazy/")
        request.user = SimpleLazyObject(look_up) if lazy else user
        return get_response(request)

    return middleware


@pytest.fixture(scope="module", autouse=True)
def _django() -> None:
    import django

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY=f"{SECRET_SETTING}-key",
            PAYMENT_API_TOKEN=SECRET_SETTING,
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=["smtp_alerts.integrations.django"],
            MIDDLEWARE=[
                "django.middleware.common.CommonMiddleware",
                f"{__name__}.user_middleware",
            ],
            DATABASES={},
        )
        django.setup()


@pytest.fixture
def sent() -> Iterator[Sent]:
    from smtp_alerts.integrations.django import install

    with memory_engine() as sent:
        install(engine=sent.engine)
        yield sent
    install()


def client() -> Any:
    from django.test import Client

    return Client(raise_request_exception=False)


class TestViews:
    def test_ten_requests_to_one_bug_are_one_problem_with_ten_events(self, sent: Sent) -> None:
        """Different ids, one route: one problem, ten events, Django's own log not counted."""
        web = client()
        web.cookies["sessionid"] = COOKIE
        for order_id in range(10):
            response = web.post(
                f"/orders/{order_id}/?token=query-secret",
                {"password": PASSWORD, "quantity": "2"},
                headers={"authorization": f"Bearer {BEARER}"},
            )
            assert response.status_code == 500
        assert web.get("/health/").status_code == 200
        (problem,) = sent.problems()  # no "Internal Server Error: /orders/N/" rows
        assert problem.count == 10
        assert problem.alert.exc_type == "KeyError"
        assert problem.alert.message == "POST /orders/<int:id>/ raised KeyError: 0"
        assert context_of(problem) == {
            "method": "POST",
            "route": "/orders/<int:id>/",
            "status": "500",
            "view": f"{__name__}.order",
            "host": "testserver",
            "path": "/orders/0/",
            "fields": "password, quantity",
            "user": "42",
        }
        assert_named_and_safe(
            sent, "KeyError in POST /orders/<int:id>/", "query-secret", "alice"
        )  # subject

    def test_a_user_the_request_did_not_load_is_not_looked_up(self, sent: Sent) -> None:
        """No database query while handling an error: a lazy user stays unevaluated, unshown."""
        assert client().get("/lazy/orders/1/").status_code == 500
        (problem,) = sent.problems()
        assert "user" not in context_of(problem)
        assert LOOKED_UP == []

    def test_an_async_view_under_asgi_is_reported_once(self, sent: Sent) -> None:
        """Under ASGI Django answers the exception on another thread: still one event each."""
        from django.test import AsyncClient

        async def requests() -> list[int]:
            web = AsyncClient(raise_request_exception=False)
            return [(await web.get(f"/async-orders/{n}/")).status_code for n in range(3)]

        assert asyncio.run(requests()) == [500, 500, 500]
        (problem,) = sent.problems()
        assert problem.count == 3
        assert context_of(problem)["route"] == "/async-orders/<int:id>/"

    def test_secret_settings_are_hidden_as_djangos_filter_hides_them(self, sent: Sent) -> None:
        """A message quoting a setting Django's filter hides shows its substitute instead."""
        assert client().get("/charge/").status_code == 500
        (problem,) = sent.problems()
        assert problem.alert.message == (
            "GET /charge/ raised RuntimeError: the gateway refused key ********************"
        )
        assert SECRET_SETTING not in str(problem.alert.context)

    def test_the_default_engine_is_used_without_install(self) -> None:
        """The app's ready() connected it: the process's default engine gets the alerts."""
        from smtp_alerts.integrations.django import install

        install()  # as ready() did
        with capture_alerts() as captured:
            for order_id in range(2):
                client().get(f"/orders/{order_id}/")
            assert [p.count for p in captured.problems] == [2]


class TestSecurity:
    def test_disallowed_host_from_five_hosts_is_one_problem(self, sent: Sent) -> None:
        """DisallowedHost is keyed by its type, not by the host its text names."""
        for n in range(5):
            response = client().get("/orders/1/", headers={"host": f"bogus{n}.example"})
            assert response.status_code == 400
        (problem,) = sent.problems()
        assert problem.count == 5
        assert problem.alert.logger == "django.security.DisallowedHost"
        context = context_of(problem)
        assert (context["status"], context["host"]) == ("400", "bogus0.example")

    def test_djangos_recipe_to_silence_disallowed_host_silences_the_alert(self, sent: Sent) -> None:
        """A null handler on django.security.DisallowedHost that does not propagate: no alert."""
        logger = logging.getLogger("django.security.DisallowedHost")
        null = logging.NullHandler()
        logger.addHandler(null)
        logger.propagate = False
        try:
            assert client().get("/health/", headers={"host": "bogus.example"}).status_code == 400
        finally:
            logger.removeHandler(null)
            logger.propagate = True
        assert sent.problems() == []


def test_without_django_the_import_names_the_package() -> None:
    """Importing the integration without Django says what to install."""
    result = import_without("smtp_alerts.integrations.django", "django")
    assert result.returncode == 0, result.stderr
    assert "pip install 'smtp-alerts[django]'" in result.stdout
