"""Request body size limit as ASGI middleware (BentoML 1.4 accepts any body size by default).

Checked twice: on the declared Content-Length (rejected before a byte is read) and on the bytes
actually streamed (chunked uploads or a lying header).  The body is buffered up to the limit and
replayed to the app, so the app never sees a truncated request.  Above the limit: 413 with a
message giving the limit.  Concurrency (429) is BentoML's own `traffic.max_concurrency`.
"""

from __future__ import annotations

import json

from adaptive_beta.models.settings import settings_at_import

DEFAULT_MAX_BODY_BYTES = settings_at_import().max_body_bytes  # ABETA_MAX_BODY_BYTES


async def _too_large(send, limit: int) -> None:
    body = json.dumps(
        {"error": f"request body larger than the limit of {limit} bytes", "field": "body"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = -1
                if declared < 0:
                    body = json.dumps(
                        {"error": "invalid Content-Length header", "field": "content-length"}
                    ).encode()
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 400,
                            "headers": [(b"content-type", b"application/json")],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
                if declared > self.max_bytes:
                    return await _too_large(send, self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await _too_large(send, self.max_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
