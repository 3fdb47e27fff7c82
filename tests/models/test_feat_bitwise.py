"""`compute_feature_arrays` equals the previous implementation bit for bit, on every feature.

The reference (tests/models/feature_reference.py) is the pipeline before the shared-sum rewrite,
kept verbatim: one cumulative sum per window and moment, one filter call per weighted sum, one
benchmark at a time.  The new code batches benchmarks, factors, windows and moments into fewer
numpy calls; every array must have the same 64-bit patterns (NaNs included) on simulated
markets at 1h, 8h and 1d, damaged with gaps, a late listing, a zero price, stale and negative
factors, under the default spec (the shipped daily bundle's) and one with every optional feature
on, along both the batched path and the one-at-a-time path of universe-sized panels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import adaptive_beta.models.estimators.common as common
import adaptive_beta.models.features.compute as compute
from adaptive_beta.models.features.spec import FeatureSpec

from . import feature_reference as reference

OPTIONAL = FeatureSpec(
    welch_extra_halflives=("120d",),
    long_beta_windows=("1d", "7d", "365d"),  # 1d at daily bars: under 3 bars, the separate path
    high_vol_beta_window="60d",
    factor_levels=("VIX", "DGS10", "WTI"),
    vol_ratio=True,
    funding_z_window="30d",
    oi_z_window="7d",
)
SPECS = {"default": FeatureSpec(), "optional": OPTIONAL}
MARKETS = {"1d": (5, 420), "8h": (4, 200), "1h": (3, 100)}  # freq: (assets, days)


def _simulated(root, freq: str):
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    n_assets, days = MARKETS[freq]
    cfg = SimConfig(n_assets=n_assets, days=days, freq=freq, seed=5)
    return load_dataset(write_simulation(simulate(cfg), root / f"sim-{freq}"))


def _damaged(panel, seed: int):
    """The panel with what real data has: gaps everywhere, a late listing, a zero close (an
    infinite return), a benchmark gap, a factor that stops printing (held level, staleness
    beyond a day) and a factor that goes negative (WTI in April 2020)."""
    rng = np.random.default_rng(seed)
    t = len(panel.index)

    def holes(frame, share):
        a = frame.to_numpy(dtype=np.float64, na_value=np.nan).copy()
        a[rng.random(a.shape) < share] = np.nan
        return frame.copy().__class__(a, index=frame.index, columns=frame.columns)

    close = holes(panel.close, 0.03)
    close.iloc[: int(0.4 * t), 0] = np.nan  # listed late
    close.iloc[t // 2, -1] = 0.0
    benchmarks = holes(panel.benchmarks, 0.01)
    factors, stale = panel.factors.copy(), panel.factor_staleness.copy()
    held = slice(t // 3, t // 3 + max(5, t // 20))
    factors.iloc[held, 1] = factors.iloc[held.start - 1, 1]
    stale.iloc[held, 1] = np.arange(held.stop - held.start) + 2.0
    wti = list(panel.factor_names).index("WTI")
    factors.iloc[t // 4 : t // 4 + 3, wti] = [-5.0, 0.0, 1.0]
    return dataclasses.replace(
        panel,
        close=close,
        volume=holes(panel.volume, 0.05),
        funding_rate=holes(panel.funding_rate, 0.05),
        open_interest=holes(panel.open_interest, 0.05),
        benchmarks=benchmarks,
        factors=factors,
        factor_staleness=stale,
    )


@pytest.fixture(scope="module", params=sorted(MARKETS))
def market(request, tmp_path_factory):
    panel = _simulated(tmp_path_factory.mktemp("bitwise"), request.param)
    return {"clean": panel, "damaged": _damaged(panel, seed=len(request.param))}


def _assert_bitwise_equal(new, old) -> None:
    assert list(new.arrays) == list(old.arrays)
    assert new.groups == old.groups and new.base_columns == old.base_columns
    assert new.symbols == old.symbols and np.array_equal(new.rows, old.rows)
    for name, a in new.arrays.items():
        b = old.arrays[name]
        assert a.shape == b.shape, name
        bits_a = np.ascontiguousarray(a).view(np.int64)
        bits_b = np.ascontiguousarray(b).view(np.int64)
        assert np.array_equal(bits_a, bits_b), (name, int((bits_a != bits_b).sum()))


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("state", ["clean", "damaged"])
def test_every_feature_equals_the_previous_implementation_bit_for_bit(market, state, spec_name):
    panel, spec = market[state], SPECS[spec_name]
    old = reference.compute_feature_arrays(panel, spec)
    new = compute.compute_feature_arrays(panel, spec)
    _assert_bitwise_equal(new, old)
    finite = sum(int(np.isfinite(a).any()) for a in new.arrays.values())
    assert finite >= 0.75 * len(new.arrays)  # numbers are compared, not only NaN arrays


LIMITS = {  # the size limits above which large panels go one window / pair / sum at a time
    "small": [(compute, "_SMALL")],
    "stacks": [(common, "STACK_NUMBERS")],
    "all": [(compute, "_SMALL"), (compute, "_BATCH_NUMBERS"), (common, "STACK_NUMBERS")],
}


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("limits", sorted(LIMITS))
def test_the_one_at_a_time_paths_of_large_panels_are_bitwise_the_same(market, spec_name, limits, monkeypatch):
    """Above `_SMALL` benchmarks and windows go one at a time, above `_BATCH_NUMBERS` factors,
    above `STACK_NUMBERS` the moment sums (bounded memory, no page faults): forced here on a
    small panel, the numbers must not move."""
    panel, spec = market["damaged"], SPECS[spec_name]
    for module, limit in LIMITS[limits]:
        monkeypatch.setattr(module, limit, 0)
    _assert_bitwise_equal(
        compute.compute_feature_arrays(panel, spec), reference.compute_feature_arrays(panel, spec)
    )


def test_one_asset_request_equals_the_previous_implementation(market):
    """The stateless /forecast shape: one asset, both benchmarks, every factor."""
    panel = market["damaged"]
    one = panel.select([panel.symbols[-1]])
    _assert_bitwise_equal(compute.compute_feature_arrays(one), reference.compute_feature_arrays(one))


def test_the_bitwise_check_sees_a_one_ulp_change(market):
    """The comparison itself can fail: one ulp in one number of one feature is caught."""
    panel = market["clean"]
    new = compute.compute_feature_arrays(panel)
    old = reference.compute_feature_arrays(panel)
    name = "beta_ols_BTCUSDT_90d"
    a = np.array(new.arrays[name])
    i, j = np.argwhere(np.isfinite(a))[-1]
    a[i, j] = np.nextafter(a[i, j], np.inf)
    new.arrays[name] = a
    with pytest.raises(AssertionError):
        _assert_bitwise_equal(new, old)


def _pairs(seed: int, t: int, n: int, holes: float):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.03, (t, n))
    y = 1.2 * x + rng.normal(0, 0.02, (t, n))
    y[rng.random((t, n)) < holes] = np.nan
    x[rng.random((t, n)) < holes] = np.nan
    y[: t // 4, 0] = np.nan  # a late listing
    y[t // 2, -1] = np.inf  # a return from a zero price
    return y, x


@pytest.mark.parametrize("stack", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_the_multi_window_primitives_equal_the_previous_single_ones(seed, stack, monkeypatch):
    """Several windows / half-lives / pairs per call (x one column per pair, as the batched
    benchmarks and factors) against the previous one-window, one-pair primitives."""
    from adaptive_beta.models.estimators.ewma import welch_betas_array
    from adaptive_beta.models.features import rolling

    if not stack:
        monkeypatch.setattr(common, "STACK_NUMBERS", 0)
    rng = np.random.default_rng(100 + seed)
    t, n = int(rng.integers(40, 400)), int(rng.integers(1, 5))
    y, x = _pairs(seed, t, n, holes=float(rng.uniform(0.0, 0.3)))
    windows = sorted({int(w) for w in rng.integers(3, t + 20, 3)})
    bmp = [None, *[int(rng.integers(2, w + 1)) for w in windows[1:]]]
    cmp = [int(rng.integers(2, w + 1)) for w in windows]
    halflives = [float(h) for h in rng.uniform(1.0, 60.0, 2)]
    beta, corr = rolling.rolling_betas_and_corrs(y, x, windows, bmp, cmp)
    ewma = rolling.ewma_betas_and_corrs(y, x, halflives)
    welch = welch_betas_array(y, x, halflives, -2.0, 4.0)
    means = rolling.rolling_means(y, windows, cmp)
    vols = rolling.realised_vols(y, windows, cmp, 365.0)
    for i in range(n):  # the reference takes one shared x per call: one pair at a time
        yi, xi = y[:, i : i + 1], x[:, i]
        for j, w in enumerate(windows):
            rb, rc = reference.rolling_beta_and_corr(yi, xi, w, bmp[j], cmp[j])
            _same(beta[j][:, i], rb[:, 0]), _same(corr[j][:, i], rc[:, 0])
            _same(means[j][:, i], reference.rolling_mean(yi, w, cmp[j])[:, 0])
            _same(vols[j][:, i], reference.realised_vol(yi, w, cmp[j], 365.0)[:, 0])
        for h, (eb, ec), wb in zip(halflives, ewma, welch, strict=True):
            rb, rc = reference.ewma_beta_and_corr(yi, xi, h)
            _same(eb[:, i], rb[:, 0]), _same(ec[:, i], rc[:, 0])
            _same(wb[:, i], reference.welch_beta_array(yi, xi, h, -2.0, 4.0)[:, 0])
    assert np.isfinite(beta[0]).any() and np.isfinite(ewma[0][1]).any()


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert np.array_equal(np.ascontiguousarray(a).view(np.int64), np.ascontiguousarray(b).view(np.int64))
