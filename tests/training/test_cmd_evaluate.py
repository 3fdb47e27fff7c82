"""`abeta evaluate baselines`: exit codes, JSON output and field-named config errors."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.evaluate import load_eval_config
from adaptive_beta.cli.main import app
from adaptive_beta.training.scorecard import RECORD_KEYS

runner = CliRunner()


def _have(module: str, attr: str | None = None) -> bool:
    if importlib.util.find_spec(module) is None:
        return False
    return attr is None or hasattr(importlib.import_module(module), attr)


def test_bad_horizon_exits_2_naming_the_option(tmp_path):
    res = runner.invoke(
        app,
        [
            "evaluate",
            "baselines",
            "--data",
            str(tmp_path),
            "--horizon",
            "soon",
            "--out",
            str(tmp_path / "o.json"),
        ],
    )
    assert res.exit_code == 2
    assert "--horizon" in res.output and "invalid duration 'soon'" in res.output
    assert not (tmp_path / "o.json").exists()


def test_bad_config_exits_2_naming_the_field(tmp_path):
    cfg = tmp_path / "eval.toml"
    cfg.write_text('horizon = "30d"\n[splits]\nembargo = "5d"\n')
    res = runner.invoke(
        app,
        [
            "evaluate",
            "baselines",
            "--data",
            str(tmp_path),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "o.json"),
        ],
    )
    assert res.exit_code == 2 and "embargo" in res.output
    cfg.write_text('[splits]\ntset = "90d"\n')
    res = runner.invoke(
        app,
        [
            "evaluate",
            "baselines",
            "--data",
            str(tmp_path),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "o.json"),
        ],
    )
    assert res.exit_code == 2 and "splits.tset" in res.output


def test_config_file_is_read_and_the_horizon_option_overrides_it(tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("horizon: 14d\nn_boot: 200\nsplits:\n  mode: rolling\n  test: 60d\n")
    c = load_eval_config(cfg)
    assert (c.horizon, c.n_boot, c.splits.mode, c.splits.test, c.splits.horizon) == (
        "14d",
        200,
        "rolling",
        "60d",
        "14d",
    )
    assert load_eval_config(cfg, "7d").splits.horizon == "7d"


@pytest.fixture
def stand_ins(monkeypatch):
    """Minimal stand-ins for the loader/targets/estimators (used only where those are not under test)."""
    rng = np.random.default_rng(0)
    n, syms = 800, ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    idx = pd.date_range("2021-01-01", periods=n, freq="1D", tz="UTC")
    long_idx = pd.MultiIndex.from_product([idx, syms], names=["timestamp", "symbol"])
    beta = pd.DataFrame(
        {"BTCUSDT": 1.2 + rng.normal(0, 0.1, len(long_idx)), "CRYPTO_EW": 1.0}, index=long_idx
    )
    beta.iloc[-30 * 3 :] = np.nan

    class P:
        index = idx
        freq = pd.Timedelta("1D")
        freq_label = "1d"
        meta: dict = {}

        def returns(self):
            return None

        benchmark_returns = factor_returns = returns

        def describe(self):
            return "stand-in panel"

        def fingerprint(self):
            return "0" * 64

    def baseline_forecasts(*a, **k):
        wide = {b: beta[b].unstack() for b in beta}
        return {
            "rolling_ols_60d": {b: f + rng.normal(0, 0.2, f.shape) for b, f in wide.items()},
            "ewma_30d": {b: f + rng.normal(0, 0.1, f.shape) for b, f in wide.items()},
        }

    moments = pd.DataFrame({"var_b": 1e-4, "cov": beta["BTCUSDT"] * 1e-4, "var_i": 3e-4}, index=long_idx)
    fakes = {
        "adaptive_beta.models.data.loaders": {"load_dataset": lambda path: P()},
        "adaptive_beta.models.features.targets": {
            "forward_betas": lambda panel, horizon: beta,
            "forward_moments": lambda panel, horizon: {"BTCUSDT": moments},
            "true_forward_betas": lambda panel, horizon: None,
        },
    }
    for name, attrs in fakes.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    import adaptive_beta.models.estimators.baselines

    monkeypatch.setattr(
        adaptive_beta.models.estimators.baselines, "baseline_forecasts", baseline_forecasts, raising=False
    )


def test_cli_prints_the_table_and_writes_json_records(tmp_path, stand_ins):
    out = tmp_path / "res" / "results.json"
    res = runner.invoke(app, ["evaluate", "baselines", "--data", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "== BTCUSDT (pooled); reference for mse_ratio/dm_p: rolling_ols_60d" in res.output
    records = json.loads(out.read_text())
    assert records and all(tuple(r) == RECORD_KEYS for r in records)
    rmse = {
        r["estimator"]: r["value"]
        for r in records
        if r["metric"] == "rmse" and r["split"] == "pooled" and r["benchmark"] == "BTCUSDT"
    }
    assert rmse["ewma_30d"] == pytest.approx(0.1, rel=0.1) and rmse["rolling_ols_60d"] == pytest.approx(
        0.2, rel=0.1
    )


def test_cli_data_too_short_exits_2(tmp_path, stand_ins):
    cfg = tmp_path / "eval.toml"
    cfg.write_text('[splits]\ntrain_min = "900d"\n')
    res = runner.invoke(
        app,
        [
            "evaluate",
            "baselines",
            "--data",
            str(tmp_path),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "o.json"),
        ],
    )
    assert res.exit_code == 2 and "too short" in res.output


@pytest.mark.skipif(
    not (
        _have("adaptive_beta.models.data.loaders")
        and _have("adaptive_beta.models.features.targets")
        and _have("adaptive_beta.models.estimators.baselines", "baseline_forecasts")
    ),
    reason="needs adaptive_beta.models.data.loaders, adaptive_beta.models.features.targets and adaptive_beta.models.estimators.baselines.baseline_forecasts (not merged yet)",
)
def test_cli_end_to_end_on_a_small_simulated_folder(tmp_path):
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    data = write_simulation(simulate(SimConfig(n_assets=4, days=700, seed=3)), tmp_path / "sim")
    cfg = tmp_path / "eval.toml"
    cfg.write_text('n_boot = 100\n[splits]\ntrain_min = "240d"\nval = "60d"\ntest = "120d"\n')
    out = tmp_path / "results.json"
    res = runner.invoke(
        app, ["evaluate", "baselines", "--data", str(data), "--config", str(cfg), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    records = json.loads(out.read_text())
    assert {r["benchmark"] for r in records} >= {"BTCUSDT", "CRYPTO_EW"}
    assert {"rmse", "rmse_true", "hedge_error", "dm_pvalue", "mse_ratio"} <= {r["metric"] for r in records}
    btc_pairs = [
        r for r in records if r["benchmark"] == "BTCUSDT" and r["metric"] == "n" and r["split"] == "pooled"
    ]
    assert btc_pairs and all(r["value"] % 3 == 0 for r in btc_pairs)  # BTC itself is never scored
