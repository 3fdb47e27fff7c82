"""`abeta backtest` end to end on a small simulated market: files, charts, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from adaptive_beta.cli.backtest import backtest


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    out = tmp_path_factory.mktemp("sim") / "sim"
    write_simulation(simulate(SimConfig(seed=3, n_assets=5, days=420, freq="1d")), out)
    return out


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("backtest")(backtest)
    app.command("noop")(lambda: None)
    return app


def test_backtest_writes_table_files_and_charts(sim_dir, tmp_path):
    out = tmp_path / "bt"
    res = CliRunner().invoke(
        _app(),
        ["backtest", "--data", str(sim_dir), "--out", str(out), "--estimators", "rolling_ols_30d,ewma_hl30d"],
    )
    assert res.exit_code == 0, res.output
    assert "ratios vs the rolling-OLS 30d overlay" in res.output
    summary = json.loads((out / "summary.json").read_text())
    names = {r["estimator"] for r in summary["rows"]}
    assert names == {"unhedged", "rolling_ols_30d", "ewma_hl30d", "truth_oracle"}
    full = {r["estimator"]: r for r in summary["rows"] if r["period"] == "full"}
    # the overlay takes the book's BTC beta from > 1 to near the 0 target
    assert full["unhedged"]["beta_BTCUSDT"] > 0.8
    assert abs(full["rolling_ols_30d"]["beta_BTCUSDT"]) < 0.25
    assert full["rolling_ols_30d"]["vol_ann"] < full["unhedged"]["vol_ann"]
    assert full["rolling_ols_30d"]["fees"] > 0
    for f in ("summary.csv", "returns.csv", "cum_pnl.png", "rolling_beta.png"):
        assert (out / f).stat().st_size > 100


def test_bad_portfolio_symbol_exits_2_naming_it(sim_dir, tmp_path):
    book = tmp_path / "book.toml"
    book.write_text("[positions]\nSOLUSDT = 0.5\nNOPEUSDT = 0.5\n")
    res = CliRunner().invoke(_app(), ["backtest", "--data", str(sim_dir), "--portfolio", str(book)])
    assert res.exit_code == 2
    assert "NOPEUSDT" in res.output


def test_no_dead_walk_forward_flag(sim_dir):
    """The flag that only said "not supported" is gone: help does not offer it, click refuses it."""
    assert "--walk-forward" not in CliRunner().invoke(_app(), ["backtest", "--help"]).output
    res = CliRunner().invoke(_app(), ["backtest", "--data", str(sim_dir), "--walk-forward"])
    assert res.exit_code == 2
    assert "No such option: --walk-forward" in res.output


def test_bad_rebalance_option_exits_2(sim_dir):
    res = CliRunner().invoke(_app(), ["backtest", "--data", str(sim_dir), "--rebalance", "weekly"])
    assert res.exit_code == 2
    assert "weekly" in res.output


def test_unknown_estimator_exits_2_naming_it_and_the_known_ones(sim_dir):
    res = CliRunner().invoke(
        _app(), ["backtest", "--data", str(sim_dir), "--estimators", "rolling_ols_30d,nope_hl9d"]
    )
    assert res.exit_code == 2
    assert "--estimators" in res.output and "nope_hl9d" in res.output and "ewma_hl30d" in res.output


def test_model_and_forecasts_together_exit_2(sim_dir, tmp_path):
    res = CliRunner().invoke(
        _app(),
        ["backtest", "--data", str(sim_dir), "--estimators", "rolling_ols_30d"]
        + ["--model", str(tmp_path / "bundle"), "--forecasts", str(tmp_path / "p.parquet")],
    )
    assert res.exit_code == 2
    assert "--model and --forecasts" in res.output


def test_hedge_not_in_the_data_exits_2_naming_it(sim_dir):
    res = CliRunner().invoke(_app(), ["backtest", "--data", str(sim_dir), "--hedge", "NOPEUSDT"])
    assert res.exit_code == 2
    assert "NOPEUSDT" in res.output


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A small GRU bundle fitted on 2021 of a simulated market (as in tests/models/test_predictor.py)."""
    import torch

    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.meta import bundle_inputs
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.features.compute import compute_features
    from adaptive_beta.models.features.spec import FeatureSpec
    from adaptive_beta.models.features.targets import forward_betas, regime_labels
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation
    from adaptive_beta.training.export import export_bundle
    from adaptive_beta.training.fit import fit_model
    from adaptive_beta.training.model_config import ModelConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("model")
    sim = write_simulation(simulate(SimConfig(n_assets=4, days=760, seed=1)), root / "sim")
    panel = load_dataset(sim)
    spec = FeatureSpec()
    fit = fit_model(
        compute_features(panel, spec),
        forward_betas(panel, "30d"),
        regime_labels(panel, "7d"),
        ("2021-01-01", "2021-10-31"),
        ("2021-11-15", "2022-01-31"),
        ModelConfig(lookback="16d", max_steps=8, epochs=2, hidden=16, batch_size=64),
        progress=False,
        freq=panel.freq,
        timestamps=panel.index,
    )
    path = export_bundle(fit, spec, bundle_inputs(panel), root / "bundle", "# card")
    return sim, panel, load_bundle(path)


def test_bundle_forecasts_equal_serving_on_truncated_history_and_only_after_training(tiny_bundle):
    from adaptive_beta.models.bundle.inference import make_inputs
    from adaptive_beta.models.bundle.predictor import Predictor
    from adaptive_beta.models.portfolio.forecasts import bundle_forecasts

    _, panel, bundle = tiny_bundle
    after = bundle.meta.training_end()
    assert after == pd.Timestamp("2021-10-31", tz="UTC")
    rows = np.arange(0, len(panel.index), 7)
    fc = bundle_forecasts(panel, bundle, rows, out_of_sample_after=after)
    b = bundle.benchmarks[0]
    got = fc[b].dropna(how="all")
    assert len(got) > 10 and got.index.min() > after
    assert set(panel.index.get_indexer(got.index)) <= set(rows)
    # causal: the forecast at row t is what the service would say with data up to t only
    t = got.index[len(got) // 2]
    inp = make_inputs(panel.slice(end=t), bundle)
    served = Predictor(bundle).predict(inp.x)["beta"][:, 0]
    np.testing.assert_allclose(got.loc[t, inp.symbols].to_numpy(), served, rtol=1e-5, atol=1e-6)


def test_backtest_with_model_bundle_runs_beside_baselines(tiny_bundle, tmp_path):
    sim, _, bundle = tiny_bundle
    res = CliRunner().invoke(
        _app(),
        ["backtest", "--data", str(sim), "--model", str(bundle.path), "--estimators", "rolling_ols_30d",
         "--out", str(tmp_path / "bt")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "bt" / "summary.json").read_text())["rows"]
    full = {r["estimator"]: r for r in rows if r["period"] == "full"}
    assert set(full) == {"unhedged", "rolling_ols_30d", "truth_oracle", "model"}
    assert abs(full["model"]["beta_BTCUSDT"]) < abs(full["unhedged"]["beta_BTCUSDT"])
    assert "model /" in res.output or "roll_mad_BTCUSDT_ratio" in res.output


def test_mlflow_flag_logs_table_and_charts(sim_dir):
    import mlflow

    from adaptive_beta.models.bundle.resolve import default_tracking_uri

    res = CliRunner().invoke(
        _app(), ["backtest", "--data", str(sim_dir), "--estimators", "rolling_ols_30d", "--mlflow"]
    )
    assert res.exit_code == 0, res.output
    mlflow.set_tracking_uri(default_tracking_uri())
    runs = mlflow.search_runs(experiment_names=["adaptive-beta"])
    assert len(runs) == 1
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.run_id[0], "backtest")}
    assert arts == {
        f"backtest/{f}" for f in ("summary.json", "summary.csv", "cum_pnl.png", "rolling_beta.png")
    }
    assert runs["metrics.bt_rolling_ols_30d_vol_ann"][0] > 0


def test_real_8h_perps_overlay_neutralises_btc_beta_in_every_episode(real_data_dir, tmp_path):
    from pathlib import Path

    manifest = Path(__file__).resolve().parents[2] / "docs" / "datasets" / "binance-perps-8h.toml"
    res = CliRunner().invoke(
        _app(),
        [
            "backtest",
            "--data",
            str(manifest),
            "--estimators",
            "rolling_ols_30d,ewma_hl30d",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    t = {(r["estimator"], r["period"]): r for r in rows}
    assert {p for _, p in t} == {"full", "bull_2021", "luna_2022", "ftx_2022"}
    assert t[("unhedged", "full")]["beta_BTCUSDT"] > 1.0
    for period in ("full", "bull_2021", "luna_2022", "ftx_2022"):
        hedged = t[("rolling_ols_30d", period)]
        assert abs(hedged["beta_BTCUSDT"]) < 0.15
        assert hedged["vol_ann"] < 0.6 * t[("unhedged", period)]["vol_ann"]
    assert t[("rolling_ols_30d", "full")]["funding"] < 0  # the short BTC/ETH overlay receives funding
