"""The overlay backtest from Python: forecasts in, the hedged book's paths and summary tables out.

Why a layer: `abeta backtest` composes the loader, the baselines, the book, `run_backtest` and
the summary tables; a notebook wants the same numbers without the command line.  These functions
compose the same modules (`adaptive_beta.models.portfolio`) with the same defaults, so a table here
is the table `abeta backtest` prints.  Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from adaptive_beta.api import _panel

Forecasts = Mapping[str, Mapping[str, pd.DataFrame]]  # estimator -> benchmark -> (bar x asset) betas


def baseline_forecasts(data, names: list[str] | None = None, **config) -> dict[str, dict[str, pd.DataFrame]]:
    """Every classical baseline's beta at every bar: name -> benchmark -> (bar x asset) frame.

    The scorecard's and `abeta backtest`'s baselines (`rolling_ols_30d`, `welch_hl60d`, ...),
    each known at its bar's close.  `names`: keep only these; `config`: `BaselineConfig` fields.
    """
    from adaptive_beta.models.estimators.baselines import BaselineConfig
    from adaptive_beta.models.estimators.baselines import baseline_forecasts as _baselines

    panel = _panel(data)
    cfg = BaselineConfig(**config) if config else None
    out = _baselines(panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq, cfg)
    if names is None:
        return out
    unknown = [n for n in names if n not in out]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; the baselines are {sorted(out)}")
    return {n: out[n] for n in names}


def episodes(data) -> dict[str, tuple[str, str]]:
    """Named periods the backtest tables report: LUNA, FTX and the 2021 bull run on real data; on
    simulated data the windows around the first switches into the crash regime."""
    from adaptive_beta.models.portfolio.metrics import episodes_for

    panel = _panel(data)
    return episodes_for(panel.meta, panel.index)


@dataclass
class BacktestReport:
    """What `backtest` returns: the per-bar paths and the tables `abeta backtest` prints.

    `table`: rows (estimator, period) for `full` and each episode, metric columns (`beta_<b>`
    realised, `roll_mad_<b>`, `vol_ann`, `max_drawdown`, costs, ...); `ratios`: each overlay's
    full-period metrics over the rolling-OLS 30d overlay's; `result`: the `BacktestResult`
    (`.paths[name].frame` per bar: `ret`, `ret_gross`, `equity`, ...; `.bench_returns`).
    """

    result: Any  # adaptive_beta.models.portfolio.backtest.BacktestResult
    table: pd.DataFrame
    ratios: pd.DataFrame
    weights: dict[str, float]
    hedges: list[str]
    freq: pd.Timedelta

    @property
    def paths(self) -> dict[str, pd.DataFrame]:
        """Estimator -> its per-bar path frame (the unhedged book is `unhedged`)."""
        return {name: p.frame for name, p in self.result.paths.items()}

    @property
    def config(self):
        """The `BacktestConfig` used (target beta, NAV, fees, rebalance, rolling window)."""
        return self.result.config

    def text(self) -> str:
        """The printed report of `abeta backtest`: full period, ratios, episodes."""
        from adaptive_beta.models.portfolio.report_text import format_tables

        return format_tables(self.table, self.ratios, self.result.benchmarks)

    def rolling_beta(self, benchmark: str | None = None, window: str | None = None) -> pd.DataFrame:
        """Trailing realised beta of each hedged overlay's gross return (bar x estimator), as the
        `roll_mad_*` column measures it; `window` default: the config's rolling window (30d)."""
        from adaptive_beta.models.durations import to_periods
        from adaptive_beta.models.portfolio.backtest import UNHEDGED
        from adaptive_beta.models.portfolio.metrics import rolling_beta

        bench = benchmark or self.result.benchmarks[0]
        bars = to_periods(window or self.config.rolling_window, self.freq)
        x = self.result.bench_returns[bench]
        return pd.DataFrame(
            {n: rolling_beta(f["ret_gross"], x, bars) for n, f in self.paths.items() if n != UNHEDGED}
        )


def backtest(
    data,
    forecasts: Forecasts,
    *,
    start: str | None = None,
    end: str | None = None,
    benchmarks: list[str] | None = None,
    weights: Mapping[str, float] | None = None,
    hedges: list[str] | None = None,
    **config,
) -> BacktestReport:
    """Hedge a book with each estimator's forecasts, side by side with the unhedged book.

    The book defaults to `abeta backtest`'s: an equal-weight basket of the altcoin perps (not BTC
    or ETH), hedged with the BTC and ETH perps to the target beta (0) on the BTC benchmark, fees
    and funding paid.  `forecasts`: estimator -> benchmark -> (bar x asset) betas, e.g. from
    `baseline_forecasts` or `Model.forecast_history`.  `config`: other `BacktestConfig` fields
    (`fee_bps=`, `rebalance=`, `target_beta=`, `nav=`).
    """
    from adaptive_beta.models.data.schema import btc_benchmark
    from adaptive_beta.models.portfolio.backtest import BacktestConfig, run_backtest
    from adaptive_beta.models.portfolio.book import default_hedges, default_portfolio
    from adaptive_beta.models.portfolio.metrics import episodes_for, ratios_vs_reference, summary_table

    panel = _panel(data)
    book = dict(weights) if weights is not None else default_portfolio(panel.symbols).weights()
    hedges = list(hedges or default_hedges(panel.symbols))
    cfg = BacktestConfig(start=start, end=end, **config)
    cfg = replace(cfg, benchmarks=tuple(benchmarks or cfg.benchmarks or [btc_benchmark(panel)]))
    result = run_backtest(
        panel.returns(),
        panel.benchmark_returns(),
        panel.funding_rate,
        book,
        forecasts,
        panel.freq,
        cfg,
        hedges,
    )
    table = summary_table(result, panel.freq, episodes_for(panel.meta, panel.index))
    return BacktestReport(result, table, ratios_vs_reference(table), book, hedges, panel.freq)
