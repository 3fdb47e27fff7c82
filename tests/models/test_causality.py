"""THE causality test: nothing after t moves a feature at or before t; targets use only the future.

Every raw input after a cut (closes, volume, funding, open interest, factor prints, hence the
composite benchmark) is perturbed and the panel rebuilt through the same `build_panel` path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.data.schema import FactorSeries, build_panel
from adaptive_beta.models.features.compute import FeatureSpec, compute_features
from adaptive_beta.models.features.targets import (
    forward_betas,
    forward_moments,
    forward_multifactor_betas,
    regime_labels,
    true_forward_betas,
)
from tests.models.test_features import make_assets, us_factor

SPEC = FeatureSpec(beta_windows=("20d", "60d"), vol_windows=("7d", "30d"), factor_beta_windows=("20d", "60d"))
HORIZON = "10d"


def _factors() -> dict[str, FactorSeries]:
    return {
        "SPY": FactorSeries(us_factor("2020-12-01", "2022-03-31", seed=11), "equity"),
        "DGS10": FactorSeries(
            us_factor("2020-12-01", "2022-03-31", seed=12, scale=0.004, start_level=1.5), "rates"
        ),
        "WTI": FactorSeries(
            us_factor("2020-12-01", "2022-03-31", seed=13, scale=0.03, start_level=50), "commodity"
        ),
    }


def _truth(index: pd.DatetimeIndex, symbols, seed: int):
    rng = np.random.default_rng(seed)
    rows = pd.MultiIndex.from_product([index, sorted(symbols)], names=["timestamp", "symbol"])
    tb = pd.DataFrame(
        {"beta_BTCUSDT": rng.normal(1, 0.3, len(rows)), "beta_CRYPTO_EW": rng.normal(1, 0.3, len(rows))},
        index=rows,
    )
    tm = pd.DataFrame(
        {
            "var_BTCUSDT": rng.uniform(1, 2, len(index)),
            "var_CRYPTO_EW": rng.uniform(1, 2, len(index)),
            "regime": rng.integers(0, 3, len(index)),
        },
        index=index,
    )
    return tb, tm


def _perturb_after(assets, factors, truth, cut: pd.Timestamp, freq: pd.Timedelta, seed: int):
    """Copies with every value after the cut replaced (a few by NaN): bars opening after `cut`,
    factor prints published after the cut bar's close, truth rows after the cut."""
    rng = np.random.default_rng(seed)
    new_assets = {}
    for sym, frame in assets.items():
        f = frame.copy()
        late = f.index > cut
        for col in f.columns:
            noise = (
                rng.lognormal(0.0, 0.2, late.sum())
                if col != "funding_rate"
                else rng.normal(0, 1e-3, late.sum())
            )
            vals = f.loc[late, col].to_numpy() * (noise if col != "funding_rate" else 1.0)
            if col == "funding_rate":
                vals = vals + noise
            vals[rng.random(late.sum()) < 0.05] = np.nan
            f.loc[late, col] = vals
        new_assets[sym] = f
    new_factors = {}
    for name, fs in factors.items():
        s = fs.values.copy()
        late = s.index > cut + freq
        s[late] = s[late] * rng.lognormal(0.0, 0.1, late.sum())
        new_factors[name] = FactorSeries(s, fs.category)
    tb, tm = (x.copy() for x in truth)
    tb.loc[tb.index.get_level_values(0) > cut] = rng.normal(
        0, 1, (int((tb.index.get_level_values(0) > cut).sum()), 2)
    )
    late = tm.index > cut
    tm.loc[late, "var_BTCUSDT"] = rng.uniform(3, 4, late.sum())
    tm.loc[late, "var_CRYPTO_EW"] = rng.uniform(3, 4, late.sum())
    tm.loc[late, "regime"] = (tm.loc[late, "regime"] + 1) % 3
    return new_assets, new_factors, (tb, tm)


def _build(assets, factors, truth):
    return build_panel(assets, factors, meta={"truth_betas": truth[0], "truth_market": truth[1]})


def _at_or_before(frame: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    return frame[frame.index.get_level_values("timestamp") <= t]


@pytest.mark.parametrize(("freq", "n_bars", "cuts"), [("1D", 260, (45, 130, 230)), ("8h", 600, (100, 400))])
def test_nothing_after_the_cut_moves_features_and_targets_use_only_the_future(freq, n_bars, cuts):
    assets = make_assets(n_bars, freq, seed=21)
    factors = _factors()
    base_panel = build_panel(assets, factors)
    truth = _truth(base_panel.index, base_panel.symbols, seed=22)
    base = _build(assets, factors, truth)
    h = int(pd.Timedelta(HORIZON) / base.freq)
    f0 = compute_features(base, SPEC).frame
    b0, m0 = forward_betas(base, HORIZON), forward_moments(base, HORIZON)
    tfb0, reg0 = true_forward_betas(base, HORIZON), regime_labels(base, HORIZON)
    mf0 = forward_multifactor_betas(base, HORIZON)
    assert mf0.notna().mean().min() > 0.9
    assert f0.notna().mean().min() > 0.2  # every column has values, so equality means something
    for k, cut_pos in enumerate(cuts):
        cut = base.index[cut_pos]
        a1, fa1, tr1 = _perturb_after(assets, factors, truth, cut, base.freq, seed=100 + k)
        pert = _build(a1, fa1, tr1)
        f1 = compute_features(pert, SPEC).frame
        assert not f1.equals(f0)
        # features at or before the cut: bit-for-bit equal (NaN where NaN)
        before0, before1 = _at_or_before(f0, cut), _at_or_before(f1, cut)
        assert before0.index.equals(before1.index)
        np.testing.assert_array_equal(before0.to_numpy(), before1.to_numpy(), err_msg=f"{freq} cut {cut}")
        # targets: rows whose window t+1..t+H ends at or before the cut are unchanged, row `cut` changes
        settled = base.index[cut_pos - h]
        for old, new in (
            (b0, forward_betas(pert, HORIZON)),
            (m0, forward_moments(pert, HORIZON)),
            (tfb0, true_forward_betas(pert, HORIZON)),
            (mf0, forward_multifactor_betas(pert, HORIZON)),
        ):
            np.testing.assert_array_equal(
                _at_or_before(old, settled).to_numpy(), _at_or_before(new, settled).to_numpy()
            )
            at_cut_old, at_cut_new = old.xs(cut, level="timestamp"), new.xs(cut, level="timestamp")
            assert not np.allclose(at_cut_old.to_numpy(), at_cut_new.to_numpy(), equal_nan=True)
        reg1 = regime_labels(pert, HORIZON)
        assert reg0["current"].loc[:cut].equals(reg1["current"].loc[:cut])
        assert reg0["forward"].loc[:settled].equals(reg1["forward"].loc[:settled])


def test_a_us_close_at_21_utc_reaches_only_bars_that_close_after_it():
    """SPY's 2021-01-13 close (16:00 New York = 21:00 UTC in winter) is changed.

    8h bars opening 00:00 and 08:00 close at 08:00 and 16:00, before the print: unchanged.  The
    16:00 bar closes at 24:00, after it: it sees the new value.  On daily bars the bar of the
    13th (closing at midnight) sees it and the bar of the 12th does not.
    """
    spy = us_factor("2020-11-01", "2021-03-31", seed=31)
    pub = pd.Timestamp("2021-01-13 21:00", tz="UTC")
    assert pub in spy.index
    bumped = spy.copy()
    bumped[pub] *= 1.05
    spec = FeatureSpec(factor_windows=("1d", "7d"))
    for freq, unchanged_through, first_changed in (
        ("8h", "2021-01-13 08:00", "2021-01-13 16:00"),
        ("1D", "2021-01-12 00:00", "2021-01-13 00:00"),
    ):
        assets = make_assets(400 if freq == "8h" else 120, freq, start="2020-12-01", seed=32)
        f0 = compute_features(build_panel(assets, {"SPY": FactorSeries(spy, "equity")}), spec).frame
        f1 = compute_features(build_panel(assets, {"SPY": FactorSeries(bumped, "equity")}), spec).frame
        last_same = pd.Timestamp(unchanged_through, tz="UTC")
        np.testing.assert_array_equal(
            _at_or_before(f0, last_same).to_numpy(), _at_or_before(f1, last_same).to_numpy()
        )
        row0 = f0.xs(pd.Timestamp(first_changed, tz="UTC"), level="timestamp")
        row1 = f1.xs(pd.Timestamp(first_changed, tz="UTC"), level="timestamp")
        assert row1["fac_SPY_ret_1d"].iloc[0] == pytest.approx(
            (1 + row0["fac_SPY_ret_1d"].iloc[0]) * 1.05 - 1, rel=1e-12
        ), freq
        assert row0["fac_SPY_stale"].iloc[0] == pytest.approx(3 / 24), (
            freq
        )  # closes at 24:00, 3 h after the print
