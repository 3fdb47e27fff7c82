"""Forward targets: realised forward betas, their moments, true betas (simulation) and regimes.

A target at row t uses rows t+1 .. t+H only (H = horizon in bars): the bars that close after
the features at t are known.  Forward window sums are differences of one cumulative sum,
vectorised over assets and time, so a target at t is unchanged by anything after row t+H and
NaN where the window runs past the end of the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import COMPOSITE_NAME, REGIME_NAMES, DataError, Panel
from adaptive_beta.models.durations import parse_duration, to_periods
from adaptive_beta.models.features.compute import feature_rows, wide_to_long

UNKNOWN_REGIME = -1

# Rule labels on real data (composite CRYPTO_EW over the window; fixed constants, never fitted).
# Over a 7-day window (thresholds on return/drawdown scale with sqrt(H / 7d)):
CRASH_DRAWDOWN = 0.20  # peak-to-trough fall within the window above 20 %  -> crash
CRASH_RETURN = -0.15  # or the window's return below -15 %                 -> crash
VOLATILE_VOL = 0.80  # else annualised realised vol above 80 %             -> volatile, else calm

__all__ = [
    "CRASH_DRAWDOWN",
    "CRASH_RETURN",
    "REGIME_NAMES",
    "UNKNOWN_REGIME",
    "VOLATILE_VOL",
    "forward_betas",
    "forward_betas_wide",
    "forward_moments",
    "forward_multifactor_betas",
    "forward_sum",
    "regime_labels",
    "rule_regimes",
    "true_forward_betas",
]


def forward_sum(a: np.ndarray, h: int) -> np.ndarray:
    """out[t] = a[t+1] + ... + a[t+h] along axis 0; NaN where t + h is past the last row.

    a must be finite (callers zero-fill and count validity separately).
    """
    a = np.asarray(a, dtype=np.float64)
    c = np.concatenate([np.zeros((1,) + a.shape[1:]), np.cumsum(a, axis=0)])  # c[k] = sum a[:k]
    out = np.full(a.shape, np.nan)
    t = a.shape[0]
    if h < t:
        out[: t - h] = c[h + 1 :] - c[1 : t - h + 1]
    return out


def _pair_sums(y: np.ndarray, x: np.ndarray, h: int) -> dict[str, np.ndarray]:
    m = np.isfinite(y) & np.isfinite(x[:, None])
    yv = np.where(m, y, 0.0)
    xv = np.where(m, x[:, None], 0.0)
    return {
        "n": forward_sum(m.astype(np.float64), h),
        "sx": forward_sum(xv, h),
        "sy": forward_sum(yv, h),
        "sxx": forward_sum(xv * xv, h),
        "syy": forward_sum(yv * yv, h),
        "sxy": forward_sum(xv * yv, h),
    }


def _moments(s: dict[str, np.ndarray], h: int, min_fraction: float) -> dict[str, np.ndarray]:
    """Population (divide by n) forward var_x, cov, var_y of the valid pairs; NaN if too few."""
    n = s["n"]
    ok = n >= max(2.0, np.ceil(min_fraction * h - 1e-9))
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = s["sx"] / n, s["sy"] / n
        var_x = s["sxx"] / n - mx * mx
        var_y = s["syy"] / n - my * my
        cov = s["sxy"] / n - mx * my
    nan = np.nan
    return {
        "n": np.where(np.isnan(n), nan, n),
        "var_bench": np.where(ok, np.maximum(var_x, 0.0), nan),
        "cov": np.where(ok, cov, nan),
        "var_asset": np.where(ok, np.maximum(var_y, 0.0), nan),
    }


def _check_fraction(min_fraction: float) -> None:
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")


def _sorted(panel: Panel) -> Panel:
    symbols = sorted(panel.symbols)
    return panel.select(symbols) if symbols != panel.symbols else panel


def forward_betas_wide(
    panel: Panel, horizon: str = "30d", min_fraction: float = 0.8
) -> dict[str, pd.DataFrame]:
    """Benchmark -> T x N frame of forward OLS betas (with intercept) over rows t+1..t+H.

    NaN where fewer than min_fraction * H valid (asset, benchmark) return pairs, where the
    benchmark does not move, or where the window runs past the end; NaN also where the asset IS
    the benchmark (BTCUSDT against BTCUSDT: 1 by construction, not a forecast target: kept in,
    it would enter training, validation, the correction's shrinkage and the interval
    calibration as a free, perfectly predicted row).
    """
    _check_fraction(min_fraction)
    h = to_periods(horizon, panel.freq)
    y = panel.returns().to_numpy(dtype=np.float64, na_value=np.nan)
    br = panel.benchmark_returns()
    out = {}
    for name in panel.benchmark_names:
        m = _moments(_pair_sums(y, br[name].to_numpy(dtype=np.float64, na_value=np.nan), h), h, min_fraction)
        with np.errstate(invalid="ignore", divide="ignore"):
            degenerate = ~(m["var_bench"] > 1e-20)
            beta = np.where(degenerate, np.nan, m["cov"] / m["var_bench"])
        beta[:, [s == name for s in panel.symbols]] = np.nan  # self-pair: identically 1
        out[name] = pd.DataFrame(beta, index=panel.index, columns=panel.symbols)
    return out


def forward_betas(panel: Panel, horizon: str = "30d", min_fraction: float = 0.8) -> pd.DataFrame:
    """Forward realised betas, indexed by (timestamp, symbol) like the feature table; one column per benchmark."""
    p = _sorted(panel)
    wide = forward_betas_wide(p, horizon, min_fraction)
    return wide_to_long({k: v.to_numpy() for k, v in wide.items()}, p.index, p.symbols, feature_rows(p))


def forward_moments(panel: Panel, horizon: str = "30d", min_fraction: float = 0.8) -> pd.DataFrame:
    """Forward second moments for hedge-error metrics, indexed by (timestamp, symbol).

    Columns per benchmark B: `var_bench_<B>`, `cov_<B>`, `var_asset_<B>` (population moments,
    divided by n, of the valid pairs over rows t+1..t+H, so cov / var_bench is exactly the
    forward beta) and `n_<B>` (valid pairs).  The hedge variance of r_i - b r_B over the window
    is var_asset - 2 b cov + b^2 var_bench (see `adaptive_beta.training.metrics.hedge_variance`).
    """
    _check_fraction(min_fraction)
    p = _sorted(panel)
    h = to_periods(horizon, p.freq)
    y = p.returns().to_numpy(dtype=np.float64, na_value=np.nan)
    br = p.benchmark_returns()
    arrays: dict[str, np.ndarray] = {}
    for name in p.benchmark_names:
        m = _moments(_pair_sums(y, br[name].to_numpy(dtype=np.float64, na_value=np.nan), h), h, min_fraction)
        arrays[f"var_bench_{name}"] = m["var_bench"]
        arrays[f"cov_{name}"] = m["cov"]
        arrays[f"var_asset_{name}"] = m["var_asset"]
        arrays[f"n_{name}"] = m["n"]
    return wide_to_long(arrays, p.index, p.symbols, feature_rows(p))


def _truth(panel: Panel) -> tuple[pd.DataFrame, pd.DataFrame]:
    tb, tm = panel.meta.get("truth_betas"), panel.meta.get("truth_market")
    if tb is None or tm is None:
        raise DataError(
            "panel has no simulated ground truth (meta['truth_betas'] / meta['truth_market']); "
            "true forward betas exist only for simulated datasets with a truth/ folder"
        )
    return tb, tm


def true_forward_betas(panel: Panel, horizon: str = "30d", min_fraction: float = 1.0) -> pd.DataFrame:
    """Variance-weighted mean of the true per-bar betas over rows t+1..t+H (simulated data only).

    For benchmark B: sum_s beta_s var_s / sum_s var_s with var_s the benchmark's conditional
    variance at s: the population analogue of the forward OLS beta (cov and var summed over the
    window).  Same index and columns as `forward_betas`.  Raises DataError without truth.
    """
    _check_fraction(min_fraction)
    p = _sorted(panel)
    tb, tm = _truth(p)
    h = to_periods(horizon, p.freq)
    arrays = {}
    for name in p.benchmark_names:
        bcol, vcol = f"beta_{name}", f"var_{name}"
        if bcol not in tb.columns or vcol not in tm.columns:
            raise DataError(f"simulated truth lacks {bcol!r} or {vcol!r} for benchmark {name}", column=bcol)
        beta = tb[bcol].unstack("symbol").reindex(index=p.index, columns=p.symbols).to_numpy(dtype=np.float64)
        var = tm[vcol].reindex(p.index).to_numpy(dtype=np.float64)[:, None]
        m = np.isfinite(beta) & np.isfinite(var)
        num = forward_sum(np.where(m, beta * var, 0.0), h)
        den = forward_sum(np.where(m, np.broadcast_to(var, beta.shape), 0.0), h)
        n = forward_sum(m.astype(np.float64), h)
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = (n >= np.ceil(min_fraction * h - 1e-9)) & (den > 0)
            arrays[name] = np.where(ok, num / np.where(ok, den, 1.0), np.nan)
    return wide_to_long(arrays, p.index, p.symbols, feature_rows(p))


def forward_multifactor_betas(
    panel: Panel,
    horizon: str = "30d",
    regressors: list[str] | None = None,
    min_fraction: float = 0.8,
    factor_clip: float = 0.5,
) -> pd.DataFrame:
    """Forward multiple-regression betas: OLS of r_i on (1, x_1..x_P) over rows t+1..t+H.

    regressors: benchmark and/or factor names (default: the first benchmark and every factor);
    benchmark returns are simple returns, factor changes as in the features (differences for
    rates, returns otherwise, clipped to +-factor_clip).  One column per regressor, indexed
    like `forward_betas`; NaN with fewer than max(min_fraction * H, P + 2) complete rows or a
    near-singular design.  Daily factors on intraday bars move on one bar a day, so this
    target is meant for daily bars (or the simulator's structural factor loadings).
    """
    _check_fraction(min_fraction)
    p = _sorted(panel)
    names = list(regressors) if regressors is not None else p.benchmark_names[:1] + p.factor_names
    if not names:
        raise DataError("forward_multifactor_betas needs at least one regressor (benchmark or factor)")
    cols = []
    br = p.benchmark_returns()
    for name in names:
        if name in br.columns:
            cols.append(br[name].to_numpy(dtype=np.float64, na_value=np.nan))
        elif name in p.factors.columns:
            level = p.factors[name].to_numpy(dtype=np.float64, na_value=np.nan)
            prev = np.r_[np.nan, level[:-1]]
            with np.errstate(invalid="ignore", divide="ignore"):
                if p.factor_categories.get(name) == "rates":
                    c = level - prev
                else:
                    c = np.where((level > 0) & (prev > 0), level / prev - 1.0, np.nan)
            cols.append(np.clip(c, -factor_clip, factor_clip))
        else:
            raise DataError(
                f"unknown regressor {name!r}: not a benchmark {p.benchmark_names} or factor {p.factor_names}"
            )
    h = to_periods(horizon, p.freq)
    x = np.column_stack([np.ones(len(p.index)), *cols])  # (T, P+1)
    k = x.shape[1]
    need = max(np.ceil(min_fraction * h - 1e-9), k + 1)
    y_all = p.returns().to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.full((len(p.index), len(p.symbols), k - 1), np.nan)
    for j in range(len(p.symbols)):  # a loop over assets only; time is vectorised
        y = y_all[:, j]
        m = np.isfinite(y) & np.isfinite(x).all(axis=1)
        xv = np.where(m[:, None], x, 0.0)
        yv = np.where(m, y, 0.0)
        xtx = forward_sum((xv[:, :, None] * xv[:, None, :]).reshape(len(y), k * k), h).reshape(-1, k, k)
        xty = forward_sum(xv * yv[:, None], h)
        n = forward_sum(m.astype(np.float64), h)
        ok = np.isfinite(n) & (n >= need)
        if not ok.any():
            continue
        a, b = xtx[ok], xty[ok]
        with np.errstate(invalid="ignore", divide="ignore"):
            cond = np.linalg.cond(a)
        good = np.isfinite(cond) & (cond < 1e12)
        sol = np.full((len(a), k), np.nan)
        if good.any():
            sol[good] = np.linalg.solve(a[good], b[good][:, :, None])[:, :, 0]
        out[ok, j] = sol[:, 1:]
    arrays = {name: out[:, :, i] for i, name in enumerate(names)}
    return wide_to_long(arrays, p.index, p.symbols, feature_rows(p))


# --- regimes ------------------------------------------------------------------------------
def _modal_codes(codes: np.ndarray, h: int) -> np.ndarray:
    """Most frequent code over rows t-h+1..t (ties -> the more severe regime); -1 unless all h known."""
    t = len(codes)
    known = codes >= 0
    counts = []
    for k in range(len(REGIME_NAMES)):
        c = np.concatenate([[0.0], np.cumsum(codes == k)])
        cnt = np.full(t, np.nan)
        cnt[h - 1 :] = c[h:] - c[: t - h + 1]
        counts.append(cnt)
    stack = np.stack(counts, axis=1)  # (T, R)
    n_known = np.full(t, np.nan)
    ck = np.concatenate([[0.0], np.cumsum(known)])
    n_known[h - 1 :] = ck[h:] - ck[: t - h + 1]
    r = len(REGIME_NAMES)
    mode = (r - 1) - np.argmax(np.nan_to_num(stack[:, ::-1], nan=-1.0), axis=1)  # last max = most severe
    return np.where(n_known == h, mode, UNKNOWN_REGIME).astype(np.int64)


def rule_regimes(level: pd.Series, horizon: str, freq: pd.Timedelta) -> np.ndarray:
    """Regime code of the window (t-H, t] from a benchmark level series (the composite).

    crash if the window's peak-to-trough drawdown exceeds CRASH_DRAWDOWN * s or its return is
    below CRASH_RETURN * s, with s = sqrt(H / 7d); else volatile if the annualised realised vol
    (uncentred, sqrt(mean r^2 * bars per year)) exceeds VOLATILE_VOL; else calm.  -1 where the
    window has a missing level.  Thresholds were set by eye on the 2020-2026 Binance 8h perps (11
    coins) so that March 2020, LUNA (May 2022) and FTX (Nov 2022) are crashes; there, 7d windows
    come out 73 % calm, 19 % volatile, 7.5 % crash (30d: 66 / 28 / 5 %).  They are constants,
    never fitted on test data.
    """
    h = to_periods(horizon, freq)
    scale = float(np.sqrt(parse_duration(horizon) / pd.Timedelta(days=7)))
    lv = level.to_numpy(dtype=np.float64, na_value=np.nan)
    t = len(lv)
    out = np.full(t, UNKNOWN_REGIME, dtype=np.int64)
    if t <= h:
        return out
    per_year = pd.Timedelta(days=365) / freq
    chunk = max(1, 4_000_000 // (h + 1))  # bound the (rows, H+1) window matrix to ~32 MB
    windows = np.lib.stride_tricks.sliding_window_view(
        lv, h + 1
    )  # row j = levels j .. j+h (window ends at j+h)
    for start in range(0, len(windows), chunk):
        w = windows[start : start + chunk]
        with np.errstate(invalid="ignore", divide="ignore"):
            ret = w[:, -1] / w[:, 0] - 1.0
            dd = 1.0 - (w / np.maximum.accumulate(w, axis=1)).min(axis=1)
            r = w[:, 1:] / w[:, :-1] - 1.0
            vol = np.sqrt(np.mean(r * r, axis=1) * per_year)
        code = np.where(vol > VOLATILE_VOL, 1, 0)
        code = np.where((dd > CRASH_DRAWDOWN * scale) | (ret < CRASH_RETURN * scale), 2, code)
        code = np.where(np.isfinite(w).all(axis=1), code, UNKNOWN_REGIME)
        out[h + start : h + start + len(w)] = code
    return out


def regime_labels(panel: Panel, horizon: str = "7d", source: str = "auto") -> pd.DataFrame:
    """Regime of the window (t-H, t] (`current`) and of (t, t+H] (`forward`) per bar, int codes.

    Codes index REGIME_NAMES (0 calm, 1 volatile, 2 crash); -1 where unknown (window before the
    start or past the end, or missing data).  source: "truth" = modal true regime of the
    simulation over the window (ties -> more severe), "rule" = `rule_regimes` on the composite
    CRYPTO_EW, "auto" = truth when the panel has it, else the rule.  forward[t] = current[t+H].
    """
    if source not in ("auto", "truth", "rule"):
        raise ValueError(f"source must be 'auto', 'truth' or 'rule', got {source!r}")
    h = to_periods(horizon, panel.freq)
    has_truth = panel.meta.get("truth_market") is not None
    if source == "truth" or (source == "auto" and has_truth):
        _, tm = _truth(panel)
        codes = tm["regime"].reindex(panel.index).to_numpy(dtype=np.float64, na_value=np.nan)
        codes = np.where(np.isfinite(codes), codes, UNKNOWN_REGIME).astype(np.int64)
        current = _modal_codes(codes, h)
    else:
        if COMPOSITE_NAME not in panel.benchmarks.columns:
            raise DataError(
                f"regime rule needs the composite benchmark {COMPOSITE_NAME}", column=COMPOSITE_NAME
            )
        current = rule_regimes(panel.benchmarks[COMPOSITE_NAME], horizon, panel.freq)
    forward = np.full_like(current, UNKNOWN_REGIME)
    if h < len(current):
        forward[:-h] = current[h:]
    return pd.DataFrame({"current": current, "forward": forward}, index=panel.index.rename("timestamp"))
