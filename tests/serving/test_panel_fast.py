"""The numpy panel fast path equals build_panel (via AppState's pandas path) frame by frame."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.serving.app_state import AppState
from adaptive_beta.serving.panel_fast import panel_from_request, publication_ns, publication_ns_many
from adaptive_beta.serving.schemas import ForecastRequest


def _stamps(start: str, n: int, step: str, drop: tuple[int, ...] = ()) -> list[str]:
    idx = pd.date_range(start, periods=n, freq=step, tz="UTC")
    return [t.isoformat() for i, t in enumerate(idx) if i not in drop]


def _body(freq: str, btc_as_asset: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)

    def hist(start, n, extras=True, drop=()):
        out = []
        for t in _stamps(start, n, freq, drop):
            bar = {"timestamp": t, "close": float(rng.uniform(1, 100))}
            if extras:
                bar |= {"volume": float(rng.uniform(0, 9)), "funding_rate": float(rng.normal(0, 1e-4))}
            out.append(bar)
        return out

    assets = [
        {"symbol": "SOLUSDT", "history": hist("2024-01-01", 40)},
        {"symbol": "ETHUSDT", "history": hist("2024-01-03 00:00", 30, extras=False, drop=(5, 6))},
    ]
    if btc_as_asset:
        assets.append({"symbol": "BTCUSDT", "history": hist("2024-01-02", 35)})
    series = {
        "CRYPTO_EW": [
            {"timestamp": t, "close": float(rng.uniform(1, 2))} for t in _stamps("2024-01-01", 40, freq)
        ],
        # date-only daily closes (published 16:00 New York), with a weekend gap
        "SPX": [
            {"timestamp": d.strftime("%Y-%m-%d"), "close": float(rng.uniform(4000, 5000))}
            for d in pd.bdate_range("2023-12-20", "2024-03-01")
        ],
        # intraday publication stamps (not dates): kept as they are
        "DGS10": [
            {"timestamp": t, "close": float(rng.normal(4, 0.1))}
            for t in _stamps("2023-12-29 13:30", 60, "1D")
        ],
    }
    if not btc_as_asset:
        series["BTCUSDT"] = [
            {"timestamp": t, "close": float(rng.uniform(1, 2))} for t in _stamps("2024-01-01", 40, freq)
        ]
    return {"assets": assets, "series": series}


def _slow(req, freq: str):
    fake = SimpleNamespace(
        bundle=SimpleNamespace(meta={"benchmarks": ["BTCUSDT", "CRYPTO_EW"]}), freq=pd.Timedelta(freq)
    )
    return AppState._panel_slow(fake, req)


@pytest.mark.parametrize("freq", ["1D", "8h"])
@pytest.mark.parametrize("btc_as_asset", [False, True])
def test_fast_panel_equals_build_panel_frame_by_frame(freq, btc_as_asset):
    req = ForecastRequest.model_validate(_body(freq, btc_as_asset, seed=3))
    want = _slow(req, freq)
    got = panel_from_request(req, {"BTCUSDT", "CRYPTO_EW"}, pd.Timedelta(freq), "BTCUSDT")
    assert got is not None
    for name in (
        "close",
        "volume",
        "funding_rate",
        "open_interest",
        "factors",
        "factor_staleness",
        "benchmarks",
    ):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), check_exact=True)
        assert getattr(got, name).index.freq == getattr(want, name).index.freq
    assert got.factor_categories == want.factor_categories
    assert got.freq == want.freq and got.meta == want.meta
    assert got.fingerprint() == want.fingerprint()
    # the two bars missing from ETHUSDT stay NaN on the grid
    assert np.isnan(got.close["ETHUSDT"]).sum() >= 2


def test_publication_ns_reads_dates_as_16h_new_york_and_keeps_intraday_stamps():
    day = 86_400_000_000
    jan2 = 1_704_153_600_000_000  # 2024-01-02 00:00 UTC
    got = publication_ns(np.array([jan2, jan2 + day], dtype=np.int64))
    assert got.tolist() == [
        (jan2 + 21 * 3_600_000_000) * 1000,
        (jan2 + day + 21 * 3_600_000_000) * 1000,
    ]  # EST
    jul1 = 1_719_792_000_000_000  # 2024-07-01: EDT, 20:00 UTC
    assert publication_ns(np.array([jul1], dtype=np.int64)).tolist() == [(jul1 + 20 * 3_600_000_000) * 1000]
    intraday = np.array([jan2 + 3_600_000_000], dtype=np.int64)
    assert publication_ns(intraday).tolist() == [intraday[0] * 1000]


def test_request_without_the_composite_takes_build_panel():
    body = _body("1D", True, seed=1)
    del body["series"]["CRYPTO_EW"]
    req = ForecastRequest.model_validate(body)
    assert panel_from_request(req, {"BTCUSDT", "CRYPTO_EW"}, pd.Timedelta("1D"), "BTCUSDT") is None


def test_publication_ns_many_equals_one_series_at_a_time():
    jan2, day = 1_704_153_600_000_000, 86_400_000_000
    series = [
        np.array([jan2, jan2 + day], dtype=np.int64),
        np.array([jan2 + 3_600_000_000], dtype=np.int64),  # intraday: unchanged
        np.array([], dtype=np.int64),
        np.array([1_719_792_000_000_000], dtype=np.int64),
    ]
    many = publication_ns_many(series)
    assert [m.tolist() for m in many] == [publication_ns(s).tolist() for s in series]
    assert many[0].tolist()[0] == (jan2 + 21 * 3_600_000_000) * 1000
