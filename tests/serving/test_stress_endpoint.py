"""POST /stress on a real `bentoml serve` subprocess (127.0.0.1), checked against /forecast by hand."""

from __future__ import annotations

import copy

import httpx
import pytest

from adaptive_beta.models.portfolio.scenarios import default_scenarios_path, load_scenarios
from adaptive_beta.serving.endpoints.stress import scenario_error_field
from tests.serving.conftest import auth, request_body

POSITIONS = {"SOLUSDT": 1_000_000.0, "DOGEUSDT": -250_000.0, "ETHUSDT": 400_000.0}
BTC_SHOCK = {"name": "BTC -30%", "kind": "benchmark_shock", "shocks": {"BTCUSDT": -0.30}}
COMPOSITE_SHOCK = {
    "name": "composite -25%",
    "kind": "benchmark_shock",
    "shocks": {"CRYPTO_EW": -0.25, "BTCUSDT": -0.10},
    "driver": "CRYPTO_EW",
}
SHIFT = {
    "name": "betas x1.5",
    "kind": "beta_shift",
    "shocks": {"BTCUSDT": -0.20},
    "multipliers": [{"assets": "book", "benchmark": "*", "factor": 1.5}],
}


@pytest.fixture(scope="module")
def body(tiny_bundle):
    return request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])


@pytest.fixture(scope="module")
def forecast_betas(server, body):
    r = post(server, "/forecast", body)
    assert r.status_code == 200, r.text
    return {f["symbol"]: {b: v["beta"] for b, v in f["betas"].items()} for f in r.json()["forecasts"]}


def post(server, path, payload, role="trader"):
    return httpx.post(server.url + path, json=payload, headers=auth(role), timeout=60)


def stress_body(body, **extra):
    return {**copy.deepcopy(body), "positions": dict(POSITIONS), **extra}


# --- the numbers -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_shock_pnl_is_notional_times_forecast_beta_times_shock(server, body, forecast_betas):
    r = post(server, "/stress", stress_body(body, scenarios=[BTC_SHOCK, COMPOSITE_SHOCK]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"]["version"] == "test-1" and len(out["request_id"]) == 32
    assert out["hedge_source"] == "overlay" and out["hedge_instruments"] == ["BTCUSDT"]
    assert out["target"] == {"BTCUSDT": 0.0}
    assert out["nav"] == pytest.approx(1_650_000.0)  # gross notional
    btc, comp = out["scenarios"]
    for sc, driver, shock in ((btc, "BTCUSDT", -0.30), (comp, "CRYPTO_EW", -0.25)):
        want = {s: n * forecast_betas[s][driver] * shock for s, n in POSITIONS.items()}
        for s, v in want.items():
            assert sc["position_pnl"][s] == pytest.approx(v, rel=1e-6)
        assert sc["pnl_unhedged"] == pytest.approx(sum(want.values()), rel=1e-6)
    # the overlay shorts the book's BTC dollar beta in the BTC perp, which moves by exactly the shock
    dollar_btc = sum(n * forecast_betas[s]["BTCUSDT"] for s, n in POSITIONS.items())
    assert btc["hedge"]["BTCUSDT"] == pytest.approx(-dollar_btc, rel=1e-6)
    assert btc["hedge_pnl"]["BTCUSDT"] == pytest.approx(-dollar_btc * -0.30, rel=1e-6)
    assert btc["pnl_hedged"] == pytest.approx(0.0, abs=1e-6 * abs(btc["pnl_unhedged"]))
    assert btc["residual_beta_after_shift"]["BTCUSDT"] == pytest.approx(0.0, abs=1e-9)
    # the BTC perp is itself a shocked series: it earns exactly the BTC shock, not beta x composite move
    assert comp["asset_returns"]["BTCUSDT"] == -0.10
    assert comp["pnl_hedged"] == pytest.approx(comp["pnl_unhedged"] - dollar_btc * -0.10, rel=1e-6)
    for s in POSITIONS:
        assert out["betas_used"][s]["BTCUSDT"] == pytest.approx(forecast_betas[s]["BTCUSDT"], abs=1e-9)
    assert out["betas_used"]["BTCUSDT"]["BTCUSDT"] == 1.0  # a perp's beta to its own benchmark


@pytest.mark.slow
def test_beta_shift_leaves_half_the_dollar_beta_and_needs_a_bigger_overlay(server, body, forecast_betas):
    out = post(server, "/stress", stress_body(body, scenarios=[SHIFT])).json()
    sc = out["scenarios"][0]
    dollar_btc = sum(n * forecast_betas[s]["BTCUSDT"] for s, n in POSITIONS.items())
    nav = out["nav"]
    assert sc["pnl_unhedged"] == pytest.approx(1.5 * dollar_btc * -0.20, rel=1e-6)
    assert sc["pnl_hedged"] == pytest.approx(0.5 * dollar_btc * -0.20, rel=1e-6)  # overlay sized pre-shift
    assert sc["hedge_after_shift"]["BTCUSDT"] == pytest.approx(-1.5 * dollar_btc, rel=1e-6)
    assert sc["residual_beta_after_shift"]["BTCUSDT"] == pytest.approx(0.5 * dollar_btc / nav, rel=1e-6)


@pytest.mark.slow
def test_given_hedge_and_explicit_betas_are_used_as_sent(server, body, forecast_betas):
    payload = stress_body(
        body,
        scenarios=[BTC_SHOCK],
        hedge={"BTCUSDT": -500_000.0},
        betas={"SOLUSDT": {"BTCUSDT": 2.0}},
        nav=2_000_000.0,
    )
    out = post(server, "/stress", payload).json()
    sc = out["scenarios"][0]
    assert out["hedge_source"] == "given" and out["nav"] == 2_000_000.0
    assert sc["hedge_pnl"] == {"BTCUSDT": pytest.approx(150_000.0)}
    assert sc["position_pnl"]["SOLUSDT"] == pytest.approx(1_000_000.0 * 2.0 * -0.30)
    assert sc["position_pnl"]["ETHUSDT"] == pytest.approx(
        400_000.0 * forecast_betas["ETHUSDT"]["BTCUSDT"] * -0.30
    )
    dollar = (
        2.0e6
        - 250_000.0 * forecast_betas["DOGEUSDT"]["BTCUSDT"]
        + 400_000.0 * forecast_betas["ETHUSDT"]["BTCUSDT"]
    )
    assert sc["residual_beta_after_shift"]["BTCUSDT"] == pytest.approx((dollar - 500_000.0) / 2e6, rel=1e-6)
    assert "request for SOLUSDT" in out["beta_sources"]["BTCUSDT"]


@pytest.mark.slow
def test_default_scenarios_run_and_uncovered_replays_are_skipped_with_a_reason(server, body):
    r = post(server, "/stress", stress_body(body))
    assert r.status_code == 200, r.text
    out = r.json()
    names = [s.name for s in load_scenarios(default_scenarios_path())]
    ran = [s["name"] for s in out["scenarios"]]
    skipped = {s["name"]: s["reason"] for s in out["skipped"]}
    assert ran + list(skipped) == names or sorted(ran + list(skipped)) == sorted(names)
    assert set(skipped) == {"LUNA week (2022-05-05..13)", "FTX week (2022-11-06..12)"}
    assert "does not cover 2022-05-05..2022-05-13" in skipped["LUNA week (2022-05-05..13)"]
    # SPY betas come from OLS on the request's history; the equity shock moves every position
    eq = next(s for s in out["scenarios"] if s["name"] == "equities -10%")
    for s, n in POSITIONS.items():
        assert eq["position_pnl"][s] == pytest.approx(n * out["betas_used"][s]["SPY"] * -0.10, rel=1e-9)
    assert "OLS" in out["beta_sources"]["SPY"]


# --- errors, auth, audit, schema -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "status", "field", "needle"),
    [
        ({"scenarios": [{**BTC_SHOCK, "shocks": {"BTCUSDT": -1.5}}]}, 422, "scenarios[0].shocks", "above -1"),
        ({"scenarios": [BTC_SHOCK, {**BTC_SHOCK, "kind": "meteor"}]}, 422, "scenarios[1].kind", "meteor"),
        (
            {"scenarios": [{**SHIFT, "multipliers": [{"factor": "x"}]}]},
            422,
            "scenarios[0].multipliers.0.factor",
            "",
        ),
        ({"scenarios": [{**BTC_SHOCK, "colour": "red"}]}, 422, "scenarios[0].colour", "Extra inputs"),
        ({"scenarios": [{**BTC_SHOCK, "shocks": {"GLD": -0.1}}]}, 422, "scenarios[0]", "no beta of"),
        ({"scenarios": [BTC_SHOCK, BTC_SHOCK]}, 422, "scenarios", "used twice"),
        ({"target": {"SPY": 0.0}}, 422, "target.SPY", "unknown benchmark"),
        ({"betas": {"XRPUSDT": {"BTCUSDT": 1.0}}}, 422, "betas.XRPUSDT", "neither a position"),
        ({"positions": {"SOLUSDT": 1e308, "ETHUSDT": 1e308}}, 422, "positions", "overflows"),
    ],
    ids=[
        "shock-below-minus-1",
        "bad-kind",
        "bad-factor",
        "extra-field",
        "no-beta",
        "dup-name",
        "target",
        "betas",
        "overflow",
    ],
)
def test_bad_request_fields_get_422_naming_the_field(server, body, extra, status, field, needle):
    r = post(server, "/stress", stress_body(body, **extra))
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and needle in r.json()["error"]


@pytest.mark.slow
def test_position_without_history_is_400_naming_it(server, body):
    r = post(server, "/stress", {**copy.deepcopy(body), "positions": {"XRPUSDT": 1e6}})
    assert r.status_code == 400 and "positions.XRPUSDT" in r.text


@pytest.mark.slow
def test_trader_and_admin_allowed_compliance_forbidden_no_key_unauthorised(server, body):
    payload = stress_body(body, scenarios=[BTC_SHOCK])
    assert post(server, "/stress", payload, role="trader").status_code == 200
    assert post(server, "/stress", payload, role="admin").status_code == 200
    assert post(server, "/stress", payload, role="compliance").status_code == 403
    assert httpx.post(server.url + "/stress", json=payload, timeout=10).status_code == 401


@pytest.mark.slow
def test_stress_call_is_in_the_audit_log_with_its_pnl(server, body):
    from adaptive_beta.models.audit.log import AuditReader

    r = post(server, "/stress", stress_body(body, scenarios=[BTC_SHOCK]))
    out = r.json()
    with AuditReader(server.audit_db) as reader:
        rows = reader.query(request_id=out["request_id"])
        before = reader.count()
    assert len(rows) == 1
    rec = rows[0]
    assert (
        rec["endpoint"] == "/stress" and rec["caller"] == "trader-desk" and rec["model_version"] == "test-1"
    )
    assert rec["output"]["scenarios"][0]["pnl_unhedged"] == out["scenarios"][0]["pnl_unhedged"]
    assert rec["output"]["positions"] == POSITIONS
    bad = stress_body(body, scenarios=[{**BTC_SHOCK, "kind": "meteor"}])
    assert post(server, "/stress", bad).status_code == 422  # rejected -> not logged
    with AuditReader(server.audit_db) as reader:
        assert reader.count() == before


@pytest.mark.slow
def test_openapi_lists_stress_and_fuzzed_bodies_never_get_500(server):
    spec = httpx.get(server.url + "/docs.json", headers=auth("admin"), timeout=10).json()
    assert "post" in spec["paths"]["/stress"]
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    op = schemathesis.openapi.from_url(server.url + "/docs.json", headers=auth("admin"))["/stress"]["POST"]

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def check(case):
        resp = case.call(headers=auth("trader"))
        assert resp.status_code in (200, 400, 413, 422), (resp.status_code, resp.text)

    check()


# --- no server -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("scenarios: scenario[2] field 'shocks': shock of 'X' must be ...", "scenarios[2].shocks"),
        (
            "scenarios: scenario[0] field 'multipliers.0.factor': Input should be",
            "scenarios[0].multipliers.0.factor",
        ),
        ("scenarios: scenario[1] field 'historical': end 2021-01-01 is before start", "scenarios[1]"),
        ("scenarios: scenario[3]: Input tag 'x' found using 'kind' does not match", "scenarios[3].kind"),
        ("no scenarios: expected a list of tables under 'scenario'", "scenarios"),
    ],
)
def test_scenario_error_field_names_the_json_path(message, field):
    assert scenario_error_field(message) == field
