"""The prediction service: BentoML 1.4 on ONNX Runtime (torch is never imported here).

    ABETA_MODEL=bundles/x ABETA_API_KEYS="desk@trader:..." bentoml serve adaptive_beta.serving.service:AdaptiveBeta

Endpoints (all JSON): POST /forecast, POST /explain, POST /hedge, POST /stress, POST /backtest,
POST /bars (a feed appends market data: serving/endpoints/bars.py), GET /model, GET /monitor (drift report over the audit log, read-only); open probes
/healthz, /readyz (bundle loaded AND audit log writable), /metrics (Prometheus; the histogram
`abeta_request_duration_seconds{endpoint, model_version, status}` per endpoint and the counter
`abeta_http_requests_total{route, status}` by route template: serving/metrics.py says why
BentoML's own path-labelled HTTP metrics are off).

Sizing: `ABETA_WORKERS` processes x `ABETA_ORT_THREADS` ORT threads per process must not exceed
the cores (checked at import; the thread count is lowered if needed).  Beyond
`ABETA_MAX_CONCURRENCY` requests in flight per worker a request waits up to `ABETA_QUEUE_WAIT_S`
for a slot, then gets 429 with Retry-After (serving/limits.py); a request taking longer than
`ABETA_TIMEOUT_S` (waiting included) is cut off.  Middleware order (outermost first): BentoML's
timeout, route metrics, JSON errors (415 for a non-JSON body; every error body JSON), API-key
auth (401/403, 429 after repeated wrong keys), concurrency (429), body limit (413), then the API.

Errors: shape problems 400 (pydantic, `loc` names the field); a request that does not fit the
model 422 `{"error", "field"}`; audit log unavailable 503 with no forecast; never a 500 for bad
input (unexpected exceptions are logged and answered 500 without details).
"""

from __future__ import annotations

import gc
import logging
import os
import time

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adaptive_beta.models.settings import settings_at_import
from adaptive_beta.serving.app_state import AppState, ServeConfig
from adaptive_beta.serving.auth import APIKeyMiddleware
from adaptive_beta.serving.backtest_schemas import BacktestRequest, BacktestResponse
from adaptive_beta.serving.bars_schemas import BarsRequest, BarsResponse
from adaptive_beta.serving.bento_store import served_model
from adaptive_beta.serving.compliance.app import compliance_app
from adaptive_beta.serving.endpoints.backtest import backtest
from adaptive_beta.serving.endpoints.bars import bars
from adaptive_beta.serving.endpoints.explain import explain
from adaptive_beta.serving.endpoints.forecast import forecast_http
from adaptive_beta.serving.endpoints.hedge import hedge
from adaptive_beta.serving.endpoints.model import model
from adaptive_beta.serving.endpoints.stress import stress
from adaptive_beta.serving.errors import JSONErrorsMiddleware, json_bad_request_in_uvicorn
from adaptive_beta.serving.limits import BodyLimitMiddleware, ConcurrencyLimitMiddleware
from adaptive_beta.serving.market_stores import StoreUnavailable, close_stores
from adaptive_beta.serving.metrics import RouteMetricsMiddleware, metrics_response
from adaptive_beta.serving.openapi import ModelCard, served_document
from adaptive_beta.serving.parent_watch import exit_with_parent
from adaptive_beta.serving.schemas import (
    ExplainRequest,
    ExplainResponse,
    ForecastRequest,
    ForecastResponse,
    HedgeRequest,
    HedgeResponse,
    RequestError,
)
from adaptive_beta.serving.stress_schemas import StressRequest, StressResponse

log = logging.getLogger("abeta.service")

CORES = os.cpu_count() or 1
SETTINGS = settings_at_import()  # a bad ABETA_* value: one line and exit 2 (adaptive_beta.models.settings)
WORKERS = SETTINGS.workers
ORT_THREADS = max(1, min(SETTINGS.ort_threads, CORES // WORKERS or 1))
MAX_CONCURRENCY = SETTINGS.max_concurrency
TIMEOUT_S = SETTINGS.timeout_s
GC_GEN0_THRESHOLD = SETTINGS.gc_gen0  # allocations between young collections

REQUEST_SECONDS = bentoml.metrics.Histogram(
    name="abeta_request_duration_seconds",
    documentation="Time to answer an Adaptive Beta API call, by endpoint, model version and HTTP status.",
    labelnames=["endpoint", "model_version", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

_STATE: dict[str, AppState] = {}  # the loaded state, shared with the mounted /model app


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


async def _model_route(request: Request) -> JSONResponse:
    state = _STATE.get("state")
    if state is None:
        return _error(503, "model not loaded")
    return JSONResponse(ModelCard.model_validate(model(state)).model_dump(mode="json"))


async def _monitor_route(request: Request) -> JSONResponse:
    """GET /monitor: serving/endpoints/monitor.py (runs in a thread: it may rebuild the reference once)."""
    from starlette.concurrency import run_in_threadpool

    from adaptive_beta.serving.endpoints.monitor import NoReference, QueryError, monitor

    t0 = time.perf_counter()
    state = _STATE.get("state")
    status = 200
    try:
        if state is None:
            status = 503
            return _error(503, "model not loaded")
        return JSONResponse(await run_in_threadpool(monitor, state, dict(request.query_params)))
    except QueryError as exc:
        status = 400
        return _error(400, exc.message, exc.field)
    except NoReference as exc:
        status = 409
        return _error(409, str(exc), "reference")
    except RequestError as exc:
        status = 422
        return _error(422, exc.message, exc.field)
    except Exception:
        status = 503
        log.exception("/monitor failed")
        return _error(503, "monitoring report unavailable (audit log or data unreadable); see the server log")
    finally:
        version = state.model_version if state else "none"
        REQUEST_SECONDS.labels(endpoint="/monitor", model_version=version, status=str(status)).observe(
            time.perf_counter() - t0
        )


async def _metrics_route(request: Request):
    return metrics_response()


async def _openapi_route(request: Request) -> JSONResponse:
    """GET /openapi.json (any authenticated role): every operation of the service (serving/openapi.py)."""
    return JSONResponse(served_document(AdaptiveBeta.openapi_spec.asdict()))


model_app = Starlette(
    routes=[
        Route("/metrics", _metrics_route, methods=["GET"]),
        Route("/openapi.json", _openapi_route, methods=["GET"]),
        Route("/model", _model_route, methods=["GET"]),
        Route("/monitor", _monitor_route, methods=["GET"]),
    ]
)


@bentoml.service(
    name="adaptive_beta",
    workers=WORKERS,
    traffic={"timeout": TIMEOUT_S},  # concurrency: ConcurrencyLimitMiddleware (queues before 429)
    metrics={"enabled": False},  # BentoML labels by raw path: /metrics is ours (serving/metrics.py)
)
@bentoml.asgi_app(model_app, path="/")
@bentoml.asgi_app(compliance_app, path="/compliance")  # review pages, session-cookie auth
class AdaptiveBeta:
    """Loads the bundle once per worker; see the module docstring."""

    def __init__(self) -> None:
        exit_with_parent()  # a worker runs in its own session: stop it when the server is killed
        cfg = ServeConfig.from_env()
        cfg.model = served_model(SETTINGS, AdaptiveBeta.bento)  # run as a Bento: the Bento's model
        cfg.intra_op_threads = ORT_THREADS
        self.cfg = cfg
        self.state: AppState | None = None
        self.load_error: str | None = None
        self.warm = False
        try:
            self.state = AppState.load(cfg)
            _STATE["state"] = self.state
        except Exception as exc:  # keep serving probes; /readyz stays false and says why in the log
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model or audit log failed to load: %s", self.load_error)
            return
        # one unlogged forecast on a synthetic window before /readyz turns true, so the first real
        # request does not pay for lazy imports and ONNX Runtime's first run (2.4 s -> normal)
        try:
            log.info("warm-up forecast took %.3f s", self.state.warm_up())
        except Exception as exc:  # a model that rejects the synthetic window can still serve real ones
            log.warning("warm-up forecast failed (serving anyway): %s: %s", type(exc).__name__, exc)
        try:  # stored-state forecasts: replay the market-data store now, not on the first request
            took = self.state.warm_up_live()
            if took is not None:
                log.info("stored-state forecasts rebuilt from the market-data store in %.3f s", took)
        except Exception as exc:  # the stateless path serves regardless; stored-state calls say why
            log.warning("stored-state forecasts not built at start-up: %s: %s", type(exc).__name__, exc)
        # A request allocates ~10^4 short-lived objects (pydantic bars, pandas frames): with the
        # default thresholds full collections rescan everything loaded at start-up (bundle, ORT,
        # pandas, mlflow).  Freeze those and collect the young generation less often: measured
        # p90 of validate + forecast 258 -> 137 ms on a loaded 2-core machine, p50 unchanged.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
        self.warm = True

    @bentoml.on_shutdown
    def close_audit(self) -> None:
        """Finish pending appends and write the closing anchor of the audit chain."""
        close_stores()
        if self.state is not None:
            self.state.audit.close()

    def __is_ready__(self) -> bool:
        return self.state is not None and self.warm and bool(self.state.audit.writable(timeout_s=2.0))

    # ------------------------------------------------------------------ helpers
    def _call(self, endpoint: str, fn, req, ctx: bentoml.Context):
        from adaptive_beta.models.audit.log import AuditUnavailable

        t0 = time.perf_counter()
        version = self.state.model_version if self.state else "none"
        status = 200
        try:
            if self.state is None:
                status = 503
                return _error(503, "model not loaded; see the server log")
            caller = ctx.request.scope.get("abeta.caller")
            key_id = caller.key_id if caller is not None else "anonymous"
            return fn(req, key_id)
        except RequestError as exc:
            status = getattr(exc, "status", 422)  # BarsConflict: 409
            return _error(status, exc.message, exc.field)
        except AuditUnavailable as exc:
            status = 503
            if endpoint == "/bars":
                log.error("audit log unavailable, restatement refused: %s", exc)
                return _error(
                    503, "audit log unavailable: the restatement was not recorded, so nothing was stored"
                )
            log.error("audit log unavailable, forecast withheld: %s", exc)
            return _error(503, "audit log unavailable: the forecast was not recorded, so it is not returned")
        except StoreUnavailable as exc:
            status = 503
            log.error("market-data store unavailable: %s", exc)
            return _error(503, "market-data store unavailable: nothing was stored; see the server log")
        except Exception:
            status = 500
            log.exception("unexpected error in %s", endpoint)
            return _error(500, "internal error; see the server log")
        finally:
            # BentoML copies ctx.response.status_code onto whatever the API returns
            ctx.response.status_code = status
            REQUEST_SECONDS.labels(endpoint=endpoint, model_version=version, status=str(status)).observe(
                time.perf_counter() - t0
            )

    # ------------------------------------------------------------------ API
    @bentoml.api(route="/forecast", input_spec=ForecastRequest, output_spec=ForecastResponse)
    def forecast(self, ctx: bentoml.Context, **kwargs) -> ForecastResponse:
        """Forward beta per benchmark with a 90 % interval, regime probabilities and the top drivers."""
        req = ForecastRequest.model_construct(**kwargs)
        return self._call("/forecast", lambda r, c: forecast_http(self.state, r, c), req, ctx)

    @bentoml.api(route="/bars", input_spec=BarsRequest, output_spec=BarsResponse)
    def bars(self, ctx: bentoml.Context, **kwargs) -> BarsResponse:
        """Append bars to the market-data store (roles feeder, admin): idempotent per series and bar."""
        req = BarsRequest.model_construct(**kwargs)
        return self._call("/bars", lambda r, c: BarsResponse.model_validate(bars(self.state, r, c)), req, ctx)

    @bentoml.api(route="/explain", input_spec=ExplainRequest, output_spec=ExplainResponse)
    def explain(self, ctx: bentoml.Context, **kwargs) -> ExplainResponse:
        """Exact group Shapley values vs the training-mean baseline, plus feature detail in the top groups."""
        req = ExplainRequest.model_construct(**kwargs)
        return self._call(
            "/explain", lambda r, c: ExplainResponse.model_validate(explain(self.state, r, c)), req, ctx
        )

    @bentoml.api(route="/hedge", input_spec=HedgeRequest, output_spec=HedgeResponse)
    def hedge(self, ctx: bentoml.Context, **kwargs) -> HedgeResponse:
        """Overlay orders bringing the forecast portfolio beta to the target (least squares across benchmarks)."""
        req = HedgeRequest.model_construct(**kwargs)
        return self._call(
            "/hedge", lambda r, c: HedgeResponse.model_validate(hedge(self.state, r, c)), req, ctx
        )

    @bentoml.api(route="/stress", input_spec=StressRequest, output_spec=StressResponse)
    def stress(self, ctx: bentoml.Context, **kwargs) -> StressResponse:
        """P&L of the book and its beta overlay under stress scenarios, with the overlay needed after each."""
        req = StressRequest.model_construct(**kwargs)
        return self._call(
            "/stress", lambda r, c: StressResponse.model_validate(stress(self.state, r, c)), req, ctx
        )

    @bentoml.api(route="/backtest", input_spec=BacktestRequest, output_spec=BacktestResponse)
    def backtest(self, ctx: bentoml.Context, **kwargs) -> BacktestResponse:
        """Overlay backtest of the request's book: each estimator's (and the model's) hedge side by side."""
        req = BacktestRequest.model_construct(**kwargs)
        return self._call(
            "/backtest", lambda r, c: BacktestResponse.model_validate(backtest(self.state, r, c)), req, ctx
        )


json_bad_request_in_uvicorn()  # uvicorn's own 400 for an unparsable request (serving/errors.py)
AdaptiveBeta.add_asgi_middleware(RouteMetricsMiddleware)
AdaptiveBeta.add_asgi_middleware(JSONErrorsMiddleware)
AdaptiveBeta.add_asgi_middleware(APIKeyMiddleware)
AdaptiveBeta.add_asgi_middleware(ConcurrencyLimitMiddleware, max_concurrency=MAX_CONCURRENCY)
AdaptiveBeta.add_asgi_middleware(BodyLimitMiddleware)
