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
that asset (seeded at its first valid row with that row's squared prior innovation; floored
at 1e-10 of the regressors' mean square).  V_j:
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
from typing import NamedTuple

import numpy as np
import pandas as pd

from adaptive_beta.models.estimators.common import as_frame, ewm_sum, halflife_decay

_TINY = 1e-300


def _ewm_mean_square(Z: np.ndarray, halflife: float) -> np.ndarray:
    """Causal adjust=True EWMA of Z^2 per column over its finite rows (value at t includes row t)."""
    decay = halflife_decay(halflife)
    ok = np.isfinite(Z)
    num = ewm_sum(np.where(ok, Z * Z, 0.0), decay)
    den = ewm_sum(ok.astype(np.float64), decay)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _regressor_scales(
    H: np.ndarray, x_var: np.ndarray | float | None, var_halflife: float
) -> tuple[np.ndarray, np.ndarray]:
    """(inv_V (T, P), r_floor (T,)): the per-bar inverse regressor variances and the floor of R.

    Kept apart from the filter because both are known before the loop starts (vectorised over
    time), and because the two floors below are the numerically delicate part of the model.
    """
    T, P = H.shape
    if x_var is None:
        V = _ewm_mean_square(H, var_halflife)  # (T, P)
    else:
        V = np.broadcast_to(np.asarray(x_var, dtype=np.float64), (T, P))
    # Q_beta = delta * R / V: a regressor that has not moved yet (V = 0) gets no state noise, and
    # V is floored at 1 % of its running maximum so a long stale stretch cannot blow P up.
    V = np.maximum(V, 1e-2 * np.fmax.accumulate(np.nan_to_num(V, nan=0.0), axis=0))
    inv_V = np.where(V > _TINY, 1.0 / np.where(V > _TINY, V, 1.0), 0.0)  # (T, P)
    # an estimated R is floored at 1e-10 of the regressors' mean square: an asset that *is* the
    # benchmark has zero innovations, and a zero R would make the update 0/0
    r_floor = np.maximum(1e-10 * np.nan_to_num(V, nan=0.0).max(axis=1), _TINY)  # (T,)
    return inv_V, r_floor


def _masked_observations(
    Y: np.ndarray, H: np.ndarray, intercept: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Hz (T, d), Yz (T, N), valid (T, N)): regressors with the intercept column, zero-filled.

    Zero-filling plus a validity mask lets the loop treat every asset alike (the gain is zero
    where a row is invalid) instead of branching per asset.
    """
    T = Y.shape[0]
    h_all = np.concatenate([np.ones((T, 1)), H], axis=1) if intercept else H  # (T, d)
    row_ok = np.isfinite(H).all(axis=1)
    valid = np.isfinite(Y) & row_ok[:, None]  # (T, N)
    Hz = np.where(row_ok[:, None], h_all, 0.0)  # (T, d) regressors, zero where missing
    Yz = np.where(valid, Y, 0.0)
    return Hz, Yz, valid


def _state_noise_shape(inv_V: np.ndarray, delta: float, alpha_delta: float, intercept: bool) -> np.ndarray:
    """qv (T, d): the state-noise variances per bar as multiples of R (Q_t = R_t * diag(qv[t]))."""
    T, P = inv_V.shape
    q_shape = np.concatenate([[alpha_delta] if intercept else [], np.full(P, delta)])  # (d,)
    return q_shape[None, :] * (np.concatenate([np.ones((T, 1)), inv_V], axis=1) if intercept else inv_V)


def _start_schedule(valid: np.ndarray, min_periods: int):
    """(first (N,), old (T, N), show (T, N), starts (T,)): who starts, predicts and shows, when.

    This bookkeeping is known in advance, so it is computed once here rather than per bar.
    """
    T = valid.shape[0]
    any_valid = valid.any(axis=0)
    first = np.where(any_valid, valid.argmax(axis=0), T)  # (N,)
    rows = np.arange(T)[:, None]
    old = (rows > first[None, :]).astype(np.float64)  # started strictly before row t: predict
    show = (rows >= first[None, :]) & (np.cumsum(valid, axis=0) >= min_periods)
    starts = np.zeros(T, dtype=bool)
    starts[first[any_valid]] = True
    return first, old, show, starts


class _Prior(NamedTuple):
    """The state prior at an asset's first valid row (alpha_var0 None: R at that row)."""

    mean: np.ndarray  # (d,)
    var: np.ndarray  # slope variances (P,)
    alpha_var0: float | None
    intercept: bool  # state [alpha, slopes] rather than [slopes]


class _FilterInputs(NamedTuple):
    """Everything the time loop reads, precomputed (see the helpers above)."""

    Hz: np.ndarray  # (T, d)
    Yz: np.ndarray  # (T, N)
    okf: np.ndarray  # (T, N) 1.0 where the observation is valid
    qv: np.ndarray  # (T, d)
    decay: np.ndarray  # (T, N)
    r_floor: np.ndarray  # (T,)
    first: np.ndarray  # (N,)
    old: np.ndarray  # (T, N)
    starts: np.ndarray  # (T,)


def _start_from_prior(
    new: np.ndarray,
    y_new: np.ndarray,
    h: np.ndarray,
    R: np.ndarray,
    r_floor_t: float,
    a: np.ndarray,
    Pm: np.ndarray,
    r_num: np.ndarray,
    r_den: np.ndarray,
    prior: _Prior,
    estimate_R: bool,
) -> np.ndarray:
    """Start the assets `new` from the prior (in place on a, Pm, r_num, r_den); returns R for the bar.

    Runs only on the few bars where some asset starts, so it lives outside the hot loop body.
    With an estimated R, a starting asset's R is its squared prior innovation (floored) and its
    innovation EWMA restarts with this row.
    """
    d = a.shape[1]
    s0 = int(prior.intercept)  # state index of the first slope
    di = np.arange(d)
    a[new] = prior.mean
    if estimate_R:
        v0 = y_new - prior.mean @ h
        R = R.copy()
        R[new] = np.maximum(v0 * v0, r_floor_t)
        r_num[new], r_den[new] = 0.0, 0.0  # the innovation EWMA starts with this row
    p0 = np.zeros((int(new.sum()), d, d))
    if prior.intercept:
        p0[:, 0, 0] = R[new] if prior.alpha_var0 is None else prior.alpha_var0
    p0[:, di[s0:], di[s0:]] = prior.var[None, :]
    Pm[new] = p0
    return R


def _filter_loop(f: _FilterInputs, prior: _Prior, obs_var: float | None) -> np.ndarray:
    """Filtered states (T, N, d): the time loop, all assets advancing together.

    The hot numeric loop: everything that can be computed before it is (see `_FilterInputs`);
    per bar it is one predict and one update in batched (N x d x d) algebra.
    """
    Hz, Yz, okf, qv, decay, r_floor, first, old, starts = f
    T, N = Yz.shape
    d = Hz.shape[1]
    a = np.zeros((N, d))
    Pm = np.zeros((N, d, d))
    r_num = np.zeros(N)
    r_den = np.ones(N)  # r_num / r_den: the innovation EWMA (0 before an asset starts, then floored)
    out = np.empty((T, N, d))
    fixed_R = None if obs_var is None else np.full(N, float(obs_var))

    diag = Pm.reshape(N, d * d)[:, :: d + 1]  # a view on the diagonals of every P

    for t in range(T):
        h = Hz[t]
        R = fixed_R if fixed_R is not None else np.maximum(r_num / r_den, r_floor[t])
        if starts[t]:  # assets whose first valid row is t start from the prior (no predict)
            new = first == t
            R = _start_from_prior(
                new, Yz[t, new], h, R, r_floor[t], a, Pm, r_num, r_den, prior, fixed_R is None
            )
        # predict: random-walk state noise Q = R * diag(qv) for assets that started before t
        diag += (old[t] * R)[:, None] * qv[t]
        # update where the observation is valid (gain zero elsewhere); S >= R > 0.  Writing the
        # covariance update as P -= u u' with u = P h / sqrt(S) keeps P exactly symmetric.
        Ph = Pm @ h  # (N, d)
        S = Ph @ h + R
        g = okf[t] / S
        v = Yz[t] - a @ h
        a += Ph * (g * v)[:, None]
        u = Ph * np.sqrt(g)[:, None]
        Pm -= u[:, :, None] * u[:, None, :]
        if fixed_R is None:
            r_num = r_num * decay[t] + okf[t] * v * v
            r_den = r_den * decay[t] + okf[t]
        out[t] = a
    return out


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
    """Filtered slopes (T, N, P) for Y (T, N) on regressors H (T, P); NaN before min_periods valid rows.

    Named steps: regressor scales and the R floor, masked observations, state-noise shape, the
    start schedule (all vectorised over time), then the time loop.
    """
    if obs_var is not None and not obs_var > 0:
        raise ValueError(f"kalman obs_var must be a positive variance or None (estimated), got {obs_var!r}")
    inv_V, r_floor = _regressor_scales(H, x_var, var_halflife)
    Hz, Yz, valid = _masked_observations(Y, H, intercept)
    okf = valid.astype(np.float64)
    lam = halflife_decay(var_halflife)
    decay = 1.0 - okf * (1.0 - lam)  # (T, N): innovation-variance decay on valid rows only
    first, old, show, starts = _start_schedule(valid, min_periods)
    qv = _state_noise_shape(inv_V, delta, alpha_delta, intercept)
    inputs = _FilterInputs(Hz, Yz, okf, qv, decay, r_floor, first, old, starts)
    out = _filter_loop(inputs, _Prior(prior_mean, prior_var, alpha_var0, intercept), obs_var)
    return np.where(show[:, :, None], out[:, :, int(intercept) :], np.nan)


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
    The state noise is scale-free (delta is relative to R / var(x)); the prior (beta0,
    beta_var0) is not, so the output is only approximately equivariant to rescaling y or x
    (the prior is forgotten after a few effective observations).
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
