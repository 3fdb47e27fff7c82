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
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

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


@dataclass
class ComplianceConfig:
    """Where the pages read from; every field has an environment default (see `resolve`)."""

    audit_db: str | None = None  # ABETA_AUDIT_DB (the service's log), default audit/audit.db
    model: str | None = None  # ABETA_MODEL: the bundle whose model card / baseline the pages show
    session: SessionConfig | None = None
    market: MarketConfig | None = None
    registry_name: str | None = None  # ABETA_REGISTERED_MODEL, default adaptive-beta
    tracking_uri: str | None = None  # MLFLOW_TRACKING_URI or the project's mlruns store

    def resolve(self) -> ComplianceConfig:
        return ComplianceConfig(
            audit_db=self.audit_db or os.environ.get("ABETA_AUDIT_DB", "audit/audit.db"),
            model=self.model if self.model is not None else os.environ.get("ABETA_MODEL"),
            session=self.session or SessionConfig.from_env(),
            market=self.market or MarketConfig.from_env(),
            registry_name=self.registry_name,
            tracking_uri=self.tracking_uri,
        )


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


def create_app(cfg: ComplianceConfig | None = None, store=None) -> Starlette:
    """The ASGI app. `store` (a adaptive_beta.serving.auth.KeyStore) defaults to the service's keys from the env."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["num"] = lambda v, d=3: "" if v is None else f"{float(v):.{d}f}"
    templates.env.filters["signed"] = lambda v, d=3: "" if v is None else f"{float(v):+.{d}f}"
    templates.env.filters["pct"] = lambda v: "" if v is None else f"{100 * float(v):.1f}%"
    rt_holder: dict[str, _Runtime] = {}
    rt_lock = threading.Lock()

    def runtime() -> _Runtime:
        with rt_lock:
            if "rt" not in rt_holder:
                from adaptive_beta.serving.auth import KeyStore

                c = (cfg or ComplianceConfig()).resolve()
                rt_holder["rt"] = _Runtime(
                    cfg=c,
                    sessions=Sessions(store if store is not None else KeyStore.from_env(), c.session),
                    models=ModelInfo(c.model or ""),
                    market=MarketData(c.market),
                )
            return rt_holder["rt"]

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("caller", request.scope.get("abeta.session"))
        ctx.update(base=base(request), request=request, now=_now())
        resp = templates.TemplateResponse(request, name, ctx, status_code=status)
        resp.headers["cache-control"] = "no-store"
        resp.headers["x-frame-options"] = "DENY"
        resp.headers["referrer-policy"] = "no-referrer"
        return resp

    def session_of(request: Request):
        rt = runtime()
        caller = rt.sessions.check(request.cookies.get(rt.sessions.cfg.cookie))
        return caller if may_review(caller) else None

    def guarded(fn):
        """No session -> redirect to the login page; the caller goes into the scope for templates."""

        def endpoint(request: Request) -> Response:
            caller = session_of(request)
            if caller is None:
                return RedirectResponse(f"{base(request)}/login", status_code=303)
            if request.method == "POST" and not _same_origin(request):
                return render(request, "error.html", 403, message="cross-site form submission refused")
            request.scope["abeta.session"] = caller
            return fn(request)

        endpoint.__name__ = fn.__name__
        return endpoint

    # ------------------------------------------------------------------ session
    async def login(request: Request) -> Response:
        rt = runtime()
        if request.method == "GET":
            if session_of(request) is not None:
                return RedirectResponse(f"{base(request)}/", status_code=303)
            return render(request, "login.html", caller=None)
        if not _same_origin(request):
            return render(request, "login.html", 403, caller=None, error="cross-site login refused")
        form = await request.form()
        caller = rt.sessions.login(str(form.get("api_key", "")))
        if caller is None:
            return render(request, "login.html", 401, caller=None, error="Unknown API key.")
        if not may_review(caller):
            return render(
                request,
                "error.html",
                403,
                caller=None,
                message=f"Role {caller.role!r} may not open the compliance pages (compliance or admin only).",
            )
        resp = RedirectResponse(f"{base(request)}/", status_code=303)
        resp.set_cookie(
            rt.sessions.cfg.cookie,
            rt.sessions.issue(caller),
            max_age=rt.sessions.cfg.max_age_s,
            path=base(request) or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        log.info("compliance login: %s (%s)", caller.key_id, caller.role)
        return resp

    async def logout(request: Request) -> Response:
        rt = runtime()
        resp = RedirectResponse(f"{base(request)}/login", status_code=303)
        resp.delete_cookie(rt.sessions.cfg.cookie, path=base(request) or "/")
        return resp

    # ------------------------------------------------------------------ helpers
    def filters_of(request: Request) -> dict[str, str]:
        return {
            k: request.query_params[k].strip() for k in FILTERS if request.query_params.get(k, "").strip()
        }

    def no_log(request: Request) -> Response:
        return render(
            request,
            "error.html",
            200,
            message=f"No audit log at {runtime().cfg.audit_db} yet: it is created by the first served request.",
        )

    # ------------------------------------------------------------------ pages
    def records(request: Request) -> Response:
        reader = runtime().audit()
        if reader is None:
            return no_log(request)
        f = filters_of(request)
        try:
            size = int(request.query_params.get("n", PAGE_SIZES[0]))
            page = max(1, int(request.query_params.get("page", 1)))
        except ValueError:
            size, page = PAGE_SIZES[0], 1
        size = size if size in PAGE_SIZES else PAGE_SIZES[0]
        try:
            total = reader.count(**f)
            rows = reader.query(**f, limit=size, offset=(page - 1) * size)
        except ValueError as exc:
            return render(
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
        pages = max(1, -(-total // size))
        for r in rows:
            r["headline"] = views.headline(r)
        qs = urlencode({**f, "n": size})
        return render(
            request,
            "records.html",
            rows=rows,
            filters=f,
            total=total,
            page=page,
            pages=pages,
            size=size,
            qs=qs,
            export_qs=urlencode(f),
            sizes=PAGE_SIZES,
            error=None,
        )

    def record(request: Request) -> Response:
        rt = runtime()
        reader = rt.audit()
        if reader is None:
            return no_log(request)
        rid = request.path_params["request_id"]
        rec = reader.get(rid)
        if rec is None:
            return render(request, "error.html", 404, message=f"No audit record with request id {rid!r}.")
        baselines = views.logged_baselines(rec)  # logged with the record: no bundle needed
        baseline_source = "logged" if baselines else None
        if baselines is None:
            try:
                baselines = rt.models.baselines(rec.get("bundle_sha256"))
                baseline_source = "bundle" if baselines else None
            except Exception as exc:  # informational: the waterfall then starts at "baseline + other groups"
                log.warning("baseline for %s not computed: %s", rec.get("bundle_sha256"), exc)
                baselines = None
        forecasts = views.forecasts_of(rec)
        expls = views.explanations_of(rec, baselines)
        for e in expls:
            title = f"{e['symbol']}: beta to {e['benchmark']}"
            e["chart"] = charts.to_json(charts.waterfall_config(e["steps"], title))
        inputs = views.feature_summary(rec)
        history = views.price_history(rec)
        for item in inputs:
            item["prices"] = _prices(item, history.get(item["symbol"]), rt.market)
            if item["prices"] is not None:
                p = item["prices"]
                item["chart"] = charts.to_json(
                    charts.line_config(
                        [label for label, _ in p["rows"]],
                        {item["symbol"]: [c for _, c in p["rows"]]},
                        "close",
                    )
                )
        status_cls, status_text = views.chain_status_for(int(rec["seq"]), rt.last_verify)
        return render(
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

    def timeline(request: Request) -> Response:
        rt = runtime()
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
                for r in recent:
                    for fc in views.forecasts_of(r) if r.get("endpoint") == "/forecast" else []:
                        for b in fc["betas"]:
                            if b["beta"] is None:
                                continue
                            res = rt.market.outcome(fc["symbol"], fc["as_of"], b["benchmark"])
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
        summary = None
        if comparisons:
            errs = [c["forecast"] - c["realised"] for c in comparisons]
            inside = [c for c in comparisons if c["lo"] is not None and c["lo"] <= c["realised"] <= c["hi"]]
            summary = {
                "n": len(errs),
                "mae": sum(abs(e) for e in errs) / len(errs),
                "bias": sum(errs) / len(errs),
                "coverage": len(inside) / len(comparisons),
            }
        chart = (
            charts.to_json(charts.bar_config(list(counts), list(counts.values()), "forecasts served"))
            if counts
            else None
        )
        return render(
            request,
            "timeline.html",
            history=hist,
            counts=counts,
            chart=chart,
            comparisons=comparisons[:200],
            pending=pending[:200],
            n_pending=len(pending),
            unavailable=unavailable,
            summary=summary,
            market_configured=rt.market.configured,
            market_error=rt.market.error,
            horizon=rt.market.cfg.horizon,
        )

    def verify(request: Request) -> Response:
        rt = runtime()
        reader = rt.audit()
        if reader is None:
            return no_log(request)
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
            return RedirectResponse(f"{base(request)}/verify", status_code=303)
        return render(request, "verify.html", result=rt.last_verify)

    def export(request: Request) -> Response:
        reader = runtime().audit()
        if reader is None:
            return no_log(request)
        fmt = request.query_params.get("fmt", "csv")
        if fmt not in EXPORT_TYPES:
            return render(
                request, "error.html", 400, message=f"export format {fmt!r} is not one of csv, parquet, jsonl"
            )
        f = filters_of(request)
        fd, tmp = tempfile.mkstemp(prefix="abeta-export-", suffix=f".{fmt}")
        os.close(fd)
        try:
            n = reader.export(tmp, fmt=fmt, **f)
        except ValueError as exc:
            os.unlink(tmp)
            return render(request, "error.html", 400, message=str(exc))
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

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", guarded(records), methods=["GET"]),
        Route("/records/{request_id:str}", guarded(record), methods=["GET"]),
        Route("/timeline", guarded(timeline), methods=["GET"]),
        Route("/verify", guarded(verify), methods=["GET", "POST"]),
        Route("/export", guarded(export), methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.runtime = runtime
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
