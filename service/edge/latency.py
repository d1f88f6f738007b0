"""Request latency, measured once for every route by one ASGI middleware.

The histogram is labelled with the matched route's *template* (``/predict``, not the raw path,
so a path parameter cannot mint new series); requests that match no route are not observed.
A new route is measured without touching ``service/metrics.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send


class LatencyMiddleware:
    def __init__(self, app: ASGIApp, observe: Callable[[str, float], None]):
        self.app = app
        self.observe = observe  # (route template, seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            template = getattr(scope.get("route"), "path", None)  # set by the router on the shared scope
            if template is not None:
                self.observe(template, time.perf_counter() - started)
