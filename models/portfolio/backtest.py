"""Overlay backtest: a core perp book hedged with BTC/ETH perps sized from each estimator's betas.

Why: a beta forecast is only worth what it does to a hedged book.  This replays, side by side for
every estimator, the same core portfolio with an overlay re-sized at each rebalance by
`adaptive_beta.models.portfolio.hedge.hedge_overlay` from that estimator's forecasts, and measures what a desk sees:
realised beta vs target, hedged volatility, drawdown, turnover, fees and funding.

Accounting (NAV units, start NAV = `cfg.nav`), torch-free and causal:

- Decisions at row t use forecasts at row t only (known at bar t's close).  At a rebalance row the
  core is reset to weights w_i x NAV_t and the overlay to `hedge_overlay(core, betas_t, target)`;
  fees are `fee_bps / 1e4 x sum |new - old notional|`, charged at t.
- Bar t+1 then earns `sum_i n_i r_i(t+1)` and pays funding `sum_i n_i f_i(t+1)` (longs pay a
  positive rate, shorts receive it; the panel's `funding_rate` at row s is the sum of the prints in
  bar s).  Between rebalances notionals drift with their own returns (buy and hold).
- A missing return or funding value counts as 0 (a gap or an unlisted asset does not move).
- If an estimator has no finite beta for a needed asset at a rebalance, the previous positions are
  kept (counted in `skipped_rebalances`); the common start (`start_row`) is the first rebalance
  where every estimator has all betas, so all estimators trade the same period.

Per bar the path records the net return (after costs), the gross market return (the one realised
beta is measured on: costs are not beta), fees, funding, turnover and equity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adaptive_beta.models.durations import parse_duration, to_periods
from adaptive_beta.models.portfolio.hedge import hedge_overlay

UNHEDGED = "unhedged"


@dataclass(frozen=True)
class BacktestConfig:
    """Settings of the overlay backtest; defaults run on the 8h perps and the simulator."""

    target_beta: float = 0.0  # target portfolio beta to every hedged benchmark
    benchmarks: tuple[str, ...] | None = None  # hedged benchmarks (None: the BTC benchmark only)
    hedge_instruments: tuple[str, ...] | None = None  # None: the BTC and ETH perps of the panel
    rebalance: str = "1d"  # how often core and overlay are re-sized
    fee_bps: float = 4.0  # fee per unit of traded notional, in bps (Binance USD-M taker ~4-5 bps)
    funding: bool = True  # pay/receive perp funding on the signed positions
    rolling_window: str = "30d"  # window of the rolling realised beta
    nav: float = 1.0  # starting NAV (the results are in fractions of it)
    start: str | None = None  # first decision date (ISO); None: first date all estimators can trade
    end: str | None = None  # last date of the backtest (ISO); None: the end of the data

    def __post_init__(self) -> None:
        parse_duration(self.rebalance)
        parse_duration(self.rolling_window)
        if self.fee_bps < 0:
            raise ValueError(f"BacktestConfig.fee_bps must be >= 0, got {self.fee_bps!r}")
        if not self.nav > 0:
            raise ValueError(f"BacktestConfig.nav must be positive, got {self.nav!r}")


@dataclass
class OverlayPath:
    """One estimator's backtest, per bar (index: the bar whose return is earned)."""

    frame: pd.DataFrame  # ret, ret_gross, fee, funding, turnover, equity, rebalanced
    positions: pd.DataFrame  # notionals held during each bar (symbols as columns)
    skipped_rebalances: int = 0


@dataclass
class BacktestResult:
    paths: dict[str, OverlayPath]
    bench_returns: pd.DataFrame  # per bar, aligned with the paths
    benchmarks: list[str]  # hedged benchmarks
    config: BacktestConfig
    start: pd.Timestamp
    end: pd.Timestamp
    notes: list[str] = field(default_factory=list)


def rebalance_rows(index: pd.DatetimeIndex, freq: pd.Timedelta, every: str, first: int) -> np.ndarray:
    """Rows first, first + k, first + 2k, ... with k = `every` in bars (at least 1)."""
    k = to_periods(every, freq)
    return np.arange(first, len(index) - 1, k, dtype=np.int64)


def _betas_at(
    forecasts: Mapping[str, pd.DataFrame], row: int, syms: list[str], benches: list[str]
) -> dict[str, dict[str, float]] | None:
    out: dict[str, dict[str, float]] = {s: {} for s in syms}
    for b in benches:
        frame = forecasts[b]
        for s in syms:
            v = float(frame[s].iat[row]) if s in frame.columns else np.nan
            if not np.isfinite(v):
                return None
            out[s][b] = v
    return out


def _check_solvent(nav: float, start: float, when, weights: np.ndarray) -> None:
    """ValueError saying what to do when the book has lost all its NAV (the overlay cannot be sized)."""
    if nav > 0:
        return
    gross = float(np.abs(weights).sum())
    raise ValueError(
        f"the book and its overlay lost all their NAV by {when} (NAV {nav / start:.3g} x the start; gross "
        f"weight {gross:g}): weights are fractions of NAV (0.5 = 50 %), so a 50/50 book is 0.5 and 0.5; "
        "use smaller weights, other hedge instruments or a shorter history"
    )


def first_common_row(
    forecasts: Mapping[str, Mapping[str, pd.DataFrame]], syms: list[str], benches: list[str], n_rows: int
) -> int:
    """First row where every estimator has a finite beta for every symbol and benchmark."""
    ok = np.ones(n_rows, dtype=bool)
    for by_bench in forecasts.values():
        for b in benches:
            frame = by_bench[b].reindex(columns=syms)
            ok &= np.isfinite(frame.to_numpy(dtype=float)).all(axis=1)
    rows = np.nonzero(ok)[0]
    if rows.size == 0:
        raise ValueError(
            "no bar where every estimator has betas for every portfolio and hedge asset; "
            "drop estimators with long warm-ups or use a longer history"
        )
    return int(rows[0])


def simulate_overlay(
    returns: pd.DataFrame,
    funding: pd.DataFrame | None,
    weights: Mapping[str, float],
    forecasts: Mapping[str, pd.DataFrame] | None,
    hedges: list[str],
    benches: list[str],
    rows: np.ndarray,
    last_row: int,
    cfg: BacktestConfig,
) -> OverlayPath:
    """One estimator's path; `forecasts` None = the core alone (no overlay).  See the module docstring."""
    core_syms = list(weights)
    syms = core_syms + [h for h in hedges if h not in weights]
    col = {s: i for i, s in enumerate(syms)}
    r = returns.reindex(columns=syms).to_numpy(dtype=float)
    r = np.where(np.isfinite(r), r, 0.0)
    if funding is not None and cfg.funding:
        f = funding.reindex(columns=syms).to_numpy(dtype=float)
        f = np.where(np.isfinite(f), f, 0.0)
    else:
        f = np.zeros_like(r)
    w = np.array([float(weights[s]) for s in core_syms])
    target = {b: float(cfg.target_beta) for b in benches}
    fee_rate = cfg.fee_bps / 1e4
    rebal = set(int(x) for x in rows)
    t0, t1 = int(rows[0]), int(last_row)
    n = t1 - t0
    out = np.zeros((n, 6))  # ret, ret_gross, fee, funding, turnover, rebalanced
    held = np.zeros((n, len(syms)))
    equity = np.zeros(n)
    pos = np.zeros(len(syms))
    nav = float(cfg.nav)
    skipped = 0
    for k, t in enumerate(range(t0, t1)):
        fee = 0.0
        traded = 0.0
        did = 0.0
        if t in rebal:
            _check_solvent(nav, cfg.nav, returns.index[t], w)
            new = np.zeros(len(syms))
            new[: len(core_syms)] = w * nav
            ok = True
            if forecasts is not None:
                betas = _betas_at(forecasts, t, syms, benches)
                if betas is None:
                    ok = False
                else:
                    core = {s: new[col[s]] for s in core_syms}
                    res = hedge_overlay(core, betas, None, hedges, None, target, nav=nav)
                    for h, v in res.orders.items():
                        new[col[h]] += v
            if ok:
                traded = float(np.abs(new - pos).sum())
                fee = fee_rate * traded
                pos = new
                did = 1.0
            else:
                skipped += 1
        gross = float(pos @ r[t + 1])
        fund = float(pos @ f[t + 1])
        out[k] = (
            (gross - fund - fee) / nav,
            gross / nav,
            fee / nav,
            fund / nav,
            traded / nav,
            did,
        )
        held[k] = pos
        nav += gross - fund - fee
        equity[k] = nav
        pos = pos * (1.0 + r[t + 1])
    index = returns.index[t0 + 1 : t1 + 1]
    frame = pd.DataFrame(
        out, index=index, columns=["ret", "ret_gross", "fee", "funding", "turnover", "rebalanced"]
    )
    frame["equity"] = equity
    return OverlayPath(frame, pd.DataFrame(held, index=index, columns=syms), skipped)


def run_backtest(
    returns: pd.DataFrame,
    bench_returns: pd.DataFrame,
    funding: pd.DataFrame | None,
    weights: Mapping[str, float],
    forecasts: Mapping[str, Mapping[str, pd.DataFrame]],
    freq: pd.Timedelta,
    cfg: BacktestConfig | None = None,
    hedges: list[str] | None = None,
) -> BacktestResult:
    """Every estimator's overlay on the same core book and period, plus the unhedged core.

    forecasts: estimator -> benchmark -> T x N betas on the rows of `returns` (value at row t known
    at bar t's close).  `hedges` default: `cfg.hedge_instruments` (required one way or the other).
    """
    cfg = cfg or BacktestConfig()
    hedges = list(hedges or cfg.hedge_instruments or [])
    if not hedges:
        raise ValueError("no hedge instruments: give BacktestConfig.hedge_instruments")
    missing = [s for s in list(weights) + hedges if s not in returns.columns]
    if missing:
        raise ValueError(f"symbol(s) {missing} are not in the returns (assets: {list(returns.columns)})")
    benches = list(cfg.benchmarks or [bench_returns.columns[0]])
    for b in benches:
        if b not in bench_returns.columns:
            raise ValueError(f"hedged benchmark {b!r} is not among {list(bench_returns.columns)}")
        for name, by_bench in forecasts.items():
            if b not in by_bench:
                raise ValueError(f"estimator {name!r} has no forecasts for benchmark {b!r}")
    index = returns.index
    syms = list(weights) + [h for h in hedges if h not in weights]
    first = first_common_row(forecasts, syms, benches, len(index)) if forecasts else 0
    if cfg.start is not None:
        first = max(first, int(index.searchsorted(pd.Timestamp(cfg.start, tz="UTC"))))
    last = len(index) - 1
    if cfg.end is not None:
        last = min(last, int(index.searchsorted(pd.Timestamp(cfg.end, tz="UTC"), side="right")) - 1)
    rows = rebalance_rows(index[: last + 1], pd.Timedelta(freq), cfg.rebalance, first)
    if rows.size == 0 or last <= first:
        raise ValueError(
            f"nothing to backtest: the first usable bar {index[min(first, len(index) - 1)]} is at the end"
        )
    paths = {UNHEDGED: simulate_overlay(returns, funding, weights, None, hedges, benches, rows, last, cfg)}
    for name, by_bench in forecasts.items():
        paths[name] = simulate_overlay(returns, funding, weights, by_bench, hedges, benches, rows, last, cfg)
    br = bench_returns.reindex(paths[UNHEDGED].frame.index)
    return BacktestResult(paths, br, benches, cfg, index[first], index[last])
