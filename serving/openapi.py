"""The served OpenAPI document (GET /openapi.json): every HTTP operation of the service.

BentoML documents its own routes (the POST APIs and the probes).  The routes the service mounts
beside them (the JSON routes of `model_app`: /model, /monitor, /openapi.json; the compliance pages;
BentoML's Swagger UI and raw documents) are added here with their parameters and response
schemas, so a client or schemathesis sees the whole surface.  `service_operations` lists the
routes an ASGI app really serves (walking Starlette's route tables); a test checks that the
document and schemathesis's run cover all of them.

Error bodies of the JSON routes are declared as the `Error` schema (serving/errors.py); the
compliance pages answer HTML (their errors too) and redirect to the login page without a session.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from adaptive_beta.serving.errors import ERROR_STATUSES, JSON_POST_ROUTES, with_error_schema

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # HEAD is GET without a body: not listed


class ModelCard(BaseModel):
    """GET /model: what a client needs to build valid requests (AppState.model_card)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    bundle_sha256: str
    feature_spec_hash: str
    alias: str | None
    model_card: str
    training_period: dict[str, Any]
    benchmarks: list[str]
    regimes: list[str]
    interval_level: float
    feature_groups: list[str]
    required_history: dict[str, Any]
    explanation_baseline: str
    metrics: dict[str, Any]


class MonitorReport(BaseModel):
    """GET /monitor: the drift report (models/monitoring/monitor.py `MonitorReport.to_dict`)."""

    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any]
    window: dict[str, Any]
    source: str
    config: dict[str, Any]
    alerts: list[Any]
    notes: list[str]
    psi_groups: list[dict[str, Any]]
    psi_features: list[dict[str, Any]]
    forecast_errors: Any
    forecast_errors_by_period: Any
    beta_shifts: list[dict[str, Any]]
    alert: bool
    reference: str


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


MONITOR_STATUSES = {
    **ERROR_STATUSES,
    "409": "no training reference for the served model (`field`: reference)",
}


def _errors(*codes: str) -> dict:
    return {c: _json(_ref("Error"), MONITOR_STATUSES[c]) for c in codes}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
ANY_FILE = {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
TO_LOGIN = {"303": {"description": "no compliance session: redirect to the login page"}}


def _page(summary: str, params: list | None = None, body: dict | None = None) -> dict:
    """A compliance page: HTML, 303 to the login page without a session cookie."""
    op: dict = {
        "tags": ["Compliance pages"],
        "summary": summary,
        "parameters": params or [],
        "responses": {
            "200": {"description": "the page", **HTML},
            **TO_LOGIN,
            **{
                c: {"description": ERROR_STATUSES.get(c, "error page"), **HTML} for c in ("400", "403", "404")
            },
        },
    }
    if body is not None:
        op["requestBody"] = body
    return op


def _static(tag: str, summary: str) -> dict:
    path = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "tags": [tag],
        "summary": summary,
        "parameters": [path],
        "responses": {"200": {"description": "the file", **ANY_FILE}, "404": {"description": "no such file"}},
    }


def _json_get(tag: str, summary: str, schema: dict, errors: tuple[str, ...], params=None) -> dict:
    return {
        "tags": [tag],
        "summary": summary,
        "parameters": params or [],
        "responses": {"200": _json(schema), **_errors(*errors)},
    }


_AUTH = ("401", "403", "429")
_TIME = {"type": "string", "description": "ISO-8601 time; naive is UTC"}
_MONITOR_PARAMS = [
    _query("since", _TIME, "first audit time included"),
    _query("until", _TIME, "first audit time excluded"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "newest records used"),
]
_FILTERS = ["since", "until", "symbol", "endpoint", "model_version", "caller", "request_id"]
_RECORDS_PARAMS = [
    *(_query(k, {"type": "string"}, f"records filter: {k}") for k in _FILTERS),
    _query("page", {"type": "integer", "minimum": 1}, "page number"),
    _query("n", {"type": "integer"}, "page size"),
]
_LOGIN_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {"api_key": {"type": "string"}},
                "required": ["api_key"],
            }
        }
    },
}
_DOCUMENT = {"type": "object"}

# path -> method -> operation: every route mounted beside BentoML's APIs (serving/service.py)
EXTRA_OPERATIONS: dict[str, dict[str, dict]] = {
    "/model": {
        "get": _json_get("Service APIs", "the served model's card", _ref("ModelCard"), (*_AUTH, "503"))
    },
    "/monitor": {
        "get": _json_get(
            "Service APIs",
            "drift report of the served model over its audit log (read-only)",
            _ref("MonitorReport"),
            ("400", *_AUTH, "409", "422", "503"),
            _MONITOR_PARAMS,
        )
    },
    "/openapi.json": {"get": _json_get("Infrastructure", "this document", _DOCUMENT, _AUTH)},
    "/docs.json": {"get": _json_get("Infrastructure", "BentoML's own document (admin)", _DOCUMENT, _AUTH)},
    "/schema.json": {
        "get": _json_get("Infrastructure", "BentoML's service schema (admin)", _DOCUMENT, _AUTH)
    },
    "/": {"get": {"tags": ["Infrastructure"], "summary": "Swagger UI (admin)", "responses": {"200": HTML}}},
    "/static_content/{path}": {"get": _static("Infrastructure", "Swagger UI assets")},
    "/compliance/login": {
        "get": _page("login form"),
        "post": {**_page("log in with an API key (sets the session cookie)", body=_LOGIN_FORM)},
    },
    "/compliance/logout": {"post": _page("end the session")},
    "/compliance/": {"get": _page("records list", _RECORDS_PARAMS)},
    "/compliance/records/{request_id}": {
        "get": {"operationId": "compliance_record"}
        | _page(
            "one audit record",
            [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        )
    },
    "/compliance/timeline": {"get": _page("champion history and forecasts per version")},
    "/compliance/verify": {"get": _page("last chain verification"), "post": _page("verify the chain now")},
    "/compliance/export": {
        "get": _page(
            "filtered records as a file", [_query("fmt", {"enum": ["csv", "parquet", "jsonl"]}, "format")]
        )
    },
    "/compliance/static/{path}": {"get": _static("Compliance pages", "page assets (CSS, JS)")},
}
for _op in EXTRA_OPERATIONS["/compliance/export"].values():
    _op["responses"]["200"] = {"description": "the export file", **ANY_FILE}
for _op in (EXTRA_OPERATIONS["/compliance/login"]["get"], EXTRA_OPERATIONS["/compliance/login"]["post"]):
    _op["responses"].update(
        {"401": {"description": "unknown key", **HTML}, "429": {"description": "too many", **HTML}}
    )


RECORD_LINK = {
    "operationId": "compliance_record",
    "parameters": {"request_id": "$response.body#/request_id"},
    "description": "the audit record of this answer on the compliance pages",
}


def served_document(bentoml_spec: dict) -> dict:
    """BentoML's document + EXTRA_OPERATIONS + the error and response schemas."""
    spec = with_error_schema(bentoml_spec)
    schemas = spec["components"]["schemas"]
    for model in (ModelCard, MonitorReport):
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    paths = spec.setdefault("paths", {})
    for path, ops in EXTRA_OPERATIONS.items():
        paths.setdefault(path, {}).update(ops)
    bars = paths.get("/bars", {}).get("post", {}).get("responses", {})
    if bars:  # a conflict with the stored bars (serving/endpoints/bars.py)
        bars["409"] = {
            "description": "the bars contradict the stored ones (a changed value sent without restate, "
            "out of order, a gap); `field` names the series",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    for path in ("/forecast", "/explain"):  # the stored-state form before the store holds the model's series
        stored = paths.get(path, {}).get("post", {}).get("responses", {})
        if stored:
            stored["409"] = {
                "description": "a stored-state request (symbols / universe) while the market-data store does "
                "not yet hold the model's series; `field`: symbols",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
    for path in JSON_POST_ROUTES - {"/bars"}:  # every answer is audited: its request_id names its record page
        responses = paths.get(path, {}).get("post", {}).get("responses", {})
        for code in [c for c in responses if str(c) == "200"]:  # BentoML's keys are ints
            responses[code]["links"] = {"AuditRecordPage": RECORD_LINK}
    return spec


def _routes_of(obj) -> list:
    """The route table of an app or mount, looking through middleware wrappers ([] for static files)."""
    while obj is not None:
        routes = getattr(obj, "routes", None)
        if routes:
            return list(routes)
        obj = getattr(obj, "app", None)
    return []


def service_operations(app, prefix: str = "") -> set[tuple[str, str]]:
    """{(METHOD, path template)} an ASGI app (BentoML's Starlette app, or a Mount) really serves."""
    out: set[tuple[str, str]] = set()
    for route in _routes_of(app):
        methods = getattr(route, "methods", None)
        if methods is not None:  # a Route: its template without converters ({request_id:str} -> {request_id})
            out |= {(m, prefix + route.path_format) for m in methods if m in HTTP_METHODS}
            continue
        path = prefix + route.path
        sub = _routes_of(route)
        out |= service_operations(route, path) if sub else {("GET", path.rstrip("/") + "/{path}")}
    return out


def document_operations(spec: dict) -> set[tuple[str, str]]:
    """{(METHOD, path)} declared by an OpenAPI document."""
    return {
        (m.upper(), p) for p, ops in spec.get("paths", {}).items() for m in ops if m.upper() in HTTP_METHODS
    }
