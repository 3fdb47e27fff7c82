"""GET /monitor without BentoML: the drift report of the SERVED model over its own audit log.

The same pass as `abeta monitor --audit-db` (models/monitoring/monitor.py: one implementation):

- recent rows: the feature row logged with each `/forecast` of this bundle (sha256) in
  [since, until), newest `limit` records, one row per (asset, bar) (the latest record wins);
  other endpoints (/stress, /backtest, ...) are not counted, so a backtest's history does not
  pass for live traffic;
- reference: the training distribution of the features.  `ABETA_MONITOR_REFERENCE` = a reference
  file saved by `abeta monitor --save-reference` (refused if built for another feature spec);
  else it is rebuilt from the bundle's meta `data_source` cut to `training_period`.  Built once
  per process (it does not change while the bundle is served).  When neither route works the
  answer is 409 `{"error", "field": "reference"}` saying how to provide one;
- realised betas (forecast error, beta-shift flags): only when `ABETA_REALISED_DATA` names a
  dataset `adaptive_beta.models.data.loaders.load_dataset` reads (re-read at most every REALISED_TTL_S seconds);
  otherwise a note says they are not tracked.

Read-only: a /monitor call is NOT appended to the audit log (it returns no forecast and changes
nothing; the API-key middleware still restricts it to compliance and admin).  Query errors are
400 naming the parameter; an unreadable audit log is 503.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.settings import get_settings, variable
from adaptive_beta.serving.schemas import RequestError

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
REALISED_TTL_S = 300.0
REFERENCE_ENV = variable("monitor_reference")  # ABETA_MONITOR_REFERENCE (adaptive_beta.models.settings)
REALISED_ENV = variable("realised_data")  # ABETA_REALISED_DATA
HOW_TO_REFERENCE = (
    f"set {REFERENCE_ENV} to a reference file saved by `abeta monitor --model <bundle> "
    "--reference-data <training data> --save-reference ref.json`, or serve a bundle whose meta "
    "data_source is readable here"
)


class NoReference(Exception):
    """No training reference can be built for the served bundle (-> 409)."""


class QueryError(ValueError):
    """A bad query parameter (-> 400 naming it)."""

    def __init__(self, message: str, field: str):
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}")


_LOCK = threading.Lock()
_REFERENCE: dict[tuple, dict] = {}
_REALISED: dict[str, tuple[float, object]] = {}


def parse_time(value: str | None, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"{value!r} is not an ISO-8601 time", field) from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_params(params) -> tuple[datetime | None, datetime | None, int]:
    """(since, until, limit) from the query string; QueryError naming the parameter."""
    unknown = sorted(set(params) - {"since", "until", "limit"})
    if unknown:
        raise QueryError(f"unknown query parameter(s) {unknown}; use since, until, limit", unknown[0])
    since = parse_time(params.get("since"), "since")
    until = parse_time(params.get("until"), "until")
    if since is not None and until is not None and since >= until:
        raise QueryError("since must be before until", "since")
    raw = params.get("limit")
    try:
        limit = DEFAULT_LIMIT if raw in (None, "") else int(raw)
    except ValueError as exc:
        raise QueryError(f"{raw!r} is not an integer", "limit") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"must be between 1 and {MAX_LIMIT}", "limit")
    return since, until, limit


def reference_for(bundle, n_bins: int) -> dict:
    """The served bundle's training reference (cached per process); NoReference if none can be built."""
    from adaptive_beta.models.monitoring.monitor import training_reference

    path = get_settings().monitor_reference
    key = (bundle.sha256, path, n_bins)
    with _LOCK:
        if key in _REFERENCE:
            return _REFERENCE[key]
        try:
            ref = training_reference(bundle, n_bins, reference_file=path, how=HOW_TO_REFERENCE)
        except DataError as exc:
            where = f" ({REFERENCE_ENV}={path})" if path else ""
            raise NoReference(f"no training reference for the served model{where}: {exc}") from exc
        _REFERENCE[key] = ref
        return ref


def realised_panel(notes: list[str]):
    """The market data named by ABETA_REALISED_DATA (re-read every REALISED_TTL_S), or None with a note."""
    from adaptive_beta.models.data.loaders import load_dataset

    path = get_settings().realised_data
    if not path:
        notes.append(f"{REALISED_ENV} is not set: forecast errors and beta shifts are not tracked")
        return None
    with _LOCK:
        hit = _REALISED.get(path)
        if hit is not None and time.monotonic() - hit[0] < REALISED_TTL_S:
            return hit[1]
        try:
            panel = load_dataset(path)
        except DataError as exc:
            notes.append(f"{REALISED_ENV}={path} could not be read ({exc}): realised betas are not tracked")
            return None
        _REALISED[path] = (time.monotonic(), panel)
        return panel


def forecast_records(audit, bundle_sha256: str, since, until, limit: int) -> list[dict]:
    """The newest `limit` /forecast records of this bundle in [since, until), oldest first."""
    rows = audit.query(since=since, until=until, endpoint="/forecast", limit=limit)
    rows = [r for r in rows if r.get("bundle_sha256") == bundle_sha256]
    return sorted(rows, key=lambda r: r.get("seq") or 0)


def monitor(state, params) -> dict:
    """The /monitor body; raises QueryError (400), NoReference (409); audit errors propagate (503)."""
    from adaptive_beta.models.monitoring.monitor import (
        MonitorConfig,
        audit_features,
        audit_forecasts,
        evaluate,
    )

    since, until, limit = parse_params(params)
    cfg = MonitorConfig()
    bundle = state.bundle
    reference = reference_for(bundle, cfg.n_bins)
    records = forecast_records(state.audit, bundle.sha256, since, until, limit)
    recent = audit_features(records, bundle.feature_columns)
    forecasts = audit_forecasts(records)
    notes: list[str] = []
    panel = realised_panel(notes)
    window = {
        "since": None if since is None else since.isoformat(),
        "until": None if until is None else until.isoformat(),
        "limit": limit,
        "records": len(records),
    }
    try:
        report = evaluate(
            bundle, reference, recent, forecasts, panel, cfg, "audit", window, state.model_version
        )
    except DataError as exc:  # realised data that does not fit the forecasts
        raise RequestError(str(exc), "ABETA_REALISED_DATA") from exc
    report.notes[:0] = notes
    body = report.to_dict()
    body["model"] = {**body["model"], **state.model_info()}
    body["alert"] = bool(report.alerts)
    body["reference"] = get_settings().monitor_reference or f"rebuilt from {bundle.meta.data_source}"
    return body
