"""`abeta data simulate`: writes the folder, prints a summary, validates options, refuses to clobber."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["data", "simulate", *args])


def _flat(text: str) -> str:
    """Rich wraps error boxes; compare on whitespace-collapsed text without box characters."""
    return re.sub(r"[\s│╭╮╰╯─]+", " ", text)


def test_simulate_writes_the_folder_and_prints_a_summary(tmp_path):
    out = tmp_path / "sim"
    res = _run("--out", str(out), "--seed", "3", "--assets", "4", "--days", "30", "--freq", "8h")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "assets").iterdir()) == [
        "BNBUSDT.csv",
        "BTCUSDT.csv",
        "ETHUSDT.csv",
        "SOLUSDT.csv",
    ]
    assert len(list((out / "factors").glob("*.csv"))) == 6
    market = pd.read_parquet(out / "truth/market.parquet")
    assert len(market) == 90
    assert "regime shares: calm" in res.output
    assert "BTCUSDT" in res.output and "1.000" in res.output  # BTC's true beta to itself
    assert "seed = 3" in (out / "simulation.toml").read_text()


def test_simulate_refuses_a_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "sim"
    assert _run("--out", str(out), "--assets", "2", "--days", "5").exit_code == 0
    before = (out / "assets/ETHUSDT.csv").read_bytes()
    res = _run("--out", str(out), "--assets", "2", "--days", "5", "--seed", "8")
    assert res.exit_code == 2
    assert "--out" in res.output and "--force" in _flat(res.output)
    assert (out / "assets/ETHUSDT.csv").read_bytes() == before
    res = _run("--out", str(out), "--assets", "2", "--days", "5", "--seed", "8", "--force")
    assert res.exit_code == 0, res.output
    assert (out / "assets/ETHUSDT.csv").read_bytes() != before


@pytest.mark.parametrize(
    "args,option",
    [
        (["--assets", "1"], "--assets"),
        (["--freq", "4h"], "--freq"),
        (["--days", "1"], "--days"),
    ],
)
def test_simulate_rejects_bad_options_with_exit_2_naming_the_option(tmp_path, args, option):
    res = _run("--out", str(tmp_path / "sim"), *args)
    assert res.exit_code == 2
    assert f"Invalid value for {option}" in _flat(res.output)
    assert not (tmp_path / "sim").exists()
