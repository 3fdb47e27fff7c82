"""The serving fast path cuts exactly the training windows: `make_inputs` (wide feature arrays ->
cube, no long frame) equals `compute_features` -> `latest_windows` -> `frame.loc` bit for bit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.bundle.inference import make_inputs
from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.features.compute import compute_feature_arrays, compute_features
from adaptive_beta.models.features.spec import FeatureSpec
from adaptive_beta.models.features.windows import latest_windows

SPEC = FeatureSpec(
    beta_windows=("30d", "90d"),
    ewma_halflives=("30d",),
    welch_halflife="30d",
    factor_beta_windows=("30d",),
    factor_windows=("7d",),
)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    root = tmp_path_factory.mktemp("fast")
    return load_dataset(write_simulation(simulate(SimConfig(n_assets=3, days=260, seed=7)), root / "sim"))


def fake_bundle(panel, columns, lookback_bars=20, stride=3, min_periods=100):
    fa = compute_feature_arrays(panel, SPEC)
    cols = columns or list(fa.arrays)
    return SimpleNamespace(
        spec=SPEC,
        feature_columns=cols,
        benchmarks=panel.benchmark_names,
        meta=SimpleNamespace(  # the BundleMeta fields make_inputs reads
            required_history=SimpleNamespace(min_periods=min_periods, series=[]),
            freq=panel.freq_label,
            base_columns=fa.base_columns,
            lookback_bars=lookback_bars,
            stride=stride,
        ),
    )


def reference_inputs(panel, bundle, symbols):
    """The pre-fast-path make_inputs: long frame, latest_windows, one .loc per asset."""
    table = compute_features(panel, bundle.spec)
    base = [bundle.meta.base_columns[b] for b in bundle.benchmarks]
    x, as_of, _ = latest_windows(
        table.frame,
        bundle.feature_columns,
        bundle.meta.lookback_bars,
        bundle.meta.stride,
        symbols,
        timestamps=panel.index,
        require_finite=base,
    )
    rows = np.array(
        [
            table.frame.loc[(ts, s), bundle.feature_columns].to_numpy(dtype=float)
            for s, ts in zip(symbols, as_of, strict=True)
        ]
    )
    return x.astype(np.float32), as_of, rows


def test_feature_arrays_are_the_long_frame_in_wide_form(panel):
    fa = compute_feature_arrays(panel, SPEC)
    table = compute_features(panel, SPEC)
    assert list(fa.arrays) == table.columns and fa.groups == table.groups
    assert fa.base_columns == table.base_columns and fa.symbols == sorted(panel.symbols)
    ti, si = np.nonzero(fa.rows)
    assert len(ti) == len(table.frame) == 3 * 260
    for name in ("beta_welch_BTCUSDT", "vol_30d", "corr_ewma_CRYPTO_EW_30d", "funding_ann"):
        np.testing.assert_array_equal(fa.arrays[name][ti, si], table.frame[name].to_numpy())


@pytest.mark.parametrize("order", ["all", "reversed", "one"])
def test_served_windows_and_rows_equal_the_long_frame_path_bit_for_bit(panel, order):
    syms = {"all": panel.symbols, "reversed": panel.symbols[::-1], "one": panel.symbols[1:2]}[order]
    bundle = fake_bundle(panel, None)
    got = make_inputs(panel, bundle, symbols=list(syms))
    x, as_of, rows = reference_inputs(panel, bundle, list(syms))
    assert got.x.shape == (len(syms), 7, len(bundle.feature_columns)) and got.x.dtype == np.float32
    np.testing.assert_array_equal(got.x, x)
    assert got.as_of == as_of == [panel.index[-1]] * len(syms)
    np.testing.assert_array_equal(got.rows.to_numpy(), rows)
    assert list(got.rows.index) == list(syms) and list(got.rows.columns) == bundle.feature_columns


def test_gaps_in_one_asset_give_nan_rows_in_its_window_exactly_as_before(panel):
    p = panel.slice()
    sym = p.symbols[0]
    p.close.loc[p.index[-10:-6], sym] = np.nan  # a hole inside the last window
    bundle = fake_bundle(p, None)
    got = make_inputs(p, bundle, allow_stale=True)
    x, as_of, rows = reference_inputs(p, bundle, p.symbols)
    np.testing.assert_array_equal(got.x, x)
    assert np.isnan(got.x[0]).all(axis=1).sum() >= 1  # a step landing in the hole is all-NaN
    np.testing.assert_array_equal(got.rows.to_numpy(), rows)


def test_stale_last_bar_is_a_data_error_naming_the_asset(panel):
    p = panel.slice()
    sym = p.symbols[2]
    p.close.loc[p.index[-1], sym] = np.nan
    p.close.loc[p.index[-3], sym] = np.nan
    bundle = fake_bundle(p, None)
    got = make_inputs(p, bundle, symbols=[sym], allow_stale=True)
    assert got.as_of == [p.index[-2]]
    p.close.loc[p.index[-1], sym] = 1.0  # back at the last bar; now make the base beta missing there
    p2 = p.slice()
    p2.close.loc[p2.index[-1], sym] = np.inf
    with pytest.raises(DataError, match=f"asset {sym}: base beta not available at its last bar"):
        make_inputs(p2, bundle, symbols=[sym])


def test_short_grid_is_a_data_error_with_the_same_message_as_latest_windows(panel):
    p = panel.slice(start=panel.index[-40])
    bundle = fake_bundle(p, None, lookback_bars=120, stride=4, min_periods=10)
    with pytest.raises(DataError) as fast:
        make_inputs(p, bundle)
    table = compute_features(p, SPEC)
    with pytest.raises(ValueError) as ref:
        latest_windows(
            table.frame,
            bundle.feature_columns,
            120,
            4,
            p.symbols,
            timestamps=p.index,
            require_finite=list(table.base_columns.values()),
        )
    assert str(fast.value) == str(ref.value)
    assert "no bar with finite" in str(ref.value) or "window needs" in str(ref.value)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_assets=st.integers(1, 4),
    stride=st.integers(1, 3),
    steps=st.integers(1, 6),
)
def test_window_slices_equal_the_advanced_index_cut(seed, n_assets, stride, steps):
    """`_window_cube` (one basic slice per column, for windows ending at one row) equals `_cube`
    at the same rows: NaN values, rows without a close, columns broadcast over assets, symbols
    in any order and one the panel lacks."""
    from adaptive_beta.models.bundle.inference import _cube, _window_cube

    rng = np.random.default_rng(seed)
    t = 25
    symbols = sorted(f"A{j}USDT" for j in range(n_assets))
    arrays = {}
    for k in range(6):
        a = rng.normal(size=(t, n_assets if k % 3 else 1))
        a[rng.random(a.shape) < 0.2] = np.nan
        arrays[f"f{k}"] = np.broadcast_to(a, (t, n_assets))
    fa = SimpleNamespace(
        index=pd.RangeIndex(t), arrays=arrays, rows=rng.random((t, n_assets)) < 0.8, symbols=symbols
    )
    pos = {s: j for j, s in enumerate(symbols)}
    asked = [*rng.permutation(symbols).tolist(), "NOPEUSDT"]
    columns = rng.permutation(list(arrays)).tolist()
    first = (steps - 1) * stride
    end = int(rng.integers(first, t))
    rows = np.full((len(asked), 1), end) + np.arange(-first, 1, stride)[None, :]
    got = _window_cube(fa, columns, asked, pos, slice(end - first, end + 1, stride))
    want = _cube(fa, columns, asked, pos, rows)
    assert got.shape == want.shape == (len(asked), steps, len(columns))
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[-1]).all()
