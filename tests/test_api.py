"""The public API (`import adaptive_beta as ab`) gives the deep modules' numbers (issue 13 item 2).

Fast: a small simulated market and the service tests' hand-written ONNX bundle (no training);
the registered-model path (`ab.load_model("models:/...")`) is tested on a trained bundle in
tests/training/test_mlflow_model.py.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import adaptive_beta as ab
from tests.serving.conftest import build_tiny_bundle, request_body


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return ab.simulate(root / "sim", seed=3, n_assets=4, days=760)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    facts = build_tiny_bundle(root / "bundle")
    body = request_body(facts["assets"], facts["spy"], facts["composite"])
    return root / "bundle", body


def test_import_is_lazy_and_lists_the_api():
    code = "import adaptive_beta, sys; print([m for m in ('pandas', 'mlflow', 'torch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {"load_dataset", "simulate", "load_model", "classical_beta", "evaluate_baselines"} <= set(dir(ab))
    with pytest.raises(AttributeError):
        ab.no_such_function  # noqa: B018


def test_simulate_then_load_dataset_equals_the_deep_modules(sim, tmp_path):
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    panel = ab.load_dataset(sim)
    ref = load_dataset(write_simulation(simulate(SimConfig(seed=3, n_assets=4, days=760)), tmp_path / "ref"))
    assert panel.close.shape == (760, 4)
    pd.testing.assert_frame_equal(panel.close, ref.close)
    pd.testing.assert_frame_equal(panel.benchmarks, ref.benchmarks)
    assert panel.fingerprint() == ref.fingerprint()


def test_classical_beta_ols_equals_statsmodels_for_a_series_and_a_frame(sim):
    panel = ab.load_dataset(sim)
    r, x = panel.returns(), panel.benchmark_returns()["BTCUSDT"]
    sym = "ETHUSDT"
    res = ab.classical_beta(r[sym], x, method="ols")
    ok = r[sym].notna() & x.notna()
    fit = sm.OLS(r.loc[ok, sym].to_numpy(), sm.add_constant(x[ok].to_numpy())).fit()
    assert res.beta[sym] == pytest.approx(fit.params[1], abs=1e-12)
    assert res.bse.at[sym, "beta"] == pytest.approx(fit.bse[1], abs=1e-12)
    assert res.nobs[sym] == int(ok.sum()) == 759
    frame = ab.classical_beta(r, x.to_frame(), method="ols")
    assert frame.params.loc[sym, "beta"] == pytest.approx(fit.params[1], abs=1e-12)
    assert set(frame.summary().columns) == {"beta", "se", "t", "nobs"}
    assert frame.summary().at[sym, "t"] == pytest.approx(fit.tvalues[1], rel=1e-9)


def test_classical_beta_rolling_ols_window_in_days_equals_statsmodels_on_the_last_window(sim):
    from adaptive_beta.models.estimators.rolling import rolling_ols_beta_se

    panel = ab.load_dataset(sim)
    r, x = panel.returns(), panel.benchmark_returns()["BTCUSDT"]
    res = ab.classical_beta(r, x, method="rolling_ols", window="90d")
    assert res.window == 90
    beta, se = rolling_ols_beta_se(r, x, 90)
    pd.testing.assert_frame_equal(res.params, beta)
    pd.testing.assert_frame_equal(res.bse, se)
    last = slice(len(r) - 90, len(r))
    fit = sm.OLS(r["SOLUSDT"].iloc[last].to_numpy(), sm.add_constant(x.iloc[last].to_numpy())).fit()
    assert res.summary().at["SOLUSDT", "beta"] == pytest.approx(fit.params[1], abs=1e-10)
    assert res.summary().at["SOLUSDT", "se"] == pytest.approx(fit.bse[1], abs=1e-10)
    series = ab.classical_beta(r["SOLUSDT"], x, method="rolling_ols", window=90)
    pd.testing.assert_series_equal(series.params["SOLUSDT"], beta["SOLUSDT"])


def test_classical_beta_ewma_welch_kalman_equal_the_estimators_and_bad_input_is_refused(sim):
    from adaptive_beta.models.estimators.ewma import ewma_beta, welch_beta
    from adaptive_beta.models.estimators.kalman import kalman_beta

    panel = ab.load_dataset(sim)
    r, x = panel.returns(), panel.benchmark_returns()["BTCUSDT"]
    pd.testing.assert_frame_equal(ab.classical_beta(r, x, "ewma", 60).params, ewma_beta(r, x, 60))
    pd.testing.assert_frame_equal(ab.classical_beta(r, x, "welch", "60d").params, welch_beta(r, x, 60))
    kal = ab.classical_beta(r, x, "kalman")
    pd.testing.assert_frame_equal(kal.params, kalman_beta(r, x))
    assert kal.bse is None and np.isnan(kal.summary()["se"]).all()
    with pytest.raises(ValueError, match="not one of"):
        ab.classical_beta(r, x, method="capm")
    with pytest.raises(ValueError, match="one series"):
        ab.classical_beta(r, panel.benchmark_returns(), method="ols")


def test_evaluate_baselines_equals_the_scorecard_module(sim):
    from adaptive_beta.training.scorecard import EvalConfig, evaluate_baselines

    splits = {"train_min": "300d", "val": "60d", "test": "120d", "max_folds": 1}
    card = ab.evaluate_baselines(sim, horizon="30d", n_boot=20, splits=splits)
    ref = evaluate_baselines(
        ab.load_dataset(sim), EvalConfig(horizon="30d", n_boot=20, splits=splits), progress=False
    )
    assert card.records == ref.records
    rmse = card.value("rolling_ols_90d", "BTCUSDT", "rmse")
    assert rmse is not None and 0 < rmse < 1
    assert card.frame().at[("BTCUSDT", "rolling_ols_90d"), "rmse"] == rmse


def test_load_model_predict_and_explain_equal_the_service_numbers(tiny):
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.predictor import Predictor
    from adaptive_beta.models.bundle.shapley import bundle_groups
    from adaptive_beta.serving.app_state import AppState
    from adaptive_beta.serving.schemas import ForecastRequest

    folder, body = tiny
    model = ab.load_model(folder)
    frame = _frame(body)
    got = model.predict(frame).set_index("symbol")
    bundle = load_bundle(folder)
    groups = bundle_groups(bundle.meta)
    state = AppState(bundle, Predictor(bundle), None, "", "", None, groups)
    symbols = ["ETHUSDT", "SOLUSDT", "DOGEUSDT"]  # BTCUSDT is the frame's BTC benchmark series
    inputs, out = state.forecast_core(ForecastRequest.model_validate(body), symbols)
    assert list(got.index) == inputs.symbols == symbols
    for k, b in enumerate(bundle.benchmarks):
        assert np.abs(got[b].to_numpy() - out["beta"][:, k]).max() <= 1e-7
        assert np.abs(got[f"{b}_hi"].to_numpy() - out["beta_hi"][:, k]).max() <= 1e-7
    phi, base, full = state.shapley(inputs.x)
    exp = model.explain(frame)
    assert len(exp) == 3 * len(bundle.benchmarks) * len(state.groups)
    for i, sym in enumerate(inputs.symbols):
        for k, b in enumerate(bundle.benchmarks):
            rows = exp[(exp["symbol"] == sym) & (exp["benchmark"] == b)]
            assert np.allclose(rows["contribution"].to_numpy(), phi[i, :, k], atol=1e-9)
            assert rows["contribution"].sum() == pytest.approx(full[i, k] - base[k], abs=1e-6)
            assert rows["beta"].iloc[0] == pytest.approx(got.at[sym, b], abs=1e-6)


def _frame(body: dict) -> pd.DataFrame:
    """The panel frame holding the same observations as a /forecast body (BTCUSDT as a series)."""
    rows = []
    for a in body["assets"]:
        rows += [{"symbol": a["symbol"], **h} for h in a["history"]]
    for name, pts in body["series"].items():
        rows += [{"symbol": name, **p} for p in pts]
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    return frame


def test_docs_api_md_is_generated_from_the_docstrings():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "scripts/api_docs.py", "--check"], cwd=root, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    text = (root / "docs" / "api.md").read_text()
    for name in ("load_dataset", "simulate", "load_model", "classical_beta", "evaluate_baselines"):
        assert f"## `ab.{name}(" in text
    assert "| `timestamp` |" in text  # the panel frame's columns


def test_panel_frame_from_a_panel_has_the_required_history_and_no_asset_twice(sim):
    from adaptive_beta.models.bundle.panel_frame import panel_frame_from_panel
    from adaptive_beta.models.data.schema import DataError

    panel = ab.load_dataset(sim)
    required = {"min_periods": 50, "series": ["BTCUSDT", "CRYPTO_EW"]}
    frame = panel_frame_from_panel(panel, required)
    counts = frame.groupby("symbol").size()
    assert counts.to_dict() == {"BTCUSDT": 50, "CRYPTO_EW": 50, "ETHUSDT": 50, "SOLUSDT": 50, "BNBUSDT": 50}
    assert frame["timestamp"].max() == panel.index[-1].tz_localize(None) and frame["timestamp"].dt.tz is None
    with pytest.raises(DataError, match="input series of the model"):
        panel_frame_from_panel(panel, required, symbols=["ETHUSDT", "BTCUSDT"])
