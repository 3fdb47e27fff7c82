"""POST /bars: a market-data feed appends bars to the service's store (models/market/store.py).

Roles feeder and admin.  The body is a /forecast body plus `restate` (serving/bars_schemas.py);
the store is the database of `ABETA_MARKET_DB`, opened on the first call and shared by the
threads of a worker.  Assets and the model's bar series (benchmarks, the composite) are stored
at the model's bar length, so a gap is refused; factor series as the irregular observations a
client sends (daily closes skipping weekends: only their order is checked).

Restatements are written to the audit log (endpoint `/bars`, `features.kind` =
`"bar-restatement"`, every replaced bar with its old and new values) inside the store's write
transaction: if the audit log cannot take the record nothing is restated (503).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptive_beta.models.bundle.panel_frame import is_bar_input
from adaptive_beta.serving.app_state import AppState
from adaptive_beta.serving.bars_schemas import BarsConflict, BarsRequest, check_bars
from adaptive_beta.serving.market_stores import StoreUnavailable, market_store
from adaptive_beta.serving.schemas import (
    MAX_PRICE_JUMP,
    RequestError,
    history_columns,
    point_path,
    request_sha256,
)

RESTATEMENT_KIND = "bar-restatement"


def to_series_bars(state: AppState, req: BarsRequest) -> list:
    """The request's bars as the store's `SeriesBars` (assets, then series, in request order)."""
    from adaptive_beta.models.data.schema import infer_category
    from adaptive_beta.models.market.bars import SeriesBars

    freq_us = int(state.freq / pd.Timedelta(microseconds=1))
    out = []
    for a in req.assets:
        cols = history_columns(a)
        out.append(SeriesBars(a.symbol, "asset", cols.us, {"close": cols.close, **cols.extras}, freq_us))
    for name, pts in req.series.items():
        cols = history_columns(pts)
        freq = freq_us if is_bar_input(state.bundle.meta, name) else None
        positive = infer_category(name) != "rates"
        out.append(SeriesBars(name, "series", cols.us, {"close": cols.close}, freq, positive))
    return out


def _field(req: BarsRequest, series: str, ts_us: int | None, name: str = "timestamp") -> str:
    """The JSON path of field `name` of the bar (or of the series) a store error names."""
    for i, a in enumerate(req.assets):
        if a.symbol == series:
            where, cols = f"assets[{i}].history", history_columns(a)
            break
    else:
        if series not in req.series:
            return "body"
        where, cols = f"series.{series}", history_columns(req.series[series])
    hit = np.flatnonzero(cols.us == ts_us) if ts_us is not None else []
    return point_path(where, int(hit[0]), name, cols.columnar) if len(hit) else where


def bars(state: AppState, req: BarsRequest, caller: str) -> dict:
    """Append the request's bars; the /bars response (per series counts and last bar)."""
    from adaptive_beta.models.market.bars import MarketDataError

    meta = state.bundle.meta
    bar_series = [n for n in req.series if is_bar_input(state.bundle.meta, n)]
    check_bars(req, state.freq, bar_series, list(meta.inputs))
    batch = to_series_bars(state, req)
    store = market_store(state.market_db)
    logged: list[str] = []

    def audit(restatements) -> None:
        logged.append(_audit_restatements(state, req, caller, restatements))

    try:
        result = store.append(batch, restate=req.restate, max_jump=MAX_PRICE_JUMP, on_restate=audit)
    except MarketDataError as exc:
        if exc.status == 409:
            raise BarsConflict(exc.message, _field(req, exc.series, exc.ts_us)) from exc
        raise RequestError(exc.message, _field(req, exc.series, exc.ts_us, "close")) from exc  # a jump
    except Exception as exc:
        from adaptive_beta.models.audit.log import AuditUnavailable

        if isinstance(exc, AuditUnavailable):
            raise
        raise StoreUnavailable(f"market-data store {store.description}: {exc}") from exc
    kinds = {b.name: b.kind for b in batch}
    return {
        "series": {name: {"kind": kinds[name], **c.as_dict()} for name, c in result.counts.items()},
        "restatement_record": logged[0] if logged else None,
        "forecasts": _refresh(state, bool(result.restatements)),
    }


def _refresh(state: AppState, restated: bool) -> dict:
    """Bring the stored-state forecasts up to the new bars (serving/live.py): every asset a new
    bar completes is forecast now, once. The bars are stored whatever happens here."""
    import logging

    from adaptive_beta.serving.live import StoreEmpty

    try:
        updated = state.live_market().sync(restated=restated, rescan=True)
        state.stored_answers().prepare(updated)  # their answers too (serving/stored_answers.py)
    except StoreEmpty as exc:
        return {"updated": 0, "note": exc.message}
    except Exception as exc:  # noqa: BLE001 - logged and reported; the append itself succeeded
        logging.getLogger(__name__).warning("stored-state forecasts not refreshed: %s", exc)
        return {"updated": 0, "note": f"stored-state forecasts not refreshed: {type(exc).__name__}"}
    last = state.live.model.last_timestamp if state.live.model is not None else None
    return {"updated": len(updated), "as_of": last.isoformat() if last is not None else None}


def _audit_restatements(state: AppState, req: BarsRequest, caller: str, restatements) -> str:
    """Durably log the restatements (AuditUnavailable if it cannot); returns the record's request_id."""
    request_id = state.new_request_id()
    changes = [r.as_dict() for r in restatements]
    state.audit.append(
        {
            "request_id": request_id,
            "caller": caller,
            "endpoint": "/bars",
            "symbols": sorted({r.series for r in restatements}),
            "model_name": state.model_name,  # the model serving when the bars were restated
            "model_version": state.model_version,
            "bundle_sha256": state.bundle.sha256,
            "feature_spec_hash": state.feature_spec_hash,
            "input_sha256": request_sha256(req),
            "features": {"kind": RESTATEMENT_KIND, "restatements": changes},
            "output": {"kind": RESTATEMENT_KIND, "restated": len(changes)},
            "explanation": None,
        }
    )
    return request_id
