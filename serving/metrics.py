"""Prometheus metrics labelled by route template, never by the raw request path.

Why not BentoML's own HTTP metrics: BentoML 1.4's traffic-metrics middleware
(`bentoml/_internal/server/http/instruments.py`) labels its counters, histograms and gauges
with `scope["path"]` as sent, and it is the OUTERMOST middleware (added before any
`add_asgi_middleware` one), so nothing of ours can rewrite the path before it reads it.  Every
distinct path, even one answered 401, created about 20 series that live forever in Prometheus'
multiprocess files: 1,000 random 4 KB paths grew a worker by 115 MB and /metrics to 84 MB (issue
11).  BentoML has no setting to change its labels, so the service turns its HTTP metrics off
(`metrics={"enabled": False}` on the service, which also removes its /metrics route) and this
module provides both instead: `RouteMetricsMiddleware` counts every request by route template
(`/compliance/records/{request_id}`; any path that is not a route is `other`), and `/metrics`
(served by `metrics_response`) exposes every metric of every worker (prometheus_client's
multiprocess collector, as BentoML does), including `abeta_request_duration_seconds`.  The
number of series is therefore bounded by routes x statuses, whatever paths clients send.
"""

from __future__ import annotations

import os
import re

from starlette.responses import Response

# Route templates of the service (serving/service.py, serving/compliance/app.py, BentoML's probes).
EXACT_ROUTES = frozenset(
    {
        "/forecast",
        "/bars",
        "/explain",
        "/hedge",
        "/stress",
        "/backtest",
        "/model",
        "/monitor",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs.json",
        "/",
        "/compliance",
        "/compliance/",
        "/compliance/login",
        "/compliance/logout",
        "/compliance/timeline",
        "/compliance/verify",
        "/compliance/export",
    }
)
TEMPLATES = (
    (re.compile(r"^/compliance/records/[^/]+$"), "/compliance/records/{request_id}"),
    (re.compile(r"^/compliance/static/[^/]+$"), "/compliance/static/{file}"),
)
OTHER = "other"


def route_label(path: str) -> str:
    """The route template of `path`, or "other": a bounded set of labels whatever the client sends."""
    if path in EXACT_ROUTES:
        return path
    for pattern, template in TEMPLATES:
        if pattern.match(path):
            return template
    return OTHER


_COUNTER = None


def _requests_total():
    """The request counter, created on first use (after BentoML has set PROMETHEUS_MULTIPROC_DIR)."""
    global _COUNTER
    if _COUNTER is None:
        import prometheus_client

        _COUNTER = prometheus_client.Counter(
            "abeta_http_requests_total",
            "HTTP requests answered, by route template (unknown paths: route=other) and status.",
            ["route", "status"],
        )
    return _COUNTER


class RouteMetricsMiddleware:
    """Count every HTTP request under its route template and final status (see the module docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = route_label(scope.get("path", ""))
            _requests_total().labels(route=route, status=str(status["code"])).inc()


def metrics_response() -> Response:
    """GET /metrics: every worker's metrics in the Prometheus text format."""
    import prometheus_client

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    return Response(
        prometheus_client.generate_latest(registry), media_type=prometheus_client.CONTENT_TYPE_LATEST
    )
