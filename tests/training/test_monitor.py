"""Monitor parts without a trained model: audit-record parsing, error table, exit code 2 on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptive_beta.training.monitor import MonitorConfig, audit_features, audit_forecasts, error_summary


def _record(as_of: str, beta: float, value: float, endpoint: str = "/forecast") -> dict:
    return {
        "endpoint": endpoint,
        "features": {"as_of": {"ETHUSDT": as_of}, "rows": {"ETHUSDT": {"vol_7d": value, "ret_1d": None}}},
        "output": {
            "forecasts": [
                {
                    "symbol": "ETHUSDT",
                    "as_of": as_of,
                    "betas": {"BTCUSDT": {"beta": beta, "lo": 0.8, "hi": 1.4}},
                }
            ]
        },
    }


def test_audit_rows_are_deduplicated_per_bar_and_latest_wins():
    recs = [
        _record("2024-01-01T00:00:00+00:00", 1.0, 0.5),
        _record("2024-01-01T00:00:00+00:00", 1.1, 0.6),  # same bar served again
        _record("2024-01-02T00:00:00+00:00", 1.2, 0.7),
        _record("2024-01-03T00:00:00+00:00", 9.9, 0.8, endpoint="/explain"),  # features only
    ]
    feats = audit_features(recs, ["vol_7d", "ret_1d"])
    assert len(feats) == 3
    assert feats["vol_7d"].tolist() == [0.6, 0.7, 0.8] and feats["ret_1d"].isna().all()
    fc = audit_forecasts(recs)
    assert fc["beta"].tolist() == [1.1, 1.2] and fc["as_of"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_error_summary_rmse_ratio_coverage_and_alert():
    ts = pd.date_range("2024-01-01", periods=100, freq="1D", tz="UTC")
    realised = np.where(np.arange(100) % 2 == 0, 1.3, 0.9)  # errors +-0.2 around beta 1.1
    done = pd.DataFrame(
        {
            "as_of": ts,
            "symbol": "ETH",
            "benchmark": "BTC",
            "beta": 1.1,
            "lo": 0.95,
            "hi": 1.25,
            "realised": realised,
        }
    )
    cfg = MonitorConfig(error_window="30d", rmse_ratio_alert=1.5)
    [row] = error_summary(done, {"BTC": 0.1}, cfg)
    assert row["n"] == 30 and row["rmse"] == pytest.approx(0.2) and row["ratio"] == pytest.approx(2.0)
    assert row["coverage"] == 0.0 and row["bias"] == pytest.approx(0.0, abs=1e-12) and row["alert"]
    [row] = error_summary(done, {"BTC": 0.15}, cfg)
    assert row["ratio"] == pytest.approx(4 / 3) and not row["alert"]


def test_cli_monitor_exits_2_on_bad_input(tmp_path):
    import typer

    from adaptive_beta.cli.monitor import monitor

    app = typer.Typer()
    app.command()(monitor)
    res = CliRunner().invoke(app, ["--model", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no model bundle" in res.output
