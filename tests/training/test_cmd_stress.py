"""`abeta stress` on a small simulated market: the report, skipped scenarios, exit codes."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from adaptive_beta.cli.stress import stress


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    out = tmp_path_factory.mktemp("sim") / "sim"
    write_simulation(simulate(SimConfig(seed=4, n_assets=5, days=560, freq="1d")), out)
    return out


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("stress")(stress)
    app.command("noop")(lambda: None)
    return app


def test_stress_default_scenarios_report(sim_dir, tmp_path):
    out = tmp_path / "stress.json"
    res = CliRunner().invoke(_app(), ["stress", "--data", str(sim_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "skipped scenario 'equities -10%'" in res.output  # the simulator calls it SPX
    rep = json.loads(out.read_text())
    by = {s["name"]: s for s in rep["scenarios"]}
    btc = by["BTC -30%"]
    # the overlay is sized for the BTC beta: a BTC-only shock with betas holding nets to ~0
    assert abs(btc["pnl_hedged"]) < 1e-6 * rep["nav"]
    assert btc["pnl_unhedged"] < -0.1 * rep["nav"]
    shift = by["betas x1.5, BTC -20%"]
    # residual of a x1.5 beta shift: 0.5 x book dollar beta x shock (book dollar beta = BTC -30% P&L / -0.3)
    book_dollar_beta = by["BTC -30%"]["pnl_unhedged"] / -0.30
    assert shift["pnl_hedged"] == pytest.approx(0.5 * book_dollar_beta * -0.20, rel=1e-9)
    assert by["LUNA week (2022-05-05..13)"]["kind"] == "historical"


def test_bad_scenario_file_exits_2_naming_field(sim_dir, tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[[scenario]]\nname = "x"\nkind = "beta_shift"\nshocks = { BTCUSDT = -0.2 }\n')
    res = CliRunner().invoke(_app(), ["stress", "--data", str(sim_dir), "--scenarios", str(bad)])
    assert res.exit_code == 2
    assert "multipliers" in res.output


def test_bad_portfolio_symbol_exits_2(sim_dir, tmp_path):
    book = tmp_path / "book.csv"
    book.write_text("symbol,notional\nZZZUSDT,100\n")
    res = CliRunner().invoke(_app(), ["stress", "--data", str(sim_dir), "--portfolio", str(book)])
    assert res.exit_code == 2
    assert "ZZZUSDT" in res.output
