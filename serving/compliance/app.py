"""The compliance review pages: a Starlette app the prediction service mounts under /compliance.

Server-rendered HTML (every table readable without JavaScript); charts are drawn by the vendored
Chart.js (static/chart.umd.min.js, MIT) from JSON configs the server embeds, so nothing is fetched
from the internet.  Access: compliance and admin keys, through a session cookie (session.py); the
service's API-key middleware leaves /compliance to this app (serving/auth.py OPEN_PREFIXES).

Routes (relative to the mount point):
  GET/POST /login, POST /logout       session
  GET /                               records list: filters, paging, request-id search
  GET /records/{request_id}           one record: inputs, betas, regimes, waterfall, model card, chain
  GET /timeline                       champion history, forecasts per version, forecast vs realised
  GET /verify, POST /verify           chain verification panel
  GET /export?fmt=csv|parquet|jsonl   the filtered records as a file download
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from adaptive_beta.serving.auth import client_address, too_many_failures
from adaptive_beta.serving.compliance import charts, views
from adaptive_beta.serving.compliance.market import MarketConfig, MarketData
from adaptive_beta.serving.compliance.models_info import ModelInfo
from adaptive_beta.serving.compliance.registry import champion_history
from adaptive_beta.serving.compliance.session import SessionConfig, Sessions, may_review

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
FILTERS = ("since", "until", "symbol", "endpoint", "model_version", "caller", "request_id")
EXPORT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "jsonl": "application/x-ndjson",
}
PAGE_SIZES = (25, 50, 100, 200)
MAX_PAGE = 10**9  # page numbers above it are read as it (an offset SQLite's 64-bit integers hold)


@dataclass
class ComplianceConfig:
    """Where the pages read from; every field has an environment default (see `resolve`)."""

    audit_db: str | None = None  # ABETA_AUDIT_DB (the service's log), default ABETA_HOME/audit/audit.db
    model: str | None = None  # ABETA_MODEL: the bundle whose model card / baseline the pages show
    session: SessionConfig | None = None
    market: MarketConfig | None = None
    registry_name: str | None = None  # ABETA_REGISTERED_MODEL, default adaptive-beta
    tracking_uri: str | None = None  # MLFLOW_TRACKING_URI or the project's mlruns store

    def resolve(self) -> ComplianceConfig:
        from adaptive_beta.models.settings import get_settings

        settings = get_settings()
        return ComplianceConfig(
            audit_db=self.audit_db or str(settings.audit_db),
            model=self.model if self.model is not None else _given_model(settings),
            session=self.session or SessionConfig.from_env(),
            market=self.market or MarketConfig.from_env(),
            registry_name=self.registry_name,
            tracking_uri=self.tracking_uri,
        )


def _given_model(settings) -> str | None:
    """ABETA_MODEL when set (None otherwise: the pages then show no model card, not the default champion)."""
    return settings.model if "model" in settings.model_fields_set else None


@dataclass
class _Runtime:
    cfg: ComplianceConfig
    sessions: Sessions
    models: ModelInfo
    market: MarketData
    reader: Any = None
    last_verify: dict | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def audit(self):
        """The audit log reader (opened on first use; None while the database does not exist)."""
        from adaptive_beta.models.audit.log import AuditReader, StoreMissing

        with self.lock:
            if self.reader is None:
                try:
                    self.reader = AuditReader(self.cfg.audit_db)
                except StoreMissing:
                    return None
            return self.reader


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _same_origin(request: Request) -> bool:
    """POSTs must come from our own pages (SameSite=Strict is the main guard; this is a second one).

    Browsers say where a request comes from in Sec-Fetch-Site; behind BentoML's proxy the Host
    header may not be the one the browser used, so Origin is compared only when that is missing.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser form post (curl, tests)
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host"), request.url.netloc}
    return urlparse(origin).netloc in hosts


def _templates() -> Jinja2Templates:
    """The page templates, with the number filters they use (blank for a missing value)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["num"] = lambda v, d=3: "" if v is None else f"{float(v):.{d}f}"
    templates.env.filters["signed"] = lambda v, d=3: "" if v is None else f"{float(v):+.{d}f}"
    templates.env.filters["pct"] = lambda v: "" if v is None else f"{100 * float(v):.1f}%"
    return templates


def _base(request: Request) -> str:
    """The mount point (e.g. /compliance), so links and redirects work wherever the app is mounted."""
    return request.scope.get("root_path", "").rstrip("/")


def _filters_of(request: Request) -> dict[str, str]:
    """The record filters in the query string (blank ones dropped)."""
    return {k: request.query_params[k].strip() for k in FILTERS if request.query_params.get(k, "").strip()}


class _Pages:
    """What every page handler shares: the templates and the runtime, built on first use.

    The runtime is lazy so that importing the module (which builds `compliance_app`) reads no
    environment, keys or database; the first request does.
    """

    def __init__(self, cfg: ComplianceConfig | None, store, limiter=None) -> None:
        from adaptive_beta.serving.auth import FailedAuthLimiter

        self.templates = _templates()
        self._cfg = cfg
        self._store = store
        self.limiter = limiter if limiter is not None else FailedAuthLimiter()
        self._rt: _Runtime | None = None
        self._lock = threading.Lock()

    def runtime(self) -> _Runtime:
        with self._lock:
            if self._rt is None:
                from adaptive_beta.serving.auth import KeyStore

                c = (self._cfg or ComplianceConfig()).resolve()
                self._rt = _Runtime(
                    cfg=c,
                    sessions=Sessions(
                        self._store if self._store is not None else KeyStore.from_env(), c.session
                    ),
                    models=ModelInfo(c.model or ""),
                    market=MarketData(c.market),
                )
            return self._rt

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        """A template response with the common context, not cached (SecurityHeaders adds the rest)."""
        ctx.setdefault("caller", request.scope.get("abeta.session"))
        ctx.update(base=_base(request), request=request, now=_now())
        resp = self.templates.TemplateResponse(request, name, ctx, status_code=status)
        resp.headers["cache-control"] = "no-store"
        return resp

    def session_of(self, request: Request):
        """The caller of a valid session cookie whose role may review, else None."""
        rt = self.runtime()
        caller = rt.sessions.check(request.cookies.get(rt.sessions.cfg.cookie))
        return caller if may_review(caller) else None

    def no_log(self, request: Request) -> Response:
        """The page shown while the audit database does not exist yet."""
        return self.render(
            request,
            "error.html",
            200,
            message=f"No audit log at {self.runtime().cfg.audit_db} yet: it is created by the first served request.",
        )


# ---------------------------------------------------------------------- session
async def login(pages: _Pages, request: Request) -> Response:
    """GET: the login form (or home when already in); POST: check the key, issue the session cookie."""
    rt = pages.runtime()
    if request.method == "GET":
        if pages.session_of(request) is not None:
            return RedirectResponse(f"{_base(request)}/", status_code=303)
        return pages.render(request, "login.html", caller=None)
    if not _same_origin(request):
        return pages.render(request, "login.html", 403, caller=None, error="cross-site login refused")
    client = client_address(request.scope)
    wait = pages.limiter.retry_after(client)
    if wait is not None:
        resp = pages.render(request, "login.html", 429, caller=None, error=too_many_failures(wait) + ".")
        resp.headers["retry-after"] = str(wait)
        return resp
    form = await request.form()
    caller = rt.sessions.login(str(form.get("api_key", "")))
    if caller is None:
        pages.limiter.failure(client, request.url.path, "unknown API key at the compliance login")
        return pages.render(request, "login.html", 401, caller=None, error="Unknown API key.")
    if not may_review(caller):
        return pages.render(
            request,
            "error.html",
            403,
            caller=None,
            message=f"Role {caller.role!r} may not open the compliance pages (compliance or admin only).",
        )
    resp = RedirectResponse(f"{_base(request)}/", status_code=303)
    resp.set_cookie(
        rt.sessions.cfg.cookie,
        rt.sessions.issue(caller),
        max_age=rt.sessions.cfg.max_age_s,
        path=_base(request) or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    log.info("compliance login: %s (%s)", caller.key_id, caller.role)
    return resp


async def logout(pages: _Pages, request: Request) -> Response:
    """End the session on the server, drop its cookie and go to the login page (same-origin only)."""
    rt = pages.runtime()
    if not _same_origin(request):
        return pages.render(request, "error.html", 403, caller=None, message="cross-site logout refused")
    caller = rt.sessions.end(request.cookies.get(rt.sessions.cfg.cookie))
    if caller is not None:
        log.info("compliance logout: %s (%s)", caller.key_id, caller.role)
    resp = RedirectResponse(f"{_base(request)}/login", status_code=303)
    resp.delete_cookie(rt.sessions.cfg.cookie, path=_base(request) or "/")
    return resp


# ---------------------------------------------------------------------- records list
def _page_size_and_number(request: Request) -> tuple[int, int]:
    """(page size, page number) from the query string; anything unreadable falls back to page 1 of 25."""
    try:
        size = int(request.query_params.get("n", PAGE_SIZES[0]))
        page = min(MAX_PAGE, max(1, int(request.query_params.get("page", 1))))
    except ValueError:
        size, page = PAGE_SIZES[0], 1
    size = size if size in PAGE_SIZES else PAGE_SIZES[0]
    return size, page


def records(pages: _Pages, request: Request) -> Response:
    """GET /: the filtered, paged records list (a bad filter is a 400 with the form kept)."""
    reader = pages.runtime().audit()
    if reader is None:
        return pages.no_log(request)
    f = _filters_of(request)
    size, page = _page_size_and_number(request)
    try:
        total = reader.count(**f)
        rows = reader.query(**f, limit=size, offset=(page - 1) * size)
    except ValueError as exc:
        return pages.render(
            request,
            "records.html",
            400,
            error=str(exc),
            rows=[],
            filters=f,
            total=0,
            page=1,
            pages=1,
            size=size,
            qs="",
            sizes=PAGE_SIZES,
        )
    for r in rows:
        r["headline"] = views.headline(r)
    return pages.render(
        request,
        "records.html",
        rows=rows,
        filters=f,
        total=total,
        page=page,
        pages=max(1, -(-total // size)),
        size=size,
        qs=urlencode({**f, "n": size}),
        export_qs=urlencode(f),
        sizes=PAGE_SIZES,
        error=None,
    )


# ---------------------------------------------------------------------- one record
def _record_baselines(rt: _Runtime, rec: dict) -> tuple[dict | None, str | None]:
    """(baselines, "logged" | "bundle" | None): the Shapley baselines the waterfall starts from.

    Logged with the record when possible (no bundle needed); else recomputed from the bundle,
    which is informational only, so a failure there degrades the chart instead of the page.
    """
    baselines = views.logged_baselines(rec)
    baseline_source = "logged" if baselines else None
    if baselines is None:
        try:
            baselines = rt.models.baselines(rec.get("bundle_sha256"))
            baseline_source = "bundle" if baselines else None
        except Exception as exc:  # informational: the waterfall then starts at "baseline + other groups"
            log.warning("baseline for %s not computed: %s", rec.get("bundle_sha256"), exc)
            baselines = None
    return baselines, baseline_source


def _record_explanations(rec: dict, baselines: dict | None) -> list[dict]:
    """The record's explanations, each with its waterfall chart config."""
    expls = views.explanations_of(rec, baselines)
    for e in expls:
        title = f"{e['symbol']}: beta to {e['benchmark']}"
        e["chart"] = charts.to_json(charts.waterfall_config(e["steps"], title))
    return expls


def _record_inputs(rec: dict, market: MarketData) -> list[dict]:
    """The record's input summary per asset, each with its closes and price chart (when known)."""
    inputs = views.feature_summary(rec)
    history = views.price_history(rec)
    for item in inputs:
        item["prices"] = _prices(item, history.get(item["symbol"]), market)
        if item["prices"] is not None:
            p = item["prices"]
            item["chart"] = charts.to_json(
                charts.line_config(
                    [label for label, _ in p["rows"]],
                    {item["symbol"]: [c for _, c in p["rows"]]},
                    "close",
                )
            )
    return inputs


def record(pages: _Pages, request: Request) -> Response:
    """GET /records/{request_id}: inputs, betas, regimes, waterfall, model card and chain status."""
    rt = pages.runtime()
    reader = rt.audit()
    if reader is None:
        return pages.no_log(request)
    rid = request.path_params["request_id"]
    rec = reader.get(rid)
    if rec is None:
        return pages.render(request, "error.html", 404, message=f"No audit record with request id {rid!r}.")
    baselines, baseline_source = _record_baselines(rt, rec)
    forecasts = views.forecasts_of(rec)
    expls = _record_explanations(rec, baselines)
    inputs = _record_inputs(rec, rt.market)
    status_cls, status_text = views.chain_status_for(int(rec["seq"]), rt.last_verify)
    return pages.render(
        request,
        "record.html",
        rec=rec,
        forecasts=forecasts,
        explanations=expls,
        baseline_source=baseline_source,
        inputs=inputs,
        market_configured=rt.market.configured,
        market_error=rt.market.error,
        card=rt.models.card(rec),
        own_hash_ok=views.own_hash_ok(rec),
        chain_cls=status_cls,
        chain_text=status_text,
        hedge=rec.get("output") if rec.get("endpoint") == "/hedge" else None,
    )


# ---------------------------------------------------------------------- timeline
def _outcomes(market: MarketData, recent: list[dict]) -> tuple[list[dict], list[dict], int]:
    """(realised comparisons, pending ones, count unavailable) for the recent /forecast betas.

    Each forecast beta is matched with the beta realised over its horizon in the configured
    market data; one whose horizon has not ended yet is pending.
    """
    comparisons: list[dict] = []
    pending: list[dict] = []
    unavailable = 0
    for r in recent:
        for fc in views.forecasts_of(r) if r.get("endpoint") == "/forecast" else []:
            for b in fc["betas"]:
                if b["beta"] is None:
                    continue
                res = market.outcome(fc["symbol"], fc["as_of"], b["benchmark"])
                row = {
                    "rec": r,
                    "symbol": fc["symbol"],
                    "as_of": fc["as_of"],
                    "benchmark": b["benchmark"],
                    "forecast": b["beta"],
                    "lo": b["lo"],
                    "hi": b["hi"],
                    "realised": res.value,
                    "due": res.due.strftime("%Y-%m-%d %H:%M") if res.due is not None else "",
                }
                if res.status == "realised":
                    comparisons.append(row)
                elif res.status == "pending":
                    pending.append(row)
                else:
                    unavailable += 1
    return comparisons, pending, unavailable


def _outcome_summary(comparisons: list[dict]) -> dict | None:
    """Mean absolute error, bias and interval coverage of the realised comparisons (None if none)."""
    if not comparisons:
        return None
    errs = [c["forecast"] - c["realised"] for c in comparisons]
    inside = [c for c in comparisons if c["lo"] is not None and c["lo"] <= c["realised"] <= c["hi"]]
    return {
        "n": len(errs),
        "mae": sum(abs(e) for e in errs) / len(errs),
        "bias": sum(errs) / len(errs),
        "coverage": len(inside) / len(comparisons),
    }


def timeline(pages: _Pages, request: Request) -> Response:
    """GET /timeline: champion history, forecasts served per version, forecast vs realised."""
    rt = pages.runtime()
    reader = rt.audit()
    hist = champion_history(rt.cfg.registry_name, rt.cfg.tracking_uri)
    counts: dict[str, int] = {}
    comparisons: list[dict] = []
    pending: list[dict] = []
    unavailable = 0
    if reader is not None:
        versions = {str(h.get("version")) for h in hist or []}
        recent = reader.query(limit=2000)
        versions |= {r["model_version"] for r in recent if r.get("model_version")}
        counts = {v: reader.count(model_version=v) for v in sorted(versions, key=_version_key)}
        if rt.market.configured:
            comparisons, pending, unavailable = _outcomes(rt.market, recent)
    chart = (
        charts.to_json(charts.bar_config(list(counts), list(counts.values()), "forecasts served"))
        if counts
        else None
    )
    return pages.render(
        request,
        "timeline.html",
        history=hist,
        counts=counts,
        chart=chart,
        comparisons=comparisons[:200],
        pending=pending[:200],
        n_pending=len(pending),
        unavailable=unavailable,
        summary=_outcome_summary(comparisons),
        market_configured=rt.market.configured,
        market_error=rt.market.error,
        horizon=rt.market.cfg.horizon,
    )


# ---------------------------------------------------------------------- verify, export
def verify(pages: _Pages, request: Request) -> Response:
    """GET: the last verification; POST: verify the whole hash chain now, then show it."""
    rt = pages.runtime()
    reader = rt.audit()
    if reader is None:
        return pages.no_log(request)
    if request.method == "POST":
        from adaptive_beta.models.audit.log import verify_chain

        res = verify_chain(reader)
        rt.last_verify = {
            "ok": res.ok,
            "n_records": res.n_records,
            "first_bad_seq": res.first_bad_seq,
            "problem": res.problem,
            "kind": res.kind,
            "head_hash": res.head_hash,
            "at": _now(),
            "by": request.scope["abeta.session"].key_id,
        }
        log.info("chain verified by %s: %s", rt.last_verify["by"], "ok" if res.ok else res.problem)
        return RedirectResponse(f"{_base(request)}/verify", status_code=303)
    return pages.render(request, "verify.html", result=rt.last_verify)


def export(pages: _Pages, request: Request) -> Response:
    """GET /export?fmt=csv|parquet|jsonl: the filtered records as a download (temp file, then deleted)."""
    reader = pages.runtime().audit()
    if reader is None:
        return pages.no_log(request)
    fmt = request.query_params.get("fmt", "csv")
    if fmt not in EXPORT_TYPES:
        return pages.render(
            request, "error.html", 400, message=f"export format {fmt!r} is not one of csv, parquet, jsonl"
        )
    f = _filters_of(request)
    fd, tmp = tempfile.mkstemp(prefix="abeta-export-", suffix=f".{fmt}")
    os.close(fd)
    try:
        n = reader.export(tmp, fmt=fmt, **f)
    except ValueError as exc:
        os.unlink(tmp)
        return pages.render(request, "error.html", 400, message=str(exc))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    resp = FileResponse(
        tmp,
        media_type=EXPORT_TYPES[fmt],
        filename=f"audit-{stamp}.{fmt}",
        background=BackgroundTask(os.unlink, tmp),
    )
    resp.headers["x-abeta-records"] = str(n)
    resp.headers["cache-control"] = "no-store"
    return resp


# ---------------------------------------------------------------------- wiring
# Every response of the app (pages, redirects, static files, downloads, errors): scripts and styles
# only from the app itself (pages.js draws the charts; no inline script anywhere), inline style
# attributes allowed (the regime bars' widths), no frames, forms posting only to the app.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware setting SECURITY_HEADERS on every HTTP response of the compliance app."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers[k] = v
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _open(pages: _Pages, page):
    """A Starlette endpoint for a page anyone may reach (login, logout)."""

    async def endpoint(request: Request) -> Response:
        return await page(pages, request)

    endpoint.__name__ = page.__name__
    return endpoint


def _guarded(pages: _Pages, page):
    """A Starlette endpoint for a review page: no session -> the login page; cross-site POST -> 403.

    The caller goes into the scope for the templates (and for verify's "by").
    """

    def endpoint(request: Request) -> Response:
        caller = pages.session_of(request)
        if caller is None:
            return RedirectResponse(f"{_base(request)}/login", status_code=303)
        if request.method == "POST" and not _same_origin(request):
            return pages.render(request, "error.html", 403, message="cross-site form submission refused")
        request.scope["abeta.session"] = caller
        return page(pages, request)

    endpoint.__name__ = page.__name__
    return endpoint


def create_app(cfg: ComplianceConfig | None = None, store=None, limiter=None) -> Starlette:
    """The ASGI app. `store` (a adaptive_beta.serving.auth.KeyStore) defaults to the service's keys from the env;
    `limiter` (FailedAuthLimiter, failed logins per client) to one built from the env.

    Wires the page functions above to their routes; every page gets the same `_Pages`.
    """
    pages = _Pages(cfg, store, limiter)
    routes = [
        Route("/login", _open(pages, login), methods=["GET", "POST"]),
        Route("/logout", _open(pages, logout), methods=["POST"]),
        Route("/", _guarded(pages, records), methods=["GET"]),
        Route("/records/{request_id:str}", _guarded(pages, record), methods=["GET"]),
        Route("/timeline", _guarded(pages, timeline), methods=["GET"]),
        Route("/verify", _guarded(pages, verify), methods=["GET", "POST"]),
        Route("/export", _guarded(pages, export), methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.runtime = pages.runtime
    return app


def _prices(item: dict, logged: dict | None, market: MarketData) -> dict | None:
    """The closes to draw for one asset of a record: {source, rows [(label, close)], sentence}.

    The request's own closes when the record logged them (features.inputs); else, for older
    records, the configured market data up to the as-of bar; else None.
    """
    if logged is not None:
        rows = [(views.short_time(t), c) for t, c in logged["rows"]]
        n = logged["n_bars"]
        return {
            "source": "request",
            "rows": rows,
            "sentence": (
                f"The request carried {n} bars, {views.short_time(logged['first'])} to "
                f"{views.short_time(logged['last'])} (UTC); shown: its last {len(rows)} closes, as logged."
            ),
        }
    closes = market.closes(item["symbol"], item["as_of"], bars=60) if market.configured else None
    if closes is None:
        return None
    rows = [(t.strftime("%Y-%m-%d %H:%M"), float(v)) for t, v in closes.items()]
    return {
        "source": "market",
        "rows": rows,
        "sentence": (
            f"This record does not hold the request's closes; shown: closes {rows[0][0]} to {rows[-1][0]} "
            f"({len(rows)} bars) from the configured market data."
        ),
    }


def _version_key(v: str) -> tuple:
    return (0, int(v), "") if v.isdigit() else (1, 0, v)


compliance_app = create_app()
