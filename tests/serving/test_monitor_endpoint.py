"""GET /monitor on a real `bentoml serve` subprocess (127.0.0.1), checked against adaptive_beta.models.monitoring.drift by hand.

The tiny bundle's meta has no `data_source`, so the reference goes the documented route: built
here from the bundle's own training market (`adaptive_beta.models.monitoring.monitor.reference_from_data`), saved with
`save_reference`, and given to the server as ABETA_MONITOR_REFERENCE.  The plain `server` fixture
(no reference) checks the 409 that says how to provide one.
"""

from __future__ import annotations

import math

import httpx
import pytest

from tests.serving.conftest import Server, auth, published_spy, request_body

CUTS = (45, 50, 55, 60)  # /forecast calls on histories ending at these bars -> distinct as_of rows


@pytest.fixture(scope="module")
def reference_file(tiny_bundle, tmp_path_factory):
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.data.schema import build_panel
    from adaptive_beta.models.monitoring.monitor import reference_from_data, save_reference

    bundle = load_bundle(tiny_bundle["path"])
    spy = published_spy(tiny_bundle["spy"])
    panel = build_panel(tiny_bundle["assets"], {"SPY": spy}, freq="1d")
    path = tmp_path_factory.mktemp("ref") / "reference.json"
    save_reference(reference_from_data(bundle, panel), path, bundle)
    return path


@pytest.fixture(scope="module")
def monitored(tiny_bundle, reference_file, tmp_path_factory):
    """A server with a reference, after four /forecast calls and one /backtest."""
    d = tmp_path_factory.mktemp("monitored")
    srv = Server(
        tiny_bundle["path"],
        d / "audit.db",
        d / "server.log",
        extra_env={"ABETA_MONITOR_REFERENCE": str(reference_file)},
    )
    srv.audit_db = d / "audit.db"
    try:
        srv.wait_ready()
        for n in CUTS:
            assets = {s: f.iloc[:n] for s, f in tiny_bundle["assets"].items()}
            body = request_body(assets, tiny_bundle["spy"], tiny_bundle["composite"].iloc[:n])
            r = httpx.post(srv.url + "/forecast", json=body, headers=auth("trader"), timeout=60)
            assert r.status_code == 200, r.text
        body = request_body(tiny_bundle["assets"], tiny_bundle["spy"], tiny_bundle["composite"])
        bt = {**body, "portfolio": {"SOLUSDT": 1.0}, "estimators": ["rolling_ols_30d"]}
        r = httpx.post(srv.url + "/backtest", json=bt, headers=auth("trader"), timeout=60)
        assert r.status_code == 200, r.text
        yield srv
    finally:
        srv.stop()


def get(server, role="compliance", **params):
    return httpx.get(server.url + "/monitor", params=params, headers=auth(role), timeout=60)


def expected_groups(server, tiny_bundle, reference_file):
    """Group PSI by adaptive_beta.models.monitoring.drift on the /forecast feature rows of the audit log."""
    from fnmatch import fnmatch

    from adaptive_beta.models.audit.log import AuditReader
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.monitoring.drift import feature_psi, group_psi
    from adaptive_beta.models.monitoring.monitor import MonitorConfig, audit_features, load_reference

    bundle = load_bundle(tiny_bundle["path"])
    cfg = MonitorConfig()
    ref = load_reference(reference_file, bundle)
    ref = {k: v for k, v in ref.items() if not any(fnmatch(k, p) for p in cfg.exclude_features)}
    with AuditReader(server.audit_db) as reader:
        records = sorted(reader.query(endpoint="/forecast", limit=1000), key=lambda r: r["seq"])
    recent = audit_features(records, bundle.feature_columns)
    groups = group_psi(feature_psi(ref, recent), cfg.psi_warn, cfg.psi_alert)
    return {r.group: float(r.psi) for r in groups.itertuples()}, recent


@pytest.mark.slow
def test_group_psi_equals_models_drift_on_the_logged_forecast_features(
    monitored, tiny_bundle, reference_file
):
    r = get(monitored)
    assert r.status_code == 200, r.text
    out = r.json()
    want, recent = expected_groups(monitored, tiny_bundle, reference_file)
    got = {g["group"]: g["psi"] for g in out["psi_groups"]}
    assert set(got) == set(want) and len(want) >= 4
    for g, v in want.items():
        if math.isfinite(v):
            assert got[g] == pytest.approx(v, abs=1e-9), g
        else:
            assert got[g] is None
    # four /forecast calls x four assets, one row per (as_of, asset); the /backtest is not counted
    assert len(recent) == 16 and out["window"]["rows"] == 16 and out["window"]["records"] == 4
    assert out["source"] == "audit" and out["model"]["version"] == "test-1"
    assert out["alert"] is bool(out["alerts"])
    assert any("ABETA_REALISED_DATA is not set" in n for n in out["notes"])
    assert out["forecast_errors"] == [] and out["beta_shifts"] == []


@pytest.mark.slow
def test_monitor_is_read_only_and_filters_by_time(monitored):
    from adaptive_beta.models.audit.log import AuditReader

    with AuditReader(monitored.audit_db) as reader:
        before = reader.count()
    future = get(monitored, since="2100-01-01T00:00:00Z").json()
    assert future["window"]["records"] == 0 and future["window"]["rows"] == 0
    assert all(g["psi"] is None for g in future["psi_groups"])
    assert get(monitored, limit=2).json()["window"]["records"] == 2
    with AuditReader(monitored.audit_db) as reader:
        assert reader.count() == before


@pytest.mark.slow
def test_compliance_and_admin_allowed_trader_forbidden_no_key_unauthorised(monitored):
    assert get(monitored, role="compliance").status_code == 200
    assert get(monitored, role="admin").status_code == 200
    assert get(monitored, role="trader").status_code == 403
    assert httpx.get(monitored.url + "/monitor", timeout=10).status_code == 401


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"foo": "1"}, "foo"),
    ],
)
def test_bad_query_parameters_are_400_naming_them(monitored, params, field):
    r = get(monitored, **params)
    assert r.status_code == 400 and r.json()["field"] == field, r.text


@pytest.mark.slow
def test_without_a_reference_the_answer_is_409_saying_how_to_provide_one(server):
    r = get(server)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["field"] == "reference"
    assert "ABETA_MONITOR_REFERENCE" in body["error"] and "--save-reference" in body["error"]
