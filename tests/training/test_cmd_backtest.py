"""`abeta backtest` end to end on a small simulated market: files, charts, exit codes."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from training.cmd_backtest import backtest


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    from models.sim_config import SimConfig
    from models.sim_write import write_simulation
    from models.simulator import simulate

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


def test_walk_forward_flag_is_refused_with_exit_2(sim_dir):
    res = CliRunner().invoke(_app(), ["backtest", "--data", str(sim_dir), "--walk-forward"])
    assert res.exit_code == 2
    assert "--walk-forward" in res.output


def test_bad_rebalance_option_exits_2(sim_dir):
    res = CliRunner().invoke(_app(), ["backtest", "--data", str(sim_dir), "--rebalance", "weekly"])
    assert res.exit_code == 2
    assert "weekly" in res.output
