"""The API app as the benchmarks serve it: the product's ``create_app()`` plus bench-only routes.

Run by scripts/bench_harness.py as ``python -m uvicorn bench_app:create_bench_app --factory
--app-dir scripts``, with the same ``SHIPMAIL_*`` environment as the ``shipmail serve`` that owns
the Cyrus instance. The extra routes exist only in this process, never in the product.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shipmail.app import create_app


async def noop(request: Request) -> Response:
    """A trivial public route: no auth, no database, no mail server; same middleware as the API."""
    return JSONResponse({"object": "noop", "ok": True})


def create_bench_app() -> Starlette:
    app: Starlette = create_app()
    app.router.routes.append(Route("/bench/noop", noop, methods=["GET"]))
    return app
