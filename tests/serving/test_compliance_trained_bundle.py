"""Issue 11 item 2: every compliance record page answers 200 for a bundle made by `abeta train`.

The page tests in test_compliance_pages.py use a hand-written bundle; this module uses the bundle
the real training command logged (`trained_bundle`, conftest.py), seeds an audit log through
every endpoint of the service (in process, the service's own functions) and opens every record.
"""

from __future__ import annotations

import pytest

from tests.serving.test_compliance_pages import login, make_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seeded_trained(trained_bundle, tmp_path_factory):
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.serving.app_state import AppState, ServeConfig
    from adaptive_beta.serving.backtest_schemas import BacktestRequest
    from adaptive_beta.serving.client import forecast_request, raw_factor_series
    from adaptive_beta.serving.endpoints.backtest import backtest
    from adaptive_beta.serving.endpoints.explain import explain
    from adaptive_beta.serving.endpoints.forecast import forecast
    from adaptive_beta.serving.endpoints.hedge import hedge
    from adaptive_beta.serving.endpoints.stress import stress
    from adaptive_beta.serving.schemas import ExplainRequest, ForecastRequest, HedgeRequest
    from adaptive_beta.serving.stress_schemas import StressRequest

    db = tmp_path_factory.mktemp("audit") / "audit.db"
    state = AppState.load(ServeConfig(model=str(trained_bundle["bundle"]), audit_db=str(db)))
    panel = load_dataset(trained_bundle["data"])
    required = state.required
    symbols = [s for s in panel.symbols if s not in required["series"]][:3]
    body = forecast_request(panel, required, symbols, raw_factor_series(trained_bundle["data"]))
    a, b, c = symbols
    calls = {
        "/forecast": forecast(state, ForecastRequest.model_validate(body), "desk-a"),
        "/explain": explain(state, ExplainRequest.model_validate(body), "desk-a"),
        "/hedge": hedge(
            state,
            HedgeRequest.model_validate(
                {
                    **body,
                    "positions": {a: 1e6, b: 5e5},
                    "target": {"BTCUSDT": 0.0},
                    "instruments": [{"symbol": c}],
                }
            ),
            "desk-a",
        ),
        "/stress": stress(
            state,
            StressRequest.model_validate({**body, "positions": {a: 1e6, b: 5e5}, "hedge_instruments": [c]}),
            "desk-a",
        ),
        "/backtest": backtest(
            state,
            BacktestRequest.model_validate(
                {
                    **body,
                    "portfolio": {a: 0.05, b: 0.05},
                    "hedge_instruments": [c],
                    "estimators": ["rolling_ols_30d"],
                    "include_model": False,
                }
            ),
            "desk-a",
        ),
    }
    state.audit.close()
    return {"db": db, "bundle": trained_bundle["bundle"], "calls": calls}


def test_the_trained_bundle_has_the_typed_training_period(trained_bundle):
    from adaptive_beta.models.bundle.folder import load_bundle

    period = load_bundle(trained_bundle["bundle"]).meta.training_period
    assert period.end is not None and period.start is not None


def test_every_record_page_of_every_endpoint_answers_200(seeded_trained):
    c = make_client(seeded_trained["db"], seeded_trained["bundle"])
    assert login(c).status_code == 303
    assert set(seeded_trained["calls"]) == {"/forecast", "/explain", "/hedge", "/stress", "/backtest"}
    for endpoint, out in seeded_trained["calls"].items():
        r = c.get(f"/records/{out['request_id']}")
        assert r.status_code == 200, (endpoint, r.text[-2000:])
        assert out["request_id"] in r.text and "Training period" in r.text
    assert c.get("/").status_code == 200
    assert c.get("/timeline").status_code == 200
