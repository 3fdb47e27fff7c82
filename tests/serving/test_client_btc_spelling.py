"""The client builds a request from data whose BTC is spelled another way (`BTC-USD` for a model
trained on `BTCUSDT`), and says in one line which series is missing otherwise (issue 11)."""

from __future__ import annotations

import pandas as pd
import pytest

from adaptive_beta.models.data.schema import DataError, build_panel
from adaptive_beta.serving.client import forecast_request
from tests.serving.conftest import published_spy, synthetic_market


def _panel(rename: dict[str, str]):
    assets, spy = synthetic_market()
    assets = {rename.get(k, k): v for k, v in assets.items()}
    return build_panel(assets, {"SPY": published_spy(spy)}, freq="1d"), spy


def test_btc_spelled_btc_usd_fills_the_models_btcusdt(tiny_bundle):
    required = tiny_bundle["meta"]["required_history"]
    assert "BTCUSDT" in required["series"]
    panel, spy = _panel({"BTCUSDT": "BTC-USD"})
    body = forecast_request(panel, required, ["SOLUSDT"], {"SPY": spy})
    closes = [p["close"] for p in body["series"]["BTCUSDT"]]
    expected = panel.close["BTC-USD"].reindex(
        pd.DatetimeIndex([p["timestamp"] for p in body["series"]["BTCUSDT"]])
    )
    assert closes == pytest.approx(expected.to_list())


def test_a_series_the_data_lacks_is_one_clear_line(tiny_bundle):
    required = dict(tiny_bundle["meta"]["required_history"])
    required["series"] = [*required["series"], "DGS10"]
    panel, spy = _panel({})
    with pytest.raises(DataError, match="the model needs series 'DGS10'"):
        forecast_request(panel, required, ["SOLUSDT"], {"SPY": spy})
