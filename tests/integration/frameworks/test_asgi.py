"""ASGI: FastAPI under a real uvicorn, plain Starlette and a bare ASGI app, one problem per bug.

The FastAPI test runs the app as a user does: a real ``uvicorn.Server`` in its
own process on 127.0.0.1, port 0, under uvicorn's default logging config
(``uvicorn.error`` does not propagate, so no root handler hears of a failed
request), real HTTP requests, the emails through the Gmail-like server.
"""

from __future__ import annotations

import asyncio
import select
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="fastapi is in the test extra")
pytest.importorskip("uvicorn", reason="uvicorn is in the test extra")

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from smtp_alerts.integrations.asgi import AlertMiddleware, install
from smtp_alerts.testing import GmailServer
from tests.helpers import event_counts, server_env

from .web_support import BEARER, COOKIE, PLANTED, Sent, context_of, import_without, memory_engine

FASTAPI_APP = """
import asyncio
import logging

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from smtp_alerts import AlertHandler
from smtp_alerts.integrations.asgi import install

logging.getLogger().addHandler(AlertHandler())  # as apps have it: it hears nothing twice
app = FastAPI()
install(app)


class PaymentDeclined(Exception):
    pass


@app.exception_handler(PaymentDeclined)
async def declined(request, exc):
    return JSONResponse({"error": "declined"}, status_code=503)


@app.get("/orders/{order_id}")
async def order(order_id: int):
    prices = {}
    return prices[order_id]  # the bug: a KeyError for every order


@app.post("/pay/{order_id}")
def pay(order_id: int):
    raise PaymentDeclined("the card was declined")


@app.get("/reports/{name}")
def report(name: str):
    raise HTTPException(500, "the report backend is down")


@app.get("/missing/{n}")
def missing(n: int):
    raise HTTPException(404)


async def main():
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0))  # default logging
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print(server.servers[0].sockets[0].getsockname()[1], flush=True)
    await serving


asyncio.run(main())
"""


def read_port(process: subprocess.Popen[str], seconds: float = 20) -> int:
    """The port the app prints once uvicorn listens; fails after ``seconds``."""
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            return int(process.stdout.readline())
        assert process.poll() is None, process.communicate()[1]
    raise AssertionError("uvicorn did not start")


def get(port: int, path: str, method: str = "GET") -> int:
    """The status of one real HTTP request carrying a cookie and a bearer token."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Cookie": f"session={COOKIE}", "Authorization": f"Bearer {BEARER}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_fastapi_under_uvicorn_one_email_one_problem_per_bug(
    tmp_path: Path, gmail_server: GmailServer
) -> None:
    """Ten requests to one bug: one problem with ten events; 503s of a handler, HTTP 500s too."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(FASTAPI_APP), encoding="utf-8")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script)],
        env=server_env(gmail_server, GROUP_WAIT="1h"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = read_port(process)
        statuses = [get(port, f"/orders/{n}?token=query-secret") for n in range(10)]
        statuses += [get(port, f"/pay/{n}", "POST") for n in range(3)]
        statuses += [get(port, "/reports/daily"), get(port, "/reports/weekly")]
        statuses += [get(port, f"/missing/{n}") for n in range(2)]
        assert statuses == [500] * 10 + [503] * 3 + [500] * 2 + [404] * 2
    finally:
        process.send_signal(signal.SIGINT)  # uvicorn stops gracefully; the alerts go at exit
        _, stderr = process.communicate(timeout=30)
    assert "Exception in ASGI application" in stderr  # uvicorn's own log, to stderr only
    (received,) = gmail_server.messages
    assert event_counts(gmail_server) == [15]
    subject = str(received.message["Subject"])
    assert "3 problems, 15 events: KeyError in GET /orders/{order_id}" in subject
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None
    text = part.get_content()
    for row in (
        "route: /orders/{order_id}",
        "route: /pay/{order_id}",
        "status: 503",
        "route: /reports/{name}",
        "PaymentDeclined in POST /pay/{order_id}",
    ):
        assert row in text
    assert "/missing/" not in text
    raw = received.message.as_string()
    for secret in (*PLANTED, "query-secret"):
        assert secret not in raw


# -- in process: plain Starlette and a bare ASGI app, called as a server calls them --------


async def call(app: Any, path: str) -> int:
    """Run one GET through ``app`` as an ASGI server does; the status it answered."""
    scope: MutableMapping[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"shop.example"), (b"cookie", f"session={COOKIE}".encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    statuses = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    try:
        await app(scope, receive, send)
    except Exception:  # noqa: BLE001 - what leaves the app, a server logs
        statuses.append(statuses[0] if statuses else 500)
    return int(statuses[0])


def starlette_app() -> Starlette:
    """A plain Starlette app (no FastAPI): its HTTPException answers are Starlette's own."""

    def order(request: Request) -> PlainTextResponse:
        prices: dict[int, int] = {}
        return PlainTextResponse(str(prices[request.path_params["order_id"]]))

    def report(request: Request) -> PlainTextResponse:
        backends: dict[str, str] = {}
        try:
            backends["report"]  # the failure the HTTPException wraps
        except KeyError as error:
            raise HTTPException(502, "the report backend is down") from error
        return PlainTextResponse("never")

    def missing(request: Request) -> PlainTextResponse:
        raise HTTPException(404)

    return Starlette(
        routes=[
            Route("/orders/{order_id:int}", order),
            Route("/reports/{name}", report),
            Route("/missing/{n}", missing),
        ]
    )


@pytest.fixture
def sent() -> Iterator[Sent]:
    with memory_engine() as sent:
        yield sent


class TestStarlette:
    def test_install_reports_errors_and_answered_server_errors(self, sent: Sent) -> None:
        """An exception (500) and an HTTPException(502) from a KeyError; never a 404."""
        app = starlette_app()
        install(app, engine=sent.engine)

        async def burst() -> list[int]:
            paths = ["/orders/1", "/orders/2", "/reports/a", "/reports/b", "/missing/1"]
            return [await call(app, path) for path in paths]

        assert asyncio.run(burst()) == [500, 500, 502, 502, 404]
        problems = {p.alert.message: p for p in sent.problems()}
        report = "GET /reports/{name} raised HTTPException: 502: the report backend is down"
        assert set(problems) == {"GET /orders/{order_id:int} raised KeyError: 1", report}
        order = problems["GET /orders/{order_id:int} raised KeyError: 1"]
        assert (order.count, problems[report].count) == (2, 2)
        assert context_of(order) == {
            "method": "GET",
            "route": "/orders/{order_id:int}",
            "status": "500",
            "host": "shop.example",
            "path": "/orders/1",
        }
        assert context_of(problems[report])["status"] == "502"
        assert COOKIE not in sent.text()

    def test_a_mounted_route_is_named_with_its_mount(self, sent: Sent) -> None:
        """Inside a Mount the route template is the mount's path and the route's."""
        app = Starlette(routes=[Mount("/api/v1", routes=starlette_app().routes)])
        install(app, engine=sent.engine)
        assert asyncio.run(call(app, "/api/v1/orders/7")) == 500
        (problem,) = sent.problems()
        assert context_of(problem)["route"] == "/api/v1/orders/{order_id:int}"

    def test_an_app_wide_exception_handler_hides_nothing(self, sent: Sent) -> None:
        """With a handler for Exception (ServerErrorMiddleware's), HTTP 500s are still reported."""

        def oops(request: Request, exc: Exception) -> PlainTextResponse:
            return PlainTextResponse("sorry", status_code=500)

        app = starlette_app()
        app.add_exception_handler(Exception, oops)
        install(app, engine=sent.engine)

        async def burst() -> list[int]:
            return [await call(app, path) for path in ("/orders/1", "/reports/a", "/missing/1")]

        assert asyncio.run(burst()) == [500, 502, 404]
        assert sorted((p.alert.exc_type or "", p.count) for p in sent.problems()) == [
            ("KeyError", 1),
            ("starlette.exceptions.HTTPException", 1),
        ]

    def test_install_twice_reports_once(self, sent: Sent) -> None:
        """A second install() only changes the engine: one event per failed request."""
        app = starlette_app()
        install(app, engine=sent.engine)
        install(app, engine=sent.engine)

        async def burst() -> list[int]:
            return [await call(app, f"/orders/{n}") for n in range(3)]

        assert asyncio.run(burst()) == [500] * 3
        assert [p.count for p in sent.problems()] == [3]

    def test_a_second_install_sends_to_its_own_engine(self, sent: Sent) -> None:
        """After a request built the stack, install(engine=other): every report goes to other."""
        app = starlette_app()
        with memory_engine() as first:
            install(app, engine=first.engine)
            assert asyncio.run(call(app, "/reports/a")) == 502
            install(app, engine=sent.engine)

            async def burst() -> list[int]:
                return [await call(app, path) for path in ("/reports/b", "/orders/1")]

            assert asyncio.run(burst()) == [502, 500]
            assert [p.count for p in first.problems()] == [1]
        assert sorted(p.count for p in sent.problems()) == [1, 1]

    def test_install_takes_only_starlette_apps(self) -> None:
        """Any other ASGI app is wrapped in AlertMiddleware instead; install() says so."""
        with pytest.raises(TypeError, match="AlertMiddleware"):
            install(object())


def test_alert_middleware_around_a_bare_asgi_app(sent: Sent) -> None:
    """No routes to name: the path with its ids masked is the route, one problem per bug."""

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError(f"no item {scope['path']}")

    app = AlertMiddleware(bare, engine=sent.engine)

    async def burst() -> list[int]:
        return [await call(app, f"/v1/items/{n}") for n in (41, 42, 43)]

    assert asyncio.run(burst()) == [500] * 3
    (problem,) = sent.problems()
    assert problem.count == 3
    assert context_of(problem)["route"] == "/v1/items/{}"


def test_without_starlette_the_import_names_the_package() -> None:
    """Importing the integration without Starlette says what to install."""
    result = import_without("smtp_alerts.integrations.asgi", "starlette")
    assert result.returncode == 0, result.stderr
    assert "pip install 'smtp-alerts[asgi]'" in result.stdout
