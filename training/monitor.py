"""`abeta monitor`: feature drift against training, forecast error and beta shifts of a bundle.

The maths and the report live in `models/monitoring/monitor.py` (torch-free, shared with the service's
GET /monitor; its docstring explains the three questions and the reference distribution).  This
module adds what only the CLI needs: reading the audit log and `run_monitor`, and re-exports the
core so existing imports keep working.
"""

from __future__ import annotations

from pathlib import Path

from adaptive_beta.models.data.schema import DataError, Panel
from adaptive_beta.models.durations import parse_duration
from adaptive_beta.models.monitoring.monitor import (  # noqa: F401  (re-exported: adaptive_beta.training.monitor's public API)
    FORECAST_COLUMNS,
    MonitorConfig,
    MonitorReport,
    _iso,
    _utc,
    attach_realised,
    audit_features,
    audit_forecasts,
    error_by_period,
    error_summary,
    evaluate,
    feature_groups,
    load_reference,
    panel_features,
    panel_forecasts,
    reference_from_data,
    save_reference,
    scorecard_rmse,
    training_reference,
    training_window,
    warmed_up,
)

AUDIT_PAGE = 10_000


def read_audit(url: str, since=None, until=None, bundle_sha256: str | None = None) -> list[dict]:
    """Every audit record in [since, until) (oldest first), optionally only those of one bundle."""
    from adaptive_beta.models.audit.log import AuditReader

    out: list[dict] = []
    try:
        reader = AuditReader(url)
    except FileNotFoundError as exc:
        raise DataError(f"no audit log at {url} ({exc})") from exc
    with reader:
        offset = 0
        while True:
            page = reader.query(since=since, until=until, limit=AUDIT_PAGE, offset=offset)
            out += page
            if len(page) < AUDIT_PAGE:
                break
            offset += AUDIT_PAGE
    if bundle_sha256:
        out = [r for r in out if r.get("bundle_sha256") == bundle_sha256]
    return sorted(out, key=lambda r: r.get("seq") or 0)


def run_monitor(
    model: str,
    cfg: MonitorConfig | None = None,
    audit_db: str | None = None,
    data: str | Path | None = None,
    since=None,
    until=None,
    reference_data: str | Path | None = None,
    reference_file: str | Path | None = None,
    panel: Panel | None = None,
) -> MonitorReport:
    """One monitoring pass for the bundle at `model` (folder or models:/ URI); raises DataError on bad input.

    Recent features and forecasts come from `audit_db` if given, else from `data` (or `panel`) in
    [since, until] (default: the last `cfg.window` of the data).  Realised betas need `data`/`panel`.
    """
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.resolve import resolve_bundle
    from adaptive_beta.models.data.loaders import load_dataset

    cfg = cfg or MonitorConfig()
    bundle = load_bundle(resolve_bundle(model))
    version = model.split("/")[-1] if model.startswith("models:/") else None
    if panel is None and data is not None:
        panel = load_dataset(data)
    if audit_db is None and panel is None:
        raise DataError("nothing to monitor: give an audit log (--audit-db) or a data window (--data)")
    since_ts = None if since is None else _utc(since)
    until_ts = None if until is None else _utc(until)

    reference = training_reference(
        bundle,
        cfg.n_bins,
        reference_file,
        reference_data,
        loaded=(data, panel) if panel is not None and data is not None else None,
    )

    if audit_db is not None:
        records = read_audit(audit_db, since_ts, until_ts, bundle.sha256)
        recent = audit_features(records, bundle.feature_columns)
        forecasts = audit_forecasts(records)
        window = {"since": _iso(since_ts), "until": _iso(until_ts), "records": len(records)}
        source = "audit"
    else:
        assert panel is not None
        end = until_ts or panel.index[-1]
        start = since_ts or end - parse_duration(cfg.window)
        recent = panel_features(bundle, panel, start, end)
        forecasts = panel_forecasts(bundle, panel, start, end)
        window = {"since": start.isoformat(), "until": end.isoformat()}
        source = "data"
    return evaluate(bundle, reference, recent, forecasts, panel, cfg, source, window, version)
