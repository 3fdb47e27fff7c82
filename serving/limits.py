"""Request limits as ASGI middleware: body size and concurrency.

Body size (BentoML 1.4 accepts any body size by default): checked twice, on the declared
Content-Length (rejected before a byte is read) and on the bytes actually streamed (chunked
uploads or a lying header).  The body is buffered up to the limit and replayed to the app, so the
app never sees a truncated request.  Above the limit: 413 with a message giving the limit.

Concurrency (instead of BentoML's `traffic.max_concurrency`, which sheds at once and without
Retry-After: 32 clients at a limit of 16 got about half 429s): at most `max_concurrency`
requests in flight per worker; the next ones wait up to `queue_wait_s` for a slot (at most
QUEUE_FACTOR x max_concurrency of them), and only then get 429 with Retry-After.  Probes never wait.
"""

from __future__ import annotations

import asyncio
import json
import math

from adaptive_beta.models.settings import settings_at_import

DEFAULT_MAX_BODY_BYTES = settings_at_import().max_body_bytes  # ABETA_MAX_BODY_BYTES
# seconds a request waits for one of the ABETA_MAX_CONCURRENCY slots before it is shed (429)
DEFAULT_QUEUE_WAIT_S = settings_at_import().queue_wait_s  # ABETA_QUEUE_WAIT_S


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


QUEUE_FACTOR = 4  # waiting requests per slot at most; beyond: 429 at once (bounds a flood's memory)


class ConcurrencyLimitMiddleware:
    """`max_concurrency` requests in flight, a bounded wait for a slot, then 429 + Retry-After."""

    def __init__(self, app, max_concurrency: int, queue_wait_s: float = DEFAULT_QUEUE_WAIT_S):
        from adaptive_beta.serving.auth import OPEN_PATHS

        self.app = app
        self.max_concurrency = max(1, int(max_concurrency))
        self.queue_wait_s = max(0.0, float(queue_wait_s))
        self.open_paths = OPEN_PATHS
        self._slots = asyncio.Semaphore(self.max_concurrency)
        self._waiting = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.open_paths:
            return await self.app(scope, receive, send)
        if not await self._acquire():
            return await self._busy(send)
        try:
            return await self.app(scope, receive, send)
        finally:
            self._slots.release()

    async def _acquire(self) -> bool:
        """A slot, waiting up to queue_wait_s in a queue of at most QUEUE_FACTOR x max_concurrency."""
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        if self._waiting >= QUEUE_FACTOR * self.max_concurrency or self.queue_wait_s <= 0:
            return False
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_wait_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1

    async def _busy(self, send) -> None:
        retry = max(1, math.ceil(self.queue_wait_s))
        body = json.dumps(
            {
                "error": f"server busy: {self.max_concurrency} requests in flight and none finished within "
                f"{self.queue_wait_s:g} s; retry after {retry} s"
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
