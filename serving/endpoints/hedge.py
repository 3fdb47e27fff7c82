"""POST /hedge: overlay orders that bring the portfolio's forecast beta to the target (least squares
across benchmarks, within each instrument's limits), from the same forecasts /forecast serves."""

from __future__ import annotations

import numpy as np

from adaptive_beta.models.portfolio.hedge import hedge_overlay
from adaptive_beta.serving.app_state import AppState
from adaptive_beta.serving.schemas import HedgeRequest, RequestError, check_bounds


def _check_instruments(req: HedgeRequest) -> None:
    """422 on the instrument at fault: listed twice, or with no room to trade (min == max)."""
    seen: set[str] = set()
    for i, inst in enumerate(req.instruments):
        if inst.symbol in seen:
            raise RequestError(
                f"instrument {inst.symbol} is listed twice: list each hedge instrument once",
                f"instruments[{i}].symbol",
            )
        seen.add(inst.symbol)
        if inst.min_notional is not None and inst.min_notional == inst.max_notional:
            raise RequestError(
                f"instrument {inst.symbol}: min_notional equals max_notional ({inst.min_notional:g}), so the "
                "overlay has no room to trade it: widen the limits or leave the instrument out",
                f"instruments[{i}].max_notional",
            )


def _field_of(message: str) -> str:
    """The request field a hedge_overlay ValueError is about (its message starts with the argument)."""
    head = message.split(":", 1)[0]
    if head.startswith(("hedge_instruments", "limits")):
        return "instruments"
    return head if head in ("nav", "target") else "positions"


def hedge(state: AppState, req: HedgeRequest, caller: str) -> dict:
    """The /hedge response for `caller`, logged to the audit trail before it is returned."""
    request_id = state.new_request_id()
    check_bounds(req)
    _check_instruments(req)
    benches = list(state.bundle.meta.benchmarks)
    for b in req.target:
        if b not in benches:
            raise RequestError(
                f"unknown benchmark {b!r}; the model forecasts betas to {benches}", f"target.{b}"
            )
    symbols = list(dict.fromkeys([*req.positions, *(i.symbol for i in req.instruments)]))
    inputs, out = state.forecast_core(req, symbols)
    row = {s: i for i, s in enumerate(inputs.symbols)}
    betas = {s: {b: float(out["beta"][row[s], k]) for k, b in enumerate(benches)} for s in symbols}
    intervals = {
        s: {
            b: (float(out["beta_lo"][row[s], k]), float(out["beta_hi"][row[s], k]))
            for k, b in enumerate(benches)
        }
        for s in symbols
    }
    limits = {
        i.symbol: (
            -np.inf if i.min_notional is None else i.min_notional,
            np.inf if i.max_notional is None else i.max_notional,
        )
        for i in req.instruments
    }
    try:
        res = hedge_overlay(
            positions=req.positions,
            betas=betas,
            beta_intervals=intervals,
            hedge_instruments=[i.symbol for i in req.instruments],
            instrument_betas=betas,
            target=req.target,
            limits=limits,
            nav=req.nav,
            interval_method=req.interval_method,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise RequestError(str(exc), _field_of(str(exc))) from exc
    body = {
        "request_id": request_id,
        "model": state.model_info(),
        "orders": [{"symbol": s, "notional": v} for s, v in res.orders.items()],
        "portfolio_beta": res.portfolio_beta,
        "target": res.target,
        "residual_beta": res.residual_beta,
        "residual_interval": {b: list(v) for b, v in res.residual_interval.items()},
        "betas_used": res.betas_used,
        "nav": res.nav,
        "reachable": res.reachable,
        "method": res.method,
        "notes": res.notes,
    }
    output = {k: v for k, v in body.items() if k not in ("request_id", "model")}
    state.log_unique(body, "/hedge", caller, req, inputs, output, None)
    return body
