"""The shared-sum helpers give bit-for-bit the numbers of the separate estimators they replace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.estimators.ewma import ewma_beta_array
from adaptive_beta.models.estimators.rolling import rolling_ols_beta_array
from adaptive_beta.models.features.rolling import (
    ewma_beta_and_corr,
    ewma_corr,
    rolling_beta_and_corr,
    rolling_corr,
)


def _data(seed: int, t: int, n: int, holes: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.03, t)
    y = 1.3 * x[:, None] + rng.normal(0, 0.02, (t, n))
    y[rng.random((t, n)) < holes] = np.nan
    x[rng.random(t) < holes] = np.nan
    y[: t // 5, 0] = np.nan  # a late listing
    return y, x


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(3, 40),
    st.floats(0.0, 0.4),
    st.sampled_from([None, 3]),
)
def test_rolling_beta_and_corr_equal_the_separate_functions_bitwise(seed, window, holes, beta_mp):
    y, x = _data(seed, 80, 3, holes)
    corr_mp = min(window, max(3, window // 2))
    beta, corr = rolling_beta_and_corr(y, x, window, beta_mp, corr_mp)
    assert np.array_equal(beta, rolling_ols_beta_array(y, x, window, beta_mp), equal_nan=True)
    assert np.array_equal(corr, rolling_corr(y, x, window, corr_mp), equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(1.0, 30.0), st.floats(0.0, 0.4))
def test_ewma_beta_and_corr_equal_the_separate_functions_bitwise(seed, halflife, holes):
    y, x = _data(seed, 80, 3, holes)
    beta, corr = ewma_beta_and_corr(y, x, halflife)
    assert np.array_equal(beta, ewma_beta_array(y, x, halflife), equal_nan=True)
    assert np.array_equal(corr, ewma_corr(y, x, halflife, max(3, int(np.ceil(halflife)))), equal_nan=True)


def test_shared_sums_recover_a_known_beta_and_a_perfect_correlation():
    x = np.sin(np.arange(50) / 3.0) / 100
    y = np.column_stack([2.0 * x + 0.001, -0.5 * x])
    beta, corr = rolling_beta_and_corr(y, x, 10, None, 5)
    np.testing.assert_allclose(beta[20], [2.0, -0.5], rtol=1e-9)
    np.testing.assert_allclose(corr[20], [1.0, -1.0], rtol=1e-9)
    ebeta, ecorr = ewma_beta_and_corr(y, x, 5.0)
    np.testing.assert_allclose(ebeta[30], [2.0, -0.5], rtol=1e-9)
    np.testing.assert_allclose(ecorr[30], [1.0, -1.0], rtol=1e-9)


def test_pct_change_equals_pandas_bitwise_with_gaps_zeros_and_infinities():
    import pandas as pd

    from adaptive_beta.models.features.compute import _pct_change

    rng = np.random.default_rng(7)
    a = rng.uniform(0.5, 2.0, (60, 4))
    a[rng.random(a.shape) < 0.2] = np.nan
    a[5, 0], a[6, 0], a[9, 1], a[10, 1] = 0.0, 0.0, np.inf, 3.0
    want = pd.DataFrame(a).pct_change(fill_method=None).to_numpy()
    got = _pct_change(a)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isnan(got[0]).all() and got[6, 0] != got[6, 0]  # 0/0 is NaN, as in pandas


@pytest.fixture(scope="module")
def sim_panel(tmp_path_factory):
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    root = tmp_path_factory.mktemp("shared")
    return load_dataset(write_simulation(simulate(SimConfig(n_assets=3, days=200, seed=11)), root / "sim"))


def test_factor_features_batched_across_factors_equal_one_factor_at_a_time(sim_panel, monkeypatch):
    import adaptive_beta.models.features.compute as features

    assert sim_panel.factor_names, "the simulated panel should carry factors"
    batched = features.compute_feature_arrays(sim_panel)
    monkeypatch.setattr(features, "_BATCH_NUMBERS", 0)  # force the per-factor loop
    single = features.compute_feature_arrays(sim_panel)
    assert list(batched.arrays) == list(single.arrays)
    for name, a in batched.arrays.items():
        assert np.array_equal(a, single.arrays[name], equal_nan=True), name
    rate = [n for n in sim_panel.factor_names if sim_panel.factor_categories.get(n) == "rates"]
    other = [n for n in sim_panel.factor_names if n not in rate]
    assert other and any(np.isfinite(batched.arrays[f"beta_{other[0]}_90d"]).ravel())
