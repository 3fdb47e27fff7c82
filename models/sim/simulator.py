"""The built-in regime-switching market: the project's default dataset, with known true betas.

Why a simulator: real data never tells us the true beta, so estimators can only be compared
on noisy realised targets.  Here the truth is exact at every bar, while the data look and
behave like crypto perps (fat tails, volatility regimes, funding, open interest, US-calendar
macro factors), so the same pipeline runs on both.

Model (per bar t of length dt days; see models/sim/config.py for every number):
- regime k_t in {calm, volatile, crash}: a Markov chain with geometric sojourns whose mean is
  `duration_days` whatever the bar length;
- latent drivers g_t = (MKT, BTC_SPEC, SPX, GOLD, WTI, DXY, DGS10, VIX) ~ N(mu_t, Omega_t),
  Omega_t = S_t C_k S_t with regime correlations C_k (crypto-equity correlation rises in
  risk-off) and vols scaled by sqrt(dt); MKT vol also clusters within a regime (log-OU);
- asset simple returns r_t = B_t g_t + d_t * eps_t with Student-t(4) eps scaled to unit
  variance; loadings B_t = regime level + a fast OU deviation (altcoins load more on MKT in
  volatile and decouple from BTC_SPEC in crash, where idiosyncratic vol spikes); the default
  `calibrated` preset adds a slowly moving long-run mean per asset and loading, a common OU
  swing of every altcoin's MKT loading, and log-OU clustering of BTC_SPEC vol and of each
  asset's idiosyncratic vol d_t (`legacy` = none of these: the simulator before calibration);
- funding per 8h interval: regime level + OU + trailing-return momentum, clamped; a bar's
  `funding_rate` is the sum of the 00/08/16 UTC prints in (open, close] (the loaders'
  convention for real data); open interest and volume respond to regime and |returns|;
- cross-market factor levels are compounded from their drivers (DGS10 in percent, changed in
  points; VIX mean-reverting to a regime target) and published on US trading dates at 16:00
  New York as the level at the first bar close at or after that instant.

Truth (models/sim/truth.py) is the exact conditional covariance of bar-t simple returns, so
the true beta is exact for the simulated simple returns (up to the `min_return` floor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from adaptive_beta.models.data.publication import us_close_utc
from adaptive_beta.models.data.schema import COMPOSITE_NAME
from adaptive_beta.models.sim.config import (
    DRIVERS,
    FACTOR_NAMES,
    FACTOR_START,
    REGIME_NAMES,
    START_PRICES,
    SimConfig,
    correlation_matrix,
    driver_vols,
    stationary_shares,
    transition_exits,
)
from adaptive_beta.models.sim.truth import driver_covariance, true_moments

__all__ = [
    "SimConfig",
    "SimResult",
    "simulate",
    "simulate_regimes",
    "us_trading_dates",
    "REGIME_NAMES",
    "FACTOR_NAMES",
]

_US_FIXED_HOLIDAYS = ("01-01", "06-19", "07-04", "12-25")
_FUNDING_INTERVAL = pd.Timedelta("8h")


@dataclass
class SimResult:
    """A simulated market and its ground truth (frames as in docs/CONTRACTS.md)."""

    config: SimConfig
    assets: dict[str, pd.DataFrame]  # symbol -> OHLCV + funding_rate + open_interest, UTC bar open index
    factors: dict[str, pd.DataFrame]  # name -> columns date (US trading date), close
    truth_betas: pd.DataFrame  # index (timestamp, symbol); beta_BTCUSDT, beta_CRYPTO_EW, beta_<FACTOR>
    truth_market: pd.DataFrame  # index timestamp; regime, regime_name, var_BTCUSDT, var_CRYPTO_EW
    drivers: pd.DataFrame  # T x 8 latent driver returns per bar (for research and tests)

    @property
    def regime(self) -> pd.Series:
        return self.truth_market["regime"]

    def returns(self) -> pd.DataFrame:
        """Per-bar simple returns of every asset (first bar from its open)."""
        return pd.DataFrame({s: df["close"] / df["open"] - 1.0 for s, df in self.assets.items()})


# --- pure building blocks --------------------------------------------------------------------


def simulate_regimes(cfg: SimConfig, n_bars: int, rng: np.random.Generator) -> np.ndarray:
    """Regime code per bar: geometric sojourns (mean `duration_days`), jumps by `exit_probs`."""
    if cfg.pin_regime is not None:
        return np.full(n_bars, REGIME_NAMES.index(cfg.pin_regime), dtype=np.int8)
    exits = transition_exits(cfg.regimes)
    p_leave = np.array([min(1.0, cfg.bar_days / rp.duration_days) for rp in cfg.regimes])
    if cfg.initial_regime is not None:
        state = REGIME_NAMES.index(cfg.initial_regime)
    else:
        state = int(rng.choice(len(REGIME_NAMES), p=stationary_shares(cfg.regimes)))
    out = np.empty(n_bars, dtype=np.int8)
    pos = 0
    while pos < n_bars:
        length = int(rng.geometric(p_leave[state]))
        out[pos : pos + length] = state
        pos += length
        state = int(rng.choice(len(REGIME_NAMES), p=exits[state]))
    return out


def ou_path(innovations: np.ndarray, phi: float) -> np.ndarray:
    """x_t = phi x_{t-1} + u_t along axis 0 (x_{-1} = 0), vectorised with a linear filter."""
    return lfilter([1.0], [1.0, -phi], innovations, axis=0)


def _phi(halflife_days: float, bar_days: float) -> float:
    return math.exp(-math.log(2.0) * bar_days / halflife_days)


def _logvol_multiplier(rng: np.random.Generator, shape: tuple[int, ...], sd: float, phi: float) -> np.ndarray:
    """exp(x - sd^2) for a stationary log-OU x (sd `sd`, AR coefficient phi): mean square 1, so the
    regime's vol stays the long-run vol."""
    u = rng.standard_normal(shape) * sd * math.sqrt(1 - phi**2)
    u[0] = rng.standard_normal(shape[1:]) * sd
    return np.exp(ou_path(u, phi) - sd**2)


def us_trading_dates(first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    """Weekdays from `first` to `last` minus fixed-date US holidays (Jan 1, Jun 19, Jul 4, Dec 25)."""
    days = pd.bdate_range(first.normalize(), last.normalize())
    keep = ~days.strftime("%m-%d").isin(_US_FIXED_HOLIDAYS)
    return days[keep]


def funding_prints_per_bar(index: pd.DatetimeIndex, bar: pd.Timedelta) -> np.ndarray:
    """How many 8h funding prints (00/08/16 UTC) fall in each bar's (open, close]."""
    step = _FUNDING_INTERVAL.value
    opens = index.asi8
    closes = opens + bar.value
    return (np.floor_divide(closes, step) - np.floor_divide(opens, step)).astype(float)


# --- the simulation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _AssetParams:
    mkt: np.ndarray  # (N,) base loading on MKT
    btc: np.ndarray  # (N,) base loading on BTC_SPEC
    factors: np.ndarray  # (N, M) base direct loadings
    idio: np.ndarray  # (N,) daily idiosyncratic sd in calm
    funding_scale: np.ndarray  # (N,)
    oi_usd: np.ndarray  # (N,) base open interest, USD
    volume_usd: np.ndarray  # (N,) base daily volume, USD
    start_price: np.ndarray  # (N,)


def _asset_params(cfg: SimConfig, rng: np.random.Generator) -> _AssetParams:
    symbols = cfg.symbols
    n = len(symbols)
    mkt = rng.uniform(*cfg.alt_mkt_range, n)
    btc = rng.uniform(*cfg.alt_btc_range, n)
    factors = np.column_stack(
        [
            rng.normal(0.15, 0.10, n),  # SPX
            rng.normal(0.05, 0.05, n),  # GOLD
            rng.normal(0.00, 0.03, n),  # WTI
            rng.normal(-0.20, 0.10, n),  # DXY
            rng.normal(-0.08, 0.04, n),  # DGS10, per percentage point
            rng.normal(-0.02, 0.02, n),  # VIX
        ]
    )
    idio = rng.uniform(*cfg.idio_range, n)
    funding_scale = rng.uniform(0.8, 1.6, n)
    oi_usd = 1e9 * rng.uniform(0.1, 1.0, n)
    volume_usd = 2e9 * rng.uniform(0.1, 1.0, n)
    start = np.array([START_PRICES.get(s, float(np.round(rng.uniform(0.5, 50.0), 3))) for s in symbols])
    # BTC (first symbol) defines the crypto market: unit loadings, small idiosyncratic noise
    mkt[0], btc[0], idio[0], funding_scale[0] = 1.0, 1.0, 0.008, 1.0
    factors[0] = (0.10, 0.05, 0.0, -0.15, -0.05, 0.0)
    oi_usd[0], volume_usd[0] = 5e9, 2e10
    return _AssetParams(mkt, btc, factors, idio, funding_scale, oi_usd, volume_usd, start)


def _regime_loadings(cfg: SimConfig, ap: _AssetParams) -> np.ndarray:
    """(R, N, D) loading level of every asset on every driver in every regime."""
    n, m = len(ap.mkt), len(FACTOR_NAMES)
    out = np.zeros((len(cfg.regimes), n, 2 + m))
    for k, rp in enumerate(cfg.regimes):
        out[k, :, 0] = ap.mkt * rp.alt_mkt_mult
        out[k, :, 1] = ap.btc * rp.alt_btc_mult
        out[k, :, 2:] = ap.factors * rp.factor_loading_mult
        out[k, 0, :2] = 1.0  # BTC keeps unit loadings on MKT and its own factor
    return out


def simulate(cfg: SimConfig | None = None) -> SimResult:
    """Simulate a market for `cfg` (deterministic for cfg.seed). Prints nothing."""
    cfg = cfg or SimConfig()
    bar = pd.Timedelta(cfg.freq)
    dt = cfg.bar_days
    n_bars, symbols = cfg.n_bars, cfg.symbols
    n, m, d = len(symbols), len(FACTOR_NAMES), len(DRIVERS)
    index = pd.date_range(pd.Timestamp(cfg.start, tz="UTC"), periods=n_bars, freq=bar).as_unit("ns")
    index.name = "timestamp"
    # streams 0-5 are the legacy simulator's; 6-8 drive only the calibrated additions, so
    # with those switched off (the legacy preset) every draw is what it always was
    streams = np.random.SeedSequence(cfg.seed).spawn(9)
    rng_regime, rng_assets, rng_load, rng_drv, rng_idio, rng_micro, rng_slow, rng_vol, rng_common = (
        np.random.default_rng(s) for s in streams
    )

    regime = simulate_regimes(cfg, n_bars, rng_regime)
    ap = _asset_params(cfg, rng_assets)

    # loadings: regime level + slow OU deviation (continuous across switches)
    phi_b = _phi(cfg.loading_halflife_days, dt)
    sd_b = np.array([cfg.loading_drift_sd[0], cfg.loading_drift_sd[1]] + [cfg.loading_drift_sd[2]] * m)
    dev = ou_path(rng_load.standard_normal((n_bars, n, d)) * sd_b * math.sqrt(1 - phi_b**2), phi_b)
    if any(cfg.loading_slow_sd):  # moving long-run means: a slow OU started from its stationary law
        phi_s = _phi(cfg.loading_slow_halflife_days, dt)
        sd_s = np.array([cfg.loading_slow_sd[0], cfg.loading_slow_sd[1]] + [cfg.loading_slow_sd[2]] * m)
        u = rng_slow.standard_normal((n_bars, n, d)) * sd_s * math.sqrt(1 - phi_s**2)
        u[0] = rng_slow.standard_normal((n, d)) * sd_s
        dev += ou_path(u, phi_s)
    if cfg.alt_common_sd > 0:  # one market-wide swing of every altcoin's MKT loading (alt seasons)
        phi_c = _phi(cfg.alt_common_halflife_days, dt)
        u = rng_common.standard_normal(n_bars) * cfg.alt_common_sd * math.sqrt(1 - phi_c**2)
        u[0] = rng_common.standard_normal() * cfg.alt_common_sd
        dev[:, :, 0] += ou_path(u, phi_c)[:, None]
    dev[:, 0, :2] = 0.0  # BTC's unit loadings stay put
    loadings = _regime_loadings(cfg, ap)[regime] + dev  # (T, N, D)

    # driver vols and shocks
    phi_h = _phi(cfg.mkt_logvol_halflife_days, dt)
    logvol = ou_path(rng_drv.standard_normal(n_bars) * cfg.mkt_logvol_sd * math.sqrt(1 - phi_h**2), phi_h)
    vols = np.stack([driver_vols(rp) for rp in cfg.regimes])[regime] * math.sqrt(dt)  # (T, D)
    vols[:, 0] *= np.exp(logvol)
    if cfg.btc_spec_logvol_sd > 0:  # BTC-specific vol clusters on its own: alt betas to BTC move together
        vols[:, 1] *= _logvol_multiplier(
            rng_vol, (n_bars,), cfg.btc_spec_logvol_sd, _phi(cfg.btc_spec_logvol_halflife_days, dt)
        )
    chol = np.stack([np.linalg.cholesky(correlation_matrix(rp)) for rp in cfg.regimes])
    z = rng_drv.standard_normal((n_bars, d))
    shocks = vols * np.einsum("tij,tj->ti", chol[regime], z)
    means = np.stack([[rp.mkt_drift, 0.0, *rp.factor_drifts] for rp in cfg.regimes])[regime] * dt
    g = means + shocks
    levels = _factor_levels(cfg, g, regime, dt)  # fills the mean-reverting VIX / DGS10 drifts into g

    # asset returns
    idio_sd = (
        ap.idio[None, :] * np.array([rp.idio_mult for rp in cfg.regimes])[regime][:, None] * math.sqrt(dt)
    )
    if cfg.idio_logvol_sd > 0:  # each asset's idiosyncratic vol clusters (one-coin manias and crashes)
        idio_sd = idio_sd * _logvol_multiplier(
            rng_vol, (n_bars, n), cfg.idio_logvol_sd, _phi(cfg.idio_logvol_halflife_days, dt)
        )
    df = cfg.idio_df
    eps = rng_idio.standard_t(df, (n_bars, n)) / math.sqrt(df / (df - 2.0))
    returns = np.einsum("tnd,td->tn", loadings, g) + idio_sd * eps
    returns = np.maximum(returns, cfg.min_return)

    omega = driver_covariance(vols, chol, regime)
    truth = true_moments(loadings, omega, idio_sd**2, btc=0)

    assets = _asset_frames(cfg, index, bar, returns, regime, truth.var_assets, ap, rng_micro)
    factors = _publish_factors(index, bar, levels)
    truth_betas, truth_market = _truth_frames(index, symbols, regime, truth)
    drivers = pd.DataFrame(g, index=index, columns=list(DRIVERS))
    return SimResult(cfg, assets, factors, truth_betas, truth_market, drivers)


def _factor_levels(cfg: SimConfig, g: np.ndarray, regime: np.ndarray, dt: float) -> np.ndarray:
    """(T+1, M) factor levels at bar closes (row 0 = first open); adds VIX/DGS10 mean reversion to g."""
    i_vix, i_y = 2 + FACTOR_NAMES.index("VIX"), 2 + FACTOR_NAMES.index("DGS10")
    theta_v = math.log(2.0) / cfg.vix_halflife_days * dt
    theta_y = math.log(2.0) / cfg.dgs10_halflife_days * dt
    log_target = np.log([rp.vix_target for rp in cfg.regimes])[regime]
    vix, y = FACTOR_START["VIX"], FACTOR_START["DGS10"]
    r_vix, d_y = g[:, i_vix], g[:, i_y]  # views: updated in place
    for t in range(len(g)):  # the only per-bar loop: drifts depend on the level reached so far
        r_vix[t] += theta_v * (log_target[t] - math.log(vix))
        r_vix[t] = max(r_vix[t], -0.9)
        vix *= 1.0 + r_vix[t]
        d_y[t] += theta_y * (cfg.dgs10_mean - y)
        y += d_y[t]
    f = g[:, 2:]
    levels = np.empty((len(g) + 1, len(FACTOR_NAMES)))
    start = np.array([FACTOR_START[name] for name in FACTOR_NAMES])
    levels[0] = start
    levels[1:] = start * np.cumprod(1.0 + f, axis=0)
    levels[1:, i_y - 2] = start[i_y - 2] + np.cumsum(f[:, i_y - 2])
    return levels


def _publish_factors(
    index: pd.DatetimeIndex, bar: pd.Timedelta, levels: np.ndarray
) -> dict[str, pd.DataFrame]:
    """Daily closes on US trading dates: the level at the first bar close at or after 16:00 NY."""
    closes = index + bar
    dates = us_trading_dates(index[0].tz_convert(None), closes[-1].tz_convert(None))
    pub = us_close_utc(dates)
    pos = np.searchsorted(closes.asi8, pub.asi8, side="left")
    ok = pos < len(index)
    dates, pos = dates[ok], pos[ok]
    out = {}
    for j, name in enumerate(FACTOR_NAMES):
        vals = levels[pos + 1, j]
        out[name] = pd.DataFrame({"date": dates.as_unit("ns"), "close": vals})
    return out


def _asset_frames(
    cfg: SimConfig,
    index: pd.DatetimeIndex,
    bar: pd.Timedelta,
    returns: np.ndarray,
    regime: np.ndarray,
    var_assets: np.ndarray,
    ap: _AssetParams,
    rng: np.random.Generator,
) -> dict[str, pd.DataFrame]:
    dt = cfg.bar_days
    n_bars, n = returns.shape
    close = ap.start_price * np.cumprod(1.0 + returns, axis=0)
    open_ = np.vstack([ap.start_price, close[:-1]])
    sd = np.sqrt(var_assets)
    wick = 0.5 * sd * np.abs(rng.standard_normal((2, n_bars, n)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])

    # funding per 8h interval: regime level + OU + momentum of the trailing (~3-day) return
    phi_f = _phi(cfg.funding_halflife_days, dt)
    noise = np.array([rp.funding_noise for rp in cfg.regimes])[regime][:, None]
    ou = ou_path(rng.standard_normal((n_bars, n)) * noise * math.sqrt(1 - phi_f**2), phi_f)
    trail = ou_path(returns, _phi(3.0, dt))
    level = np.array([rp.funding_level for rp in cfg.regimes])[regime][:, None] * ap.funding_scale
    rate = np.clip(level + ou + cfg.funding_momentum * trail, -cfg.funding_cap, cfg.funding_cap)
    funding = rate * funding_prints_per_bar(index, bar)[:, None]

    # open interest: deleverages in stress and on big moves; log-OU around the regime level
    phi_o = _phi(20.0, dt)
    oi_level = np.array([rp.oi_level for rp in cfg.regimes])[regime][:, None]
    oi_in = (1 - phi_o) * oi_level + 0.1 * math.sqrt(1 - phi_o**2) * rng.standard_normal((n_bars, n))
    # a move of |r| liquidates ~0.2|r| sqrt(dt) of log OI per bar (frequency-neutral long-run effect)
    oi_log = ou_path(oi_in - 0.2 * np.abs(returns) * math.sqrt(dt), phi_o)
    open_interest = ap.oi_usd * np.exp(oi_log) / close

    # volume: regime level, surprise size |r|/sd, lognormal noise; per bar = daily * dt
    vol_level = np.array([rp.volume_level for rp in cfg.regimes])[regime][:, None]
    log_vol = vol_level + 0.35 * np.abs(returns) / sd + 0.25 * rng.standard_normal((n_bars, n))
    volume = ap.volume_usd * dt * np.exp(log_vol) / close

    out = {}
    for i, sym in enumerate(cfg.symbols):
        out[sym] = pd.DataFrame(
            {
                "open": open_[:, i],
                "high": high[:, i],
                "low": low[:, i],
                "close": close[:, i],
                "volume": volume[:, i],
                "funding_rate": funding[:, i],
                "open_interest": open_interest[:, i],
            },
            index=index,
        )
    return out


def _truth_frames(index, symbols, regime, truth) -> tuple[pd.DataFrame, pd.DataFrame]:
    btc = symbols[0]
    cols = {f"beta_{btc}": truth.beta_btc.ravel(), f"beta_{COMPOSITE_NAME}": truth.beta_ew.ravel()}
    for j, name in enumerate(FACTOR_NAMES):
        cols[f"beta_{name}"] = truth.factor_betas[:, :, j].ravel()
    mi = pd.MultiIndex.from_product([index, symbols], names=["timestamp", "symbol"])
    betas = pd.DataFrame(cols, index=mi)
    market = pd.DataFrame(
        {
            "regime": regime.astype(np.int64),
            "regime_name": np.asarray(REGIME_NAMES, dtype=object)[regime],
            f"var_{btc}": truth.var_btc,
            f"var_{COMPOSITE_NAME}": truth.var_ew,
        },
        index=index,
    )
    return betas, market
