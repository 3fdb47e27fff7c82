"""Forecast vs later realised beta on the model timeline, against an independent computation.

A small simulated market is written as a dataset (adaptive_beta.models.sim.write); the tiny test bundle serves
real /forecast calls on histories cut from that market at five past bars; ABETA_REALISED_DATA (here
the ComplianceConfig field) points the pages at the dataset.  Forecasts whose 30-day horizon ends
inside the data must show the realised beta `adaptive_beta.models.features.targets.forward_betas` gives for that (bar,
asset, benchmark); later ones must be listed as pending, and assets not in the data counted apart.
"""

from __future__ import annotations

import html as html_lib
import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.serving.conftest import API_KEYS_ENV, KEYS, build_tiny_bundle

HORIZON = "30d"
N_DAYS = 200
HISTORY = 40  # bars per request (the tiny bundle needs 26)
REALISED_AT = (60, 100, 140)  # bar positions whose horizon ends inside the data (140 + 30 < 199)
PENDING_AT = (175, 199)  # the window runs past the last bar
ASSETS = ("ETHUSDT", "SOLUSDT")
OUTSIDE = "XRPUSDT"  # served (ETH's closes under another name) but not in the market data


def request_at(sim, panel, pos: int, with_outside: bool = False) -> dict:
    """A /forecast body as a client would send it at bar `pos`: the last HISTORY bars up to it."""
    t = panel.index[pos]

    def bars(sym: str) -> list[dict]:
        df = sim.assets[sym].loc[:t].iloc[-HISTORY:]
        return [
            {
                "timestamp": ts.isoformat(),
                "close": float(r.close),
                "volume": float(r.volume),
                "funding_rate": float(r.funding_rate),
            }
            for ts, r in df.iterrows()
        ]

    assets = [{"symbol": s, "history": bars(s)} for s in ASSETS]
    if with_outside:
        assets.append({"symbol": OUTSIDE, "history": bars("ETHUSDT")})
    btc = sim.assets["BTCUSDT"]["close"].loc[:t].iloc[-HISTORY:]
    comp = panel.benchmarks["CRYPTO_EW"].loc[:t].iloc[-HISTORY:]
    spx = sim.factors["SPX"]
    spx = spx[pd.to_datetime(spx["date"]) < t.tz_localize(None)].iloc[-HISTORY:]
    return {
        "assets": assets,
        "series": {
            "BTCUSDT": [{"timestamp": ts.isoformat(), "close": float(v)} for ts, v in btc.items()],
            "CRYPTO_EW": [{"timestamp": ts.isoformat(), "close": float(v)} for ts, v in comp.items()],
            "SPY": [
                {"timestamp": str(d)[:10], "close": float(v)}
                for d, v in zip(spx["date"], spx["close"], strict=True)
            ],
        },
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.sim.simulator import SimConfig, simulate
    from adaptive_beta.models.sim.write import write_simulation
    from adaptive_beta.serving.app_state import AppState, ServeConfig
    from adaptive_beta.serving.endpoints.forecast import forecast
    from adaptive_beta.serving.schemas import ForecastRequest

    folder = tmp_path_factory.mktemp("realised")
    sim = simulate(SimConfig(seed=11, n_assets=4, days=N_DAYS, start="2024-01-01"))
    data = write_simulation(sim, folder / "sim")
    panel = load_dataset(data)
    build_tiny_bundle(folder / "bundle")
    state = AppState.load(ServeConfig(model=str(folder / "bundle"), audit_db=str(folder / "audit.db")))
    calls = {}
    for pos in (*REALISED_AT, *PENDING_AT):
        body = request_at(sim, panel, pos, with_outside=pos == REALISED_AT[0])
        calls[pos] = forecast(state, ForecastRequest.model_validate(body), "desk-a")
    state.audit.close()
    return {
        "panel": panel,
        "data": data,
        "calls": calls,
        "db": folder / "audit.db",
        "bundle": folder / "bundle",
    }


def timeline_html(world) -> str:
    from starlette.testclient import TestClient

    from adaptive_beta.serving.auth import KeyStore
    from adaptive_beta.serving.compliance.app import ComplianceConfig, create_app
    from adaptive_beta.serving.compliance.market import MarketConfig

    cfg = ComplianceConfig(
        audit_db=str(world["db"]),
        model=str(world["bundle"]),
        market=MarketConfig(path=str(world["data"]), horizon=HORIZON),
    )
    client = TestClient(create_app(cfg, store=KeyStore.parse(API_KEYS_ENV)), base_url="http://testserver")
    assert (
        client.post("/login", data={"api_key": KEYS["compliance"]}, follow_redirects=False).status_code == 303
    )
    r = client.get("/timeline")
    assert r.status_code == 200
    return r.text


def table_rows(html: str, table_id: str) -> list[dict[str, str]]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [
        {k: html_lib.unescape(v) for k, v in re.findall(r'data-([a-z]+)="([^"]*)"', tr)}
        for tr in re.findall(r"<tr data-[^>]*>", body)
    ]


def test_forecasts_are_served_as_of_the_cut_bars(world):
    for pos, call in world["calls"].items():
        assert {f["as_of"] for f in call["forecasts"]} == {world["panel"].index[pos].isoformat()}


def test_realised_rows_equal_forward_betas_on_the_dataset(world):
    from adaptive_beta.models.features.targets import forward_betas

    fwd = forward_betas(world["panel"], HORIZON)
    rows = table_rows(timeline_html(world), "realised")
    ids = {world["calls"][p]["request_id"]: p for p in REALISED_AT}
    assert len(rows) == len(REALISED_AT) * len(ASSETS) * 2  # every (bar, asset, benchmark) once
    seen = set()
    for row in rows:
        pos = ids[row["request"]]  # only the old-enough records
        t = world["panel"].index[pos]
        expected = float(fwd.loc[(t, row["symbol"]), row["benchmark"]])
        assert float(row["realised"]) == pytest.approx(expected, abs=1e-9, rel=0)
        fc = next(f for f in world["calls"][pos]["forecasts"] if f["symbol"] == row["symbol"])
        assert float(row["forecast"]) == pytest.approx(fc["betas"][row["benchmark"]]["beta"], abs=1e-12)
        seen.add((pos, row["symbol"], row["benchmark"]))
    assert seen == {(p, s, b) for p in REALISED_AT for s in ASSETS for b in ("BTCUSDT", "CRYPTO_EW")}


def test_summary_is_the_mean_error_and_coverage_of_the_rows(world):
    html = timeline_html(world)
    rows = table_rows(html, "realised")
    errs = [float(r["forecast"]) - float(r["realised"]) for r in rows]
    mae, bias = sum(abs(e) for e in errs) / len(errs), sum(errs) / len(errs)
    inside = sum(abs(e) <= 0.2 for e in errs)  # the tiny model's interval is beta -/+ 0.2
    summary = html.split('id="realised-summary">', 1)[1].split("</p>", 1)[0]
    assert f"{len(rows)} forecasts (horizon {HORIZON})" in summary
    assert f"mean absolute error {mae:.3f}" in summary and f"{bias:+.3f}" in summary
    assert f"{100 * inside / len(rows):.1f}%" in summary


def test_records_whose_horizon_has_not_passed_are_pending_with_their_due_date(world):
    html = timeline_html(world)
    rows = table_rows(html, "pending")
    ids = {world["calls"][p]["request_id"]: p for p in PENDING_AT}
    assert len(rows) == len(PENDING_AT) * len(ASSETS) * 2
    assert {ids[r["request"]] for r in rows} == set(PENDING_AT)
    for pos in PENDING_AT:
        due = world["panel"].index[pos] + pd.Timedelta(days=31)  # close of bar pos + 30
        assert f'<td class="mono">{due:%Y-%m-%d %H:%M}</td>' in html
    assert f"{len(rows)} forecasts whose {HORIZON} horizon runs past the end of the market data" in html


def test_assets_outside_the_market_data_are_counted_not_compared(world):
    html = timeline_html(world)
    assert OUTSIDE not in html.split('id="realised"', 1)[1].split("</table>", 1)[0]
    assert '<p class="muted small" id="unavailable">2 forecast betas have no realised value' in html


@settings(max_examples=40, deadline=None)
@given(pos=st.integers(0, N_DAYS - 1), symbol=st.sampled_from(["BTCUSDT", *ASSETS]))
def test_outcome_is_pending_exactly_when_the_window_runs_past_the_data(world, pos, symbol):
    """Property on every bar: realised (= forward_betas) iff bar + 30 is inside the data, else pending."""
    from adaptive_beta.serving.compliance.market import MarketConfig, MarketData

    md = _market(world)
    t = world["panel"].index[pos]
    res = md.outcome(symbol, t.isoformat(), "CRYPTO_EW")
    assert res.due == t + pd.Timedelta(days=31)
    if pos + 30 > N_DAYS - 1:
        assert res.status == "pending" and res.value is None
    else:
        expected = _forward(world).loc[(t, symbol), "CRYPTO_EW"]
        assert res.status == ("realised" if expected == expected else "unavailable")
        if res.status == "realised":
            assert res.value == pytest.approx(float(expected), abs=1e-12)
    assert MarketData(MarketConfig()).outcome(symbol, t.isoformat(), "CRYPTO_EW").status == "unavailable"


_MARKETS: dict[str, object] = {}


def _forward(world) -> pd.DataFrame:
    """forward_betas on the dataset, computed here independently of the pages (once)."""
    from adaptive_beta.models.features.targets import forward_betas

    if "fwd" not in world:
        world["fwd"] = forward_betas(world["panel"], HORIZON)
    return world["fwd"]


def _market(world):
    """One loaded MarketData per dataset (loading and forward betas once for all examples)."""
    from adaptive_beta.serving.compliance.market import MarketConfig, MarketData

    key = str(world["data"])
    if key not in _MARKETS:
        _MARKETS[key] = MarketData(MarketConfig(path=key, horizon=HORIZON))
    return _MARKETS[key]
