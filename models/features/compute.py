"""Causal features per (bar, asset): the inputs of the beta network, the same in training and serving.

`compute_features(panel, spec)` turns a `Panel` into a `FeatureTable`.  Every value at row t
uses panel rows <= t only (factor values are already as-of joined on the bar close by the
panel), so a feature never sees the future; `tests/models/test_causality.py` checks this by
perturbing everything after a cut.  Everything is vectorised over assets and time (no loop
over bars); torch-free.

Columns (`<B>` a benchmark name such as `BTCUSDT` or `CRYPTO_EW`, `<F>` a factor name, windows
as in the spec, e.g. `30d`):

own_history        `ret_<h>` simple return over h; `vol_<w>` annualised realised vol;
                   `drawdown_<w>` close / rolling high - 1; `volume_z_<w>` z-score of log volume.
crypto_benchmark   `beta_welch_<B>` the base beta (Welch 2022, `base_columns[B]`);
                   `beta_ols_<B>_<w>`, `corr_<B>_<w>` rolling OLS beta and correlation;
                   `beta_ewma_<B>_<hl>`, `corr_ewma_<B>_<hl>`; `beta_down_<B>_<w>` downside beta
                   (OLS on bars where the benchmark fell); `rel_ols_<B>_<w>`, `rel_ewma_<B>_<hl>`,
                   `rel_down_<B>_<w>`: those betas minus the Welch beta (the correction signal);
                   `mkt_<B>_ret_<h>`, `mkt_<B>_vol_<w>`: benchmark state, the same for every asset.
funding_leverage   `funding_ann` funding per bar x bars per year; `funding_ann_mean_<w>`,
                   `funding_ann_chg_<w>` (level minus level w ago); `oi_chg_<w>` log change of
                   open interest.
factor groups      `fac_<F>_ret_<w>`, `fac_<F>_vol_<w>`, `fac_<F>_stale` (days since the value
                   was published): market-wide, broadcast to every asset; `beta_<F>_<w>`,
                   `corr_<F>_<w>`: asset vs factor over overlapping `factor_return_horizon`
                   changes (a daily factor and 8h bars line up over a day), counting only
                   windows in which the factor printed (weekends and holidays are masked).
                   Group by the factor's category: equity, commodity, fx_rates (fx, rates and
                   `other`), volatility, crypto_benchmark.

Optional columns (FeatureSpec fields off by default; issue 10 items 2-3):
`welch_extra_halflives`  `beta_welch_<B>_<hl>`, `rel_welch_<B>_<hl>` (crypto_benchmark).
`long_beta_windows`      more `beta_ols_/corr_/rel_ols_<B>_<w>` beside `beta_windows` (a HAR cascade).
`high_vol_beta_window`   `beta_hivol_<B>_<w>`, `rel_hivol_<B>_<w>`: OLS on bars whose |benchmark
                         return| exceeds its median over the w bars up to that bar.
`vol_ratio`              `vol_ratio_<B>_<w>` = vol_<w> / mkt_<B>_vol_<w> per vol window.
`funding_z_window`       `funding_z_<w>` (funding_leverage); `oi_z_window`: `oi_chg_z_<w>`, z of the
                         per-bar log change of open interest.
`factor_levels`          `fac_<F>_log_level` (`fac_<F>_level` for rates), in the factor's group; a
                         name the panel lacks is a ValueError naming it.
No expanding-window feature: serving sends a bounded history, so an expanding beta would differ
between training and serving; the longest window (e.g. 365d) is the long memory.

Missing inputs: funding, open interest and volume columns are always present (the schema
depends only on the spec and the panel's benchmark and factor names) and are NaN where the
panel has no such data; a panel without factors simply has no factor columns.  Per-bar factor
changes are clipped to +-`factor_return_clip` (WTI settled at -36.98 on 2020-04-20, so oil
returns explode around it); a return from or to a non-positive price is NaN.  Rates are in points and changes are differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import Panel
from adaptive_beta.models.durations import parse_duration, to_periods
from adaptive_beta.models.estimators.ewma import welch_betas_array
from adaptive_beta.models.estimators.rolling import rolling_ols_beta_array
from adaptive_beta.models.features.partition import asset_blocks, block_panel, check_block_args
from adaptive_beta.models.features.rolling import (
    as_2d,
    ewma_betas_and_corrs,
    realised_vols,
    rolling_beta_and_corr,
    rolling_betas_and_corrs,
    rolling_corr,
    rolling_counts,
    rolling_max,
    rolling_mean,
    rolling_means,
    rolling_std,
    shift,
)
from adaptive_beta.models.features.spec import FeatureSpec
from adaptive_beta.models.pool import ordered_map

GROUPS = (
    "crypto_benchmark",
    "equity",
    "commodity",
    "fx_rates",
    "volatility",
    "funding_leverage",
    "own_history",
)
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

__all__ = [
    "CATEGORY_GROUP",
    "GROUPS",
    "FeatureArrays",
    "FeatureSpec",
    "FeatureTable",
    "compute_feature_arrays",
    "compute_features",
    "feature_rows",
    "wide_to_long",
]


@dataclass
class FeatureTable:
    """Features in long form plus what a model needs to know about the columns."""

    frame: pd.DataFrame  # indexed by (timestamp, symbol), sorted; float64 columns
    groups: dict[str, str]  # column -> group (one of GROUPS)
    base_columns: dict[str, str]  # benchmark -> column with the Welch beta the network corrects
    spec_hash: str = ""
    freq: pd.Timedelta | None = None
    meta: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def columns_in(self, group: str) -> list[str]:
        """Columns of one group, in frame order."""
        return [c for c in self.frame.columns if self.groups[c] == group]

    def available_columns(self) -> list[str]:
        """Columns with at least one finite value (e.g. funding is all-NaN on spot-only data)."""
        finite = np.isfinite(self.frame.to_numpy(dtype=np.float64, na_value=np.nan)).any(axis=0)
        return [c for c, ok in zip(self.frame.columns, finite, strict=True) if ok]


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
        a = (
            values
            if type(values) is np.ndarray and values.dtype == np.float64
            else np.asarray(values, np.float64)
        )
        if a.ndim == 1:
            a = a[:, None]
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
    given = panel.close.columns.tolist()  # once: listing a column index of strings costs ~15 us
    symbols = sorted(given)
    p = panel.select(symbols) if symbols != given else panel
    freq = p.freq
    bars = _Bars(freq)
    b = _Builder(len(p.index), len(symbols))
    levels = _Levels(p, spec, bars)

    _own_history(b, p, levels, spec, bars)
    base = _benchmark_features(b, p, levels, spec, bars)
    _market_state(b, levels, spec)
    _funding_leverage(b, p, spec, bars)
    _factor_features(b, p, levels, spec, bars)
    _vol_ratios(b, levels, spec)
    _factor_levels(b, p, levels, spec)
    return FeatureArrays(b.arrays, b.groups, base, p.index, symbols, feature_rows(p), freq)


def compute_features(
    panel: Panel, spec: FeatureSpec | None = None, *, block_assets: int | None = None, workers: int = 1
) -> FeatureTable:
    """All features of `panel` at every (bar, asset) with a close; see the module docstring.

    `block_assets` / `workers`: compute per block of that many assets (None with workers 1: all
    at once), blocks in a local process pool of `workers`; the same table bit for bit, with a
    peak of the table plus one block (`adaptive_beta.models.features.blocks`, which also streams
    a table too large for memory to parquet).
    """
    spec = spec or FeatureSpec()
    if block_assets is not None or workers != 1:
        check_block_args(block_assets, workers, "compute_features")
        return blocked_feature_table(panel, spec, block_assets, workers)
    fa = compute_feature_arrays(panel, spec)
    frame = wide_to_long(fa.arrays, fa.index, fa.symbols, fa.rows, consume=True)  # fa is ours: free as we go
    return FeatureTable(
        frame=frame, groups=fa.groups, base_columns=fa.base_columns, spec_hash=spec.hash(), freq=fa.freq
    )


def blocked_feature_table(panel: Panel, spec: FeatureSpec, block_assets: int | None, workers: int):
    """`compute_features(panel, spec)` computed per asset block; the same frame, bit for bit."""
    symbols = sorted(panel.symbols)
    blocks = asset_blocks(symbols, block_assets, len(panel.index))
    if len(blocks) <= 1:  # one block is the one-shot computation
        return compute_features(panel, spec)
    p = panel.select(symbols) if symbols != panel.symbols else panel
    rows = feature_rows(p)
    ti, si = np.nonzero(rows)  # the one-shot row order: by time, then by symbol
    pos = np.full(rows.shape, -1, dtype=np.int64)
    pos[ti, si] = np.arange(len(ti))
    idx = pd.MultiIndex.from_arrays(
        [p.index[ti], pd.Index(symbols, dtype=object)[si]], names=["timestamp", "symbol"]
    )
    del ti, si
    results = ordered_map(
        len(blocks), lambda k: (block_panel(p, blocks[k]), spec), compute_feature_arrays, workers
    )
    block = names = fa = None
    start = 0
    for b, fa in zip(blocks, results, strict=True):
        if block is None:
            names = list(fa.arrays)
            block = np.empty((len(names), len(idx)))  # column-major, as wide_to_long
        bt, bs = np.nonzero(fa.rows)
        at = pos[:, start : start + len(b)][bt, bs]
        for j, name in enumerate(names):
            block[j, at] = fa.arrays.pop(name)[bt, bs]
        start += len(b)
    frame = pd.DataFrame(block.T, index=idx, columns=names, copy=False)
    return FeatureTable(
        frame=frame, groups=fa.groups, base_columns=fa.base_columns, spec_hash=spec.hash(), freq=fa.freq
    )


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
        self._days: dict[str, float] = {}

    def __call__(self, duration: str) -> int:
        n = self._periods.get(duration)
        if n is None:
            n = self._periods[duration] = to_periods(duration, self.freq)
        return n

    def days(self, duration: str) -> float:
        """The duration in days (memoised like the rest)."""
        d = self._days.get(duration)
        if d is None:
            d = self._days[duration] = parse_duration(duration) / pd.Timedelta(days=1)
        return d

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


# Batching trades memory and arithmetic for numpy calls, which are the cost at request size
# (661 x 1) and not at universe size, where bigger intermediates cost page faults and cache misses:
# - factors side by side (every factor as columns of one computation) while T x assets x
#   factors stays below _BATCH_NUMBERS (as before the request-path work);
# - benchmarks side by side, and several windows from one cumulative sum (W x the sums live at
#   once), only while an array stays below _SMALL numbers: a benchmark as a full column instead
#   of a broadcast one costs arithmetic that only tiny arrays repay.
# Either way every number is the same (tests/models/test_feat_bitwise.py forces every path).
_BATCH_NUMBERS = 2_000_000
_SMALL = 1 << 16


def _by_windows(fn, size: int, windows: list[int], min_periods: list[int]) -> list:
    """fn(windows, min_periods) -> (W, T, C) array or a tuple of them, for all windows in one call
    while an array of `size` numbers is small (`_SMALL`), else one call per window;
    one entry (an array or a tuple) per window."""
    if size <= _SMALL:
        groups = [list(range(len(windows)))]
    else:
        groups = [[j] for j in range(len(windows))]
    out = []
    for g in groups:
        result = fn([windows[j] for j in g], [min_periods[j] for j in g])
        out += list(zip(*result, strict=True)) if isinstance(result, tuple) else list(result)
    return out


class _Levels:
    """Asset closes and benchmark levels side by side, (T, N + K), with the per-bar returns,
    horizon returns and realised vols both need, each computed once for all N + K columns.

    Every operation is elementwise down a column, so each column is bit-for-bit the one-series
    computation (`ret_<h>`, `vol_<w>` of the assets, `mkt_<B>_*` of the benchmarks), in one
    numpy call per horizon or per set of windows instead of one per series.
    """

    def __init__(self, p: Panel, spec: FeatureSpec, bars: _Bars):
        self.close = _values(p.close)
        self.benchmark_names = p.benchmarks.columns.tolist()
        self.factor_names = p.factors.columns.tolist()
        self.n_assets = self.close.shape[1]
        both = np.concatenate([self.close, _values(p.benchmarks)], axis=1)
        self.both = both
        self.rets = _pct_change(both)  # [:, :N] = p.returns(), [:, N:] = p.benchmark_returns(), bitwise
        ns = [bars(w) for w in spec.vol_windows]
        mps = [_minp(n) for n in ns]
        self.vols = _by_windows(
            lambda w, mp: realised_vols(self.rets, w, mp, bars.per_year), both.size, ns, mps
        )
        self.bars = bars
        self._horizons: dict[int, np.ndarray] = {}

    def horizon_return(self, h: int) -> np.ndarray:
        """Simple return over h bars of every column (memoised: the factor betas reuse ret_1d)."""
        out = self._horizons.get(h)
        if out is None:
            out = self._horizons[h] = _horizon_return(self.both, h)
        return out


def _own_history(b: _Builder, p: Panel, lv: _Levels, spec: FeatureSpec, bars: _Bars) -> None:
    close, n_assets = lv.close, lv.n_assets
    for h in spec.return_horizons:
        b.add(f"ret_{h}", "own_history", lv.horizon_return(bars(h))[:, :n_assets])
    for w, vol in zip(spec.vol_windows, lv.vols, strict=True):
        b.add(f"vol_{w}", "own_history", vol[:, :n_assets])
    n = bars(spec.drawdown_window)
    b.add(f"drawdown_{spec.drawdown_window}", "own_history", close / rolling_max(close, n) - 1.0)
    vol = _values(p.volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        logv = np.where(vol > 0, np.log(np.where(vol > 0, vol, 1.0)), np.nan)
    b.add(f"volume_z_{spec.volume_z_window}", "own_history", _zscore(logv, bars(spec.volume_z_window)))


def _zscore(a: np.ndarray, n: int) -> np.ndarray:
    """z of the current bar against the mean/sd of the last n bars (the window includes the bar:
    still causal); NaN where the window is (nearly) constant, since a z-score there is noise."""
    mean, sd = rolling_mean(a, n, _minp(n)), rolling_std(a, n, _minp(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 1e-12, (a - mean) / sd, np.nan)


def _benchmark_features(b: _Builder, p: Panel, lv: _Levels, spec: FeatureSpec, bars: _Bars) -> dict[str, str]:
    """The crypto_benchmark betas of every asset against every benchmark.

    While the pairs stay small (`_SMALL`) all K benchmarks go through one computation as
    columns side by side (column k * N + i: asset i against benchmark k), as the factors do;
    each column's arithmetic is its own, so the numbers are those of one benchmark at a time.
    """
    n_assets = lv.n_assets
    if p.benchmarks.index.equals(p.index):
        bench_rets = lv.rets[:, n_assets:]
    else:
        bench_rets = _pct_change(_values(p.benchmarks.reindex(p.index)))
    rets = lv.rets[:, :n_assets]
    names = lv.benchmark_names
    if len(names) > 1 and rets.size * len(names) <= _SMALL:
        features = _pair_features(rets, bench_rets, spec, bars)
        per_bench = [
            [(pat, a[:, k * n_assets : (k + 1) * n_assets]) for pat, a in features] for k in range(len(names))
        ]
    else:
        per_bench = [_pair_features(rets, bench_rets[:, k : k + 1], spec, bars) for k in range(len(names))]
    for name, features in zip(names, per_bench, strict=True):
        for pattern, values in features:
            b.add(pattern.format(name), "crypto_benchmark", values)
    return {name: f"beta_welch_{name}" for name in names}


def _pair_features(
    r: np.ndarray, xb: np.ndarray, spec: FeatureSpec, bars: _Bars
) -> list[tuple[str, np.ndarray]]:
    """(name pattern with `{}` for the benchmark, values) of every benchmark feature, in column
    order, for the assets r (T, N) against the benchmark returns xb (T, K): values (T, K * N)."""
    n_assets, k = r.shape[1], xb.shape[1]

    def columns(a: np.ndarray) -> np.ndarray:  # benchmark series -> one regressor per column
        return a[:, 0] if k == 1 else np.repeat(a, n_assets, axis=1)

    y, x = (r if k == 1 else np.tile(r, (1, k))), columns(xb)
    hls = [bars.halflife(h) for h in (spec.welch_halflife, *spec.welch_extra_halflives)]
    wv, *extras = welch_betas_array(y, x, hls, spec.welch_lower, spec.welch_upper)
    out = [("beta_welch_{}", wv)]
    for hl, extra in zip(spec.welch_extra_halflives, extras, strict=True):  # the same, longer memory
        out += [(f"beta_welch_{{}}_{hl}", extra), (f"rel_welch_{{}}_{hl}", extra - wv)]
    out += _ols_features(y, x, wv, spec, bars)
    ewma = ewma_betas_and_corrs(y, x, [bars.halflife(hl) for hl in spec.ewma_halflives])
    for hl, (beta, corr) in zip(spec.ewma_halflives, ewma, strict=True):  # corr's min_periods: the beta's
        out += [
            (f"beta_ewma_{{}}_{hl}", beta),
            (f"corr_ewma_{{}}_{hl}", corr),
            (f"rel_ewma_{{}}_{hl}", beta - wv),
        ]
    w = spec.downside_window
    n = max(bars(w), 4)
    with np.errstate(invalid="ignore"):
        down_x = columns(np.where(xb < 0, xb, np.nan))
    down = rolling_ols_beta_array(y, down_x, n, min_periods=_minp(n, 0.25, 3))
    out += [(f"beta_down_{{}}_{w}", down), (f"rel_down_{{}}_{w}", down - wv)]
    if spec.high_vol_beta_window:
        w = spec.high_vol_beta_window
        n = max(bars(w), 4)
        high_x = columns(np.column_stack([_high_vol_bars(xb[:, j], n) for j in range(k)]))
        high = rolling_ols_beta_array(y, high_x, n, min_periods=_minp(n, 0.25, 3))
        out += [(f"beta_hivol_{{}}_{w}", high), (f"rel_hivol_{{}}_{w}", high - wv)]
    return out


def _ols_features(
    y: np.ndarray, x: np.ndarray, wv: np.ndarray, spec: FeatureSpec, bars: _Bars
) -> list[tuple[str, np.ndarray]]:
    """beta_ols_, corr_, rel_ols_ per window of `beta_windows` then `long_beta_windows` (a HAR-style
    cascade); windows of 3+ bars share their sums (`rolling_betas_and_corrs`, bit-equal)."""
    windows = (*spec.beta_windows, *spec.long_beta_windows)
    shared = [(w, bars(w)) for w in windows if bars(w) >= 3]
    ns = [n for _, n in shared]
    betas = _by_windows(
        lambda w, mp: rolling_betas_and_corrs(y, x, w, [None] * len(w), mp),
        y.size,
        ns,
        [_minp(n, least=3) for n in ns],
    )
    results = dict(zip([w for w, _ in shared], betas, strict=True))
    out = []
    for w in windows:
        if w in results:
            beta, corr = results[w]
        else:  # a window under 3 bars: the beta needs 3
            n = bars(w)
            beta, corr = rolling_ols_beta_array(y, x, 3), rolling_corr(y, x, n, _minp(n, least=3))
        out += [(f"beta_ols_{{}}_{w}", beta), (f"corr_{{}}_{w}", corr), (f"rel_ols_{{}}_{w}", beta - wv)]
    return out


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


def _market_state(b: _Builder, lv: _Levels, spec: FeatureSpec) -> None:
    """mkt_<B>_ret_<h>, mkt_<B>_vol_<w>: the benchmark columns of `_Levels` (same for every asset)."""
    bars = lv.bars
    for k, name in enumerate(lv.benchmark_names):
        col = lv.n_assets + k
        for h in spec.return_horizons:
            b.add(f"mkt_{name}_ret_{h}", "crypto_benchmark", lv.horizon_return(bars(h))[:, col])
        for w, vol in zip(spec.vol_windows, lv.vols, strict=True):
            b.add(f"mkt_{name}_vol_{w}", "crypto_benchmark", vol[:, col])


def _funding_leverage(b: _Builder, p: Panel, spec: FeatureSpec, bars: _Bars) -> None:
    g = "funding_leverage"
    # funding_rate is what accrues over the bar (the sum of the prints in it), so per-bar x bars/year
    fund = _values(p.funding_rate) * bars.per_year
    b.add("funding_ann", g, fund)
    ns = [bars(w) for w in spec.funding_windows]
    means = _by_windows(lambda w, mp: rolling_means(fund, w, mp), fund.size, ns, [_minp(n) for n in ns])
    for w, n, mean in zip(spec.funding_windows, ns, means, strict=True):
        b.add(f"funding_ann_mean_{w}", g, mean)
        b.add(f"funding_ann_chg_{w}", g, fund - shift(fund, n))
    oi = _values(p.open_interest)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_oi = np.where(oi > 0, np.log(np.where(oi > 0, oi, 1.0)), np.nan)
    for w in spec.oi_windows:
        b.add(f"oi_chg_{w}", g, log_oi - shift(log_oi, bars(w)))
    if spec.funding_z_window:
        b.add(f"funding_z_{spec.funding_z_window}", g, _zscore(fund, bars(spec.funding_z_window)))
    if spec.oi_z_window:
        b.add(f"oi_chg_z_{spec.oi_z_window}", g, _zscore(log_oi - shift(log_oi, 1), bars(spec.oi_z_window)))


def _vol_ratios(b: _Builder, lv: _Levels, spec: FeatureSpec) -> None:
    """`vol_ratio_<B>_<w>` = vol_<w> / mkt_<B>_vol_<w>, from the columns already built (same numbers).

    beta = corr x sigma_asset / sigma_benchmark, and volatility is far more persistent than beta
    (HAR, Corsi 2009): the ratio carries the predictable leg in one compact column.
    """
    if not spec.vol_ratio:
        return
    for name in lv.benchmark_names:
        for w in spec.vol_windows:
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = b.arrays[f"vol_{w}"] / b.arrays[f"mkt_{name}_vol_{w}"]
            b.add(f"vol_ratio_{name}_{w}", "crypto_benchmark", np.where(np.isfinite(ratio), ratio, np.nan))


def _factor_levels(b: _Builder, p: Panel, lv: _Levels, spec: FeatureSpec) -> None:
    """`fac_<F>_log_level` (or `fac_<F>_level` for rates, in points and possibly <= 0).

    Some factors are states, not returns: the VIX level separates calm from stressed markets
    where its daily change does not.  Non-positive levels of a non-rate factor are NaN.
    """
    missing = [f for f in spec.factor_levels if f not in lv.factor_names]
    if missing:
        raise ValueError(
            f"factor_levels names {missing}, which the panel does not have (its factors: {lv.factor_names})"
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


def _sum_changes(c: np.ndarray, windows: list[int], min_periods: list[int], is_rate) -> np.ndarray:
    """Change over the last w bars from per-bar changes (compounded for returns), for each
    (window, min_periods) pair: (W, T, F), from one cumulative sum per kind of sum.

    `is_rate` a bool or an (F,) column mask (rates: plain sums; returns: log1p then expm1).
    """
    a = as_2d(c)
    rate = np.broadcast_to(np.asarray(is_rate, dtype=bool), (a.shape[1],))
    with np.errstate(invalid="ignore", divide="ignore"):
        core = a if rate.all() else np.where(rate, a, np.log1p(a))
    s = rolling_means(core, windows, min_periods) * rolling_counts(a, windows)
    return s if rate.all() else np.where(rate, s, np.expm1(s))


def _columns(frame: pd.DataFrame, like: pd.DataFrame) -> np.ndarray:
    """frame's columns in the order of `like`'s, as a float64 array; the frame's own array when
    they already are (the usual case: selecting by a list of string labels costs ~0.5 ms per
    frame, a tenth of a one-asset request's features, for the same numbers)."""
    if not frame.columns.equals(like.columns):
        frame = frame[like.columns.tolist()]
    return _values(frame)


def _values(frame: pd.DataFrame) -> np.ndarray:
    """A frame as a row-major float64 array, NaN where missing.

    pandas hands a frame's block over transposed (column-major); numpy runs the cumulative sums
    and filters down the columns of a row-major copy two to three times faster, and an
    operation mixing the two layouts is slower still.  The values are the same either way.
    """
    return np.ascontiguousarray(frame.to_numpy(dtype=np.float64, na_value=np.nan))


def _factor_features(b: _Builder, p: Panel, lv: _Levels, spec: FeatureSpec, bars: _Bars) -> None:
    """Factor features, computed for all factors as columns of one (T, F) array (per-column
    arithmetic is independent, so each column is bit-for-bit the one-factor computation) and
    added in the per-factor column order."""
    names = lv.factor_names
    if not names:
        return
    h = bars(spec.factor_return_horizon)
    h_days = bars.days(spec.factor_return_horizon)
    asset_h = lv.horizon_return(h)[:, : lv.n_assets]
    rate = np.array([p.factor_categories.get(name) == "rates" for name in names], dtype=bool)
    levels = _values(p.factors)
    stale = _columns(p.factor_staleness, p.factors)
    c = _factor_change(levels, rate, spec.factor_return_clip)
    ns = [bars(w) for w in spec.factor_windows]
    mps = [_minp(n) for n in ns]
    *rets, xh = _sum_changes(c, [*ns, h], [*mps, 1], rate)  # the last: overlapping h-bar changes
    window_feats = list(zip(spec.factor_windows, rets, realised_vols(c, ns, mps, bars.per_year), strict=True))
    with np.errstate(invalid="ignore"):  # kept only where the factor printed within the last h
        xh = np.where(stale < h_days, xh, np.nan)
    betas = _factor_betas(asset_h, xh, spec, bars)
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


def _factor_betas(asset_h: np.ndarray, xh: np.ndarray, spec: FeatureSpec, bars: _Bars) -> dict:
    """window -> [(beta, corr) per factor] of the assets' h-bar returns on each factor's.

    Small panels: one computation, column f * N + i holding asset i against factor f, every
    window from one set of sums; otherwise one factor and one window at a time (same numbers).
    """
    t_len, n_assets = asset_h.shape
    n_factors = xh.shape[1]
    windows = spec.factor_beta_windows
    ns = [max(bars(w), 3) for w in windows]
    mps = [_minp(n, 1 / 3, 3) for n in ns]
    if t_len * n_assets * n_factors > _BATCH_NUMBERS:
        return {
            w: [rolling_beta_and_corr(asset_h, xh[:, f], n, mp, mp) for f in range(n_factors)]
            for w, n, mp in zip(windows, ns, mps, strict=True)
        }
    y_all = np.tile(asset_h, (1, n_factors))
    x_all = np.repeat(xh, n_assets, axis=1)
    pairs = _by_windows(lambda w, mp: rolling_betas_and_corrs(y_all, x_all, w, mp, mp), y_all.size, ns, mps)
    cols = [slice(f * n_assets, (f + 1) * n_assets) for f in range(n_factors)]
    return {
        w: [(beta[:, cs], corr[:, cs]) for cs in cols] for w, (beta, corr) in zip(windows, pairs, strict=True)
    }


def wide_to_long(
    arrays: dict[str, np.ndarray],
    index: pd.DatetimeIndex,
    symbols: list[str],
    rows: np.ndarray,
    *,
    consume: bool = False,
) -> pd.DataFrame:
    """(T, N) arrays -> frame indexed by (timestamp, symbol) on the rows where `rows` holds.

    The long values go straight into one preallocated block (no per-column copies that pandas
    then consolidates: a third copy of the table at universe scale).  `consume`: pop each wide
    array from `arrays` once copied, so the wide and the long table are not both held in full.
    """
    ti, si = np.nonzero(rows)  # row-major: sorted by time, then by (sorted) symbol
    idx = pd.MultiIndex.from_arrays(
        [index[ti], pd.Index(symbols, dtype=object)[si]], names=["timestamp", "symbol"]
    )
    names = list(arrays)
    block = np.empty((len(names), len(ti)))  # column-major: column j is block[j]
    for j, name in enumerate(names):
        a = arrays.pop(name) if consume else arrays[name]
        block[j] = np.ascontiguousarray(a)[ti, si]
        del a
    return pd.DataFrame(block.T, index=idx, columns=names, copy=False)
