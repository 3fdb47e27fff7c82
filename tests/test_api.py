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
    assert {"train", "backtest", "LocalService", "read_audit", "verify_audit", "forward_betas"} <= set(
        dir(ab)
    )


def test_every_public_name_resolves_without_loading_torch():
    """Resolving all of `ab.__all__` loads the defining modules, whose imports are lazy: only
    calling `ab.train` may load torch."""
    code = (
        "import sys, adaptive_beta as ab; objs = [getattr(ab, n) for n in ab.__all__]; "
        "print(len(objs), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(len(ab.__all__)), "False"]
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


def test_forward_betas_true_forward_betas_and_folds_equal_the_deep_modules(sim):
    from adaptive_beta.models.features.targets import forward_betas, true_forward_betas
    from adaptive_beta.training.splits import WalkForwardConfig, make_folds

    panel = ab.load_dataset(sim)
    pd.testing.assert_frame_equal(ab.forward_betas(sim, "30d"), forward_betas(panel, "30d"))
    true = ab.true_forward_betas(panel, "30d")
    pd.testing.assert_frame_equal(true, true_forward_betas(panel, "30d"))
    assert true["BTCUSDT"].notna().sum() > 1000
    splits = {"train_min": "300d", "val": "60d", "test": "120d"}
    folds = ab.walk_forward_folds(panel, **splits)
    ref = make_folds(panel.index, WalkForwardConfig(**splits))
    assert list(folds["fold"]) == [f.name for f in ref] and len(ref) >= 2
    assert list(folds["test_start"]) == [f.test_start for f in ref]
    assert list(folds["train_end"]) == [f.train_end for f in ref]


def test_features_are_the_feature_table_with_groups(sim):
    from adaptive_beta.models.features.compute import compute_features

    panel = ab.load_dataset(sim)
    table = ab.features(panel)
    ref = compute_features(panel)
    pd.testing.assert_frame_equal(table.frame, ref.frame)
    assert table.groups == ref.groups and set(table.groups) == set(table.frame.columns)
    assert set(table.base_columns) == {"BTCUSDT", "CRYPTO_EW"}


def test_backtest_equals_run_backtest_and_prints_the_cli_tables(sim):
    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.models.portfolio.backtest import BacktestConfig, run_backtest
    from adaptive_beta.models.portfolio.book import default_hedges, default_portfolio
    from adaptive_beta.models.portfolio.metrics import episodes_for, rolling_beta, summary_table
    from adaptive_beta.models.portfolio.report_text import format_tables

    panel = ab.load_dataset(sim)
    names = ["rolling_ols_30d", "welch_hl60d"]
    fc = ab.baseline_forecasts(panel, names)
    every = baseline_forecasts(panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq)
    assert list(fc) == names
    pd.testing.assert_frame_equal(fc["welch_hl60d"]["BTCUSDT"], every["welch_hl60d"]["BTCUSDT"])
    with pytest.raises(ValueError, match="unknown baseline"):
        ab.baseline_forecasts(panel, ["rolling_ols_31d"])

    report = ab.backtest(panel, fc, start="2021-06-01")
    weights = default_portfolio(panel.symbols).weights()
    cfg = BacktestConfig(benchmarks=("BTCUSDT",), start="2021-06-01")
    hedges = default_hedges(panel.symbols)
    ref = run_backtest(
        panel.returns(), panel.benchmark_returns(), panel.funding_rate, weights, fc, panel.freq, cfg, hedges
    )
    table = summary_table(ref, panel.freq, episodes_for(panel.meta, panel.index))
    pd.testing.assert_frame_equal(report.table, table)
    assert report.weights == weights and report.hedges == hedges == ["BTCUSDT", "ETHUSDT"]
    assert set(report.paths) == {"unhedged", *names}
    pd.testing.assert_frame_equal(report.paths["welch_hl60d"], ref.paths["welch_hl60d"].frame)
    assert report.text() == format_tables(table, report.ratios, ["BTCUSDT"])
    assert report.ratios.loc["rolling_ols_30d", "vol_ann_ratio"] == pytest.approx(1.0)
    # the hedged book's beta to BTC is far closer to 0 than the unhedged one's
    full = report.table.xs("full", level="period")["beta_BTCUSDT"]
    assert full["unhedged"] > 0.5 and abs(full["welch_hl60d"]) < 0.5 * full["unhedged"]
    rolling = report.rolling_beta()
    assert list(rolling.columns) == names
    expected = rolling_beta(ref.paths["welch_hl60d"].frame["ret_gross"], ref.bench_returns["BTCUSDT"], 30)
    pd.testing.assert_series_equal(rolling["welch_hl60d"], expected, check_names=False)
    assert ab.episodes(panel) == episodes_for(panel.meta, panel.index)


def test_predict_and_explain_keep_only_the_symbols_asked_for(tiny):
    folder, body = tiny
    model = ab.load_model(folder)
    frame = _frame(body)
    full = model.predict(frame)
    one = model.predict(frame, symbols=["SOLUSDT"])
    assert list(one["symbol"]) == ["SOLUSDT"]
    pd.testing.assert_frame_equal(one, full[full["symbol"] == "SOLUSDT"].reset_index(drop=True))
    exp = model.explain(frame, symbols=["SOLUSDT", "ETHUSDT"])
    assert set(exp["symbol"]) == {"SOLUSDT", "ETHUSDT"}
    n_groups = exp["group"].nunique()
    assert len(exp) == 2 * len(model.meta.benchmarks) * n_groups
    for (_, _), rows in exp.groupby(["symbol", "benchmark"]):
        assert rows["contribution"].sum() == pytest.approx(
            rows["beta"].iloc[0] - rows["baseline"].iloc[0], abs=1e-6
        )


def test_local_service_logs_every_call_and_the_audit_functions_read_verify_export_report(tiny, tmp_path):
    import sqlite3

    folder, body = tiny
    db = tmp_path / "audit" / "audit.db"
    model = ab.load_model(folder)
    expected = model.predict(_frame(body)).set_index("symbol")
    with ab.LocalService(folder, db) as service:
        assert service.required["series"] == ["BTCUSDT", "CRYPTO_EW", "SPY"]
        answers = [service.forecast(body, caller=f"desk-{k}") for k in range(3)]
        explained = service.explain(body, caller="risk", top_groups=2)
    got = {f["symbol"]: f for f in answers[0]["forecasts"]}
    for sym in expected.index:
        for b in model.meta.benchmarks:
            assert got[sym]["betas"][b]["beta"] == pytest.approx(expected.at[sym, b], abs=1e-6)
    assert "request_id" in explained

    assert ab.count_audit(db) == 4 and ab.count_audit(db, endpoint="/forecast") == 3
    records = ab.read_audit(db, limit=10)
    assert list(records["seq"]) == [4, 3, 2, 1]  # newest first
    assert list(records["caller"]) == ["risk", "desk-2", "desk-1", "desk-0"]
    assert ab.read_audit(db, caller="desk-1")["seq"].tolist() == [2]
    ok = ab.verify_audit(db)
    assert ok.ok and ok.n_records == 4 and ok.head_hash == records["hash"].iloc[0]

    assert ab.export_audit(db, tmp_path / "out.parquet") == 4
    assert pd.read_parquet(tmp_path / "out.parquet")["seq"].tolist() == [1, 2, 3, 4]
    assert ab.export_audit(db, tmp_path / "out.csv", fmt="csv") == 4

    report = ab.audit_report(db, out=tmp_path / "report.html")
    assert report.n_records == 4 and report.verify.ok and report.path.stat().st_size > 1000
    assert sum(report.counts.values()) == 4

    con = sqlite3.connect(db, isolation_level=None)
    con.execute("DROP TRIGGER audit_records_no_update")
    con.execute("UPDATE audit_records SET caller = 'desk-z' WHERE seq = 2")
    con.close()
    bad = ab.verify_audit(db)
    assert not bad.ok and bad.first_bad_seq == 2 and bad.kind == "modified"


def test_forecast_history_is_out_of_sample_only_and_equals_bundle_forecasts(tiny):
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.data.schema import build_panel
    from adaptive_beta.models.portfolio.forecasts import bundle_forecasts
    from tests.serving.conftest import published_spy, synthetic_market

    folder, _ = tiny
    assets, spy = synthetic_market()
    panel = build_panel(assets, {"SPY": published_spy(spy)}, freq="1d")
    model = ab.load_model(folder)
    got = model.forecast_history(panel, start="2025-02-20")
    end = model.meta.training_end()
    assert end == pd.Timestamp("2025-02-15", tz="UTC")
    rows = np.nonzero(panel.index >= pd.Timestamp("2025-02-20", tz="UTC"))[0]
    ref = bundle_forecasts(panel, load_bundle(folder), rows, out_of_sample_after=end)
    assert set(got) == set(model.meta.benchmarks)
    for b in got:
        pd.testing.assert_frame_equal(got[b], ref[b])
    btc = got["BTCUSDT"]
    assert btc.loc[:"2025-02-19"].isna().all().all()  # before `start` and inside training: none
    assert btc.loc["2025-02-20":, "SOLUSDT"].notna().sum() == len(rows)
    every = model.forecast_history(panel)["BTCUSDT"]
    assert every.loc[:"2025-02-15"].isna().all().all() and every.loc["2025-02-16":, "SOLUSDT"].notna().all()


@pytest.fixture(scope="module")
def sim_spy(tmp_path_factory):
    """A simulated dataset whose SPX factor is also filed as SPY: the tiny bundle's input series."""
    import shutil

    root = tmp_path_factory.mktemp("simspy")
    folder = ab.simulate(root / "sim", seed=5, n_assets=4, days=400)
    shutil.copy(folder / "factors" / "SPX.csv", folder / "factors" / "SPY.csv")
    return folder


def test_local_service_builds_each_request_from_a_dataset_as_a_client_does(tiny, sim_spy, tmp_path):
    from adaptive_beta.models.bundle.panel_frame import panel_frame_from_panel
    from adaptive_beta.serving.client import raw_factor_series

    folder, _ = tiny
    panel = ab.load_dataset(sim_spy)
    end = panel.index[-3]
    db = tmp_path / "audit.db"
    with ab.LocalService(folder, db) as service:
        answer = service.forecast(panel, ["ETHUSDT"], end=end, caller="desk-a")
        required = service.required
    [fc] = answer["forecasts"]
    assert fc["symbol"] == "ETHUSDT" and pd.Timestamp(fc["as_of"]) == end
    model = ab.load_model(folder)
    frame = panel_frame_from_panel(panel, required, ["ETHUSDT"], raw_factor_series(sim_spy), end)
    expected = model.predict(frame).iloc[0]
    for b in model.meta.benchmarks:
        assert fc["betas"][b]["beta"] == pytest.approx(expected[b], abs=1e-6)
    assert ab.read_audit(db)["symbols"].tolist() == [["ETHUSDT"]]


def test_model_evaluate_is_abeta_evaluate_model(tiny, sim_spy):
    from adaptive_beta.training.evaluate_model import evaluate_model

    folder, _ = tiny
    card = ab.load_model(folder).evaluate(sim_spy, n_boot=50)
    ref = evaluate_model(str(folder), str(sim_spy), "30d", None, 50, progress=False)
    assert card.records == ref.records
    model_rows = [r for r in card.records if r["kind"] == "model" and r["metric"] == "rmse"]
    assert model_rows and {r["split"] for r in card.records} == {"oos", "pooled"}  # one block, and pooled
    assert all(0 < r["value"] < 5 for r in model_rows)
