"""POST /explain: exact group Shapley values against the training-mean baseline, plus the largest
features inside the top groups; the same forward passes as /forecast, so explanations add up."""

from __future__ import annotations

from adaptive_beta.models.bundle.shapley import baseline_from_means, top_features_within_groups
from adaptive_beta.serving.app_state import BASELINE_DOC, MAX_FEATURES_SHOWN, AppState
from adaptive_beta.serving.schemas import ExplainRequest


def explain(state: AppState, req: ExplainRequest, caller: str) -> dict:
    """The /explain response for `caller`, logged to the audit trail before it is returned."""
    request_id = state.new_request_id()
    inputs, out, (phi, base, full) = state.forecast_with_shapley(req)
    benches = list(state.bundle.meta.benchmarks)
    names = list(state.groups)
    means = baseline_from_means(state._means(), lookback=inputs.x.shape[1])
    explanations = []
    for i, sym in enumerate(inputs.symbols):
        per_bench = {}
        detail = {}
        if req.top_groups > 0:
            detail = top_features_within_groups(
                state._beta_fn,
                inputs.x[i],
                means,
                state.groups,
                state.bundle.feature_columns,
                phi[i],
                top_groups=req.top_groups,
            )
        for k, b in enumerate(benches):
            groups = []
            for g, name in enumerate(names):
                feats = [
                    {"feature": d.feature, "contribution": float(d.contribution[k]), "method": d.method}
                    for d in detail.get(name, [])[:MAX_FEATURES_SHOWN]
                ]
                groups.append({"group": name, "contribution": float(phi[i, g, k]), "features": feats})
            groups.sort(key=lambda e: -abs(e["contribution"]))
            per_bench[b] = {
                "forecast": float(full[i, k]),
                "baseline_forecast": float(base[k]),
                "groups": groups,
            }
        explanations.append({"symbol": sym, "as_of": inputs.as_of[i].isoformat(), "benchmarks": per_bench})
    body = {
        "request_id": request_id,
        "model": state.model_info(),
        "baseline": BASELINE_DOC,
        "explanations": explanations,
    }
    output = {
        s: {b: float(out["beta"][i, k]) for k, b in enumerate(benches)} for i, s in enumerate(inputs.symbols)
    }
    baseline = {b: float(base[k]) for k, b in enumerate(benches)}
    state.log_unique(body, "/explain", caller, req, inputs, output, {"explanations": explanations}, baseline)
    return body
