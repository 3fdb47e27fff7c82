"""Statistics of how betas and volatilities move: the yardstick the simulator is calibrated on.

`market_statistics(panel)` is pure (a Panel in, a dict of named floats out) and runs on any
panel, real or simulated, so the same numbers can be compared side by side
(`benchmarks/bench_sim_calibration.py`, `tests/models/test_sim_calibration.py`).

Every statistic is computed on the panel's own bars, windows given as durations:

- 30-day realised beta of each asset to each benchmark (the panel's BTC benchmark, BTC itself
  left out, and the composite CRYPTO_EW), a trailing OLS slope over the bars of the window
  (complete windows only);
- `acf<L>_<b>`: autocorrelation of that beta at lag L (30, 90, 180 days): per asset the
  Pearson correlation of beta_t and beta_{t+L} over the pairs it has, averaged over assets
  weighted by their number of pairs (assets with fewer pairs than one window are left out).
  A within-asset statistic: it measures how long a deviation of an asset's beta persists;
- `disp_<b>`: cross-sectional dispersion, the mean over bars of the cross-sectional sd of the
  30-day betas (bars with at least 3 assets);
- `wsd_<b>`: within-asset sd of the 30-day beta over time (pair-weighted mean over assets);
- `level_btc`: mean 30-day beta to BTC over all (bar, asset) pairs; `common_sd_btc`: sd over
  time of the cross-sectional mean 30-day beta to BTC (bars with at least 3 assets): how much
  the altcoins' betas to BTC swing together;
- `volvol_<x>`: volatility of volatility, the sd of 30-day changes of the log 30-day realised
  vol (uncentred), for the BTC and composite benchmarks and averaged over the other assets;
- `vol_<x>`: annualised realised vol (uncentred) of BTC and of the composite over the sample;
- `share_<regime>` and `dur_<regime>`: share of bars and mean spell length in days of the
  project's rule-based regime label of the trailing 7 days on the composite
  (`models/features/targets.py` rule_regimes; spells cut by the sample ends count as they are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import COMPOSITE_NAME, REGIME_NAMES, DataError, Panel, find_btc
from adaptive_beta.models.durations import parse_duration, to_periods
from adaptive_beta.models.features.targets import rule_regimes

if TYPE_CHECKING:
    from adaptive_beta.models.sim.simulator import SimResult

BENCH_KEYS: tuple[str, ...] = ("btc", "ew")  # the panel's BTC benchmark, the composite CRYPTO_EW
LAGS: tuple[str, ...] = ("30d", "90d", "180d")


def _days(duration: str) -> int:
    return int(round(parse_duration(duration) / pd.Timedelta(days=1)))


STAT_NAMES: tuple[str, ...] = (
    *[f"acf{_days(lag)}_{b}" for b in BENCH_KEYS for lag in LAGS],
    *[f"disp_{b}" for b in BENCH_KEYS],
    *[f"wsd_{b}" for b in BENCH_KEYS],
    "level_btc",
    "common_sd_btc",
    "volvol_btc",
    "volvol_ew",
    "volvol_assets",
    "vol_btc",
    "vol_ew",
    *[f"share_{r}" for r in REGIME_NAMES],
    *[f"dur_{r}" for r in REGIME_NAMES],
)


def _window_sums(a: np.ndarray, h: int) -> np.ndarray:
    """Sums over rows t-h+1..t along axis 0 (NaN for t < h-1), from one cumulative sum."""
    c = np.cumsum(a, axis=0)
    out = np.full(a.shape, np.nan)
    out[h - 1] = c[h - 1]
    out[h:] = c[h:] - c[:-h]
    return out


def rolling_betas(returns: pd.DataFrame, bench: pd.Series, h: int) -> pd.DataFrame:
    """Trailing OLS slope of each column on `bench` over h bars (NaN unless all h bars present)."""
    y = returns.to_numpy(dtype=np.float64, na_value=np.nan)
    x = np.broadcast_to(bench.to_numpy(dtype=np.float64, na_value=np.nan)[:, None], y.shape)
    ok = np.isfinite(y) & np.isfinite(x)
    if len(y) < h:
        return pd.DataFrame(np.nan, index=returns.index, columns=returns.columns)
    yy, xx = np.where(ok, y, 0.0), np.where(ok, x, 0.0)
    n = _window_sums(ok.astype(np.float64), h)
    sx, sy = _window_sums(xx, h), _window_sums(yy, h)
    sxy, sxx = _window_sums(xx * yy, h), _window_sums(xx * xx, h)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = (sxy - sx * sy / h) / (sxx - sx * sx / h)
    beta = np.where(n == h, beta, np.nan)
    return pd.DataFrame(beta, index=returns.index, columns=returns.columns)


def lagged_autocorrelation(frame: pd.DataFrame, lag: int, min_pairs: int) -> float:
    """Pair-weighted mean over columns of corr(x_t, x_{t+lag}); columns with < min_pairs pairs skipped."""
    num, den = 0.0, 0
    for col in frame.columns:
        x = frame[col].to_numpy(dtype=float)
        if len(x) <= lag:
            continue
        a, b = x[:-lag], x[lag:]
        ok = np.isfinite(a) & np.isfinite(b)
        n = int(ok.sum())
        if n < max(min_pairs, 3) or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            continue
        num += n * float(np.corrcoef(a[ok], b[ok])[0, 1])
        den += n
    return num / den if den else float("nan")


def _weighted_within_sd(frame: pd.DataFrame, min_obs: int) -> float:
    counts = frame.count()
    sds = frame.std()
    keep = counts >= min_obs
    if not keep.any():
        return float("nan")
    return float((sds[keep] * counts[keep]).sum() / counts[keep].sum())


def _log_realised_vol(r: pd.DataFrame, h: int) -> pd.DataFrame:
    ms = (r * r).rolling(h, min_periods=h).mean()
    return np.log(np.sqrt(ms.where(ms > 0)))


def _spells(codes: np.ndarray, bar_days: float) -> dict[int, float]:
    """Mean spell length in days of each code (unknown codes split spells and are dropped)."""
    out: dict[int, list[float]] = {k: [] for k in range(len(REGIME_NAMES))}
    if len(codes) == 0:
        return {k: float("nan") for k in out}
    change = np.flatnonzero(np.diff(codes)) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(codes)]
    for s, e in zip(starts, ends, strict=True):
        if codes[s] >= 0:
            out[int(codes[s])].append((e - s) * bar_days)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in out.items()}


def market_statistics(
    panel: Panel,
    *,
    window: str = "30d",
    lags: tuple[str, ...] = LAGS,
    regime_horizon: str = "7d",
    until: pd.Timestamp | str | None = None,
) -> dict[str, float]:
    """The calibration statistics of `panel` (bars strictly before `until` when given), by STAT_NAMES.

    Pure: reads the panel, returns a new dict; see the module docstring for each definition.
    The BTC benchmark is the panel's BTC one (`find_btc`), the composite is CRYPTO_EW.
    """
    if until is not None:
        cut = pd.Timestamp(until)
        cut = cut.tz_localize("UTC") if cut.tz is None else cut
        panel = panel.slice(None, cut - pd.Timedelta(1, "ns"))
    btc = find_btc(panel.benchmark_names)
    if btc is None or COMPOSITE_NAME not in panel.benchmark_names:
        raise DataError(
            f"market statistics need a BTC benchmark and {COMPOSITE_NAME}; have {panel.benchmark_names}"
        )
    benches = {"btc": btc, "ew": COMPOSITE_NAME}
    h = to_periods(window, panel.freq)
    r, br = panel.returns(), panel.benchmark_returns()
    out: dict[str, float] = {}
    for key, bench in benches.items():
        out |= _beta_statistics(
            key, rolling_betas(r.drop(columns=[bench], errors="ignore"), br[bench], h), lags, panel.freq, h
        )
    out |= _vol_statistics(r.drop(columns=[btc], errors="ignore"), br, benches, h, panel.freq)
    out |= _regime_statistics(panel.benchmarks[COMPOSITE_NAME], regime_horizon, panel.freq)
    return {name: out[name] for name in STAT_NAMES if name in out}


def _beta_statistics(key: str, betas: pd.DataFrame, lags, freq: pd.Timedelta, h: int) -> dict[str, float]:
    out = {
        f"acf{_days(lag)}_{key}": lagged_autocorrelation(betas, to_periods(lag, freq), min_pairs=h)
        for lag in lags
    }
    enough = betas.count(axis=1) >= 3
    out[f"disp_{key}"] = float(betas.std(axis=1, ddof=1).where(enough).mean())
    out[f"wsd_{key}"] = _weighted_within_sd(betas, min_obs=h)
    if key == "btc":
        out["level_btc"] = float(betas.stack().mean())
        out["common_sd_btc"] = float(betas.mean(axis=1).where(enough).std())
    return out


def _vol_statistics(
    alts: pd.DataFrame, br: pd.DataFrame, benches: dict[str, str], h: int, freq: pd.Timedelta
) -> dict[str, float]:
    lv_b = _log_realised_vol(br[list(benches.values())], h)
    d_b = lv_b - lv_b.shift(h)
    lv_a = _log_realised_vol(alts, h)
    out = {f"volvol_{key}": float(d_b[bench].std()) for key, bench in benches.items()}
    out["volvol_assets"] = _weighted_within_sd(lv_a - lv_a.shift(h), min_obs=h)
    per_year = pd.Timedelta(days=365) / freq
    for key, bench in benches.items():
        x = br[bench].dropna()
        out[f"vol_{key}"] = float(np.sqrt((x * x).mean() * per_year))
    return out


def _regime_statistics(composite: pd.Series, horizon: str, freq: pd.Timedelta) -> dict[str, float]:
    codes = rule_regimes(composite, horizon, freq)
    known = codes[codes >= 0]
    out = {
        f"share_{name}": float((known == k).mean()) if len(known) else float("nan")
        for k, name in enumerate(REGIME_NAMES)
    }
    spells = _spells(
        codes[np.flatnonzero(codes >= 0)[0] :] if len(known) else codes, freq / pd.Timedelta(days=1)
    )
    out |= {f"dur_{name}": spells[k] for k, name in enumerate(REGIME_NAMES)}
    return out


def simulation_panel(result: SimResult) -> Panel:
    """The Panel a simulated market loads into (as `load_dataset` of its written folder), in memory."""
    from adaptive_beta.models.data.publication import us_close_utc
    from adaptive_beta.models.data.schema import FactorSeries, build_panel, infer_category

    factors = {
        name: FactorSeries(
            pd.Series(df["close"].to_numpy(), index=us_close_utc(pd.DatetimeIndex(df["date"]))),
            infer_category(name),
            "us_close",  # the rule the index was built with (what load_dataset records)
        )
        for name, df in result.factors.items()
    }
    return build_panel(
        result.assets,
        factors,
        meta={"truth_betas": result.truth_betas, "truth_market": result.truth_market},
    )


def simulated_statistics(preset: str, seeds, **overrides) -> pd.DataFrame:
    """market_statistics of one simulated market per seed, each shaped like the calibration sample
    (CALIBRATION_SHAPE: 11 perps x 486 days of 8h bars from 2020-01-01); one row per seed."""
    from adaptive_beta.models.sim.config import CALIBRATION_SHAPE, SimConfig
    from adaptive_beta.models.sim.simulator import simulate

    rows = {}
    for seed in seeds:
        cfg = SimConfig.from_preset(preset, **{**CALIBRATION_SHAPE, **overrides, "seed": int(seed)})
        rows[int(seed)] = market_statistics(simulation_panel(simulate(cfg)))
    return pd.DataFrame.from_dict(rows, orient="index")[list(STAT_NAMES)]
