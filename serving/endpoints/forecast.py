"""POST /forecast: forward beta per benchmark with a 90 % interval, regime probabilities and the
three largest drivers (exact group Shapley values, so each forecast's summary can say why)."""

from __future__ import annotations

import numpy as np

from adaptive_beta.serving.app_state import AppState
from adaptive_beta.serving.schemas import ForecastRequest


def forecast(state: AppState, req: ForecastRequest, caller: str) -> dict:
    """The /forecast response for `caller`, logged to the audit trail before it is returned."""
    request_id = state.new_request_id()
    inputs, out, (phi, base, full) = state.forecast_with_shapley(req)
    benches = list(state.bundle.meta.benchmarks)
    regimes = list(state.bundle.meta.regimes)
    names = list(state.groups)
    forecasts = []
    for i, sym in enumerate(inputs.symbols):
        betas = {
            b: {
                "beta": float(out["beta"][i, k]),
                "lo": float(out["beta_lo"][i, k]),
                "hi": float(out["beta_hi"][i, k]),
            }
            for k, b in enumerate(benches)
        }
        drivers = {b: _drivers(names, phi[i, :, k], 3) for k, b in enumerate(benches)}
        summary = "; ".join(
            f"beta to {b} {betas[b]['beta']:.2f} (90% {betas[b]['lo']:.2f} to {betas[b]['hi']:.2f}), "
            f"{full[i, k] - base[k]:+.2f} vs the baseline {base[k]:.2f}: "
            + ", ".join(d["text"] for d in drivers[b])
            for k, b in enumerate(benches)
        )
        forecasts.append(
            {
                "symbol": sym,
                "as_of": inputs.as_of[i].isoformat(),
                "betas": betas,
                "regime_probabilities": {r: float(out["regime_prob"][i, j]) for j, r in enumerate(regimes)},
                "summary": summary,
                "drivers": drivers,
            }
        )
    body = {"request_id": request_id, "model": state.model_info(), "forecasts": forecasts}
    explanation = {f["symbol"]: f["drivers"] for f in forecasts}
    baseline = {b: float(base[k]) for k, b in enumerate(benches)}
    state.log_unique(body, "/forecast", caller, req, inputs, {"forecasts": forecasts}, explanation, baseline)
    return body


def _drivers(names: list[str], phi: np.ndarray, top: int) -> list[dict]:
    order = np.argsort(-np.abs(phi))[:top]
    return [
        {
            "group": names[g],
            "contribution": float(phi[g]),
            "text": f"{names[g].replace('_', ' ')} {'raises' if phi[g] >= 0 else 'lowers'} it by {abs(phi[g]):.3f}",
        }
        for g in order
    ]
