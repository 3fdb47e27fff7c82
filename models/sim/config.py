"""Configuration of the built-in market simulator: one typed object with defaults that run.

All rates are stated per *day* (volatilities as daily standard deviations, drifts as daily
means, durations in days) and converted to the bar length inside the simulator, so the same
config gives the same economics at 1d, 8h or 1h bars.

Two presets (`SimConfig.from_preset(name)`, `abeta data simulate --preset NAME`):
- `calibrated` (the defaults of SimConfig): loadings = regime level + a slowly moving long-run
  mean (1-year half-life, started from its stationary law) + a fast OU drift (5-day half-life) +
  one common swing of every altcoin's MKT loading (3-day half-life); BTC-specific, MKT and each
  asset's idiosyncratic vol cluster (log-OU); regime spells are shorter and crashes rarer.  Fitted
  to statistics of the real 8h perps before 2021-05 (CALIBRATION_TARGETS below).
- `legacy`: the simulator before that calibration (fixed base loadings plus a 30-day OU drift,
  MKT-only vol clustering), reproduced draw for draw.

The latent drivers are `DRIVERS = (MKT, BTC_SPEC, SPX, GOLD, WTI, DXY, DGS10, VIX)`: the crypto
market factor, a BTC-specific factor, and the six observed cross-market factors.  Factor
"returns" are simple returns except DGS10, whose per-bar change is in percentage points (the
panel differences rates).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from adaptive_beta.models.data.schema import REGIME_NAMES
from adaptive_beta.models.durations import parse_duration

FACTOR_NAMES: tuple[str, ...] = ("SPX", "GOLD", "WTI", "DXY", "DGS10", "VIX")
DRIVERS: tuple[str, ...] = ("MKT", "BTC_SPEC", *FACTOR_NAMES)
BASE_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "BNBUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "DOGEUSDT",
    "LINKUSDT",
    "AVAXUSDT",
    "LTCUSDT",
    "DOTUSDT",
)
# Rough 2021-01-01 prices, so files look like the real thing (nothing depends on them).
START_PRICES: dict[str, float] = {
    "BTCUSDT": 29_000.0,
    "ETHUSDT": 730.0,
    "SOLUSDT": 1.5,
    "BNBUSDT": 37.0,
    "XRPUSDT": 0.22,
    "ADAUSDT": 0.18,
    "DOGEUSDT": 0.0047,
    "LINKUSDT": 11.0,
    "AVAXUSDT": 3.5,
    "LTCUSDT": 125.0,
    "DOTUSDT": 9.2,
}
FACTOR_START: dict[str, float] = {
    "SPX": 3700.0,
    "GOLD": 1890.0,
    "WTI": 48.5,
    "DXY": 89.9,
    "DGS10": 0.93,
    "VIX": 22.7,
}
SUPPORTED_FREQS: tuple[str, ...] = ("1d", "8h", "1h")

# --- calibration targets --------------------------------------------------------------------------
# The default (`calibrated`) preset is fitted so that `models.sim.stats.market_statistics` of
# simulated markets shaped like the real sample (CALIBRATION_SHAPE) matches the same statistics of
# the real Binance USD-M perps, 8h bars, 2020-01-01 .. 2021-04-30 (bars before 2021-05-01 only:
# the first reported test block starts 2021-05), measured by
#     python benchmarks/bench_sim_calibration.py --real docs/datasets/binance-perps-8h.toml
# i.e. market_statistics(load_dataset("docs/datasets/binance-perps-8h.toml"), until="2021-05-01").
# Fitted on simulator seeds 101..116 (never 7); checked on the held-out seeds 201..208 (CHECK_SEEDS)
# by tests/models/test_sim_calibration.py and benchmarks/bench_sim_calibration.py.
# The tolerance of each statistic is twice its sd across simulated samples of that shape (rounded
# up): the real number is one such sample, so the check is "real within 2 sampling sds of the
# simulated mean".  Definitions of every statistic: models/sim/stats.py.
CALIBRATION_SHAPE: dict = {"n_assets": 11, "days": 486, "freq": "8h", "start": "2020-01-01"}
CALIBRATION_SEEDS: tuple[int, ...] = tuple(range(101, 117))
CHECK_SEEDS: tuple[int, ...] = tuple(range(201, 209))
CALIBRATION_TARGETS: dict[str, float] = {
    "acf30_btc": -0.0605,  # autocorrelation of the 30d beta to BTC at lag 30d (within asset)
    "acf90_btc": -0.0324,
    "acf180_btc": -0.0639,
    "acf30_ew": 0.2326,  # same, beta to CRYPTO_EW
    "acf90_ew": -0.1602,
    "acf180_ew": -0.1091,
    "disp_btc": 0.2445,  # mean cross-sectional sd of 30d betas to BTC
    "disp_ew": 0.3075,
    "wsd_btc": 0.3537,  # within-asset sd over time of the 30d beta to BTC
    "wsd_ew": 0.2479,
    "level_btc": 0.9922,  # mean 30d beta to BTC
    "common_sd_btc": 0.2792,  # sd over time of the cross-sectional mean 30d beta to BTC
    "volvol_btc": 0.4999,  # sd of 30d changes of log 30d realised vol, BTC
    "volvol_ew": 0.3741,
    "volvol_assets": 0.4402,  # same, averaged over the altcoins
    "vol_btc": 0.7512,  # annualised realised vol
    "vol_ew": 0.8895,
    "share_calm": 0.6388,  # share of bars by the 7d rule label on CRYPTO_EW
    "share_volatile": 0.2811,
    "share_crash": 0.08,
    "dur_calm": 12.75,  # mean spell of the 7d rule label, days
    "dur_volatile": 4.6437,
    "dur_crash": 3.4848,
}
# 2 x the sd of each statistic across simulated samples of CALIBRATION_SHAPE (calibrated preset,
# seeds 101..116), rounded up to 0.01 (0.1 day for durations)
CALIBRATION_TOLERANCES: dict[str, float] = {
    "acf30_btc": 0.34,
    "acf90_btc": 0.36,
    "acf180_btc": 0.42,
    "acf30_ew": 0.17,
    "acf90_ew": 0.21,
    "acf180_ew": 0.22,
    "disp_btc": 0.07,
    "disp_ew": 0.11,
    "wsd_btc": 0.07,
    "wsd_ew": 0.11,
    "level_btc": 0.23,
    "common_sd_btc": 0.08,
    "volvol_btc": 0.19,
    "volvol_ew": 0.15,
    "volvol_assets": 0.12,
    "vol_btc": 0.22,
    "vol_ew": 0.21,
    "share_calm": 0.25,
    "share_volatile": 0.18,
    "share_crash": 0.08,
    "dur_calm": 19.9,
    "dur_volatile": 2.2,
    "dur_crash": 2.7,
}


def symbols_for(n_assets: int) -> list[str]:
    """BTCUSDT, ETHUSDT, ... then ALT12USDT, ALT13USDT, ... for larger universes."""
    out = list(BASE_SYMBOLS[:n_assets])
    out += [f"ALT{k}USDT" for k in range(len(BASE_SYMBOLS) + 1, n_assets + 1)]
    return out


@dataclass(frozen=True)
class RegimeParams:
    """Economics of one regime (all per day)."""

    duration_days: float  # expected sojourn (geometric in bars, so independent of the bar length)
    exit_probs: tuple[float, float, float]  # where the chain goes on leaving (own entry ignored)
    mkt_vol: float  # daily sd of the crypto market factor
    btc_spec_vol: float  # daily sd of the BTC-specific factor
    factor_vols: tuple[float, ...]  # daily sd of SPX, GOLD, WTI, DXY (simple), DGS10 (pp), VIX (simple)
    mkt_drift: float  # daily mean of the market factor
    factor_drifts: tuple[float, ...]  # daily means (VIX and DGS10 add their own mean reversion)
    corr: dict[tuple[str, str], float]  # driver correlations (pairs not given are 0)
    alt_mkt_mult: float  # altcoin loading on MKT = base * this
    alt_btc_mult: float  # altcoin loading on BTC_SPEC = base * this (crash: decoupling)
    factor_loading_mult: float  # direct cross-market loadings = base * this
    idio_mult: float  # idiosyncratic vol = base * this
    vix_target: float  # VIX level the index reverts to in this regime
    funding_level: float  # mean funding per 8h interval (fraction)
    funding_noise: float  # stationary sd of the funding OU per 8h interval
    oi_level: float  # log open interest level relative to the asset's base
    volume_level: float  # log volume level relative to the asset's base


_FACTOR_CORR_CALM: dict[tuple[str, str], float] = {
    ("SPX", "GOLD"): 0.05,
    ("SPX", "WTI"): 0.25,
    ("SPX", "DXY"): -0.15,
    ("SPX", "DGS10"): 0.20,
    ("SPX", "VIX"): -0.75,
    ("GOLD", "WTI"): 0.15,
    ("GOLD", "DXY"): -0.40,
    ("GOLD", "DGS10"): -0.30,
    ("GOLD", "VIX"): 0.05,
    ("WTI", "DXY"): -0.20,
    ("WTI", "DGS10"): 0.15,
    ("WTI", "VIX"): -0.20,
    ("DXY", "DGS10"): 0.25,
    ("DXY", "VIX"): 0.10,
    ("DGS10", "VIX"): -0.20,
}


def _corr(base: dict, **over: float) -> dict[tuple[str, str], float]:
    out = dict(base)
    for key, value in over.items():
        a, b = key.split("__")
        out[(a, b)] = value
    return out


def _calm_regime() -> RegimeParams:
    """Calm risk-on: long sojourns, low volatility, positive drift, modest cross-market coupling.

    One function per regime so each regime's economics read (and review) as one block.
    """
    return RegimeParams(
        duration_days=120.0,
        exit_probs=(0.0, 0.70, 0.30),
        mkt_vol=0.022,
        btc_spec_vol=0.010,
        factor_vols=(0.008, 0.008, 0.020, 0.0035, 0.05, 0.060),
        mkt_drift=0.0030,
        factor_drifts=(0.0007, 0.0002, 0.0006, -0.00008, 0.0, 0.0),
        corr=_corr(
            _FACTOR_CORR_CALM,
            MKT__SPX=0.15,
            MKT__GOLD=0.05,
            MKT__WTI=0.05,
            MKT__DXY=-0.10,
            MKT__DGS10=0.05,
            MKT__VIX=-0.10,
        ),
        alt_mkt_mult=1.0,
        alt_btc_mult=1.0,
        factor_loading_mult=1.0,
        idio_mult=1.0,
        vix_target=16.0,
        funding_level=1.0e-4,
        funding_noise=0.5e-4,
        oi_level=0.0,
        volume_level=0.0,
    )


def _volatile_regime() -> RegimeParams:
    """Volatile risk-off: shorter sojourns, higher vol, crypto moves with equities and against the dollar."""
    return RegimeParams(
        duration_days=45.0,
        exit_probs=(0.50, 0.0, 0.50),
        mkt_vol=0.040,
        btc_spec_vol=0.015,
        factor_vols=(0.013, 0.010, 0.027, 0.0050, 0.07, 0.080),
        mkt_drift=-0.0005,
        factor_drifts=(-0.0003, 0.0002, -0.0002, 0.0001, 0.0, 0.0),
        corr=_corr(
            _FACTOR_CORR_CALM,
            SPX__VIX=-0.80,
            SPX__DGS10=0.10,
            MKT__SPX=0.45,
            MKT__GOLD=0.10,
            MKT__WTI=0.15,
            MKT__DXY=-0.25,
            MKT__DGS10=0.0,
            MKT__VIX=-0.35,
        ),
        alt_mkt_mult=1.15,
        alt_btc_mult=1.0,
        factor_loading_mult=1.5,
        idio_mult=1.3,
        vix_target=24.0,
        funding_level=0.2e-4,
        funding_noise=0.8e-4,
        oi_level=-0.15,
        volume_level=0.3,
    )


def _crash_regime() -> RegimeParams:
    """Crash: brief, violent, negative funding, and altcoins decouple from BTC (low alt_btc_mult)."""
    return RegimeParams(
        duration_days=12.0,
        exit_probs=(0.30, 0.70, 0.0),
        mkt_vol=0.065,
        btc_spec_vol=0.040,
        factor_vols=(0.025, 0.014, 0.045, 0.0070, 0.10, 0.120),
        mkt_drift=-0.0080,
        factor_drifts=(-0.0020, 0.0010, -0.0020, 0.0010, 0.0, 0.0),
        corr=_corr(
            _FACTOR_CORR_CALM,
            SPX__VIX=-0.85,
            SPX__WTI=0.45,
            SPX__DGS10=0.35,
            GOLD__DXY=-0.30,
            MKT__SPX=0.60,
            MKT__GOLD=-0.05,
            MKT__WTI=0.25,
            MKT__DXY=-0.35,
            MKT__DGS10=0.10,
            MKT__VIX=-0.50,
        ),
        alt_mkt_mult=1.05,
        alt_btc_mult=0.15,
        factor_loading_mult=2.0,
        idio_mult=3.0,
        vix_target=38.0,
        funding_level=-1.5e-4,
        funding_noise=2.5e-4,
        oi_level=-0.5,
        volume_level=0.8,
    )


def legacy_regimes() -> tuple[RegimeParams, RegimeParams, RegimeParams]:
    """Calm risk-on, volatile risk-off, crash with BTC/altcoin decoupling (REGIME_NAMES order):
    the regimes of the `legacy` preset."""
    return _calm_regime(), _volatile_regime(), _crash_regime()


def default_regimes() -> tuple[RegimeParams, RegimeParams, RegimeParams]:
    """The calibrated regimes: the legacy economics with shorter spells, rarer crashes and a larger,
    clustering BTC-specific factor (see CALIBRATION_TARGETS for what they were fitted to)."""
    calm, volatile, crash = legacy_regimes()
    return (
        replace(calm, duration_days=60.0, exit_probs=(0.0, 0.75, 0.25), btc_spec_vol=0.016),
        replace(volatile, duration_days=25.0, exit_probs=(0.75, 0.0, 0.25), btc_spec_vol=0.024),
        replace(crash, duration_days=6.0, exit_probs=(0.4, 0.6, 0.0)),
    )


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a simulated dataset; `simulate(SimConfig())` runs as is."""

    seed: int = 7
    n_assets: int = 12
    days: int = 1460
    freq: str = "1d"  # "1d", "8h" or "1h"
    start: str = "2021-01-01"
    regimes: tuple[RegimeParams, ...] = field(default_factory=default_regimes)
    pin_regime: str | None = None  # hold the chain in one regime (for tests and studies)
    initial_regime: str | None = None  # None: draw from the stationary distribution
    # loadings = regime level + slow long-run drift + fast OU drift (+ the altcoins' common swing)
    loading_halflife_days: float = 5.0  # OU half-life of the fast loading drift
    loading_drift_sd: tuple[float, float, float] = (0.35, 0.2, 0.04)  # stationary sd: MKT, BTC_SPEC, factors
    mkt_logvol_halflife_days: float = 5.0  # within-regime volatility clustering of MKT
    mkt_logvol_sd: float = 0.2  # stationary sd of log MKT vol around the regime level
    alt_mkt_range: tuple[float, float] = (0.95, 1.15)  # altcoin base loading on MKT ~ U(lo, hi)
    alt_btc_range: tuple[float, float] = (0.3, 0.8)  # altcoin base loading on BTC_SPEC ~ U(lo, hi)
    idio_range: tuple[float, float] = (0.02, 0.04)  # altcoin daily idiosyncratic sd in calm ~ U(lo, hi)
    loading_slow_halflife_days: float = 365.0  # half-life of the moving long-run loading means
    loading_slow_sd: tuple[float, float, float] = (0.25, 0.15, 0.03)  # stationary sd: MKT, BTC_SPEC, factors
    alt_common_halflife_days: float = 3.0  # common OU swing of all altcoins' MKT loadings
    alt_common_sd: float = 0.5  # its stationary sd (0: none)
    btc_spec_logvol_halflife_days: float = 5.0  # clustering of BTC-specific vol (0 sd: none)
    btc_spec_logvol_sd: float = 1.0
    idio_logvol_halflife_days: float = 60.0  # clustering of each asset's idiosyncratic vol (0 sd: none)
    idio_logvol_sd: float = 0.9
    idio_df: float = 4.0  # Student-t degrees of freedom of idiosyncratic shocks (scaled to unit variance)
    vix_halflife_days: float = 5.0  # mean reversion of log VIX to the regime target
    dgs10_mean: float = 2.5  # long-run 10y yield, percent
    dgs10_halflife_days: float = 365.0
    funding_halflife_days: float = 2.0
    funding_momentum: float = 1.0e-3  # funding per unit of trailing (3-day EWMA) return: longs pay in rallies
    funding_cap: float = 0.003  # exchange clamp per 8h interval
    min_return: float = -0.9  # floor on a bar's simple return (keeps prices positive; hit ~never)

    def __post_init__(self) -> None:
        if self.n_assets < 2:
            raise ValueError(f"n_assets must be at least 2 (BTC and one more), got {self.n_assets}")
        if self.days < 2:
            raise ValueError(f"days must be at least 2, got {self.days}")
        if self.freq not in SUPPORTED_FREQS:
            raise ValueError(f"freq must be one of {SUPPORTED_FREQS}, got {self.freq!r}")
        if len(self.regimes) != len(REGIME_NAMES):
            raise ValueError(f"regimes must have {len(REGIME_NAMES)} entries ({REGIME_NAMES})")
        for name in (self.pin_regime, self.initial_regime):
            if name is not None and name not in REGIME_NAMES:
                raise ValueError(f"regime {name!r} is not one of {REGIME_NAMES}")
        if self.idio_df <= 2:
            raise ValueError(f"idio_df must exceed 2 so the variance is finite, got {self.idio_df}")
        for k, rp in enumerate(self.regimes):
            where = f"regimes[{k}] ({REGIME_NAMES[k]})"
            if rp.duration_days <= 0:
                raise ValueError(f"{where}.duration_days must be positive")
            exits = np.array(rp.exit_probs, dtype=float)
            exits[k] = 0.0
            if np.any(exits < 0) or abs(exits.sum() - 1.0) > 1e-9:
                raise ValueError(f"{where}.exit_probs to the other regimes must be >= 0 and sum to 1")
            if len(rp.factor_vols) != len(FACTOR_NAMES) or len(rp.factor_drifts) != len(FACTOR_NAMES):
                raise ValueError(f"{where}: factor_vols and factor_drifts need {len(FACTOR_NAMES)} entries")
            for a, b in rp.corr:
                if a not in DRIVERS or b not in DRIVERS:
                    raise ValueError(
                        f"{where}.corr: unknown driver in pair ({a}, {b}); drivers are {DRIVERS}"
                    )
            eig = np.linalg.eigvalsh(correlation_matrix(rp))
            if eig.min() <= 1e-8:
                raise ValueError(
                    f"{where}.corr is not positive definite (smallest eigenvalue {eig.min():.3g})"
                )
        for name in ("alt_mkt_range", "alt_btc_range", "idio_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
        for name in (
            "loading_drift_sd",
            "loading_slow_sd",
            "alt_common_sd",
            "btc_spec_logvol_sd",
            "idio_logvol_sd",
        ):
            value = getattr(self, name)
            if min(np.atleast_1d(value)) < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in (
            "loading_halflife_days",
            "loading_slow_halflife_days",
            "alt_common_halflife_days",
            "mkt_logvol_halflife_days",
            "btc_spec_logvol_halflife_days",
            "idio_logvol_halflife_days",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        bar = parse_duration(self.freq)
        if pd_days(bar) * 4 > min(rp.duration_days for rp in self.regimes):
            raise ValueError("bars are too long for the shortest regime duration")

    @classmethod
    def from_preset(cls, preset: str = "calibrated", **overrides) -> SimConfig:
        """A config of a named preset (PRESETS), with any field overridden: `from_preset("legacy", seed=3)`."""
        if preset not in PRESETS:
            raise ValueError(f"unknown simulator preset {preset!r}; use one of {', '.join(PRESETS)}")
        return cls(**{**preset_fields(preset), **overrides})

    @property
    def bar_days(self) -> float:
        """Bar length in days (1, 1/3, 1/24)."""
        return pd_days(parse_duration(self.freq))

    @property
    def n_bars(self) -> int:
        return int(round(self.days / self.bar_days))

    @property
    def symbols(self) -> list[str]:
        return symbols_for(self.n_assets)


def pd_days(td) -> float:
    return td.total_seconds() / 86400.0


def correlation_matrix(rp: RegimeParams) -> np.ndarray:
    """Driver correlation matrix of a regime (DRIVERS order); pairs not given are uncorrelated."""
    idx = {d: i for i, d in enumerate(DRIVERS)}
    c = np.eye(len(DRIVERS))
    for (a, b), v in rp.corr.items():
        c[idx[a], idx[b]] = c[idx[b], idx[a]] = v
    return c


def driver_vols(rp: RegimeParams) -> np.ndarray:
    """Daily sd of each driver in DRIVERS order."""
    return np.array([rp.mkt_vol, rp.btc_spec_vol, *rp.factor_vols], dtype=float)


def transition_exits(regimes: tuple[RegimeParams, ...]) -> np.ndarray:
    """Jump-chain matrix: row k = where the chain goes on leaving k (zero diagonal)."""
    p = np.array([rp.exit_probs for rp in regimes], dtype=float)
    np.fill_diagonal(p, 0.0)
    return p / p.sum(axis=1, keepdims=True)


def stationary_shares(regimes: tuple[RegimeParams, ...]) -> np.ndarray:
    """Long-run share of time in each regime: jump-chain stationary law weighted by durations."""
    p = transition_exits(regimes)
    w, v = np.linalg.eig(p.T)
    nu = np.real(v[:, np.argmin(np.abs(w - 1.0))])
    nu = nu / nu.sum()
    shares = nu * np.array([rp.duration_days for rp in regimes])
    return shares / shares.sum()


# --- presets ------------------------------------------------------------------------------------

PRESETS: tuple[str, ...] = ("calibrated", "legacy")


def preset_fields(preset: str) -> dict:
    """Field values a preset sets (on top of SimConfig's defaults, which are `calibrated`)."""
    if preset == "calibrated":
        return {}
    if preset == "legacy":
        # the simulator as it was before the calibration (commit 210f6b0): fixed base loadings
        # plus a small 30-day OU drift, MKT-only vol clustering; same draws, same files
        return {
            "regimes": legacy_regimes(),
            "loading_halflife_days": 30.0,
            "loading_drift_sd": (0.12, 0.08, 0.04),
            "mkt_logvol_halflife_days": 10.0,
            "mkt_logvol_sd": 0.25,
            "alt_mkt_range": (1.0, 1.7),
            "alt_btc_range": (0.4, 0.8),
            "idio_range": (0.015, 0.030),
            "loading_slow_sd": (0.0, 0.0, 0.0),
            "alt_common_sd": 0.0,
            "btc_spec_logvol_sd": 0.0,
            "idio_logvol_sd": 0.0,
        }
    raise ValueError(f"unknown simulator preset {preset!r}; use one of {', '.join(PRESETS)}")


_SAMPLE_FIELDS = ("seed", "n_assets", "days", "freq", "start", "pin_regime", "initial_regime")


def matching_preset(cfg: SimConfig) -> str | None:
    """The preset `cfg` is (whatever its seed, size, length, bars, start and pinned regime), else None."""
    sample = {name: getattr(cfg, name) for name in _SAMPLE_FIELDS}
    for preset in PRESETS:
        if SimConfig.from_preset(preset, **sample) == cfg:
            return preset
    return None
