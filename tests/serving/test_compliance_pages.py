"""The compliance pages at the ASGI level (starlette TestClient on the mounted app itself).

The audit log is seeded through the service's own AppState on the tiny test bundle, so records
hold exactly what the service logs (features, forecasts, Shapley explanations)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from tests.serving.conftest import API_KEYS_ENV, KEYS, build_tiny_bundle, request_body


def one_asset_body(facts: dict, symbol: str, n_last: int | None = None) -> dict:
    """A request for one asset; the BTC benchmark goes in as a series."""
    body = request_body(facts["assets"], facts["spy"], facts["composite"], symbols=[symbol], n_last=n_last)
    btc = facts["assets"]["BTCUSDT"] if n_last is None else facts["assets"]["BTCUSDT"].iloc[-n_last:]
    body["series"]["BTCUSDT"] = [
        {"timestamp": t.isoformat(), "close": float(v)} for t, v in btc["close"].items()
    ]
    return body


def seed(folder: Path) -> dict:
    """Bundle in folder/bundle, log in folder/audit.db; returns facts and the responses in call order.

    Calls (seq 1..6): v test-1 /forecast ETH, /forecast SOL, /forecast ETH on 50 bars (desk-a),
    /explain all four assets (desk-b); v 2 /forecast ETH on 45 bars, /forecast DOGE (desk-b).
    """
    from adaptive_beta.serving.app_state import AppState, ServeConfig
    from adaptive_beta.serving.endpoints.explain import explain
    from adaptive_beta.serving.endpoints.forecast import forecast
    from adaptive_beta.serving.schemas import ExplainRequest, ForecastRequest

    facts = build_tiny_bundle(folder / "bundle")
    state = AppState.load(ServeConfig(model=str(folder / "bundle"), audit_db=str(folder / "audit.db")))
    full = request_body(facts["assets"], facts["spy"], facts["composite"])
    fc = ForecastRequest.model_validate
    calls = [
        forecast(state, fc(one_asset_body(facts, "ETHUSDT")), "desk-a"),
        forecast(state, fc(one_asset_body(facts, "SOLUSDT")), "desk-a"),
        forecast(state, fc(one_asset_body(facts, "ETHUSDT", 50)), "desk-a"),
        explain(state, ExplainRequest.model_validate({**full, "top_groups": 2}), "desk-b"),
    ]
    state.model_version = "2"
    calls += [
        forecast(state, fc(one_asset_body(facts, "ETHUSDT", 45)), "desk-b"),
        forecast(state, fc(one_asset_body(facts, "DOGEUSDT")), "desk-b"),
    ]
    state.audit.close()
    return {"facts": facts, "calls": calls, "db": folder / "audit.db", "bundle": folder / "bundle"}


def make_client(db: Path, bundle: Path | None):
    from starlette.testclient import TestClient

    from adaptive_beta.serving.auth import KeyStore
    from adaptive_beta.serving.compliance.app import ComplianceConfig, create_app

    app = create_app(
        ComplianceConfig(audit_db=str(db), model=str(bundle) if bundle else ""),
        store=KeyStore.parse(API_KEYS_ENV),
    )
    return TestClient(app, base_url="http://testserver")


def login(client, role: str = "compliance"):
    return client.post("/login", data={"api_key": KEYS[role]}, follow_redirects=False)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    return seed(tmp_path_factory.mktemp("compliance"))


@pytest.fixture()
def client(seeded):
    c = make_client(seeded["db"], seeded["bundle"])
    assert login(c).status_code == 303
    return c


def seqs(html: str) -> list[int]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [int(s) for s in re.findall(r'<td class="num">(\d+)</td>\s*<td class="mono">\d{4}-', body)]


# ---------------------------------------------------------------------------- access control


def test_no_session_redirects_every_page_to_login(seeded):
    c = make_client(seeded["db"], seeded["bundle"])
    rid = seeded["calls"][0]["request_id"]
    for path in ["/", f"/records/{rid}", "/timeline", "/verify", "/export?fmt=csv"]:
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    assert c.post("/verify", follow_redirects=False).headers["location"] == "/login"
    page = c.get("/login")
    assert page.status_code == 200 and 'type="password"' in page.text and 'method="post"' in page.text


def test_trader_key_gets_403_and_no_cookie(seeded):
    c = make_client(seeded["db"], seeded["bundle"])
    r = login(c, "trader")
    assert r.status_code == 403
    assert "set-cookie" not in r.headers
    assert "desk-a" not in r.text and seeded["calls"][0]["request_id"] not in r.text
    assert c.get("/", follow_redirects=False).status_code == 303


def test_unknown_key_is_401_and_key_never_in_url_or_cookie(seeded):
    c = make_client(seeded["db"], seeded["bundle"])
    assert c.post("/login", data={"api_key": "not-a-real-key-0000000"}).status_code == 401
    r = login(c, "compliance")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert KEYS["compliance"] not in cookie and KEYS["compliance"] not in r.headers["location"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert "Max-Age=28800" in cookie


def test_compliance_and_admin_see_the_pages_and_logout_ends_the_session(seeded):
    for role in ("compliance", "admin"):
        c = make_client(seeded["db"], seeded["bundle"])
        login(c, role)
        r = c.get("/")
        assert r.status_code == 200 and f"{role}-desk" in r.text
        assert c.post("/logout", follow_redirects=False).status_code == 303
        assert c.get("/", follow_redirects=False).status_code == 303


def test_forged_or_cross_site_requests_are_refused(seeded, client):
    other = make_client(seeded["db"], seeded["bundle"])  # another process secret
    login(other)
    forged = other.cookies.get("abeta_session")
    fresh = make_client(seeded["db"], seeded["bundle"])
    fresh.cookies.set("abeta_session", forged)
    assert fresh.get("/", follow_redirects=False).status_code == 303
    r = client.post("/verify", headers={"origin": "https://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/verify", headers={"sec-fetch-site": "cross-site"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/verify", headers={"sec-fetch-site": "same-origin"}, follow_redirects=False)
    assert r.status_code == 303


def test_https_sets_secure_cookie(seeded):
    from starlette.testclient import TestClient

    c = make_client(seeded["db"], seeded["bundle"])
    https = TestClient(c.app, base_url="https://testserver")
    r = https.post("/login", data={"api_key": KEYS["compliance"]}, follow_redirects=False)
    assert "Secure" in r.headers["set-cookie"]


# ---------------------------------------------------------------------------- records list


def test_records_newest_first_with_total(client):
    r = client.get("/")
    assert r.status_code == 200
    assert seqs(r.text) == [6, 5, 4, 3, 2, 1]
    assert "<strong>6</strong> records match" in r.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"symbol": "ETHUSDT"}, [5, 4, 3, 1]),
        ({"endpoint": "/explain"}, [4]),
        ({"model_version": "2"}, [6, 5]),
        ({"caller": "desk-a"}, [3, 2, 1]),
        ({"symbol": "ETHUSDT", "model_version": "test-1", "endpoint": "/forecast"}, [3, 1]),
        ({"until": "2000-01-01"}, []),
        ({"since": "2000-01-01"}, [6, 5, 4, 3, 2, 1]),
    ],
)
def test_filters(client, query, expected):
    r = client.get("/", params=query)
    assert r.status_code == 200
    assert seqs(r.text) == expected
    assert f"<strong>{len(expected)}</strong>" in r.text


def test_search_by_request_id(client, seeded):
    rid = seeded["calls"][1]["request_id"]
    r = client.get("/", params={"request_id": rid})
    assert seqs(r.text) == [2] and f"/records/{rid}" in r.text


def test_paging(client):
    p1 = client.get("/", params={"n": 25})
    assert "Page 1 of 1" in p1.text
    # a page size that is not offered falls back to 25; page 2 of 25 is empty
    assert seqs(client.get("/", params={"n": 3, "page": 2}).text) == []
    assert "Page 2 of 1" in client.get("/", params={"page": 2}).text


def test_bad_time_filter_is_400_naming_the_field(client):
    r = client.get("/", params={"since": "last tuesday"})
    assert r.status_code == 400 and "since=" in r.text and "ISO 8601" in r.text


# ---------------------------------------------------------------------------- record page


def test_forecast_record_page_shows_betas_regimes_waterfall_and_model_card(client, seeded):
    call = seeded["calls"][0]
    fc = call["forecasts"][0]
    r = client.get(f"/records/{call['request_id']}")
    assert r.status_code == 200
    html = r.text
    for b, v in fc["betas"].items():
        assert f"{v['beta']:.3f}" in html and f"{v['lo']:.3f} to {v['hi']:.3f}" in html, b
    for name, p in fc["regime_probabilities"].items():
        assert f"{100 * p:.1f}%" in html and name in html
    assert html.count('class="waterfall"') == 2  # one per benchmark
    assert "tiny test model" in html and "adaptive-beta-test" in html
    assert "This record&#39;s stored hash matches its contents." in html or "stored hash matches" in html
    assert "chart.umd.min.js" in html


def test_forecast_waterfall_closes_exactly_with_recomputed_baseline(client, seeded):
    """/forecast logs three drivers and no baseline; the page recomputes the baseline from the bundle,
    which must equal the one /explain logged, and the bars must close on the forecast."""
    from adaptive_beta.serving.compliance.charts import waterfall_steps

    call, explain = seeded["calls"][0], seeded["calls"][3]
    eth = next(e for e in explain["explanations"] if e["symbol"] == "ETHUSDT")
    html = client.get(f"/records/{call['request_id']}").text
    charts = [
        json.loads(m.replace("&#34;", '"').replace("&quot;", '"'))
        for m in re.findall(r'class="waterfall" data-chart="([^"]+)"', html)
    ]
    assert len(charts) == 2
    for cfg in charts:
        bench = cfg["options"]["plugins"]["title"]["text"].split("beta to ")[1]
        bars = cfg["data"]["datasets"][0]["data"]
        labels = cfg["data"]["labels"]
        assert labels[0] == "baseline" and labels[-2] == "other groups" and labels[-1] == "forecast"
        assert bars[0][1] == pytest.approx(eth["benchmarks"][bench]["baseline_forecast"], abs=1e-6)
        assert bars[-1][1] == pytest.approx(call["forecasts"][0]["betas"][bench]["beta"], abs=1e-6)
        assert bars[-2][1] == pytest.approx(bars[-1][1], abs=1e-6)  # the last step lands on the forecast
        for prev, cur in zip(bars[:-2], bars[1:-1], strict=True):
            assert cur[0] == pytest.approx(prev[1], abs=1e-6)  # each bar starts where the last ended
    steps = waterfall_steps(1.0, [("a", 0.3), ("b", -0.1)], 0.7)
    assert [s.label for s in steps] == ["baseline", "a", "b", "other groups", "forecast"]
    assert steps[3].value == pytest.approx(0.1)


def test_explain_record_page_has_all_groups_and_top_features(client, seeded):
    call = seeded["calls"][3]
    html = client.get(f"/records/{call['request_id']}").text
    assert html.count('class="waterfall"') == 4 * 2  # 4 assets x 2 benchmarks
    eth = next(e for e in call["explanations"] if e["symbol"] == "ETHUSDT")["benchmarks"]["BTCUSDT"]
    top = max((f for g in eth["groups"] for f in g["features"]), key=lambda f: abs(f["contribution"]))
    assert top["feature"] in html and f"{top['contribution']:+.4f}" in html
    assert "Top features" in html and "other groups" not in html.split("Explanation", 1)[1].split("Inputs")[0]


def waterfalls(html: str) -> list[dict]:
    return [
        json.loads(m.replace("&#34;", '"').replace("&quot;", '"'))
        for m in re.findall(r'class="waterfall" data-chart="([^"]+)"', html)
    ]


def test_record_without_bundle_draws_the_waterfall_from_the_logged_baseline(seeded):
    """The baseline is logged with /forecast records, so the page needs no bundle to close the bars."""
    call, explain = seeded["calls"][0], seeded["calls"][3]
    eth = next(e for e in explain["explanations"] if e["symbol"] == "ETHUSDT")
    c = make_client(seeded["db"], None)
    login(c)
    html = c.get(f"/records/{call['request_id']}").text
    assert "shown is what the record holds" in html and call["model"]["bundle_sha256"] in html
    assert "baseline as logged with the record" in html and "baseline + other groups" not in html
    for cfg in waterfalls(html):
        bench = cfg["options"]["plugins"]["title"]["text"].split("beta to ")[1]
        bars, labels = cfg["data"]["datasets"][0]["data"], cfg["data"]["labels"]
        assert labels[0] == "baseline" and labels[-2] == "other groups"
        assert bars[0][1] == pytest.approx(eth["benchmarks"][bench]["baseline_forecast"], abs=1e-6)
        assert bars[-2][1] == pytest.approx(call["forecasts"][0]["betas"][bench]["beta"], abs=1e-6)


def old_style_log(seeded, folder: Path, index: int = 0) -> str:
    """A log holding call `index` as the service logged it before the inputs summary and baseline."""
    from adaptive_beta.models.audit.chain import ENTRY_FIELDS
    from adaptive_beta.models.audit.log import AuditLog, AuditReader

    rec = AuditReader(str(seeded["db"])).get(seeded["calls"][index]["request_id"])
    entry = {k: rec[k] for k in ENTRY_FIELDS}
    entry["features"] = {k: v for k, v in rec["features"].items() if k in ("as_of", "rows")}
    log = AuditLog(str(folder / "old.db"))
    log.append(entry)
    log.close()
    return rec["request_id"]


def test_old_record_without_bundle_falls_back_to_what_the_record_holds(seeded, tmp_path):
    rid = old_style_log(seeded, tmp_path)
    c = make_client(tmp_path / "old.db", None)
    login(c)
    html = c.get(f"/records/{rid}").text
    assert "baseline + other groups" in html
    assert "shown is what the record holds" in html
    assert 'class="pricechart"' not in html and 'id="no-prices"' in html and "ABETA_REALISED_DATA" in html


def test_old_forecast_record_recomputes_the_baseline_from_the_serving_bundle(seeded, tmp_path):
    rid = old_style_log(seeded, tmp_path)
    c = make_client(tmp_path / "old.db", seeded["bundle"])
    login(c)
    html = c.get(f"/records/{rid}").text
    assert "baseline recomputed from the serving bundle" in html
    explain = seeded["calls"][3]
    eth = next(e for e in explain["explanations"] if e["symbol"] == "ETHUSDT")
    for cfg in waterfalls(html):
        bench = cfg["options"]["plugins"]["title"]["text"].split("beta to ")[1]
        assert cfg["data"]["datasets"][0]["data"][0][1] == pytest.approx(
            eth["benchmarks"][bench]["baseline_forecast"], abs=1e-6
        )


def price_charts(html: str) -> list[dict]:
    return [
        json.loads(m.replace("&#34;", '"').replace("&quot;", '"'))
        for m in re.findall(r'class="pricechart" data-chart="([^"]+)"', html)
    ]


@pytest.mark.parametrize("index, n_last", [(0, None), (2, 50)])
def test_record_page_draws_the_closes_the_request_carried(client, seeded, index, n_last):
    """Chart and no-JavaScript table hold exactly the request's closes (all of them below 120 bars)."""
    eth = seeded["facts"]["assets"]["ETHUSDT"]
    eth = eth if n_last is None else eth.iloc[-n_last:]
    html = client.get(f"/records/{seeded['calls'][index]['request_id']}").text
    (cfg,) = price_charts(html)
    assert cfg["type"] == "line"
    assert cfg["data"]["labels"] == [t.strftime("%Y-%m-%d %H:%M") for t in eth.index]
    assert cfg["data"]["datasets"][0]["data"] == eth["close"].tolist()  # exact floats, as logged
    assert (
        f"The request carried {len(eth)} bars, {eth.index[0]:%Y-%m-%d %H:%M} to {eth.index[-1]:%Y-%m-%d %H:%M}"
        in html
    )
    table = html.split('<table class="data compact closes" data-symbol="ETHUSDT">', 1)[1].split("</table>")[0]
    cells = re.findall(r'<td class="mono">([^<]+)</td><td class="num">([^<]+)</td>', table)
    assert len(cells) == len(eth)
    assert cells[-1] == (f"{eth.index[-1]:%Y-%m-%d %H:%M}", f"{eth['close'].iloc[-1]:.6f}")
    assert 'id="no-prices"' not in html


def test_explain_record_draws_one_price_chart_per_asset(client, seeded):
    html = client.get(f"/records/{seeded['calls'][3]['request_id']}").text
    charts = price_charts(html)
    assert sorted(c["data"]["datasets"][0]["label"] for c in charts) == sorted(seeded["facts"]["assets"])
    for c in charts:
        closes = seeded["facts"]["assets"][c["data"]["datasets"][0]["label"]]["close"].tolist()
        assert c["data"]["datasets"][0]["data"] == closes


@pytest.mark.parametrize("form", ["rows", "columns"])
def test_inputs_summary_keeps_the_last_120_closes_in_utc(form):
    """130 bars (the first 65 with naive stamps, the rest at +02:00): 120 kept, stamps in UTC,
    whichever form (bar objects or columns) the history was sent in."""
    from datetime import datetime, timedelta, timezone

    from adaptive_beta.serving.app_state import AUDIT_CLOSES, AppState
    from adaptive_beta.serving.schemas import ForecastRequest

    plus2 = timezone(timedelta(hours=2))
    t0 = datetime(2025, 1, 1)
    stamps = [
        (t0 + timedelta(days=i)) if i < 65 else (t0 + timedelta(days=i, hours=2)).replace(tzinfo=plus2)
        for i in range(130)
    ]
    closes = [100.0 + i for i in range(130)]

    def history(n):
        if form == "columns":
            return {"timestamps": [t.isoformat() for t in stamps[:n]], "close": closes[:n]}
        return [{"timestamp": t.isoformat(), "close": c} for t, c in zip(stamps[:n], closes[:n], strict=True)]

    req = ForecastRequest.model_validate(
        {
            "assets": [
                {"symbol": "ETHUSDT", "history": history(130)},
                {"symbol": "XUSDT", "history": history(3)},
            ]
        }
    )
    out = AppState.inputs_summary(req, ["ETHUSDT"])
    assert list(out) == ["ETHUSDT"] and AUDIT_CLOSES == 120  # only assets the model used
    s = out["ETHUSDT"]
    assert s["n_bars"] == 130 and s["first"] == "2025-01-01T00:00:00+00:00"
    assert s["last"] == "2025-05-10T00:00:00+00:00"
    assert s["closes"] == [100.0 + i for i in range(10, 130)]
    assert s["timestamps"][0] == "2025-01-11T00:00:00+00:00" and s["timestamps"][-1] == s["last"]
    assert s["timestamps"][60] == "2025-03-12T00:00:00+00:00"  # bar 70, sent as 02:00+02:00
    assert len(json.dumps(out)) < 120 * 50  # bounded: about 40 bytes per bar


def test_unknown_record_is_404(client):
    assert client.get("/records/nope").status_code == 404


# ---------------------------------------------------------------------------- verify, timeline, export


def test_verify_panel_and_record_chain_status(client, seeded):
    rid = seeded["calls"][0]["request_id"]
    assert "has not been verified" in client.get(f"/records/{rid}").text
    r = client.post("/verify", follow_redirects=True)
    assert r.status_code == 200 and "Chain intact" in r.text and "6 records verified" in r.text
    assert "Intact: the whole chain through seq 6" in client.get(f"/records/{rid}").text


def test_timeline_counts_per_version_and_no_registry(client):
    html = client.get("/timeline").text
    assert "No registry information" in html
    assert re.search(r"<td>vtest-1</td><td class=\"num\">4</td>", html)
    assert re.search(r"<td>v2</td><td class=\"num\">2</td>", html)
    assert "No market data configured" in html


def test_timeline_shows_champion_history_from_the_registry(client):
    from mlflow import MlflowClient

    from adaptive_beta.models.bundle.resolve import default_tracking_uri

    hist = [
        {
            "version": "1",
            "from": "2026-01-01T00:00:00+00:00",
            "until": "2026-02-01T00:00:00+00:00",
            "reason": "first",
        },
        {"version": "2", "from": "2026-02-01T00:00:00+00:00", "until": None, "reason": "beats v1 on rmse"},
    ]
    mc = MlflowClient(tracking_uri=default_tracking_uri())
    mc.create_registered_model("adaptive-beta", tags={"champion_history": json.dumps(hist)})
    html = client.get("/timeline").text
    assert "beats v1 on rmse" in html and "still champion" in html
    assert re.search(r"<td>v1</td><td class=\"num\">0</td>", html)  # champion that served nothing here


@pytest.mark.parametrize(
    ("fmt", "ctype"),
    [("csv", "text/csv"), ("jsonl", "application/x-ndjson"), ("parquet", "application/vnd.apache.parquet")],
)
def test_export_filtered_set(client, fmt, ctype, tmp_path):
    r = client.get("/export", params={"fmt": fmt, "symbol": "ETHUSDT"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(ctype)
    assert "attachment" in r.headers["content-disposition"] and f".{fmt}" in r.headers["content-disposition"]
    assert r.headers["x-abeta-records"] == "4"
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [int(x["seq"]) for x in rows] == [1, 3, 4, 5]
    elif fmt == "jsonl":
        from adaptive_beta.models.audit.chain import record_hash

        lines = [json.loads(x) for x in r.text.splitlines()]
        assert [x["seq"] for x in lines] == [1, 3, 4, 5]
        assert all(record_hash({k: v for k, v in x.items() if k != "hash"}) == x["hash"] for x in lines)
    else:
        import pyarrow.parquet as pq

        (tmp_path / "x.parquet").write_bytes(r.content)
        assert pq.read_table(tmp_path / "x.parquet").column("seq").to_pylist() == [1, 3, 4, 5]


def test_export_bad_format_is_400(client):
    assert client.get("/export", params={"fmt": "xlsx"}).status_code == 400


def test_static_chart_library_is_served_without_a_session(seeded):
    c = make_client(seeded["db"], seeded["bundle"])
    r = c.get("/static/chart.umd.min.js")
    assert r.status_code == 200 and "Chart.js v4" in r.text[:200]
