"""What a desk reads off an overlay backtest: realised beta vs target, volatility, drawdown, costs.

Pure functions on the per-bar paths of `adaptive_beta.models.portfolio.backtest`.  Realised beta is the OLS slope (with
intercept) of the portfolio's gross return (before fees and funding: costs are not beta) on the
benchmark's return over the period; the rolling one uses a trailing window of bars.  Volatility and
turnover are annualised with 365 days of bars (crypto trades every day).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptive_beta.models.durations import to_periods
from adaptive_beta.models.portfolio.backtest import BacktestResult

# Named episodes of the real 8h perps (inclusive dates, UTC).
REAL_EPISODES: dict[str, tuple[str, str]] = {
    "bull_2021": ("2021-01-01", "2021-11-10"),
    "luna_2022": ("2022-05-01", "2022-06-30"),
    "ftx_2022": ("2022-11-01", "2022-12-31"),
}
REFERENCE = "rolling_ols_30d"


def realised_beta(y: pd.Series | np.ndarray, x: pd.Series | np.ndarray) -> float:
    """OLS slope of y on x (with intercept) over the rows where both are finite; NaN if < 3 rows."""
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(y) & np.isfinite(x)
    if ok.sum() < 3:
        return float("nan")
    xc = x[ok] - x[ok].mean()
    vx = float(xc @ xc)
    return float(xc @ (y[ok] - y[ok].mean()) / vx) if vx > 0 else float("nan")


def rolling_beta(y: pd.Series, x: pd.Series, window: int, min_periods: int | None = None) -> pd.Series:
    """Trailing-window OLS slope of y on x (value at row t uses rows t-window+1..t)."""
    mp = min_periods or max(3, window // 2)
    ok = y.notna() & x.notna()
    yy, xx = y.where(ok), x.where(ok)
    cov = (yy * xx).rolling(window, mp).mean() - yy.rolling(window, mp).mean() * xx.rolling(window, mp).mean()
    var = (xx * xx).rolling(window, mp).mean() - xx.rolling(window, mp).mean() ** 2
    return (cov / var.where(var > 0)).rename(y.name)


def max_drawdown(equity: pd.Series | np.ndarray, start: float | None = None) -> float:
    """Largest peak-to-trough fall of the equity curve, as a positive fraction of the peak."""
    e = np.asarray(equity, dtype=float)
    if start is not None:
        e = np.concatenate([[start], e])
    if e.size == 0:
        return float("nan")
    peak = np.maximum.accumulate(e)
    return float(np.max(1.0 - e / peak))


def bars_per_year(freq: pd.Timedelta) -> float:
    return pd.Timedelta("365D") / pd.Timedelta(freq)


def summarise_path(
    frame: pd.DataFrame,
    bench_returns: pd.DataFrame,
    benches: list[str],
    target: float,
    freq: pd.Timedelta,
    rolling: dict[str, pd.Series],
    nav0: float,
) -> dict[str, float]:
    """Metrics of one (estimator, period): `frame` is the path restricted to the period."""
    n = len(frame)
    ppy = bars_per_year(freq)
    out: dict[str, float] = {"n_bars": float(n)}
    if n == 0:
        return out
    for b in benches:
        x = bench_returns[b].reindex(frame.index)
        out[f"beta_{b}"] = realised_beta(frame["ret_gross"], x)
        rb = rolling[b].reindex(frame.index)
        out[f"roll_mad_{b}"] = float((rb - target).abs().mean())
    years = n / ppy
    eq = frame["equity"].to_numpy()
    first_nav = float(eq[0] / (1.0 + frame["ret"].iloc[0])) if n else nav0
    out["vol_ann"] = float(frame["ret"].std(ddof=1) * np.sqrt(ppy)) if n > 1 else float("nan")
    out["max_drawdown"] = max_drawdown(eq, start=first_nav)
    out["total_return"] = float(eq[-1] / first_nav - 1.0)
    out["turnover_ann"] = float(frame["turnover"].sum() / years)
    out["fees"] = float(frame["fee"].sum())
    out["funding"] = float(frame["funding"].sum())
    out["costs"] = out["fees"] + out["funding"]
    return out


def episodes_for(meta: dict, index: pd.DatetimeIndex, max_episodes: int = 3) -> dict[str, tuple[str, str]]:
    """Named periods: the real-data episodes, or on simulated data (meta `truth_market`) the
    windows around the first `max_episodes` switches into a crash regime (14 days before to 30
    days after the switch)."""
    market = meta.get("truth_market")
    if market is None:
        return dict(REAL_EPISODES)
    names = market["regime_name"].reindex(index)
    crash = (names == "crash").to_numpy()
    starts = np.nonzero(crash[1:] & ~crash[:-1])[0] + 1
    out: dict[str, tuple[str, str]] = {}
    for s in starts[:max_episodes]:
        t = index[s]
        lo, hi = t - pd.Timedelta("14D"), t + pd.Timedelta("30D")
        out[f"crash@{t:%Y-%m-%d}"] = (lo.isoformat(), hi.isoformat())
    return out


def summary_table(
    result: BacktestResult, freq: pd.Timedelta, episodes: dict[str, tuple[str, str]] | None = None
) -> pd.DataFrame:
    """Rows (estimator, period): `full` and each episode overlapping the backtest; metric columns."""
    cfg = result.config
    window = to_periods(cfg.rolling_window, freq)
    rows = []
    for name, path in result.paths.items():
        frame = path.frame
        rolling = {
            b: rolling_beta(frame["ret_gross"], result.bench_returns[b], window) for b in result.benchmarks
        }
        periods = {"full": frame}
        for ep, (lo, hi) in (episodes or {}).items():
            lo_t = pd.Timestamp(lo)
            hi_t = pd.Timestamp(hi)
            lo_t = lo_t.tz_localize("UTC") if lo_t.tzinfo is None else lo_t
            hi_t = hi_t.tz_localize("UTC") if hi_t.tzinfo is None else hi_t
            if len(hi) == 10:  # a date: through the end of that day
                hi_t = hi_t + pd.Timedelta("1D") - pd.Timedelta("1ns")
            sub = frame.loc[(frame.index >= lo_t) & (frame.index <= hi_t)]
            if len(sub):
                periods[ep] = sub
        for period, sub in periods.items():
            m = summarise_path(
                sub, result.bench_returns, result.benchmarks, cfg.target_beta, freq, rolling, cfg.nav
            )
            m["skipped_rebalances"] = float(path.skipped_rebalances)
            rows.append({"estimator": name, "period": period, **m})
    return pd.DataFrame(rows).set_index(["estimator", "period"])


def ratios_vs_reference(
    table: pd.DataFrame, reference: str = REFERENCE, period: str = "full"
) -> pd.DataFrame:
    """Each estimator's metrics divided by the reference overlay's (rolling 30d OLS) for one period."""
    if (reference, period) not in table.index:
        return pd.DataFrame()
    ref = table.loc[(reference, period)]
    sub = table.xs(period, level="period")
    cols = [c for c in sub.columns if c.startswith("roll_mad_") or c in ("vol_ann", "max_drawdown", "costs")]
    return (sub[cols] / ref[cols].replace(0.0, np.nan)).add_suffix("_ratio")
