"""POST /backtest on a real `bentoml serve` subprocess (127.0.0.1), checked against adaptive_beta.models.portfolio.backtest by hand.

The reference numbers are computed in the test from the same request: the panel the service
builds (`AppState.panel_from_request`, no model needed for it), `baseline_forecasts` and
`run_backtest` / `summary_table` as `abeta backtest` calls them, and for the model the served
bundle's ONNX graph through `bundle_forecasts` at the rebalance bars.
"""

from __future__ import annotations

import copy

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import auth, request_body

PORTFOLIO = {"SOLUSDT": 0.6, "DOGEUSDT": 0.4}


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


def post(server, payload, role="trader"):
    return httpx.post(server.url + "/backtest", json=payload, headers=auth(role), timeout=60)


def bt_body(body, **extra):
    return {**copy.deepcopy(body), "portfolio": dict(PORTFOLIO), **extra}


def reference(tiny_bundle, payload, names, with_model=False):
    """(summary table, panel, forecasts) computed in-process from the request, as the CLI would."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.models.portfolio.backtest import (
        BacktestConfig,
        first_common_row,
        rebalance_rows,
        run_backtest,
    )
    from adaptive_beta.models.portfolio.forecasts import bundle_forecasts
    from adaptive_beta.models.portfolio.metrics import summary_table
    from adaptive_beta.serving.app_state import AppState
    from adaptive_beta.serving.backtest_schemas import BacktestRequest

    bundle = load_bundle(tiny_bundle["path"])
    state = AppState(bundle=bundle, predictor=None, audit=None, model_name="t", model_version="t", alias=None)
    req = BacktestRequest.model_validate(payload)
    panel = state.panel_from_request(req)
    base = baseline_forecasts(panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq)
    forecasts = {n: base[n] for n in names}
    hedges = ["BTCUSDT", "ETHUSDT"]
    syms = list(PORTFOLIO) + hedges
    if with_model:
        first = first_common_row(forecasts, syms, ["BTCUSDT"], len(panel.index))
        rows = rebalance_rows(panel.index, panel.freq, "1d", first)
        forecasts["model"] = {"BTCUSDT": bundle_forecasts(panel, bundle, rows)["BTCUSDT"]}
    cfg = BacktestConfig(benchmarks=("BTCUSDT",), fee_bps=4.0)
    result = run_backtest(
        panel.returns(),
        panel.benchmark_returns(),
        panel.funding_rate,
        PORTFOLIO,
        forecasts,
        panel.freq,
        cfg,
        hedges,
    )
    return summary_table(result, panel.freq).xs("full", level="period"), result


def _row(out, name):
    return next(r for r in out["estimators"] if r["estimator"] == name)


def assert_row_matches(row, ref):
    assert row["n_bars"] == int(ref["n_bars"])
    assert row["realised_beta"]["BTCUSDT"] == pytest.approx(ref["beta_BTCUSDT"], abs=1e-9)
    assert row["beta_error"]["BTCUSDT"] == pytest.approx(abs(ref["beta_BTCUSDT"]), abs=1e-9)
    assert row["rolling_beta_mad"]["BTCUSDT"] == pytest.approx(ref["roll_mad_BTCUSDT"], abs=1e-9)
    for key, col in (
        ("hedged_vol", "vol_ann"),
        ("max_drawdown", "max_drawdown"),
        ("total_return", "total_return"),
        ("turnover", "turnover_ann"),
        ("fees", "fees"),
        ("funding", "funding"),
        ("costs", "costs"),
    ):
        assert row[key] == pytest.approx(ref[col], abs=1e-9), key


# --- the numbers -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_rolling_ols_30d_row_equals_run_backtest_on_the_request_panel(server, tiny_bundle, body):
    payload = bt_body(body, estimators=["rolling_ols_30d"], include_model=False)
    r = post(server, payload)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["hedge_instruments"] == ["BTCUSDT", "ETHUSDT"] and out["benchmarks"] == ["BTCUSDT"]
    assert [e["estimator"] for e in out["estimators"]] == ["unhedged", "rolling_ols_30d"]
    table, result = reference(tiny_bundle, payload, ["rolling_ols_30d"])
    assert out["start"] == result.start.isoformat() and out["end"] == result.end.isoformat()
    assert out["n_rebalances"] == int(result.paths["rolling_ols_30d"].frame["rebalanced"].sum())
    for name in ("unhedged", "rolling_ols_30d"):
        assert_row_matches(_row(out, name), table.loc[name])
    # the overlay cuts the book's BTC beta towards 0: the unhedged core has beta ~ 0.6*1.5 + 0.4*0.8
    assert abs(_row(out, "rolling_ols_30d")["realised_beta"]["BTCUSDT"]) < 0.5 * abs(
        _row(out, "unhedged")["realised_beta"]["BTCUSDT"]
    )
    ratios = out["ratios_vs_rolling_ols_30d"]
    assert ratios["rolling_ols_30d"]["vol_ann_ratio"] == pytest.approx(1.0)
    assert ratios["unhedged"]["vol_ann_ratio"] == pytest.approx(
        table.loc["unhedged", "vol_ann"] / table.loc["rolling_ols_30d", "vol_ann"], rel=1e-9
    )


@pytest.mark.slow
def test_model_row_equals_run_backtest_on_bundle_forecasts_at_the_rebalance_bars(server, tiny_bundle, body):
    names = ["rolling_ols_30d", "ewma_hl30d"]
    payload = bt_body(body, estimators=names)
    r = post(server, payload)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [e["estimator"] for e in out["estimators"]] == ["unhedged", *names, "model"]
    table, _ = reference(tiny_bundle, payload, names, with_model=True)
    for name in (*names, "model"):
        assert_row_matches(_row(out, name), table.loc[name])
    assert out["model"]["version"] == "test-1" and len(out["request_id"]) == 32


@pytest.mark.slow
def test_four_assets_by_700_daily_bars_with_the_model_answer_without_hanging(server):
    import time

    from tests.serving.conftest import synthetic_market

    assets, _ = synthetic_market(seed=11, n=700)
    rng = np.random.default_rng(5)
    last = max(a.index[-1] for a in assets.values())
    days = pd.bdate_range(pd.Timestamp("2024-12-20", tz="UTC"), last)  # none after the last bar
    spy = pd.Series(500.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days)))), index=days)
    comp = pd.concat([a["close"] / a["close"].iloc[0] for a in assets.values()], axis=1).mean(axis=1) * 100
    payload = {**request_body(assets, spy, comp), "portfolio": dict(PORTFOLIO)}
    t0 = time.perf_counter()
    r = httpx.post(server.url + "/backtest", json=payload, headers=auth("trader"), timeout=60)
    took = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    out = r.json()
    assert [e["estimator"] for e in out["estimators"]][-1] == "model" and out["n_rebalances"] > 600
    # a hang guard, not a benchmark (speed is measured by benchmarks/bench_backtest.py): 0.8 s on an
    # idle 2-core machine, 7-15 s when six jobs shared it
    assert took < 60.0, f"/backtest took {took:.2f} s"


# --- errors, auth, audit -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "field", "needle"),
    [
        ({"portfolio": {"XRPUSDT": 1.0}}, "portfolio.XRPUSDT", "no history for XRPUSDT"),
        ({"estimators": ["rolling_ols_30d", "magic"]}, "estimators[1]", "unknown estimator 'magic'"),
        ({"hedge_instruments": ["ETHUSDT", "XRPUSDT"]}, "hedge_instruments[1]", "XRPUSDT"),
        ({"benchmarks": ["SPY"]}, "benchmarks[0]", "SPY"),
        ({"estimators": ["rolling_ols_365d"]}, "assets", "no bar where every estimator"),
    ],
    ids=["portfolio-no-history", "unknown-estimator", "hedge-no-history", "bench", "warm-up"],
)
def test_bad_fields_get_422_naming_the_field(server, body, extra, field, needle):
    r = post(server, bt_body(body, include_model=False, **extra))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and needle in r.json()["error"]


@pytest.mark.slow
def test_shape_errors_are_400(server, body):
    assert post(server, bt_body(body, rebalance="soon")).status_code == 400
    assert post(server, bt_body(body, fee_bps=-1)).status_code == 400
    r = post(server, bt_body(body, portfolio={"SOLUSDT": 500.0}))
    assert r.status_code == 400 and "gross weight" in r.text


@pytest.mark.slow
def test_trader_and_admin_allowed_compliance_forbidden_no_key_unauthorised(server, body):
    payload = bt_body(body, estimators=["rolling_ols_30d"], include_model=False)
    assert post(server, payload, role="trader").status_code == 200
    assert post(server, payload, role="admin").status_code == 200
    assert post(server, payload, role="compliance").status_code == 403
    assert httpx.post(server.url + "/backtest", json=payload, timeout=10).status_code == 401


@pytest.mark.slow
def test_backtest_call_is_in_the_audit_log_with_its_table_and_rejects_are_not(server, body):
    from adaptive_beta.models.audit.log import AuditReader

    out = post(server, bt_body(body, estimators=["rolling_ols_30d"])).json()
    with AuditReader(server.audit_db) as reader:
        rows = reader.query(request_id=out["request_id"])
        before = reader.count()
    assert len(rows) == 1
    rec = rows[0]
    assert rec["endpoint"] == "/backtest" and rec["caller"] == "trader-desk"
    assert rec["output"]["estimators"] == out["estimators"]
    assert rec["output"]["portfolio"] == PORTFOLIO
    assert set(rec["features"]["rows"]) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"}
    assert post(server, bt_body(body, estimators=["magic"])).status_code == 422
    with AuditReader(server.audit_db) as reader:
        assert reader.count() == before


@pytest.mark.slow
def test_openapi_lists_backtest_and_fuzzed_bodies_never_get_500(server):
    spec = httpx.get(server.url + "/docs.json", headers=auth("admin"), timeout=10).json()
    assert "post" in spec["paths"]["/backtest"]
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    op = schemathesis.openapi.from_url(server.url + "/docs.json", headers=auth("admin"))["/backtest"]["POST"]

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def check(case):
        resp = case.call(headers=auth("trader"))
        assert resp.status_code in (200, 400, 413, 422), (resp.status_code, resp.text)

    check()


# --- no server -------------------------------------------------------------------------------------


def test_reduced_baseline_config_gives_the_same_betas_as_the_full_one():
    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.serving.endpoints.backtest import baseline_config_for, known_estimators

    rng = np.random.default_rng(3)
    idx = pd.date_range("2024-01-01", periods=200, freq="1D", tz="UTC")
    x = pd.Series(rng.normal(0, 0.03, 200), index=idx)
    y = pd.DataFrame({"A": 1.3 * x + rng.normal(0, 0.02, 200), "B": 0.7 * x + rng.normal(0, 0.02, 200)})
    bench = pd.DataFrame({"BTC": x})
    full = baseline_forecasts(y, bench, None, pd.Timedelta("1D"))
    assert set(known_estimators()) <= set(full)
    names = ["rolling_ols_30d", "welch_hl60d", "ewma_hl30d", "vasicek_90d"]
    small = baseline_forecasts(y, bench, None, pd.Timedelta("1D"), baseline_config_for(names))
    for n in names:
        pd.testing.assert_frame_equal(small[n]["BTC"], full[n]["BTC"], rtol=0, atol=0)
    assert "kalman_rw" not in small and "rolling_ols_365d" not in small
