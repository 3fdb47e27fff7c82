"""Every error the service answers is JSON `{"error": "<one sentence>", "field"?: "<path>", "detail"?: [...]}`.

`JSONErrorsMiddleware` (ASGI, outermost of ours) makes that true for the answers that are not
ours: Starlette's plain-text 404/405 (unknown path, wrong method), BentoML's pydantic 400 (its
`detail` list gains a `field`, the dotted `loc` of the first problem, so the body matches the
`Error` schema that /openapi.json declares), and an exception escaping a mounted app (the
compliance pages), answered as a JSON 500 and logged instead of Starlette's plain-text page.
It also refuses a request body that is not JSON on the API routes: 415 (BentoML would try to
parse a multipart form against the JSON schema and answer 400 or 500).

A request uvicorn itself cannot parse (a malformed request line or header, an invalid
Content-Length, a header block above h11's limit) never reaches an ASGI app: uvicorn answers it
400 `text/plain` "Invalid HTTP request received." and closes the connection.  BentoML builds the
uvicorn config itself (no `http=` protocol option and no setting for one), so
`json_bad_request_in_uvicorn` replaces that answer on uvicorn's h11 protocol class (the one used
when httptools is not installed, as here) with the same message as JSON, field "request";
tests/serving/test_malformed_http.py checks it with a raw socket (and fails if uvicorn is
upgraded or httptools installed and the patch no longer applies).

HTML pages keep their HTML (the compliance app renders its own error pages for browsers);
only plain-text or empty error bodies are rewritten.  Error bodies are a few hundred bytes, so
buffering them is cheap; successful responses are streamed through untouched.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

log = logging.getLogger("abeta.errors")

JSON_POST_ROUTES = frozenset({"/forecast", "/explain", "/hedge", "/stress", "/backtest", "/bars"})
ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, in one sentence"},
        "field": {"type": "string", "description": "JSON path of the field at fault, where one applies"},
        "detail": {
            "type": "array",
            "items": {"type": "object"},
            "description": "pydantic's error list (400)",
        },
    },
}


def error_body(status: int, message: str, field: str | None = None) -> bytes:
    body = {"error": message}
    if field is not None:
        body["field"] = field
    return json.dumps(body).encode()


def _field_of(loc) -> str:
    """pydantic's `loc` (["assets", 0, "history"]) as the service's path (assets[0].history)."""
    from adaptive_beta.serving.schemas import UNION_TAGS

    out = ""
    for part in loc or []:
        if part in UNION_TAGS:  # which form of a history (rows / columns): not part of the path
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _rewrite(status: int, content_type: str, payload: bytes) -> bytes | None:
    """The JSON body to send instead of `payload`, or None to keep it."""
    if "text/html" in content_type:
        return None
    if "application/json" in content_type:
        try:
            body = json.loads(payload)
        except ValueError:
            return error_body(status, payload.decode("utf-8", "replace")[:500] or HTTPStatus(status).phrase)
        if isinstance(body, dict) and isinstance(body.get("detail"), list) and "field" not in body:
            first = body["detail"][0] if body["detail"] else {}
            body["field"] = _field_of(first.get("loc") if isinstance(first, dict) else None)
            return json.dumps(body).encode()
        return None
    text = payload.decode("utf-8", "replace").strip()
    return error_body(status, text or HTTPStatus(status).phrase)


def _not_json(scope) -> bool:
    """A POST to an API route whose Content-Type is present and not JSON."""
    if scope.get("method") != "POST" or scope.get("path") not in JSON_POST_ROUTES:
        return False
    for k, v in scope.get("headers", []):
        if k == b"content-type":
            media = v.decode("latin-1").split(";", 1)[0].strip().lower()
            return not (media == "application/json" or media.endswith("+json"))
    return False


async def _send_error(send, status: int, body: bytes, headers: list | None = None) -> None:
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class JSONErrorsMiddleware:
    """See the module docstring."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if _not_json(scope):
            msg = "the request body must be JSON: send Content-Type: application/json"
            return await _send_error(send, 415, error_body(415, msg, "content-type"))
        state: dict = {"start": None, "chunks": [], "sent": False}

        async def wrapped(message):
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    state["sent"] = True
                    return await send(message)
                state["start"] = message
                return None
            if state["start"] is None:
                return await send(message)
            state["chunks"].append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            return await self._finish(send, state)

        try:
            await self.app(scope, receive, wrapped)
        except Exception:
            if state["sent"]:
                raise
            log.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
            await _send_error(send, 500, error_body(500, "internal error; see the server log"))

    @staticmethod
    async def _finish(send, state) -> None:
        start = state["start"]
        state["sent"] = True
        headers = [
            (k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"content-type")
        ]
        ctype = next((v.decode("latin-1") for k, v in start["headers"] if k.lower() == b"content-type"), "")
        payload = b"".join(state["chunks"])
        body = _rewrite(start["status"], ctype.lower(), payload)
        if body is None:
            await send(start)
            await send({"type": "http.response.body", "body": payload})
            return
        await _send_error(send, start["status"], body, headers)


ERROR_STATUSES = {
    "400": "shape error: pydantic's list in `detail`, its first `loc` in `field`",
    "401": "missing or unknown API key",
    "403": "the key's role may not call this route",
    "413": "request body above the limit",
    "415": "request body is not JSON",
    "422": "the request does not fit the model or the endpoint's bounds; `field` names it",
    "429": "too many requests in flight; retry after `Retry-After` seconds",
    "500": "internal error (logged)",
    "503": "model not loaded or audit log unavailable (nothing was served)",
}


def with_error_schema(spec: dict) -> dict:
    """BentoML's OpenAPI document with every error response of the API routes declared as `Error`."""
    spec.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, ops in spec.get("paths", {}).items():
        if path not in JSON_POST_ROUTES:
            continue
        for op in ops.values():
            responses = op.setdefault("responses", {})
            for code in [c for c in responses if str(c) != "200"]:
                del responses[code]
            for code, text in ERROR_STATUSES.items():
                responses[code] = {"description": text, **ref}
    return spec


def _h11_json_400(self, msg: str) -> None:
    """uvicorn's H11Protocol.send_400_response (uvicorn 0.54), with a JSON body."""
    import h11

    body = error_body(400, msg, "request")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body)):
        self.transport.write(self.conn.send(event))
    self.transport.write(self.conn.send(h11.EndOfMessage()))
    self.transport.close()


def json_bad_request_in_uvicorn() -> None:
    """Make uvicorn's own 400 for an unparsable request JSON (see the module docstring)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    H11Protocol.send_400_response = _h11_json_400
