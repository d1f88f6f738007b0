"""The HTTP floor: a plain ASGI app that reads the whole request body and answers a small JSON,
with no framework, model or preprocessing. Served the way the service is (uvicorn, httptools,
uvloop, 2 workers), it bounds what any app on this server can reach on the same machine.

    uvicorn bench.floor:app --workers 2 --http httptools --loop uvloop --no-access-log
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

ANSWER = b'{"class": 7, "entropy": 0.01, "refer": false}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
