"""POST /forecast: forward beta per benchmark with a 90 % interval, regime probabilities and the
three largest drivers (exact group Shapley values, so each forecast's summary can say why).

A stored-state request (`symbols` / `universe`) is answered from the per-asset answers made once
per bar (serving/stored_answers.py): the request only assembles them and logs the record."""

from __future__ import annotations

from adaptive_beta.serving.app_state import AppState
from adaptive_beta.serving.forecast_entry import forecast_entry
from adaptive_beta.serving.schemas import ForecastRequest, ForecastResponse


def forecast(state: AppState, req: ForecastRequest, caller: str) -> dict:
    """The /forecast response for `caller`, logged to the audit trail before it is returned."""
    if req.stored:
        return stored_forecast(state, req, caller)
    request_id = state.new_request_id()
    inputs, out, (phi, base, full) = state.forecast_with_shapley(req)
    benches = list(state.bundle.meta.benchmarks)
    regimes = list(state.bundle.meta.regimes)
    names = list(state.groups)
    forecasts = [
        forecast_entry(
            sym,
            inputs.as_of[i].isoformat(),
            (out["beta"][i], out["beta_lo"][i], out["beta_hi"][i], out["regime_prob"][i]),
            (phi[i], base, full[i]),
            benches,
            regimes,
            names,
        )
        for i, sym in enumerate(inputs.symbols)
    ]
    body = {"request_id": request_id, "model": state.model_info(), "forecasts": forecasts}
    explanation = {f["symbol"]: f["drivers"] for f in forecasts}
    baseline = {b: float(base[k]) for k, b in enumerate(benches)}
    state.log_unique(body, "/forecast", caller, req, inputs, {"forecasts": forecasts}, explanation, baseline)
    return body


def stored_forecast(state: AppState, req: ForecastRequest, caller: str) -> dict:
    """A stored-state /forecast: the kept per-asset answers in the order asked, logged with the
    stored bars they were computed from (no feature rows: compliance reproduces them from the store)."""
    return stored_answer(state, req, caller)[0]


def stored_answer(state: AppState, req: ForecastRequest, caller: str) -> tuple[dict, bytes]:
    """(the stored-state response, the same as JSON bytes joined from the answers' serialised forms)."""
    from adaptive_beta.serving.stored_answers import response_bytes

    answers, bars = state.stored_answers().get(None if req.universe else list(req.symbols))
    body = {
        "request_id": state.new_request_id(),
        "model": state.model_info(),
        "forecasts": [a.response for a in answers],
    }
    state.log_stored(body, "/forecast", caller, req, answers, bars)  # may draw a new request_id
    return body, response_bytes(body["request_id"], body["model"], answers)


def forecast_http(state: AppState, req: ForecastRequest, caller: str):
    """What the HTTP route returns: the validated `ForecastResponse`, or for a stored-state request
    the answer's JSON bytes as they are (validating and re-serialising 200 kept entries per call
    cost ~10 ms of a universe answer; they were checked when made)."""
    if req.stored:
        from starlette.responses import Response

        return Response(stored_answer(state, req, caller)[1], media_type="application/json")
    return ForecastResponse.model_validate(forecast(state, req, caller))
