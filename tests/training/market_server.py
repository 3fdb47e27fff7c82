"""A local stand-in for data.binance.vision and the Binance USD-M REST API, for `abeta data fetch` tests.

Serves the recorded files under tests/fixtures on 127.0.0.1 (a free port), with HTTP Range
support (206) as the real archive has; pages the recorded klines and funding prints by
`startTime` and `limit` as fapi does (at most `page` rows per answer, to exercise
pagination); and can answer a path with given error statuses first (`fail`), to exercise the
retries.  Every request is logged (method, path, Range header, status).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class MarketServer:
    def __init__(self, page: int = 40):
        self.page = page
        self.fail: dict[str, list[int]] = {}  # path -> statuses to answer first, in order
        self.log: list[tuple[str, str | None, int]] = []  # (path, Range header, status)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MarketServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def hits(self, fragment: str) -> list[tuple[str, str | None, int]]:
        return [h for h in self.log if fragment in h[0]]

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None) -> None:
        parts = urlsplit(h.path)
        self.log.append((parts.path, h.headers.get("Range"), status))
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        queued = self.fail.get(parts.path)
        if queued:
            status = queued.pop(0)
            self._send(h, status, b'{"code": -1003, "msg": "Too many requests"}', {"Retry-After": "0"})
            return
        if parts.path.startswith("/data/"):
            self._file(h, FIXTURES / "binance_vision" / parts.path.lstrip("/"))
        elif parts.path.startswith("/fapi/v1/"):
            self._fapi(h, parts.path.removeprefix("/fapi/v1/"), parse_qs(parts.query))
        else:
            self._send(h, 404, b"not found")

    def _file(self, h: BaseHTTPRequestHandler, path: Path) -> None:
        if not path.is_file():
            self._send(h, 404, b"<Error><Code>NoSuchKey</Code></Error>")
            return
        data = path.read_bytes()
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self._send(h, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            self._send(h, 206, data[start:], headers)
            return
        self._send(h, 200, data, {"Accept-Ranges": "bytes"})

    def _fapi(self, h: BaseHTTPRequestHandler, name: str, query: dict[str, list[str]]) -> None:
        root = FIXTURES / "ccxt_binanceusdm"
        one = {k: v[0] for k, v in query.items()}
        if name == "exchangeInfo":
            self._send(h, 200, (root / "exchangeInfo.json").read_bytes())
            return
        if name == "klines":
            rows = json.loads((root / f"klines-{one['symbol']}-{one['interval']}.json").read_text())
            when = lambda r: r[0]  # noqa: E731
        elif name == "fundingRate":
            rows = json.loads((root / f"fundingRate-{one['symbol']}.json").read_text())
            when = lambda r: r["fundingTime"]  # noqa: E731
        else:
            self._send(h, 404, b'{"code": -5000, "msg": "unknown path"}')
            return
        start = int(one.get("startTime", 0))
        limit = min(int(one.get("limit", self.page)), self.page)
        page = [r for r in rows if when(r) >= start][:limit]
        self._send(h, 200, json.dumps(page).encode(), {"Content-Type": "application/json"})
