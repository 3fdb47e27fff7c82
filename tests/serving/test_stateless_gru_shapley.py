"""Stateless /forecast and /explain compute group Shapley by the one-GRU fast path
(models/bundle/gru_shapley.py) when the bundle is one forward GRU: the same phi, baseline and
explained value as the plain stacked graph (within 1e-6), the same forecasts and audit input
hash, the same per-feature detail; a graph without a GRU keeps the plain path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adaptive_beta.models.bundle.shapley import batched_beta_shapley

pytest.importorskip("torch")  # the bundle is trained here


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A trained one-GRU bundle, a /explain body for two of its assets, and two AppStates on it:
    `fast` (the default) and `plain` (the fast path switched off)."""
    from adaptive_beta.serving.app_state import AppState, ServeConfig
    from adaptive_beta.serving.client import as_columns, forecast_request, raw_factor_series
    from adaptive_beta.training.toy_bundle import build_real_bundle

    root = tmp_path_factory.mktemp("stateless-gru")
    facts = build_real_bundle(root, n_assets=5, days=420, seed=4)
    states = {}
    for name in ("fast", "plain"):
        cfg = ServeConfig(model=str(facts["bundle"]), audit_db=str(root / f"{name}-audit.db"))
        states[name] = AppState.load(cfg)
    states["plain"].coalitions = None  # what gru_coalitions() returns for a graph it cannot split
    st = states["fast"]
    series = list(st.required.get("series", []))
    required = {"min_periods": int(st.required["min_periods"]), "series": series}
    required["frequency"] = st.required["frequency"]
    symbols = [s for s in facts["panel"].symbols if s not in series][:2]
    body = as_columns(forecast_request(facts["panel"], required, symbols, raw_factor_series(facts["data"])))
    yield states, {**body, "top_groups": 2}
    for s in states.values():
        s.audit.close()


def _request(body, cls_name="ForecastRequest"):
    from adaptive_beta.serving import schemas

    if cls_name == "ForecastRequest":
        body = {k: v for k, v in body.items() if k != "top_groups"}
    return getattr(schemas, cls_name).model_validate_json(json.dumps(body))


def test_the_stateless_path_uses_the_fast_path_and_matches_the_plain_graph(real):
    states, body = real
    st = states["fast"]
    assert st.gru_coalitions() is not None  # the exported BetaNet is one forward GRU
    inputs, out, (phi, base, full) = st.forecast_with_shapley(_request(body))
    p_phi, p_base, p_full = batched_beta_shapley(st.predict, inputs.x, st._means(), list(st.groups.values()))
    assert phi.shape == p_phi.shape == (2, len(st.groups), len(st.bundle.meta.benchmarks))
    assert np.max(np.abs(phi - p_phi)) <= 1e-6
    assert np.max(np.abs(base - p_base)) <= 1e-6
    assert np.max(np.abs(full - p_full)) <= 1e-6
    assert np.max(np.abs(full - out["beta"])) <= 1e-6  # the explained value is the forecast
    np.testing.assert_allclose(phi.sum(axis=1), full - base, atol=1e-9)  # efficiency
    assert np.abs(p_phi).max() > 1e-4  # groups do move the beta: the comparison is not 0 vs 0


def _numbers(x) -> list[float]:
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in _numbers(x[k])]
    if isinstance(x, list):
        return [v for i in x for v in _numbers(i)]
    return [x] if isinstance(x, float) else []


def _shape(x):
    """The response with every float replaced by None: names, order and text must match exactly."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items() if k not in ("request_id", "text")}
    if isinstance(x, list):
        return [_shape(v) for v in x]
    return None if isinstance(x, float) else x


def test_forecast_and_explain_answers_and_records_equal_the_plain_paths(real):
    from adaptive_beta.serving.endpoints.explain import explain
    from adaptive_beta.serving.endpoints.forecast import forecast

    states, body = real
    got = {}
    for name, st in states.items():
        f = forecast(st, _request(body), "t")
        e = explain(st, _request(body, "ExplainRequest"), "t")
        records = {r["endpoint"]: r for r in st.audit.query(limit=5)}
        got[name] = (f, e, records)
    (f1, e1, r1), (f2, e2, r2) = got["fast"], got["plain"]
    for a, b in ((f1, f2), (e1, e2)):
        assert _shape(a) == _shape(b)  # same groups in the same order, same features and methods
        diff = np.abs(np.array(_numbers(a)) - np.array(_numbers(b)))
        assert diff.size > 20 and diff.max() <= 1e-6
    betas = [[f["betas"] for f in r["forecasts"]] for r in (f1, f2)]
    assert betas[0] == betas[1]  # the forecasts themselves: the same ORT call, bit for bit
    # per-feature detail inside the top groups: the plain graph's calls on both paths
    feats = [
        [g["features"] for x in e["explanations"] for b in x["benchmarks"].values() for g in b["groups"]]
        for e in (e1, e2)
    ]
    assert sum(len(f) for f in feats[0]) >= 2
    for a, b in zip(feats[0], feats[1], strict=True):
        assert [d["feature"] for d in a] == [d["feature"] for d in b]
        assert np.allclose([d["contribution"] for d in a], [d["contribution"] for d in b], atol=1e-6, rtol=0)
    for ep in ("/forecast", "/explain"):
        assert r1[ep]["input_sha256"] == r2[ep]["input_sha256"]


def test_a_graph_without_a_gru_keeps_the_plain_path(inproc_state, tiny_body):
    from adaptive_beta.serving.schemas import ForecastRequest

    x = inproc_state.inputs(ForecastRequest.model_validate(tiny_body)).x
    assert inproc_state.gru_coalitions() is None  # the tiny bundle's hand-made graph has no GRU
    phi, base, full = inproc_state.shapley(x)
    p_phi, p_base, p_full = batched_beta_shapley(
        inproc_state.predict, x, inproc_state._means(), list(inproc_state.groups.values())
    )
    np.testing.assert_array_equal(phi, p_phi)
    np.testing.assert_array_equal(full, p_full)
    assert np.abs(p_phi).max() > 1e-4
