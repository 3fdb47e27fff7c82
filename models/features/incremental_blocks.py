"""The feature groups of `compute_features`, one bar at a time (used by `features/incremental.py`).

Each block owns the recursions (`features/recursions.py`) of one part of `compute.py` and, given
the newest bar, writes that bar's values into `out` (column name -> (N,) array or a market-wide
scalar).  The formulas are those of the batch code, applied to one row: where the batch code
has an elementwise helper (`winsorise_to_band_array`, `prepare_pair_arrays`, `_slope`, `_corr`,
`_ewm_slope_from`, `_factor_change`) it is called here too, so both paths share the arithmetic.
Shapes: N assets, K benchmarks, M factors; arrays are vectorised over them (no loop over assets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from adaptive_beta.models.durations import parse_duration
from adaptive_beta.models.estimators.common import (
    check_window,
    halflife_decay,
    pair_products,
    prepare_pair_arrays,
)
from adaptive_beta.models.estimators.ewma import (
    _default_min_periods,
    _ewm_slope_from,
    winsorise_to_band_array,
)
from adaptive_beta.models.estimators.rolling import _slope
from adaptive_beta.models.features.compute import _Bars, _factor_change, _minp
from adaptive_beta.models.features.recursions import (
    Counter,
    EwmSums,
    Lags,
    RollingMax,
    RollingMedian,
    StateArrays,
    WindowSums,
)
from adaptive_beta.models.features.rolling import _corr
from adaptive_beta.models.features.spec import FeatureSpec

_MOMENTS = ("n", "sx", "sy", "sxx", "sxy", "syy")


@dataclass
class Step:
    """One appended bar: its number t (0-based) and the inputs on the panel grid."""

    t: int
    close: np.ndarray  # (N,)
    r: np.ndarray  # (N,) simple return of each asset over the bar
    close_lags: Lags  # closes of the previous bars
    volume: np.ndarray  # (N,)
    funding_rate: np.ndarray  # (N,)
    open_interest: np.ndarray  # (N,)
    benchmarks: np.ndarray  # (K,) levels
    factors: np.ndarray  # (M,) levels as known at the bar's close
    factor_staleness: np.ndarray  # (M,) days since published


def masked(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values zero-filled where not finite, float mask): what the batch window sums see."""
    m = np.isfinite(a)
    return np.where(m, a, 0.0), m.astype(np.float64)


def pair_moments(y: np.ndarray, x: np.ndarray, rows: int = 6) -> np.ndarray:
    """The masked sums' contributions [n, sx, sy, sxx, sxy, syy][:rows] of the pairs (y, x), as
    `estimators.rolling._moments` builds them (x (K,) shared per row, or (K, N))."""
    return np.stack(pair_products(*prepare_pair_arrays(y, x), rows))


def moments_dict(sums: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(_MOMENTS, sums, strict=False))


def window_mean(total: np.ndarray, n: np.ndarray, min_periods: int) -> np.ndarray:
    """`rolling_mean` from its two window sums."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= min_periods, total / n, np.nan)


class ZScore:
    """`compute._zscore` of a per-asset series: rolling mean and sd over n bars, both from running
    sums; the sd's sums are of x - (first finite x), as `rolling_std` shifts each column."""

    def __init__(self, store: StateArrays, name: str, n: int, width: int):
        self.mp = _minp(n)
        self.sums = WindowSums(store, name, n, (4, width), True)
        store.new(self, "ref", f"{name}.ref", (width,), np.nan, True)

    def step(self, t: int, a: np.ndarray) -> np.ndarray:
        m = np.isfinite(a)
        first = m & np.isnan(self.ref)
        self.ref[first] = a[first]
        ref = np.where(np.isfinite(self.ref), self.ref, 0.0)
        d = np.where(m, a - ref, 0.0)
        s = self.sums.push(t, np.stack([m.astype(np.float64), np.where(m, a, 0.0), d, d * d]))
        n = s[0]
        mean = window_mean(s[1], n, self.mp)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.maximum(s[3] - s[2] * s[2] / n, 0.0) / (n - 1.0)
            sd = np.where(n >= max(self.mp, 2), np.sqrt(var), np.nan)
            return np.where(sd > 1e-12, (a - mean) / sd, np.nan)


class OwnHistory:
    """ret_<h>, vol_<w>, drawdown_<w>, volume_z_<w> (`compute._own_history`)."""

    def __init__(self, store: StateArrays, spec: FeatureSpec, bars: _Bars, n_assets: int):
        self.spec, self.bars = spec, bars
        self.vols = [
            (w, _minp(bars(w)), WindowSums(store, f"vol_{w}", bars(w), (2, n_assets), True))
            for w in spec.vol_windows
        ]
        self.high = RollingMax(store, "drawdown", bars(spec.drawdown_window), (n_assets,), True)
        self.volume_z = ZScore(store, "volume_z", bars(spec.volume_z_window), n_assets)

    def step(self, s: Step, out: dict) -> None:
        spec, bars = self.spec, self.bars
        with np.errstate(invalid="ignore", divide="ignore"):
            for h in spec.return_horizons:
                out[f"ret_{h}"] = s.close / s.close_lags.get(s.t, bars(h)) - 1.0
            v, m = masked(s.r**2)
            for w, mp, sums in self.vols:
                total = sums.push(s.t, np.stack([v, m]))
                out[f"vol_{w}"] = np.sqrt(window_mean(total[0], total[1], mp) * bars.per_year)
            out[f"drawdown_{spec.drawdown_window}"] = s.close / self.high.push(s.t, s.close) - 1.0
            vol = s.volume
            logv = np.where(vol > 0, np.log(np.where(vol > 0, vol, 1.0)), np.nan)
        out[f"volume_z_{spec.volume_z_window}"] = self.volume_z.step(s.t, logv)


class _OlsWindow:
    """Rolling OLS beta and correlation over one window (`rolling_beta_and_corr`)."""

    def __init__(self, store: StateArrays, name: str, n: int, shape: tuple[int, ...]):
        self.n = n
        if n >= 3:  # one set of sums for both, as the batch code
            self.beta_mp = check_window(n, None, 2)[1]
            self.sums = WindowSums(store, name, n, (6, *shape), True)
            self.beta_sums = None
        else:  # the batch code takes the beta over 3 bars and the correlation over n
            self.beta_mp = check_window(3, None, 2)[1]
            self.sums = WindowSums(store, name, n, (6, *shape), True)
            self.beta_sums = WindowSums(store, f"{name}.beta", 3, (5, *shape), True)
        self.corr_mp = _minp(n, least=3)

    def step(self, t: int, moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = moments_dict(self.sums.push(t, moments))
        bm = m if self.beta_sums is None else moments_dict(self.beta_sums.push(t, moments[:5]))
        beta = _slope(bm, self.beta_mp)[0]
        n = m["n"]
        return beta, _corr(n, m["sx"], m["sy"], m["sxx"], m["syy"], m["sxy"], n >= self.corr_mp)


class _Ewm:
    """Exponentially weighted beta (and correlation) from five (six) recursive sums."""

    def __init__(self, store: StateArrays, name: str, halflife: float, shape: tuple[int, ...], rows: int):
        self.mp = _default_min_periods(halflife, None)
        self.sums = EwmSums(store, name, halflife_decay(halflife), (rows, *shape), True)
        self.count = Counter(store, f"{name}.valid", shape, True)

    def step(self, moments: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        sums = self.sums.push(moments)
        count = self.count.push(moments[0])
        s = dict(zip(("sw", "sx", "sy", "sxx", "sxy", "syy"), sums, strict=False))
        beta = _ewm_slope_from(s, count, self.mp)
        if len(sums) < 6:
            return beta, None
        return beta, _corr(s["sw"], s["sx"], s["sy"], s["sxx"], s["syy"], s["sxy"], count >= self.mp)


class Benchmarks:
    """Every benchmark's betas and correlations (`compute._benchmark_features`), all K at once:
    state of shape (rows, K, N)."""

    def __init__(self, store: StateArrays, spec: FeatureSpec, bars: _Bars, names: list[str], n_assets: int):
        self.spec, self.names = spec, names
        shape = (len(names), n_assets)
        self.welch = [
            ("", _Ewm(store, "welch", bars.halflife(spec.welch_halflife), shape, 5)),
            *(
                (f"_{hl}", _Ewm(store, f"welch_{hl}", bars.halflife(hl), shape, 5))
                for hl in spec.welch_extra_halflives
            ),
        ]
        self.ols = [
            (w, _OlsWindow(store, f"ols_{w}", bars(w), shape))
            for w in (*spec.beta_windows, *spec.long_beta_windows)
        ]
        self.ewma = [
            (hl, _Ewm(store, f"ewma_{hl}", bars.halflife(hl), shape, 6)) for hl in spec.ewma_halflives
        ]
        n = max(bars(spec.downside_window), 4)
        self.down = (_minp(n, 0.25, 3), WindowSums(store, "down", n, (5, *shape), True))
        self.hivol = None
        if spec.high_vol_beta_window:
            n = max(bars(spec.high_vol_beta_window), 4)
            median = RollingMedian(store, "hivol.median", n, _minp(n), len(names))
            self.hivol = (_minp(n, 0.25, 3), median, WindowSums(store, "hivol", n, (5, *shape), True))

    def step(self, t: int, r: np.ndarray, x: np.ndarray, out: dict) -> None:
        spec = self.spec
        y = np.broadcast_to(r, (len(x), len(r)))
        with np.errstate(invalid="ignore", divide="ignore"):
            wv = None
            winsorised = pair_moments(winsorise_to_band_array(y, x, spec.welch_lower, spec.welch_upper), x, 5)
            for suffix, ewm in self.welch:
                beta = ewm.step(winsorised)[0]
                if not suffix:
                    wv = beta
                    self._put(out, "beta_welch_{}", beta)
                else:
                    self._put(out, "beta_welch_{}" + suffix, beta)
                    self._put(out, "rel_welch_{}" + suffix, beta - wv)
            moments = pair_moments(y, x)
            for w, ols in self.ols:
                beta, corr = ols.step(t, moments)
                self._put(out, f"beta_ols_{{}}_{w}", beta)
                self._put(out, f"corr_{{}}_{w}", corr)
                self._put(out, f"rel_ols_{{}}_{w}", beta - wv)
            for hl, ewm in self.ewma:
                beta, corr = ewm.step(moments)
                self._put(out, f"beta_ewma_{{}}_{hl}", beta)
                self._put(out, f"corr_ewma_{{}}_{hl}", corr)
                self._put(out, f"rel_ewma_{{}}_{hl}", beta - wv)
            self._conditional(
                t, y, np.where(x < 0, x, np.nan), *self.down, "down", spec.downside_window, wv, out
            )
            if self.hivol is not None:
                mp, median, sums = self.hivol
                a = np.abs(x)
                x_hi = np.where(a > median.push(t, a), x, np.nan)
                self._conditional(t, y, x_hi, mp, sums, "hivol", spec.high_vol_beta_window, wv, out)

    def _conditional(self, t, y, x, mp, sums, tag, w, wv, out) -> None:
        """OLS beta on the bars where the condition held (x NaN elsewhere), and minus the Welch beta."""
        beta = _slope(moments_dict(sums.push(t, pair_moments(y, x, 5))), mp)[0]
        self._put(out, f"beta_{tag}_{{}}_{w}", beta)
        self._put(out, f"rel_{tag}_{{}}_{w}", beta - wv)

    def _put(self, out: dict, pattern: str, values: np.ndarray) -> None:
        for k, name in enumerate(self.names):
            out[pattern.format(name)] = values[k]


class MarketState:
    """mkt_<B>_ret_<h>, mkt_<B>_vol_<w> (`compute._market_state`): (K,) scalars per bar."""

    def __init__(self, store: StateArrays, spec: FeatureSpec, bars: _Bars, names: list[str]):
        self.spec, self.bars, self.names = spec, bars, names
        depth = max([1, *(bars(h) for h in spec.return_horizons)])
        self.levels = Lags(store, "mkt.levels", depth, (len(names),), False)
        self.vols = [
            (w, _minp(bars(w)), WindowSums(store, f"mkt_vol_{w}", bars(w), (2, len(names)), False))
            for w in spec.vol_windows
        ]

    def step(self, t: int, levels: np.ndarray, out: dict) -> np.ndarray:
        """Writes the columns; returns the benchmark returns of this bar (K,)."""
        self.levels.push(t, levels)
        with np.errstate(invalid="ignore", divide="ignore"):
            br = levels / self.levels.get(t, 1) - 1.0
            for h in self.spec.return_horizons:
                ret = levels / self.levels.get(t, self.bars(h)) - 1.0
                for k, name in enumerate(self.names):
                    out[f"mkt_{name}_ret_{h}"] = ret[k]
            v, m = masked(br**2)
            for w, mp, sums in self.vols:
                total = sums.push(t, np.stack([v, m]))
                vol = np.sqrt(window_mean(total[0], total[1], mp) * self.bars.per_year)
                for k, name in enumerate(self.names):
                    out[f"mkt_{name}_vol_{w}"] = vol[k]
        return br


class FundingLeverage:
    """funding_ann, its means and changes, oi changes, and the optional z-scores (`compute._funding_leverage`)."""

    def __init__(self, store: StateArrays, spec: FeatureSpec, bars: _Bars, n_assets: int):
        self.spec, self.bars = spec, bars
        self.means = [
            (w, _minp(bars(w)), WindowSums(store, f"funding_{w}", bars(w), (2, n_assets), True))
            for w in spec.funding_windows
        ]
        depth = max([1, *(bars(w) for w in spec.funding_windows)])
        self.fund = Lags(store, "funding.lags", depth, (n_assets,), True)
        self.log_oi = Lags(store, "oi.lags", max([1, *(bars(w) for w in spec.oi_windows)]), (n_assets,), True)
        self.funding_z = (
            ZScore(store, "funding_z", bars(spec.funding_z_window), n_assets)
            if spec.funding_z_window
            else None
        )
        self.oi_z = ZScore(store, "oi_z", bars(spec.oi_z_window), n_assets) if spec.oi_z_window else None

    def step(self, t: int, funding_rate: np.ndarray, open_interest: np.ndarray, out: dict) -> None:
        spec, bars = self.spec, self.bars
        fund = funding_rate * bars.per_year
        self.fund.push(t, fund)
        out["funding_ann"] = fund
        v, m = masked(fund)
        for w, mp, sums in self.means:
            total = sums.push(t, np.stack([v, m]))
            out[f"funding_ann_mean_{w}"] = window_mean(total[0], total[1], mp)
            out[f"funding_ann_chg_{w}"] = fund - self.fund.get(t, bars(w))
        oi = open_interest
        with np.errstate(invalid="ignore", divide="ignore"):
            log_oi = np.where(oi > 0, np.log(np.where(oi > 0, oi, 1.0)), np.nan)
        self.log_oi.push(t, log_oi)
        for w in spec.oi_windows:
            out[f"oi_chg_{w}"] = log_oi - self.log_oi.get(t, bars(w))
        if self.funding_z is not None:
            out[f"funding_z_{spec.funding_z_window}"] = self.funding_z.step(t, fund)
        if self.oi_z is not None:
            out[f"oi_chg_z_{spec.oi_z_window}"] = self.oi_z.step(t, log_oi - self.log_oi.get(t, 1))


def _compound(total: np.ndarray, n: np.ndarray, min_periods: int, rate: np.ndarray) -> np.ndarray:
    """`compute._sum_changes` from the window sums of the (log1p) changes and their count."""
    s = window_mean(total, n, min_periods) * n
    with np.errstate(invalid="ignore", divide="ignore"):
        return s if rate.all() else np.where(rate, s, np.expm1(s))


class Factors:
    """Factor returns, vols, staleness and asset-vs-factor betas/correlations (`compute._factor_features`)."""

    def __init__(
        self,
        store: StateArrays,
        spec: FeatureSpec,
        bars: _Bars,
        names: list[str],
        rate: np.ndarray,
        n_assets: int,
    ):
        self.spec, self.bars, self.names, self.rate = spec, bars, names, rate
        m = len(names)
        self.h = bars(spec.factor_return_horizon)
        self.h_days = parse_duration(spec.factor_return_horizon) / pd.Timedelta(days=1)
        self.prev = Lags(store, "factor.levels", 1, (m,), False)
        self.windows = [
            (w, _minp(bars(w)), WindowSums(store, f"factor_{w}", bars(w), (3, m), False))
            for w in spec.factor_windows
        ]
        self.horizon = WindowSums(store, "factor.horizon", self.h, (2, m), False)
        self.betas = []
        for w in spec.factor_beta_windows:
            n = max(bars(w), 3)
            self.betas.append(
                (w, _minp(n, 1 / 3, 3), WindowSums(store, f"factor_beta_{w}", n, (6, m, n_assets), True))
            )

    def step(self, s: Step, out: dict) -> None:
        t, rate, bars = s.t, self.rate, self.bars
        self.prev.push(t, s.factors)
        c = _factor_change(np.stack([self.prev.get(t, 1), s.factors]), rate, self.spec.factor_return_clip)[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            core = c if rate.all() else np.where(rate, c, np.log1p(c))
            v, m = masked(core)
            c2 = np.where(m > 0, c * c, 0.0)
            for w, mp, sums in self.windows:
                total = sums.push(t, np.stack([m, v, c2]))
                ret = _compound(total[1], total[0], mp, rate)
                vol = np.sqrt(window_mean(total[2], total[0], mp) * bars.per_year)
                for f, name in enumerate(self.names):
                    out[f"fac_{name}_ret_{w}"] = ret[f]
                    out[f"fac_{name}_vol_{w}"] = vol[f]
            total = self.horizon.push(t, np.stack([m, v]))
            xh = np.where(s.factor_staleness < self.h_days, _compound(total[1], total[0], 1, rate), np.nan)
            asset_h = s.close / s.close_lags.get(t, self.h) - 1.0
            moments = pair_moments(np.broadcast_to(asset_h, (len(self.names), len(asset_h))), xh)
        for f, name in enumerate(self.names):
            out[f"fac_{name}_stale"] = s.factor_staleness[f]
        for w, mp, sums in self.betas:
            mo = moments_dict(sums.push(t, moments))
            beta = _slope(mo, mp)[0]
            n = mo["n"]
            corr = _corr(n, mo["sx"], mo["sy"], mo["sxx"], mo["syy"], mo["sxy"], n >= mp)
            for f, name in enumerate(self.names):
                out[f"beta_{name}_{w}"] = beta[f]
                out[f"corr_{name}_{w}"] = corr[f]
