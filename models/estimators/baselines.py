"""Classical beta estimators: the baselines the network must beat, and inputs it may use.

Pure functions on wide frames (y: T x N asset returns, x: T benchmark returns, X: T x P factor
returns); windows and half-lives are in bars (callers convert durations with
`adaptive_beta.models.durations.to_periods`); the value at row t uses rows <= t only; a row counts for asset
i only where y_i and the regressors are finite.  The implementations live in small modules
(`est_rolling`, `est_ewma`, `est_kalman`, `est_shrink`); this module is the public surface and
`baseline_forecasts`, which runs the whole baseline family from one typed config.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from adaptive_beta.models.durations import parse_duration, to_periods
from adaptive_beta.models.estimators.ewma import ewma_beta, welch_beta, winsorise_to_band
from adaptive_beta.models.estimators.factor import factor_implied_beta
from adaptive_beta.models.estimators.kalman import kalman_beta, kalman_multifactor_beta
from adaptive_beta.models.estimators.rolling import (
    multifactor_ols_beta,
    multifactor_ols_coefs,
    rolling_ols_beta,
    rolling_ols_beta_se,
)
from adaptive_beta.models.estimators.shrink import blume_beta, vasicek_beta
from adaptive_beta.models.pool import ordered_map

__all__ = [
    "BaselineConfig",
    "baseline_forecasts",
    "blume_beta",
    "ewma_beta",
    "factor_implied_beta",
    "kalman_beta",
    "kalman_multifactor_beta",
    "multifactor_ols_beta",
    "multifactor_ols_coefs",
    "rolling_ols_beta",
    "rolling_ols_beta_se",
    "vasicek_beta",
    "welch_beta",
    "winsorise_to_band",
]


@dataclass(frozen=True)
class BaselineConfig:
    """The classical baseline family; every length is a duration string converted per frequency."""

    rolling_windows: tuple[str, ...] = ("30d", "60d", "90d", "180d", "365d")  # rolling OLS windows
    min_frac: float = 0.5  # valid pairs needed in a rolling window, as a fraction of it
    ewma_halflives: tuple[str, ...] = ("30d", "90d")  # EWMA cov/var half-lives
    # Welch BSW half-lives; Welch (2022) recommends about four months (120d), 60d is the shorter variant
    welch_halflives: tuple[str, ...] = ("60d", "120d")
    welch_lower: float = -2.0  # winsorising band: [min(lower*x, upper*x), max(...)]
    welch_upper: float = 4.0
    kalman: bool = True  # random-walk Kalman beta on the benchmark alone (`kalman_rw`)
    kalman_mf: bool = True  # multi-factor Kalman, loading on the benchmark (`kalman_mf`)
    kalman_delta_per_day: float = 1e-4  # beta-increment variance per day, ratio of R / var(x)
    kalman_var_halflife: str = "60d"  # half-life of the observation/regressor variance estimates
    kalman_min_periods: str = "30d"  # history before a Kalman value is given
    shrink_window: str = "90d"  # the rolling OLS beta (and s.e.) that Vasicek and Blume adjust
    blume_weight: float = 2.0 / 3.0
    vasicek_floor_frac: float = 0.1  # prior variance floor, fraction of the cross-sectional variance
    multifactor_window: str | None = "180d"  # rolling multi-factor OLS window (None: skip)
    factors: tuple[str, ...] | None = None  # factor columns for multi-factor models (None: all)
    factor_cov_halflife: str = "60d"  # EWMA co-movement of the factors that turns loadings into a total beta

    def __post_init__(self) -> None:
        for name in ("rolling_windows", "ewma_halflives", "welch_halflives"):
            for text in getattr(self, name):
                parse_duration(text)
        for text in (
            self.kalman_var_halflife,
            self.kalman_min_periods,
            self.shrink_window,
            self.factor_cov_halflife,
        ):
            parse_duration(text)
        if self.multifactor_window is not None:
            parse_duration(self.multifactor_window)
        if not 0.0 < self.min_frac <= 1.0:
            raise ValueError(f"BaselineConfig.min_frac must be in (0, 1], got {self.min_frac!r}")
        if self.kalman_delta_per_day < 0:
            raise ValueError(
                f"BaselineConfig.kalman_delta_per_day must be >= 0, got {self.kalman_delta_per_day!r}"
            )


def _label(duration: str) -> str:
    return str(duration).strip().lower().replace(" ", "")


def _bars(duration: str, freq: pd.Timedelta) -> float:
    """A half-life in bars, kept fractional (an 8h grid and a 1d half-life is 3 bars, 36h is 4.5)."""
    return parse_duration(duration) / freq


def _min_periods(window: int, frac: float, least: int) -> int:
    return min(window, max(least, math.ceil(frac * window)))


def _regressors(
    bench_returns: pd.DataFrame,
    factor_returns: pd.DataFrame | None,
    target: str,
    factors: tuple[str, ...] | None,
) -> pd.DataFrame:
    """[target, other benchmarks, factors]: missing factor returns count as no move (0), the
    target benchmark keeps its NaNs (those rows are skipped)."""
    others = bench_returns.drop(columns=[target]).fillna(0.0)
    parts = [bench_returns[[target]], others]
    if factor_returns is not None and factor_returns.shape[1] > 0:
        fr = factor_returns.reindex(bench_returns.index)
        if factors is not None:
            missing = [f for f in factors if f not in fr.columns]
            if missing:
                raise ValueError(f"BaselineConfig.factors names unknown factor columns {missing}")
            fr = fr[list(factors)]
        fr = fr.drop(columns=[c for c in fr.columns if c in bench_returns.columns])
        parts.append(fr.fillna(0.0))
    return pd.concat(parts, axis=1)


def baseline_forecasts(
    returns: pd.DataFrame,
    bench_returns: pd.DataFrame,
    factor_returns: pd.DataFrame | None,
    freq: pd.Timedelta,
    cfg: BaselineConfig | None = None,
    *,
    block_assets: int | None = None,
    workers: int = 1,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Every classical baseline for every benchmark: name -> benchmark -> T x N betas at row t.

    Names: `rolling_ols_<w>`, `ewma_hl<h>`, `welch_hl<h>`, `kalman_rw`, `kalman_mf`,
    `vasicek_<w>`, `blume_<w>` (on the `shrink_window` rolling OLS), `multifactor_ols_<w>`.
    Multi-factor models regress on the benchmark, the other benchmarks and the factor columns;
    a factor without a return on a bar (stale, not yet published) counts as 0 there, and a
    factor constant over a rolling window is left out of that window.  Their forecast is the
    *total* beta on the benchmark implied by the loadings and the current factor co-movement
    (`factor_implied_beta`, half-life `factor_cov_halflife`), comparable with the plain OLS
    forward target; the partial loadings themselves are available from
    `multifactor_ols_coefs` / `kalman_multifactor_beta`.  The Kalman delta is scaled to the
    bar: delta_per_bar = kalman_delta_per_day * freq / 1 day.

    Every estimator but Vasicek is per asset, so assets are processed in blocks of
    `block_assets` columns (default: as many as keep the intermediate arrays near 100 MB) and,
    with `workers` > 1, blocks run in a local process pool; Vasicek (cross-sectional) runs on
    the joined rolling OLS beta and s.e.  The numbers do not depend on the blocking or the pool.
    """
    cfg = cfg or BaselineConfig()
    freq = pd.Timedelta(freq)
    bench_returns = bench_returns.reindex(returns.index)
    if workers < 1:
        raise ValueError(f"baseline_forecasts: workers must be >= 1, got {workers!r}")
    n = returns.shape[1]
    if block_assets is not None and block_assets < 1:
        raise ValueError(f"baseline_forecasts: block_assets must be >= 1, got {block_assets!r}")
    block = block_assets or max(1, int(_BLOCK_NUMBERS // max(1, len(returns) * _NUMBERS_PER_ASSET_ROW)))
    # a one-column block takes another BLAS path in the Kalman filter (1 ulp off): never make one
    block = max(block, 2)
    starts = list(range(0, n, block))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    ends = starts[1:] + [n]
    blocks = (
        [returns.iloc[:, s:e] for s, e in zip(starts, ends, strict=True)] if len(starts) > 1 else [returns]
    )
    job = partial(
        _asset_block, bench_returns=bench_returns, factor_returns=factor_returns, freq=freq, cfg=cfg
    )
    # lazily, in order: one block's frames at a time in process, at most `workers` with a pool
    return _join_blocks(ordered_map(len(blocks), lambda k: (blocks[k],), job, workers), returns, cfg)


# Blocks of assets keep the estimators' intermediates (rolling cross-products, Kalman states,
# ~_NUMBERS_PER_ASSET_ROW numbers per asset and bar) near _BLOCK_NUMBERS float64s (~100 MB; 11
# assets of 2 years hourly: the peak of a block stays well below the 28 T x N outputs).
_BLOCK_NUMBERS = 1.25e7
_NUMBERS_PER_ASSET_ROW = 64


def _join_blocks(
    parts: Iterable[dict], returns: pd.DataFrame, cfg: BaselineConfig
) -> dict[str, dict[str, pd.DataFrame]]:
    """Copy each block's frames into full (T, N) arrays as the block arrives, then drop the block
    (holding every block's frames and their joined copies at once would double the output);
    Vasicek on the joined rolling OLS beta and s.e."""
    T, n = returns.shape
    full: dict[str, dict[str, np.ndarray | None]] = {}
    col = 0
    for part in parts:
        width = 0
        for name, per_bench in part.items():
            slot = full.setdefault(name, {})
            for b, frame in per_bench.items():
                if frame is None:  # the Vasicek placeholder
                    slot[b] = None
                    continue
                if b not in slot:
                    slot[b] = np.empty((T, n))
                slot[b][:, col : col + frame.shape[1]] = frame.to_numpy()
                width = frame.shape[1]
        col += width
        del part
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for name, per_bench in full.items():
        if name in _SHRINK:
            continue
        out[name] = {}
        for b, values in per_bench.items():
            if values is None:  # cross-sectional, so on the joined frames
                beta, se = (
                    pd.DataFrame(full[k][b], index=returns.index, columns=returns.columns) for k in _SHRINK
                )
                out[name][b] = vasicek_beta(beta, se, floor_frac=cfg.vasicek_floor_frac)
            else:
                out[name][b] = pd.DataFrame(values, index=returns.index, columns=returns.columns, copy=False)
    return out


_SHRINK = ("_shrink_beta", "_shrink_se")  # the rolling OLS (beta, s.e.) Vasicek adjusts, per block


def _asset_block(
    returns: pd.DataFrame,
    *,
    bench_returns: pd.DataFrame,
    factor_returns: pd.DataFrame | None,
    freq: pd.Timedelta,
    cfg: BaselineConfig,
) -> dict:
    """Every per-asset baseline for one block of asset columns (name -> benchmark -> frame);
    Vasicek is a None placeholder (keeps the name order), `_SHRINK` names hold its (beta, se)."""
    out: dict = {}

    def put(name: str, bench: str, frame: pd.DataFrame | None) -> None:
        out.setdefault(name, {})[bench] = frame

    shrink_label = _label(cfg.shrink_window)
    delta_bar = cfg.kalman_delta_per_day * (freq / pd.Timedelta("1D"))
    var_hl = _bars(cfg.kalman_var_halflife, freq)
    k_min = to_periods(cfg.kalman_min_periods, freq)
    cov_hl = _bars(cfg.factor_cov_halflife, freq)
    for b in bench_returns.columns:
        x = bench_returns[b]
        for w in cfg.rolling_windows:
            n = to_periods(w, freq, minimum=3)
            mp = _min_periods(n, cfg.min_frac, 3)
            if _label(w) == shrink_label:
                beta, se = rolling_ols_beta_se(returns, x, n, mp)
                put(f"rolling_ols_{_label(w)}", b, beta)
            else:
                put(f"rolling_ols_{_label(w)}", b, rolling_ols_beta(returns, x, n, mp))
        if shrink_label not in {_label(w) for w in cfg.rolling_windows}:
            n = to_periods(cfg.shrink_window, freq, minimum=3)
            beta, se = rolling_ols_beta_se(returns, x, n, _min_periods(n, cfg.min_frac, 3))
        for h in cfg.ewma_halflives:
            put(f"ewma_hl{_label(h)}", b, ewma_beta(returns, x, _bars(h, freq)))
        for h in cfg.welch_halflives:
            put(
                f"welch_hl{_label(h)}",
                b,
                welch_beta(returns, x, _bars(h, freq), cfg.welch_lower, cfg.welch_upper),
            )
        if cfg.kalman:
            put("kalman_rw", b, kalman_beta(returns, x, delta_bar, var_halflife=var_hl, min_periods=k_min))
        put(f"vasicek_{shrink_label}", b, None)
        put(_SHRINK[0], b, beta)
        put(_SHRINK[1], b, se)
        put(f"blume_{shrink_label}", b, blume_beta(beta, cfg.blume_weight))
        if cfg.multifactor_window is not None or cfg.kalman_mf:
            X = _regressors(bench_returns, factor_returns, b, cfg.factors)
        if cfg.multifactor_window is not None:
            n = to_periods(cfg.multifactor_window, freq, minimum=X.shape[1] + 2)
            mp = _min_periods(n, cfg.min_frac, X.shape[1] + 2)
            coefs = multifactor_ols_coefs(returns, X, n, min_periods=mp, drop_constant=True)
            put(
                f"multifactor_ols_{_label(cfg.multifactor_window)}",
                b,
                factor_implied_beta(coefs, X, b, cov_hl),
            )
        if cfg.kalman_mf:
            coefs = kalman_multifactor_beta(
                returns, X, delta_bar, var_halflife=var_hl, beta0={b: 1.0}, min_periods=k_min
            )
            put("kalman_mf", b, factor_implied_beta(coefs, X, b, cov_hl))
    return out
