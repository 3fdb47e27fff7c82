"""Baselines computed per block of assets (and in a process pool) equal the one-block run bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.estimators.baselines import baseline_forecasts


def _market(T=500, n=7, seed=5):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=T, freq="8h", tz="UTC")
    btc = rng.normal(0, 0.02, T)
    ew = 0.8 * btc + rng.normal(0, 0.01, T)
    bench = pd.DataFrame({"BTCUSDT": btc, "CRYPTO_EW": ew}, index=idx)
    factors = pd.DataFrame(rng.normal(0, 0.005, (T, 2)), index=idx, columns=["SPX", "DXY"])
    factors.iloc[::3] = np.nan  # stale factor bars count as no move
    betas = rng.uniform(0.5, 1.8, n)
    returns = pd.DataFrame(
        btc[:, None] * betas + rng.normal(0, 0.015, (T, n)), index=idx, columns=[f"A{i}" for i in range(n)]
    )
    returns.iloc[:120, 3] = np.nan  # a late listing
    returns.iloc[300:310, 5] = np.nan  # a gap
    return returns, bench, factors


def _assert_identical(got, ref):
    assert list(got) == list(ref)  # same names, same order
    for name in ref:
        assert list(got[name]) == list(ref[name])
        for b in ref[name]:
            assert got[name][b].columns.equals(ref[name][b].columns)
            assert np.array_equal(got[name][b].to_numpy(), ref[name][b].to_numpy(), equal_nan=True), (name, b)


@pytest.mark.parametrize("block", [1, 2, 3, 6])
def test_blocks_of_assets_give_the_one_block_numbers(block):
    returns, bench, factors = _market()
    ref = baseline_forecasts(returns, bench, factors, pd.Timedelta("8h"), block_assets=100)
    got = baseline_forecasts(returns, bench, factors, pd.Timedelta("8h"), block_assets=block)
    _assert_identical(got, ref)
    # the Vasicek prior is cross-sectional: shrunk toward the mean of all 7 assets, not of a block
    v, raw = ref["vasicek_90d"]["BTCUSDT"].iloc[-1], ref["rolling_ols_90d"]["BTCUSDT"].iloc[-1]
    assert ((v - raw.mean()).abs() < (raw - raw.mean()).abs()).all()


@pytest.mark.parametrize(("kw", "msg"), [({"block_assets": 0}, "block_assets"), ({"workers": 0}, "workers")])
def test_bad_partition_settings_are_named(kw, msg):
    returns, bench, factors = _market(T=200)
    with pytest.raises(ValueError, match=msg):
        baseline_forecasts(returns, bench, factors, pd.Timedelta("8h"), **kw)
