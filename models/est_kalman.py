"""Random-walk Kalman betas: single benchmark (state [alpha, beta] or [beta]) and multi-factor.

Model (per asset, per bar t, regressors h_t = [1, x_t] or [1, x_1t .. x_Pt]):

    y_t     = h_t' s_t + e_t,        e_t ~ N(0, R_t)
    s_t     = s_{t-1} + u_t,         u_t ~ N(0, R_t * diag(alpha_delta, delta / V_1, ..., delta / V_P))

`delta` is the state-noise variance of each slope per bar as a ratio of the observation
variance, made scale-free by the regressor's variance V_j (so delta is the same number for
daily or hourly bars *per bar*; callers scale it by bar length, e.g. delta_per_day * freq/1d).
With Q proportional to R the filtered means depend on R only through its changes over time, so
an estimated R mainly down-weights high-noise stretches.

R_t: fixed (`obs_var`) or a causal estimate, the exponentially weighted mean (half-life
`var_halflife` bars, pandas adjust=True weights) of the past squared one-step innovations of
that asset (seeded at its first valid row with that row's squared prior innovation).  V_j:
fixed (`x_var`) or the exponentially weighted mean square of regressor j over rows <= t
(floored at 1 % of its running maximum; a regressor that never moved gets no state noise).

Each asset's filter starts at its first valid row from the prior (mean [0, beta0..],
variance diag(alpha_var0 or R, beta_var0..)); rows where y_i or a regressor is missing only
propagate (P += Q), so the estimate carries through gaps.  The output at row t is the filtered
estimate *after* observing row t.  The loop runs over time only; all assets advance together
with batched (N x d x d) algebra.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from models.est_common import as_frame, ewm_sum, halflife_decay

_TINY = 1e-300


def _ewm_mean_square(Z: np.ndarray, halflife: float) -> np.ndarray:
    """Causal adjust=True EWMA of Z^2 per column over its finite rows (value at t includes row t)."""
    decay = halflife_decay(halflife)
    ok = np.isfinite(Z)
    num = ewm_sum(np.where(ok, Z * Z, 0.0), decay)
    den = ewm_sum(ok.astype(np.float64), decay)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _kalman_core(
    Y: np.ndarray,
    H: np.ndarray,
    *,
    delta: float,
    alpha_delta: float,
    intercept: bool,
    obs_var: float | None,
    x_var: np.ndarray | float | None,
    var_halflife: float,
    prior_mean: np.ndarray,
    prior_var: np.ndarray,
    alpha_var0: float | None,
    min_periods: int,
) -> np.ndarray:
    """Filtered slopes (T, N, P) for Y (T, N) on regressors H (T, P); NaN before min_periods valid rows."""
    T, N = Y.shape
    P = H.shape[1]
    d = P + int(intercept)
    if x_var is None:
        V = _ewm_mean_square(H, var_halflife)  # (T, P)
    else:
        V = np.broadcast_to(np.asarray(x_var, dtype=np.float64), (T, P))
    # Q_beta = delta * R / V: a regressor that has not moved yet (V = 0) gets no state noise, and
    # V is floored at 1 % of its running maximum so a long stale stretch cannot blow P up.
    V = np.maximum(V, 1e-2 * np.fmax.accumulate(np.nan_to_num(V, nan=0.0), axis=0))
    inv_V = np.where(V > _TINY, 1.0 / np.where(V > _TINY, V, 1.0), 0.0)  # (T, P)
    h_all = np.concatenate([np.ones((T, 1)), H], axis=1) if intercept else H  # (T, d)
    row_ok = np.isfinite(H).all(axis=1)
    valid = np.isfinite(Y) & row_ok[:, None]  # (T, N)
    q_shape = np.concatenate([[alpha_delta] if intercept else [], np.full(P, delta)])  # (d,)
    lam = halflife_decay(var_halflife)

    a = np.zeros((N, d))
    Pm = np.zeros((N, d, d))
    started = np.zeros(N, dtype=bool)
    count = np.zeros(N)
    r_num = np.zeros(N)
    r_den = np.zeros(N)
    out = np.full((T, N, P), np.nan)
    eye_idx = np.arange(d)
    s0 = int(intercept)

    for t in range(T):
        ok = valid[t]
        h = np.where(row_ok[t], h_all[t], 0.0)  # (d,)
        y = np.where(ok, Y[t], 0.0)
        new = ok & ~started
        # current observation variance: fixed, or the mean of past squared innovations
        if obs_var is not None:
            R = np.full(N, float(obs_var))
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                R = np.where(r_den > 0, r_num / r_den, np.nan)
        if new.any():
            a[new] = prior_mean
            if obs_var is None:
                v0 = y[new] - prior_mean @ h
                R[new] = v0 * v0
            R[new] = np.maximum(R[new], _TINY)
            p0 = np.zeros((int(new.sum()), d, d))
            if intercept:
                p0[:, 0, 0] = R[new] if alpha_var0 is None else alpha_var0
            p0[:, eye_idx[s0:], eye_idx[s0:]] = prior_var[None, :]
            Pm[new] = p0
        # predict: random walk (assets that started before t)
        old = started
        if old.any():
            vt = np.concatenate([[1.0] if intercept else [], inv_V[t]])  # (d,)
            q = R[:, None] * (q_shape * vt)[None, :]  # (N, d)
            Pm[:, eye_idx, eye_idx] += np.where(old[:, None] & np.isfinite(q), q, 0.0)
        started = started | new
        # update with the observation where valid
        if ok.any():
            Pk = Pm[ok]
            ak = a[ok]
            Ph = Pk @ h  # (k, d)
            S = Ph @ h + R[ok]
            v = y[ok] - ak @ h
            K = Ph / S[:, None]
            a[ok] = ak + K * v[:, None]
            Pn = Pk - K[:, :, None] * Ph[:, None, :]
            Pm[ok] = 0.5 * (Pn + np.swapaxes(Pn, 1, 2))
            count[ok] += 1
            if obs_var is None:
                r_num[ok] = lam * r_num[ok] + v * v
                r_den[ok] = lam * r_den[ok] + 1.0
        show = started & (count >= min_periods)
        out[t, show] = a[show, s0:]
    return out


def kalman_beta(
    y: pd.DataFrame,
    x: pd.Series,
    delta: float = 1e-4,
    *,
    intercept: bool = True,
    alpha_delta: float | None = None,
    obs_var: float | None = None,
    x_var: float | None = None,
    var_halflife: float = 60.0,
    beta0: float = 1.0,
    beta_var0: float = 1.0,
    alpha_var0: float | None = None,
    min_periods: int = 10,
) -> pd.DataFrame:
    """Filtered random-walk beta of each asset on the benchmark x (see the module docstring).

    delta: per-bar variance of the beta increment as a ratio of R / var(x).
    intercept: state [alpha, beta] (alpha a random walk with variance alpha_delta * R per bar,
        default alpha_delta = delta) or beta only (y_t = beta_t x_t + e_t).
    obs_var / x_var: fixed R and var(x), or None for the causal EWMA estimates (half-life
        var_halflife bars).
    beta0, beta_var0: prior mean and variance of beta at an asset's first valid row; the prior
        variance of alpha is alpha_var0 (default: R at that row).
    min_periods: valid rows before a value is given.
    """
    if delta < 0:
        raise ValueError(f"kalman delta must be >= 0, got {delta!r}")
    xs = x.reindex(y.index).to_numpy(dtype=np.float64, na_value=np.nan)[:, None]
    out = _kalman_core(
        y.to_numpy(dtype=np.float64, na_value=np.nan),
        xs,
        delta=delta,
        alpha_delta=delta if alpha_delta is None else alpha_delta,
        intercept=intercept,
        obs_var=obs_var,
        x_var=x_var,
        var_halflife=var_halflife,
        prior_mean=np.array([0.0, beta0] if intercept else [beta0]),
        prior_var=np.array([beta_var0]),
        alpha_var0=alpha_var0,
        min_periods=min_periods,
    )
    return as_frame(out[:, :, 0], y)


def kalman_multifactor_beta(
    y: pd.DataFrame,
    X: pd.DataFrame,
    delta: float = 1e-4,
    *,
    alpha_delta: float | None = None,
    obs_var: float | None = None,
    x_var: Mapping[str, float] | None = None,
    var_halflife: float = 60.0,
    beta0: float | Mapping[str, float] = 0.0,
    beta_var0: float = 1.0,
    alpha_var0: float | None = None,
    min_periods: int = 10,
) -> dict[str, pd.DataFrame]:
    """Filtered random-walk loadings on every column of X (with a random-walk intercept).

    State [alpha, b_1 .. b_P]; same model and options as `kalman_beta`, with per-factor prior
    means `beta0` (a number or a mapping column -> mean, missing columns 0) and fixed factor
    variances `x_var` (mapping) or causal EWMA estimates.  A row is used for asset i only where
    y_i and every regressor are finite.  Returns column name -> T x N filtered loadings.
    """
    if not isinstance(X, pd.DataFrame) or X.shape[1] == 0:
        raise ValueError("X must be a DataFrame with at least one regressor column")
    if delta < 0:
        raise ValueError(f"kalman delta must be >= 0, got {delta!r}")
    cols = list(X.columns)
    if isinstance(beta0, Mapping):
        unknown = set(beta0) - set(cols)
        if unknown:
            raise ValueError(f"beta0 names columns not in X: {sorted(unknown)}")
        mean = np.array([float(beta0.get(c, 0.0)) for c in cols])
    else:
        mean = np.full(len(cols), float(beta0))
    xv = None if x_var is None else np.array([float(x_var[c]) for c in cols])
    out = _kalman_core(
        y.to_numpy(dtype=np.float64, na_value=np.nan),
        X.reindex(y.index).to_numpy(dtype=np.float64, na_value=np.nan),
        delta=delta,
        alpha_delta=delta if alpha_delta is None else alpha_delta,
        intercept=True,
        obs_var=obs_var,
        x_var=xv,
        var_halflife=var_halflife,
        prior_mean=np.concatenate([[0.0], mean]),
        prior_var=np.full(len(cols), beta_var0),
        alpha_var0=alpha_var0,
        min_periods=min_periods,
    )
    return {c: as_frame(out[:, :, j], y) for j, c in enumerate(cols)}
