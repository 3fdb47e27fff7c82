"""Issue 11 item 10 (leftover): a request uvicorn cannot parse is answered before any ASGI app
runs; its 400 is JSON like every other error (serving/errors.py `json_bad_request_in_uvicorn`)."""

from __future__ import annotations

import json
import socket

import pytest

pytestmark = pytest.mark.slow

MALFORMED = [
    b"GARBAGE\r\n\r\n",  # no method / target / version
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",  # a header line without a colon
    b"POST /forecast HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",  # invalid length
]


def _raw(port: int, payload: bytes) -> bytes:
    """Send raw bytes, read until the server closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


@pytest.mark.parametrize("payload", MALFORMED, ids=["request-line", "header", "content-length"])
def test_a_malformed_http_request_gets_a_json_400_and_the_connection_closes(server, payload):
    raw = _raw(server.port, payload)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 400"), raw[:300]
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert headers["content-type"].startswith("application/json"), raw[:300]
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    out = json.loads(body)
    assert out == {"error": "Invalid HTTP request received.", "field": "request"}
