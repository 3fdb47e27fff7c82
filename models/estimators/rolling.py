"""Rolling-window OLS betas: single benchmark (with standard errors) and multi-factor.

The textbook market-model beta: OLS of the asset return on an intercept and the benchmark
return over the last `window` bars.  Vectorised over time and assets with rolling sums of
x, y, xy, x^2, y^2 on masked arrays (a row counts only where y_i and x are both finite), so a
window with gaps uses exactly its valid pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from adaptive_beta.models.estimators.common import (
    as_frame,
    check_window,
    pair_products,
    prepare_pair,
    prepare_pair_arrays,
    rolling_sum,
    stacked_rolling_sums,
)

# A centred sum of squares below this fraction of the raw one is round-off: the regressor is
# constant over the window and the slope is not identified.
_DEGENERATE = 1e-10
# Largest rolling cross-product array (numbers) built at once; assets are processed in blocks.
_BLOCK_NUMBERS = 4e6  # ~3 assets of 2 y hourly with 8 regressors: ~32 MB per array (x ~6 live)


def _rolling_moments(y: pd.DataFrame, x: pd.Series, window: int) -> dict[str, np.ndarray]:
    return _moments(*prepare_pair(y, x), window)


_MOMENTS = ("n", "sx", "sy", "sxx", "sxy", "syy")  # the sums of `pair_products`, in its order


def _moments(
    Y: np.ndarray, X: np.ndarray, M: np.ndarray, window: int, rows: int = 6
) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in _moments_multi(Y, X, M, (window,), rows).items()}


def _moments_multi(
    Y: np.ndarray, X: np.ndarray, M: np.ndarray, windows: Sequence[int], rows: int = 6
) -> dict[str, np.ndarray]:
    """`_moments` for several windows, each sum (W, T, N): one cumulative sum per product serves
    every window (`rolling_sums`: bit-equal per window), the six in one call while small.
    rows=5 leaves out syy, which only a correlation or a standard error needs."""
    return dict(zip(_MOMENTS, stacked_rolling_sums(pair_products(Y, X, M, rows), windows), strict=False))


def _slope(m: dict[str, np.ndarray], min_periods) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beta, centred Sxx, centred Sxy); beta NaN where fewer than min_periods pairs or x constant.

    Elementwise: sums of several windows (W, T, N) take a (W, 1, 1) array of min_periods.
    """
    n = m["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx_c = m["sxx"] - m["sx"] ** 2 / n
        sxy_c = m["sxy"] - m["sx"] * m["sy"] / n
        ok = (n >= min_periods) & (sxx_c > _DEGENERATE * m["sxx"])
        beta = np.where(ok, sxy_c / np.where(ok, sxx_c, 1.0), np.nan)
    return beta, sxx_c, sxy_c


def rolling_ols_beta(
    y: pd.DataFrame, x: pd.Series, window: int, min_periods: int | None = None
) -> pd.DataFrame:
    """OLS slope of y_i on (1, x) over the last `window` bars, for every asset and row.

    window: bars (callers convert durations with `to_periods`).
    min_periods: valid (y_i, x) pairs needed in the window; default half the window (>= 3), so
        a single missing bar does not blank the estimate for a whole window.
    Row t uses rows t-window+1 .. t only.
    """
    window, min_periods = check_window(window, min_periods, least=2)  # window errors first, as before
    Y, X, M = prepare_pair(y, x)
    return as_frame(_rolling_ols_beta_prepared(Y, X, M, window, min_periods), y)


def rolling_ols_beta_array(
    y: np.ndarray, x: np.ndarray, window: int, min_periods: int | None = None
) -> np.ndarray:
    """`rolling_ols_beta` on aligned float64 arrays (y (T, N), x (T,), NaN where missing): (T, N).

    The frame version delegates to the same core, so both give identical numbers; the feature
    pipeline calls this one to skip the DataFrame wrapping (hundreds of calls per request).
    """
    return _rolling_ols_beta_prepared(*prepare_pair_arrays(y, x), window, min_periods)


def _rolling_ols_beta_prepared(
    Y: np.ndarray, X: np.ndarray, M: np.ndarray, window: int, min_periods: int | None
) -> np.ndarray:
    window, min_periods = check_window(window, min_periods, least=2)
    beta, _, _ = _slope(_moments(Y, X, M, window, rows=5), min_periods)  # no syy: a slope needs none
    return beta


def rolling_ols_beta_se(
    y: pd.DataFrame, x: pd.Series, window: int, min_periods: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(beta, standard error) of the rolling OLS slope; the classical (homoskedastic) OLS s.e.

    se^2 = s^2 / Sxx_c with s^2 = RSS / (n - 2) and RSS = Syy_c - Sxy_c^2 / Sxx_c (clipped at 0
    against round-off for near-perfect fits), as statsmodels' `OLS(...).fit().bse`.
    """
    window, min_periods = check_window(window, min_periods, least=3)
    m = _rolling_moments(y, x, window)
    beta, sxx_c, sxy_c = _slope(m, min_periods)
    n = m["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        syy_c = m["syy"] - m["sy"] ** 2 / n
        rss = np.maximum(syy_c - sxy_c * beta, 0.0)
        se = np.sqrt(rss / (n - 2.0) / sxx_c)
    se = np.where(np.isfinite(beta), se, np.nan)
    return as_frame(beta, y), as_frame(se, y)


def _prepare_multi(y: pd.DataFrame, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y (T,N), Z (T,P), M (T,N)): zero-filled where invalid; a row is valid for asset i when y_i
    and every column of X are finite."""
    if not isinstance(X, pd.DataFrame) or X.shape[1] == 0:
        raise ValueError("X must be a DataFrame with at least one regressor column")
    Xa = X.reindex(y.index).to_numpy(dtype=np.float64, na_value=np.nan)
    Y = y.to_numpy(dtype=np.float64, na_value=np.nan)
    row_ok = np.isfinite(Xa).all(axis=1)
    M = np.isfinite(Y) & row_ok[:, None]
    return np.where(M, Y, 0.0), np.where(row_ok[:, None], Xa, 0.0), M.astype(np.float64)


def multifactor_ols_coefs(
    y: pd.DataFrame,
    X: pd.DataFrame,
    window: int,
    min_periods: int | None = None,
    drop_constant: bool = False,
) -> dict[str, pd.DataFrame]:
    """Rolling OLS of each asset on an intercept and all columns of X: factor name -> T x N slopes.

    Centred normal equations (Sxx - sx sx'/n) b = Sxy - sx sy/n from rolling cross-product sums
    (T x N x P x P, masked per asset) and one batched `np.linalg.solve`.  Windows whose centred
    regressor matrix is singular or nearly so (e.g. a stale equity series over a weekend, i.e. a
    zero-variance column; smallest eigenvalue of the correlation matrix below 1e-8) give NaN.
    min_periods default: half the window, at least P + 2.
    drop_constant: instead of NaN for the whole window, leave out the regressors that are
        constant over it (their coefficient is NaN there, the others are the OLS on the rest),
        e.g. a factor series that has not started yet.  Collinear non-constant regressors still
        give NaN.
    """
    P = X.shape[1] if isinstance(X, pd.DataFrame) else 0
    window, min_periods = check_window(window, min_periods, least=P + 2)
    Y, Z, M = _prepare_multi(y, X)
    T, N = Y.shape
    # cross-product sums are T x n x P x P: process assets in blocks of at most ~2e7 numbers
    block = max(1, int(_BLOCK_NUMBERS // max(1, T * P * P)))
    coef = np.concatenate(
        [
            _multifactor_block(
                Y[:, i : i + block], Z, M[:, i : i + block], window, min_periods, drop_constant
            )
            for i in range(0, N, block)
        ],
        axis=1,
    )
    return {name: as_frame(coef[:, :, j], y) for j, name in enumerate(X.columns)}


def _multifactor_block(
    Y: np.ndarray, Z: np.ndarray, M: np.ndarray, window: int, min_periods: int, drop_constant: bool
) -> np.ndarray:
    """Rolling multi-factor OLS slopes (T, N, P) for a block of assets (see multifactor_ols_coefs)."""
    T, N = Y.shape
    P = Z.shape[1]
    n = rolling_sum(M, window)  # (T, N)
    sz = rolling_sum(M[:, :, None] * Z[:, None, :], window)  # (T, N, P)
    sy = rolling_sum(Y, window)  # (T, N)
    zz = Z[:, :, None] * Z[:, None, :]  # (T, P, P)
    szz = rolling_sum((M[:, :, None, None] * zz[:, None]).reshape(T, -1), window).reshape(T, N, P, P)
    szy = rolling_sum(Z[:, None, :] * Y[:, :, None], window)  # (T, N, P)
    with np.errstate(divide="ignore", invalid="ignore"):
        nn = n[:, :, None]
        A = szz - sz[:, :, :, None] * sz[:, :, None, :] / nn[..., None]
        b = szy - sz * (sy[:, :, None] / nn)
        d = np.sqrt(np.clip(np.diagonal(A, axis1=2, axis2=3), 0.0, None))  # (T, N, P)
        scale = np.where(d > 0, 1.0 / d, 0.0)
        C = A * scale[..., :, None] * scale[..., None, :]  # correlation-scaled
        raw = np.sqrt(np.clip(np.diagonal(szz, axis1=2, axis2=3), 0, None))
    const = ~(d > _DEGENERATE**0.5 * raw)  # (T, N, P): zero centred variance in the window
    ok = (n >= min_periods) & np.isfinite(C).all(axis=(2, 3))
    if drop_constant:
        idx = np.arange(P)
        C = np.where(const[..., :, None] | const[..., None, :], 0.0, C)
        C[..., idx, idx] = np.where(const, 1.0, C[..., idx, idx])
        b = np.where(const, 0.0, b)
        ok &= ~const.all(axis=2)
    else:
        ok &= ~const.any(axis=2)
    eig_min = np.full((T, N), -np.inf)
    if ok.any():
        eig_min[ok] = np.linalg.eigvalsh(C[ok])[:, 0]
    ok &= eig_min > 1e-8
    coef = np.full((T, N, P), np.nan)
    if ok.any():
        sol = np.linalg.solve(C[ok], (b * scale)[ok][..., None])[..., 0]
        coef[ok] = sol * scale[ok]
    if drop_constant:
        coef[const] = np.nan
    return coef


def multifactor_ols_beta(
    y: pd.DataFrame,
    X: pd.DataFrame,
    window: int,
    target: str,
    min_periods: int | None = None,
    drop_constant: bool = False,
) -> pd.DataFrame:
    """Rolling multivariate OLS (intercept + all columns of X); the T x N coefficient on `target`.

    The partial beta to the benchmark holding the other factors fixed.  See
    `multifactor_ols_coefs` for the method and the singular-window guard.
    """
    if target not in X.columns:
        raise ValueError(f"target {target!r} is not a column of X; columns are {list(X.columns)}")
    return multifactor_ols_coefs(y, X, window, min_periods, drop_constant)[target]
