"""A FastAPI app under uvicorn whose failed requests arrive as one alert email per bug.

Set the SMTP_ALERTS_* variables (see the README), then serve it:

    uvicorn fastapi_app:app --app-dir examples

or run it as a script: it starts uvicorn on a free loopback port, sends a few
real requests, stops the server and exits.

    python examples/fastapi_app.py

Uvicorn's default logging config keeps its errors from the root logger; the
integration does not rely on logging. The email shows three problems: the
KeyError of /orders/{order_id} with its ten events, the 503 a custom exception
handler answered for /pay/{order_id}, and the HTTPException(500) of
/reports/{name}; each with the method, route template and status.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from smtp_alerts.integrations.asgi import install

app = FastAPI()
install(app)  # the one line: failed requests (and answers >= 500) become alerts

PRICES = {1: 300}


class PaymentDeclinedError(Exception):
    """The payment provider said no."""


@app.exception_handler(PaymentDeclinedError)
async def declined(_request: Request, _exc: PaymentDeclinedError) -> JSONResponse:
    """A custom handler: it answers 503, so the integration reports the exception."""
    return JSONResponse({"error": "payment unavailable"}, status_code=503)


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, int]:
    """Price an order; a KeyError for every order not in the table (the bug)."""
    return {"total": PRICES[order_id]}


@app.post("/pay/{order_id}")
def pay(order_id: int) -> None:
    """Every payment is declined."""
    raise PaymentDeclinedError(f"card declined for order {order_id}")


@app.get("/reports/{name}")
def report(name: str) -> None:
    """The report backend is down."""
    raise HTTPException(500, f"report {name} unavailable")


def request(port: int, path: str, method: str = "GET") -> int:
    """One real HTTP request; its status."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return error.code


def main() -> None:
    """Serve on a free port, send the requests, stop; alerts are sent at exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0))
    thread = threading.Thread(target=server.run)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    for order_id in range(2, 12):
        request(port, f"/orders/{order_id}")
    request(port, "/pay/1", "POST")
    request(port, "/reports/daily")
    request(port, "/orders/1")
    server.should_exit = True
    thread.join()


if __name__ == "__main__":
    main()
