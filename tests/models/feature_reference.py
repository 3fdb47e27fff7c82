"""The feature pipeline as it was before the shared-sum rewrite (commit 5583cae), kept verbatim
as the reference the new `compute_feature_arrays` must equal bit for bit.

One cumulative sum per window and per moment, one filter call per weighted sum, one benchmark
at a time: the per-call primitives of `models/estimators` and `models/features/rolling.py` and
the orchestration of `models/features/compute.py` at that commit, copied into one module (only
imports between them removed).  Used by tests/models/test_feat_bitwise.py; never by the package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import maximum_filter1d
from scipy.signal import lfilter

from adaptive_beta.models.data.schema import Panel
from adaptive_beta.models.durations import parse_duration, to_periods
from adaptive_beta.models.features.spec import FeatureSpec


def prepare_pair_arrays(Y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`prepare_pair` on aligned float64 arrays: Y (T, N), x (T,) or (T, 1), NaN where missing
    (or x (T, N): a regressor per column, for batching several pairs in one call).

    The numpy core the frame version delegates to, so the feature pipeline (arrays) and the
    estimators' frame API give the same numbers by construction.
    """
    xv = x if x.ndim == 2 and x.shape == Y.shape else x.reshape(-1, 1)  # one x per column, or shared
    M = np.isfinite(Y) & np.isfinite(xv)
    Mf = M.astype(np.float64)
    return np.where(M, Y, 0.0), np.where(M, xv, 0.0), Mf


def rolling_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last `window` rows (inclusive) along axis 0; partial sums for the first rows.

    Cumulative-sum differences: O(T) and causal (row t never sees rows > t).  In float64 the
    round-off is about eps * (cumulative total / window total), i.e. ~1e-13 relative for
    return-sized data over tens of thousands of bars.
    """
    c = np.cumsum(a, axis=0)
    out = c.copy()
    if window < a.shape[0]:
        out[window:] -= c[:-window]
    return out


def ewm_sum(a: np.ndarray, decay: float) -> np.ndarray:
    """S_t = sum_{s<=t} decay^(t-s) a_s along axis 0 (a causal first-order IIR filter, in C)."""
    return lfilter([1.0], [1.0, -decay], a, axis=0)


def halflife_decay(halflife: float) -> float:
    """Per-bar decay factor of an exponential weight with this half-life in bars (pandas convention)."""
    if not np.isfinite(halflife) or halflife <= 0:
        raise ValueError(f"halflife must be a positive number of bars, got {halflife!r}")
    return float(0.5 ** (1.0 / halflife))


def check_window(window: int, min_periods: int | None, least: int) -> tuple[int, int]:
    """Validate a window in bars and resolve min_periods (default: half the window, at least `least`)."""
    if int(window) != window or window < least:
        raise ValueError(f"window must be an integer number of bars >= {least}, got {window!r}")
    window = int(window)
    if min_periods is None:
        min_periods = max(least, (window + 1) // 2)
    if min_periods < least or min_periods > window:
        raise ValueError(
            f"min_periods must be between {least} and the window ({window}), got {min_periods!r}"
        )
    return window, int(min_periods)


# A centred sum of squares below this fraction of the raw one is round-off: the regressor is
# constant over the window and the slope is not identified.
_DEGENERATE = 1e-10


def _moments(Y: np.ndarray, X: np.ndarray, M: np.ndarray, window: int) -> dict[str, np.ndarray]:
    return {
        "n": rolling_sum(M, window),
        "sx": rolling_sum(X * M, window),
        "sy": rolling_sum(Y, window),
        "sxx": rolling_sum(X * X * M, window),
        "sxy": rolling_sum(X * Y, window),
        "syy": rolling_sum(Y * Y, window),
    }


def _slope(m: dict[str, np.ndarray], min_periods: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beta, centred Sxx, centred Sxy); beta NaN where fewer than min_periods pairs or x constant."""
    n = m["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx_c = m["sxx"] - m["sx"] ** 2 / n
        sxy_c = m["sxy"] - m["sx"] * m["sy"] / n
        ok = (n >= min_periods) & (sxx_c > _DEGENERATE * m["sxx"])
        beta = np.where(ok, sxy_c / np.where(ok, sxx_c, 1.0), np.nan)
    return beta, sxx_c, sxy_c


def rolling_ols_beta_array(
    y: np.ndarray, x: np.ndarray, window: int, min_periods: int | None = None
) -> np.ndarray:
    """`rolling_ols_beta` on aligned float64 arrays (y (T, N), x (T,), NaN where missing): (T, N).

    The frame version delegates to the same core, so both give identical numbers; the feature
    pipeline calls this one to skip the DataFrame wrapping (hundreds of calls per request).
    """
    return _rolling_ols_beta_prepared(*prepare_pair_arrays(y, x), window, min_periods)


def _rolling_ols_beta_prepared(
    Y: np.ndarray, X: np.ndarray, M: np.ndarray, window: int, min_periods: int | None
) -> np.ndarray:
    window, min_periods = check_window(window, min_periods, least=2)
    beta, _, _ = _slope(_moments(Y, X, M, window), min_periods)
    return beta


def _default_min_periods(halflife: float, min_periods: int | None) -> int:
    if min_periods is None:
        return max(3, int(np.ceil(halflife)))
    if min_periods < 2:
        raise ValueError(f"min_periods must be at least 2 valid rows, got {min_periods!r}")
    return int(min_periods)


def _ewm_sums(Y: np.ndarray, X: np.ndarray, M: np.ndarray, decay: float) -> dict[str, np.ndarray]:
    return {
        "sw": ewm_sum(M, decay),
        "sx": ewm_sum(X * M, decay),
        "sy": ewm_sum(Y, decay),
        "sxx": ewm_sum(X * X * M, decay),
        "sxy": ewm_sum(X * Y, decay),
    }


def _ewm_slope(Y: np.ndarray, X: np.ndarray, M: np.ndarray, decay: float, min_periods: int) -> np.ndarray:
    return _ewm_slope_from(_ewm_sums(Y, X, M, decay), np.cumsum(M, axis=0), min_periods)


def _ewm_slope_from(s: dict[str, np.ndarray], count: np.ndarray, min_periods: int) -> np.ndarray:
    """Slope from the weighted sums of `_ewm_sums` and the running count of valid pairs."""
    sw, sx, sy, sxx, sxy = s["sw"], s["sx"], s["sy"], s["sxx"], s["sxy"]
    with np.errstate(divide="ignore", invalid="ignore"):
        var = sxx * sw - sx * sx  # sw^2 * weighted variance of x
        cov = sxy * sw - sx * sy
        ok = (count >= min_periods) & (var > _DEGENERATE * sxx * sw)
        return np.where(ok, cov / np.where(ok, var, 1.0), np.nan)


def ewma_beta_array(
    y: np.ndarray, x: np.ndarray, halflife: float, min_periods: int | None = None
) -> np.ndarray:
    """`ewma_beta` on aligned float64 arrays (y (T, N), x (T,), NaN where missing): the same numbers."""
    decay = halflife_decay(halflife)
    Y, X, M = prepare_pair_arrays(y, x)
    return _ewm_slope(Y, X, M, decay, _default_min_periods(halflife, min_periods))


def winsorise_to_band_array(
    y: np.ndarray, x: np.ndarray, lower: float = -2.0, upper: float = 4.0
) -> np.ndarray:
    """`winsorise_to_band` on aligned float64 arrays (y (T, N), x (T,)); the frame version delegates here."""
    if not lower < upper:
        raise ValueError(f"welch band needs lower < upper, got lower={lower!r}, upper={upper!r}")
    xs = x.reshape(-1, 1)
    a, b = lower * xs, upper * xs
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.clip(y, lo, hi)


def welch_beta_array(
    y: np.ndarray,
    x: np.ndarray,
    halflife: float,
    lower: float = -2.0,
    upper: float = 4.0,
    min_periods: int | None = None,
) -> np.ndarray:
    """`welch_beta` on aligned float64 arrays (y (T, N), x (T,), NaN where missing): the same numbers."""
    return ewma_beta_array(winsorise_to_band_array(y, x, lower, upper), x, halflife, min_periods)


def as_2d(a: np.ndarray) -> np.ndarray:
    """A (T,) series as a (T, 1) column; (T, N) unchanged."""
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def shift(a: np.ndarray, k: int) -> np.ndarray:
    """Rows moved down by k >= 0 (row t holds row t-k), NaN-filled at the top."""
    a = as_2d(a)
    out = np.full_like(a, np.nan)
    if k == 0:
        return a.copy()
    if k < a.shape[0]:
        out[k:] = a[:-k]
    return out


def _masked(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.isfinite(a)
    return np.where(m, a, 0.0), m.astype(np.float64)


def rolling_count(a: np.ndarray, window: int) -> np.ndarray:
    """Number of finite values among the last `window` rows."""
    return rolling_sum(np.isfinite(as_2d(a)).astype(np.float64), window)


def rolling_mean(a: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Mean of the finite values among the last `window` rows."""
    v, m = _masked(as_2d(a))
    n = rolling_sum(m, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= min_periods, rolling_sum(v, window) / n, np.nan)


def rolling_std(a: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the finite values among the last `window` rows.

    Each column is first shifted by its first finite value (a constant from the past, so still
    causal) to keep the sum-of-squares formula accurate for series with a large mean (log volume).
    """
    a = as_2d(a)
    first = np.argmax(np.isfinite(a), axis=0)
    ref = a[first, np.arange(a.shape[1])]
    ref = np.where(np.isfinite(ref), ref, 0.0)
    v, m = _masked(a - ref)
    n = rolling_sum(m, window)
    s = rolling_sum(v, window)
    ss = rolling_sum(v * v, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(ss - s * s / n, 0.0) / (n - 1.0)
        return np.where(n >= max(min_periods, 2), np.sqrt(var), np.nan)


def realised_vol(r: np.ndarray, window: int, min_periods: int, bars_per_year: float) -> np.ndarray:
    """Annualised realised volatility sqrt(mean(r^2) * bars_per_year) over the last `window` rows.

    Uncentred (the usual realised-variance convention: a drift is part of the risk) and in
    calendar time, so daily, 8h and hourly bars give comparable numbers.
    """
    return np.sqrt(rolling_mean(as_2d(r) ** 2, window, min_periods) * bars_per_year)


def rolling_corr(y: np.ndarray, x: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Pearson correlation of each column of y with x over the valid pairs of the last `window` rows."""
    y, x = as_2d(y), as_2d(x)
    m = np.isfinite(y) & np.isfinite(x)
    mf = m.astype(np.float64)
    yv = np.where(m, y, 0.0)
    xv = np.where(m, np.broadcast_to(x, y.shape), 0.0)
    n = rolling_sum(mf, window)
    sx, sy = rolling_sum(xv, window), rolling_sum(yv, window)
    sxx, syy, sxy = rolling_sum(xv * xv, window), rolling_sum(yv * yv, window), rolling_sum(xv * yv, window)
    return _corr(n, sx, sy, sxx, syy, sxy, n >= min_periods)


def rolling_beta_and_corr(
    y: np.ndarray, x: np.ndarray, window: int, beta_min_periods: int | None, corr_min_periods: int
) -> tuple[np.ndarray, np.ndarray]:
    """(`rolling_ols_beta_array(y, x, window, beta_min_periods)`, `rolling_corr(y, x, window, corr_min_periods)`).

    Both are functions of the same six masked window sums (the OLS moments include syy); the
    sums are bit-for-bit those each function builds on its own (zero-filled invalid pairs, x*1.0
    and x*x*1.0 are exact), so sharing them changes no number and halves the cumulative sums.
    """

    window, beta_min_periods = check_window(window, beta_min_periods, least=2)
    Y, X, M = prepare_pair_arrays(as_2d(y), np.asarray(x, dtype=np.float64))
    m = _moments(Y, X, M, window)
    beta, _, _ = _slope(m, beta_min_periods)
    n = m["n"]
    corr = _corr(n, m["sx"], m["sy"], m["sxx"], m["syy"], m["sxy"], n >= corr_min_periods)
    return beta, corr


def ewma_beta_and_corr(
    y: np.ndarray, x: np.ndarray, halflife: float, min_periods: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(`ewma_beta_array(y, x, halflife)`, `ewma_corr(y, x, halflife, min_periods)`) from shared sums.

    min_periods defaults as in `ewma_beta` (ceil(halflife), at least 3) and applies to both.
    The exponentially weighted sums are the ones each function builds on its own (bit-equal).
    """

    min_periods = _default_min_periods(halflife, min_periods)
    decay = halflife_decay(halflife)
    Y, X, M = prepare_pair_arrays(as_2d(y), np.asarray(x, dtype=np.float64))
    s = _ewm_sums(Y, X, M, decay)
    count = np.cumsum(M, axis=0)
    beta = _ewm_slope_from(s, count, min_periods)
    syy = ewm_sum(Y * Y, decay)
    sw, sx, sy, sxx, sxy = s["sw"], s["sx"], s["sy"], s["sxx"], s["sxy"]
    ok = count >= min_periods
    return beta, _corr(sw, sx, sy, sxx, syy, sxy, ok)


def _corr(w, sx, sy, sxx, syy, sxy, ok) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        vx = sxx * w - sx * sx
        vy = syy * w - sy * sy
        c = sxy * w - sx * sy
        good = ok & (vx > 1e-10 * sxx * w) & (vy > 1e-10 * syy * w)
        out = np.where(good, c / np.sqrt(np.where(good, vx * vy, 1.0)), np.nan)
    return np.clip(out, -1.0, 1.0)


def rolling_max(a: np.ndarray, window: int) -> np.ndarray:
    """Max of the finite values among the last `window` rows (NaN if none).

    scipy's O(T) running max over the values with every non-finite one at -inf (the trailing
    window by `origin`, -inf before the first row), -inf back to NaN: the numbers of pandas'
    `rolling(window, min_periods=1).max()` (a max is exact), without building a frame
    (~0.1 ms of a request's ~6 ms of features; tests/models/test_rolling_max.py).
    """
    a = as_2d(a)
    m = np.where(np.isfinite(a), a, -np.inf)
    out = maximum_filter1d(m, size=window, axis=0, mode="constant", cval=-np.inf, origin=(window - 1) // 2)
    return np.where(out == -np.inf, np.nan, out)


CATEGORY_GROUP = {
    "crypto_benchmark": "crypto_benchmark",
    "equity": "equity",
    "commodity": "commodity",
    "fx": "fx_rates",
    "rates": "fx_rates",
    "other": "fx_rates",  # macro series without a better home (documented in the module docstring)
    "volatility": "volatility",
}


YEAR = pd.Timedelta(days=365)


def feature_rows(panel: Panel) -> np.ndarray:
    """(T, N) mask of the (bar, asset) pairs that get a row: the asset has a close at that bar."""
    return np.isfinite(panel.close.to_numpy(dtype=np.float64, na_value=np.nan))


class _Builder:
    """Collects (T, N) arrays by name and group; market-wide (T,) arrays are broadcast."""

    def __init__(self, n_bars: int, n_assets: int):
        self.t, self.n = n_bars, n_assets
        self.arrays: dict[str, np.ndarray] = {}
        self.groups: dict[str, str] = {}

    def add(self, name: str, group: str, values) -> None:
        if name in self.arrays:
            raise ValueError(f"duplicate feature column {name!r} (two benchmarks or factors share a name?)")
        a = as_2d(np.asarray(values, dtype=np.float64))
        if a.ndim != 2 or a.shape[0] != self.t or a.shape[1] not in (1, self.n):
            raise ValueError(
                f"feature {name!r} has shape {a.shape}, expected ({self.t}, {self.n}) or ({self.t},)"
            )
        if a.shape[1] == 1 and self.n != 1:
            a = np.broadcast_to(a, (a.shape[0], self.n))
        self.arrays[name] = a
        self.groups[name] = group


@dataclass
class FeatureArrays:
    """Features in wide form: name -> (T, N) float64 array on the panel grid, assets sorted.

    What `compute_features` builds before going long; serving cuts its windows straight from
    these (no long frame), so both paths share every number by construction.  `rows` is the
    (T, N) mask of pairs that get a row in the long frame (the asset has a close).
    """

    arrays: dict[str, np.ndarray]
    groups: dict[str, str]
    base_columns: dict[str, str]
    index: pd.DatetimeIndex
    symbols: list[str]
    rows: np.ndarray
    freq: pd.Timedelta


def compute_feature_arrays(panel: Panel, spec: FeatureSpec | None = None) -> FeatureArrays:
    """Every feature of `panel` as (T, N) arrays (assets sorted); `compute_features` in wide form."""
    spec = spec or FeatureSpec()
    symbols = sorted(panel.symbols)
    p = panel.select(symbols) if symbols != panel.symbols else panel
    freq = p.freq
    bars = _Bars(freq)
    b = _Builder(len(p.index), len(symbols))
    rets = _pct_change(p.close.to_numpy(dtype=np.float64, na_value=np.nan))  # = p.returns(), bitwise

    _own_history(b, p, rets, spec, bars)
    base = _benchmark_features(b, p, rets, spec, bars)
    _market_state(b, p, spec, bars)
    _funding_leverage(b, p, spec, bars)
    _factor_features(b, p, spec, bars)
    _vol_ratios(b, p, spec)
    _factor_levels(b, p, spec)
    return FeatureArrays(b.arrays, b.groups, base, p.index, symbols, feature_rows(p), freq)


class _Bars:
    """Durations -> bars on this panel's clock (to_periods at the last moment).

    Memoised per call of `compute_feature_arrays`: the spec names a few dozen durations but the
    pipeline asks for them hundreds of times, and parsing one costs a pandas Timedelta.
    """

    def __init__(self, freq: pd.Timedelta):
        self.freq = freq
        self.per_year = YEAR / freq
        self._periods: dict[str, int] = {}
        self._halflives: dict[str, float] = {}

    def __call__(self, duration: str) -> int:
        n = self._periods.get(duration)
        if n is None:
            n = self._periods[duration] = to_periods(duration, self.freq)
        return n

    def halflife(self, duration: str) -> float:
        h = self._halflives.get(duration)
        if h is None:
            h = self._halflives[duration] = max(1.0, parse_duration(duration) / self.freq)
        return h


def _pct_change(level: np.ndarray) -> np.ndarray:
    """`DataFrame.pct_change(fill_method=None)` on a (T, N) array: level / level one row up - 1.

    The same two IEEE operations pandas performs (x / x.shift(1) - 1), so bit-equal, without
    building frames (tests/models/test_feat_shared_sums.py).
    """
    out = np.full(level.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = level[1:] / level[:-1] - 1.0
    return out


def _minp(window: int, fraction: float = 0.5, least: int = 2) -> int:
    return min(window, max(least, int(np.ceil(fraction * window))))


def _horizon_return(level: np.ndarray, h: int) -> np.ndarray:
    level = as_2d(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        return level / shift(level, h) - 1.0


def _own_history(b: _Builder, p: Panel, rets: np.ndarray, spec: FeatureSpec, bars: _Bars) -> None:
    close = p.close.to_numpy(dtype=np.float64, na_value=np.nan)
    r = rets
    for h in spec.return_horizons:
        b.add(f"ret_{h}", "own_history", _horizon_return(close, bars(h)))
    for w in spec.vol_windows:
        n = bars(w)
        b.add(f"vol_{w}", "own_history", realised_vol(r, n, _minp(n), bars.per_year))
    n = bars(spec.drawdown_window)
    b.add(f"drawdown_{spec.drawdown_window}", "own_history", close / rolling_max(close, n) - 1.0)
    vol = p.volume.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        logv = np.where(vol > 0, np.log(np.where(vol > 0, vol, 1.0)), np.nan)
    b.add(f"volume_z_{spec.volume_z_window}", "own_history", _zscore(logv, bars(spec.volume_z_window)))


def _zscore(a: np.ndarray, n: int) -> np.ndarray:
    """z of the current bar against the mean/sd of the last n bars (the window includes the bar:
    still causal); NaN where the window is (nearly) constant, since a z-score there is noise."""
    mean, sd = rolling_mean(a, n, _minp(n)), rolling_std(a, n, _minp(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 1e-12, (a - mean) / sd, np.nan)


def _benchmark_features(
    b: _Builder, p: Panel, rets: np.ndarray, spec: FeatureSpec, bars: _Bars
) -> dict[str, str]:
    g = "crypto_benchmark"
    base: dict[str, str] = {}
    levels = p.benchmarks if p.benchmarks.index.equals(p.index) else p.benchmarks.reindex(p.index)
    bench_rets = _pct_change(levels.to_numpy(dtype=np.float64, na_value=np.nan))  # = benchmark_returns()
    r = rets  # numpy estimators: no frame per call
    for k, name in enumerate(p.benchmark_names):
        x = bench_rets[:, k]
        wv = welch_beta_array(r, x, bars.halflife(spec.welch_halflife), spec.welch_lower, spec.welch_upper)
        base[name] = f"beta_welch_{name}"
        b.add(base[name], g, wv)
        for hl in spec.welch_extra_halflives:  # the same estimator at longer memory
            extra = welch_beta_array(r, x, bars.halflife(hl), spec.welch_lower, spec.welch_upper)
            b.add(f"beta_welch_{name}_{hl}", g, extra)
            b.add(f"rel_welch_{name}_{hl}", g, extra - wv)
        for w in (*spec.beta_windows, *spec.long_beta_windows):  # long windows: a HAR-style cascade
            n = bars(w)
            if n >= 3:  # same window: one set of sums for both (bit-equal, see rolling_beta_and_corr)
                beta, corr = rolling_beta_and_corr(r, x, n, None, _minp(n, least=3))
            else:
                beta, corr = rolling_ols_beta_array(r, x, 3), rolling_corr(r, x, n, _minp(n, least=3))
            b.add(f"beta_ols_{name}_{w}", g, beta)
            b.add(f"corr_{name}_{w}", g, corr)
            b.add(f"rel_ols_{name}_{w}", g, beta - wv)
        for hl in spec.ewma_halflives:
            h = bars.halflife(hl)
            beta, corr = ewma_beta_and_corr(r, x, h)  # corr's min_periods max(3, ceil(h)): the same
            b.add(f"beta_ewma_{name}_{hl}", g, beta)
            b.add(f"corr_ewma_{name}_{hl}", g, corr)
            b.add(f"rel_ewma_{name}_{hl}", g, beta - wv)
        w = spec.downside_window
        n = max(bars(w), 4)
        down = rolling_ols_beta_array(r, np.where(x < 0, x, np.nan), n, min_periods=_minp(n, 0.25, 3))
        b.add(f"beta_down_{name}_{w}", g, down)
        b.add(f"rel_down_{name}_{w}", g, down - wv)
        if spec.high_vol_beta_window:
            w = spec.high_vol_beta_window
            n = max(bars(w), 4)
            high = rolling_ols_beta_array(r, _high_vol_bars(x, n), n, min_periods=_minp(n, 0.25, 3))
            b.add(f"beta_hivol_{name}_{w}", g, high)
            b.add(f"rel_hivol_{name}_{w}", g, high - wv)
    return base


def _high_vol_bars(x: np.ndarray, n: int) -> np.ndarray:
    """The benchmark return on bars where |x| exceeds its median over the n bars up to that bar,
    NaN elsewhere: a bar is flagged once, when it happens, so the flag never uses the future.

    The forward OLS slope is dominated by the coming month's large moves (MODEL-NOTES): a beta
    measured on the large moves of the past is the closest classical proxy for it.
    """
    a = np.abs(x)
    med = pd.Series(a).rolling(n, min_periods=_minp(n)).median().to_numpy()
    with np.errstate(invalid="ignore"):
        return np.where(a > med, x, np.nan)


def _market_state(b: _Builder, p: Panel, spec: FeatureSpec, bars: _Bars) -> None:
    levels = p.benchmarks.to_numpy(dtype=np.float64, na_value=np.nan)
    br = _pct_change(levels)  # = p.benchmark_returns(), bitwise
    for k, name in enumerate(p.benchmark_names):
        for h in spec.return_horizons:
            b.add(f"mkt_{name}_ret_{h}", "crypto_benchmark", _horizon_return(levels[:, k], bars(h))[:, 0])
        for w in spec.vol_windows:
            n = bars(w)
            b.add(
                f"mkt_{name}_vol_{w}",
                "crypto_benchmark",
                realised_vol(br[:, k], n, _minp(n), bars.per_year)[:, 0],
            )


def _funding_leverage(b: _Builder, p: Panel, spec: FeatureSpec, bars: _Bars) -> None:
    g = "funding_leverage"
    # funding_rate is what accrues over the bar (the sum of the prints in it), so per-bar x bars/year
    fund = p.funding_rate.to_numpy(dtype=np.float64, na_value=np.nan) * bars.per_year
    b.add("funding_ann", g, fund)
    for w in spec.funding_windows:
        n = bars(w)
        b.add(f"funding_ann_mean_{w}", g, rolling_mean(fund, n, _minp(n)))
        b.add(f"funding_ann_chg_{w}", g, fund - shift(fund, n))
    oi = p.open_interest.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_oi = np.where(oi > 0, np.log(np.where(oi > 0, oi, 1.0)), np.nan)
    for w in spec.oi_windows:
        b.add(f"oi_chg_{w}", g, log_oi - shift(log_oi, bars(w)))
    if spec.funding_z_window:
        b.add(f"funding_z_{spec.funding_z_window}", g, _zscore(fund, bars(spec.funding_z_window)))
    if spec.oi_z_window:
        b.add(f"oi_chg_z_{spec.oi_z_window}", g, _zscore(log_oi - shift(log_oi, 1), bars(spec.oi_z_window)))


def _vol_ratios(b: _Builder, p: Panel, spec: FeatureSpec) -> None:
    """`vol_ratio_<B>_<w>` = vol_<w> / mkt_<B>_vol_<w>, from the columns already built (same numbers).

    beta = corr x sigma_asset / sigma_benchmark, and volatility is far more persistent than beta
    (HAR, Corsi 2009): the ratio carries the predictable leg in one compact column.
    """
    if not spec.vol_ratio:
        return
    for name in p.benchmark_names:
        for w in spec.vol_windows:
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = b.arrays[f"vol_{w}"] / b.arrays[f"mkt_{name}_vol_{w}"]
            b.add(f"vol_ratio_{name}_{w}", "crypto_benchmark", np.where(np.isfinite(ratio), ratio, np.nan))


def _factor_levels(b: _Builder, p: Panel, spec: FeatureSpec) -> None:
    """`fac_<F>_log_level` (or `fac_<F>_level` for rates, in points and possibly <= 0).

    Some factors are states, not returns: the VIX level separates calm from stressed markets
    where its daily change does not.  Non-positive levels of a non-rate factor are NaN.
    """
    missing = [f for f in spec.factor_levels if f not in p.factor_names]
    if missing:
        raise ValueError(
            f"factor_levels names {missing}, which the panel does not have (its factors: {list(p.factor_names)})"
        )
    for name in spec.factor_levels:
        category = p.factor_categories.get(name, "other")
        g = CATEGORY_GROUP.get(category, "fx_rates")
        level = p.factors[name].to_numpy(dtype=np.float64, na_value=np.nan)
        if category == "rates":
            b.add(f"fac_{name}_level", g, level)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            b.add(
                f"fac_{name}_log_level",
                g,
                np.where(level > 0, np.log(np.where(level > 0, level, 1.0)), np.nan),
            )


def _factor_change(level: np.ndarray, is_rate, clip: float) -> np.ndarray:
    """Per-bar change of a factor (difference for rates, simple return otherwise), clipped.

    `level` is (T,) or (T, F) with `is_rate` a bool or an (F,) mask: the same elementwise
    operations per column either way.  A return from or to a non-positive price (WTI on
    2020-04-20/21) is undefined: NaN.
    """
    one = np.ndim(level) == 1
    level = as_2d(level)
    prev = shift(level, 1)
    rate = np.broadcast_to(np.asarray(is_rate, dtype=bool), (level.shape[1],))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(rate, level - prev, np.where((level > 0) & (prev > 0), level / prev - 1.0, np.nan))
    c = np.clip(c, -clip, clip)
    return c[:, 0] if one else c


def _sum_changes(c: np.ndarray, window: int, min_periods: int, is_rate) -> np.ndarray:
    """Change over the last `window` bars from per-bar changes (compounded for returns).

    `is_rate` a bool or an (F,) column mask (rates: plain sums; returns: log1p then expm1).
    """
    a = as_2d(c)
    rate = np.broadcast_to(np.asarray(is_rate, dtype=bool), (a.shape[1],))
    with np.errstate(invalid="ignore", divide="ignore"):
        core = a if rate.all() else np.where(rate, a, np.log1p(a))
    s = rolling_mean(core, window, min_periods) * rolling_count(a, window)
    return s if rate.all() else np.where(rate, s, np.expm1(s))


def _columns(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """frame[names] as a float64 array; the frame's own array when its columns are already
    `names` in order (the usual case: selecting by a list of string labels costs ~0.5 ms per
    frame, a tenth of a one-asset request's features, for the same numbers)."""
    if list(frame.columns) != names:
        frame = frame[names]
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


# beta/corr of every asset against every factor at once while (T x assets x factors) stays below this
_FACTOR_BATCH_NUMBERS = 2_000_000


def _factor_features(b: _Builder, p: Panel, spec: FeatureSpec, bars: _Bars) -> None:
    """Factor features, computed for all factors as columns of one (T, F) array (per-column
    arithmetic is independent, so each column is bit-for-bit the one-factor computation) and
    added in the per-factor column order."""
    names = list(p.factor_names)
    if not names:
        return
    close = p.close.to_numpy(dtype=np.float64, na_value=np.nan)
    t_len, n_assets = close.shape
    h = bars(spec.factor_return_horizon)
    h_days = parse_duration(spec.factor_return_horizon) / pd.Timedelta(days=1)
    asset_h = _horizon_return(close, h)
    rate = np.array([p.factor_categories.get(name) == "rates" for name in names], dtype=bool)
    levels = _columns(p.factors, names)
    stale = _columns(p.factor_staleness, names)
    c = _factor_change(levels, rate, spec.factor_return_clip)
    window_feats = []
    for w in spec.factor_windows:
        n = bars(w)
        window_feats.append(
            (w, _sum_changes(c, n, _minp(n), rate), realised_vol(c, n, _minp(n), bars.per_year))
        )
    # overlapping h-bar changes, kept only where the factor printed within the last h
    xh = _sum_changes(c, h, 1, rate)
    with np.errstate(invalid="ignore"):
        xh = np.where(stale < h_days, xh, np.nan)
    betas = {}
    batch = t_len * n_assets * len(names) <= _FACTOR_BATCH_NUMBERS
    for w in spec.factor_beta_windows:
        n = max(bars(w), 3)
        mp = _minp(n, 1 / 3, 3)
        if batch:  # column f * n_assets + i: asset i against factor f
            y_all = np.tile(asset_h, (1, len(names)))
            x_all = np.repeat(xh, n_assets, axis=1)
            beta, corr = rolling_beta_and_corr(y_all, x_all, n, mp, mp)
            betas[w] = [
                (beta[:, f * n_assets : (f + 1) * n_assets], corr[:, f * n_assets : (f + 1) * n_assets])
                for f in range(len(names))
            ]
        else:
            betas[w] = [rolling_beta_and_corr(asset_h, xh[:, f], n, mp, mp) for f in range(len(names))]
    for f, name in enumerate(names):
        g = CATEGORY_GROUP.get(p.factor_categories.get(name, "other"), "fx_rates")
        for w, ret, vol in window_feats:
            b.add(f"fac_{name}_ret_{w}", g, ret[:, f])
            b.add(f"fac_{name}_vol_{w}", g, vol[:, f])
        b.add(f"fac_{name}_stale", g, stale[:, f])
        for w in spec.factor_beta_windows:
            beta, corr = betas[w][f]
            b.add(f"beta_{name}_{w}", g, beta)
            b.add(f"corr_{name}_{w}", g, corr)
