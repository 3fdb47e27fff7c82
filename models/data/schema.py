"""The canonical in-memory market: a `Panel`, and the error every loader raises.

Every loader ends here and nothing downstream reads raw files.  The panel is stored wide
(timestamp × symbol matrices) because every estimator and feature is vectorised across
assets; `Panel.to_long()` gives the tidy (timestamp, symbol) form.

Time convention (documented once, used everywhere): a row's timestamp is the bar's *open*
time in UTC, as in Binance and Yahoo files; its values are known at the bar's close,
`timestamp + freq`.  A feature at row t may use rows <= t; a forward target at row t uses
rows t+1 .. t+H.  A cross-market factor value is usable at row t only once it was
published, i.e. its availability time <= t + freq (a US close at 16:00 New York informs only
crypto bars that close after it).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adaptive_beta.models.durations import format_freq, parse_duration

FACTOR_CATEGORIES = ("crypto_benchmark", "equity", "commodity", "fx", "rates", "volatility", "other")

# Well-known names -> category (matched on the upper-cased symbol with punctuation removed).
_CATEGORY_PATTERNS: list[tuple[str, str]] = [
    (r"^(SPY|SPX|GSPC|\^GSPC|QQQ|NDX|IXIC|DJI|DIA|IWM|ES|NQ|EQUITY|SP500|STOXX|NIKKEI|N225)", "equity"),
    (r"^(GLD|GOLD|XAU|SLV|SILVER|XAG|WTI|OIL|CL|BRENT|USO|COPPER|HG|DBC|GSG)", "commodity"),
    (r"^(DXY|DX|USDX|EUR|USDEUR|EURUSD|JPY|USDJPY|GBP|GBPUSD|CNY|CHF|FX)", "fx"),
    (r"^(VIX|VXN|VOL|MOVE|VSTOXX)", "volatility"),
    (r"^(DGS|TNX|UST|US10Y|US2Y|TREASURY|RATE|YIELD|TYX|FVX|IRX|SOFR|FEDFUNDS)", "rates"),
    (r"^(BTC|ETH|CRYPTO|TOTAL|CMC|BITW)", "crypto_benchmark"),
]

COMPOSITE_NAME = "CRYPTO_EW"
REGIME_NAMES: tuple[str, ...] = ("calm", "volatile", "crash")  # regime codes 0, 1, 2 everywhere


@functools.lru_cache(maxsize=4096)  # pure; called per series on every request (~25 us of regexes)
def infer_category(name: str) -> str:
    """Category of a factor from its name (SPY -> equity, GLD -> commodity, DXY -> fx, ...)."""
    key = re.sub(r"[^A-Z0-9]", "", name.upper())
    for pattern, category in _CATEGORY_PATTERNS:
        if re.match(pattern.replace("\\^", ""), key):
            return category
    return "other"


def is_btc(symbol: str) -> bool:
    """A BTC contract or index: the symbol starts with BTC (any case: BTCUSDT, btc-usd, BTC/USDT)."""
    return symbol.upper().startswith("BTC")


def find_btc(names: Iterable[str]) -> str | None:
    """The BTC benchmark among `names` (symbols, benchmark names): the first `is_btc` one, or None."""
    return next((n for n in names if is_btc(n)), None)


def btc_benchmark(panel: Panel) -> str | None:
    """The benchmark hedges default to: the panel's BTC benchmark (`meta["btc_symbol"]`, chosen
    by `build_panel`), else its first benchmark; None if it has none."""
    return panel.meta.get("btc_symbol") or next(iter(panel.benchmark_names), None)


def is_bar_series(name: str, benchmarks: Collection[str] = ()) -> bool:
    """A series given on the asset bar grid (a benchmark level), not a cross-market factor.

    One of the model's `benchmarks`, the composite, or a crypto-benchmark name (BTC..., ETH...,
    TOTAL...).  Bar series are aligned bar for bar like an asset; factors are published values
    joined as of their publication time.
    """
    return name in benchmarks or name == COMPOSITE_NAME or infer_category(name) == "crypto_benchmark"


class DataError(ValueError):
    """A problem with input data, said for people: what is wrong and where (file, row, column)."""

    def __init__(
        self, message: str, file: str | None = None, row: int | None = None, column: str | None = None
    ):
        self.message = message
        self.file = file
        self.row = row
        self.column = column
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


@dataclass
class FactorSeries:
    """A cross-market series as published: values indexed by the UTC time they became known.

    Loaders convert exchange-local daily closes to availability times (e.g. a US trading day
    D becomes D 16:00 America/New_York in UTC), so alignment is a plain as-of join.
    `calendar` and `lag` record the publication rule that produced the index
    (`adaptive_beta.models.data.publication`); a model bundle stores them so that serving
    publishes a client's raw observations by the same rule (None: not known).
    """

    values: pd.Series
    category: str = "other"
    calendar: str | None = None
    lag: str | None = None

    def __post_init__(self) -> None:
        if self.category not in FACTOR_CATEGORIES:
            raise ValueError(
                f"unknown factor category {self.category!r}; expected one of {FACTOR_CATEGORIES}"
            )


@dataclass
class Panel:
    """Aligned market data on the asset clock (regular UTC grid of bar open times)."""

    close: pd.DataFrame  # T x N asset closes (NaN before listing / on gaps)
    volume: pd.DataFrame  # T x N, all-NaN where unknown
    funding_rate: pd.DataFrame  # T x N, per funding interval, all-NaN where unknown
    open_interest: pd.DataFrame  # T x N, all-NaN where unknown
    factors: pd.DataFrame  # T x M factor levels as known at each bar's close (ffilled, bounded staleness)
    factor_staleness: pd.DataFrame  # T x M days since the factor value was published (NaN if too stale)
    factor_categories: dict[str, str]
    benchmarks: pd.DataFrame  # T x K benchmark levels (e.g. BTCUSDT, CRYPTO_EW)
    freq: pd.Timedelta
    meta: dict = field(default_factory=dict)

    # --- shape ---------------------------------------------------------------------------
    @property
    def index(self) -> pd.DatetimeIndex:
        return self.close.index  # type: ignore[return-value]

    @property
    def symbols(self) -> list[str]:
        return list(self.close.columns)

    @property
    def benchmark_names(self) -> list[str]:
        return list(self.benchmarks.columns)

    @property
    def factor_names(self) -> list[str]:
        return list(self.factors.columns)

    @property
    def freq_label(self) -> str:
        return format_freq(self.freq)

    # --- returns -------------------------------------------------------------------------
    def returns(self) -> pd.DataFrame:
        """Simple returns of each asset per bar (NaN across gaps and before listing)."""
        return self.close.pct_change(fill_method=None)

    def benchmark_returns(self) -> pd.DataFrame:
        return self.benchmarks.pct_change(fill_method=None)

    def factor_returns(self) -> pd.DataFrame:
        """Per-bar factor changes: differences for rates (in points), simple returns otherwise."""
        out = {}
        for name in self.factors.columns:
            s = self.factors[name]
            if self.factor_categories.get(name) == "rates":
                out[name] = s.diff()
            else:
                out[name] = s.pct_change(fill_method=None)
        return pd.DataFrame(out, index=self.index)

    # --- views ---------------------------------------------------------------------------
    def slice(self, start=None, end=None) -> Panel:
        """Rows with start <= timestamp <= end (both optional)."""
        sl = slice(start, end)
        return Panel(
            close=self.close.loc[sl],
            volume=self.volume.loc[sl],
            funding_rate=self.funding_rate.loc[sl],
            open_interest=self.open_interest.loc[sl],
            factors=self.factors.loc[sl],
            factor_staleness=self.factor_staleness.loc[sl],
            factor_categories=dict(self.factor_categories),
            benchmarks=self.benchmarks.loc[sl],
            freq=self.freq,
            meta=dict(self.meta),
        )

    def select(self, symbols: list[str]) -> Panel:
        """Only these assets (benchmarks and factors unchanged)."""
        missing = [s for s in symbols if s not in self.close.columns]
        if missing:
            raise DataError(f"unknown symbol(s) {missing}; panel has {self.symbols}")
        return Panel(
            close=self.close[symbols],
            volume=self.volume[symbols],
            funding_rate=self.funding_rate[symbols],
            open_interest=self.open_interest[symbols],
            factors=self.factors,
            factor_staleness=self.factor_staleness,
            factor_categories=dict(self.factor_categories),
            benchmarks=self.benchmarks,
            freq=self.freq,
            meta=dict(self.meta),
        )

    def to_long(self) -> pd.DataFrame:
        """Tidy form: one row per (timestamp, symbol) with close, volume, funding_rate, open_interest."""
        parts = {
            "close": self.close,
            "volume": self.volume,
            "funding_rate": self.funding_rate,
            "open_interest": self.open_interest,
        }
        long = pd.concat({k: v.stack(future_stack=True) for k, v in parts.items()}, axis=1)
        long.index.names = ["timestamp", "symbol"]
        return long.dropna(subset=["close"])

    def fingerprint(self) -> str:
        """sha256 over every value, label and the frequency: the data identity logged with a run."""
        h = hashlib.sha256()
        h.update(self.freq_label.encode())
        for name, frame in [
            ("close", self.close),
            ("volume", self.volume),
            ("funding_rate", self.funding_rate),
            ("open_interest", self.open_interest),
            ("factors", self.factors),
            ("benchmarks", self.benchmarks),
        ]:
            h.update(name.encode())
            h.update(",".join(map(str, frame.columns)).encode())
            h.update(np.asarray(frame.index.asi8).tobytes())
            h.update(np.ascontiguousarray(frame.to_numpy(dtype=np.float64)).tobytes())
        h.update(repr(sorted(self.factor_categories.items())).encode())
        return h.hexdigest()

    def describe(self) -> str:
        first, last = self.index[0], self.index[-1]
        return (
            f"{len(self.symbols)} assets x {len(self.index)} bars of {self.freq_label} "
            f"({first:%Y-%m-%d} .. {last:%Y-%m-%d}); benchmarks {self.benchmark_names}; "
            f"factors {self.factor_names}"
        )


def infer_freq(index: pd.DatetimeIndex) -> pd.Timedelta:
    """Bar length: the most common spacing between timestamps."""
    if len(index) < 2:
        raise DataError("need at least two timestamps to infer the bar frequency")
    diffs = pd.Series(index[1:] - index[:-1])
    return pd.Timedelta(diffs.mode().iloc[0])


def composite_index(
    returns: pd.DataFrame, weights: pd.DataFrame | None = None, min_assets: int = 1
) -> pd.Series:
    """Crypto composite level from asset returns.

    Equal-weighted by default: each bar the composite return is the mean simple return of the
    assets that traded in both bars (a daily-rebalanced equal-weight index, so a newly listed
    coin enters at the next bar).  With `weights` (T x N, e.g. market caps known at each
    bar), it is the cap-weighted mean of the same returns, weights normalised over live assets.
    """
    r = returns
    live = r.notna()
    if weights is None:
        w = live.astype(float)
    else:
        w = weights.reindex(index=r.index, columns=r.columns).ffill().fillna(0.0).where(live, 0.0)
    total = w.sum(axis=1)
    comp = (r.fillna(0.0) * w).sum(axis=1) / total.replace(0.0, np.nan)
    comp[live.sum(axis=1) < min_assets] = np.nan
    level = (1.0 + comp.fillna(0.0)).cumprod()
    first_valid = comp.first_valid_index()
    if first_valid is not None:
        level[level.index < first_valid] = np.nan
        # the bar before the first return is the base (level 1)
        pos = level.index.get_loc(first_valid)
        if pos > 0:
            level.iloc[pos - 1] = 1.0
    return level.rename(COMPOSITE_NAME)


def align_factor(
    series: pd.Series, bar_close: pd.DatetimeIndex, max_staleness: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """As-of join of a published series onto bar close times.

    Returns (values, staleness_days) per bar: the last value published at or before the bar's
    close, and how old it was; values older than `max_staleness` become NaN.
    """
    s = series.dropna().sort_index()
    if s.empty:
        n = len(bar_close)
        return np.full(n, np.nan), np.full(n, np.nan)
    pub = s.index.asi8
    closes = bar_close.asi8
    pos = np.searchsorted(pub, closes, side="right") - 1
    ok = pos >= 0
    vals = np.full(len(closes), np.nan)
    stale = np.full(len(closes), np.nan)
    vals[ok] = s.to_numpy(dtype=float)[pos[ok]]
    age_ns = closes[ok] - pub[pos[ok]]
    stale[ok] = age_ns / 86_400e9
    too_old = np.zeros(len(closes), dtype=bool)
    too_old[ok] = age_ns > max_staleness.value
    vals[too_old] = np.nan
    stale[too_old] = np.nan
    return vals, stale


def panel_meta(
    meta: dict | None,
    btc: str | None,
    composite: str,
    max_staleness: str | pd.Timedelta,
    rules: Mapping[str, tuple[str | None, str | None]],
) -> dict:
    """A Panel's `meta`: the caller's, plus the BTC symbol, the composite rule, the factor
    staleness limit and each factor's publication rule ({name: {"calendar", "lag"}}, where known)."""
    m = dict(meta or {})
    m.setdefault("btc_symbol", btc)
    m.setdefault("composite", composite)
    if not isinstance(max_staleness, str):
        max_staleness = format_freq(pd.Timedelta(max_staleness))
    m.setdefault("max_staleness", max_staleness)
    m.setdefault(
        "factor_publication",
        {n: {"calendar": cal, "lag": lag} for n, (cal, lag) in rules.items() if cal is not None},
    )
    return m


def _check_assets(assets: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each asset frame has a tz-aware index and a close column (the loaders guarantee more)."""
    if not assets:
        raise DataError("no assets: a panel needs at least one asset with a close series")
    frames = dict(assets)
    for sym, df in frames.items():
        if not isinstance(df.index, pd.DatetimeIndex) or df.index.tz is None:
            raise DataError(f"asset {sym}: index must be a tz-aware UTC DatetimeIndex")
        if "close" not in df.columns:
            raise DataError(f"asset {sym}: missing required column", column="close")
    return frames


def _bar_index(
    frames: Mapping[str, pd.DataFrame], freq: pd.Timedelta | str | None
) -> tuple[pd.DatetimeIndex, pd.Timedelta]:
    """The regular bar-open grid spanning every asset (intraday grids floored to the bar)."""
    if freq is None:
        longest = max(frames.values(), key=len)
        freq = infer_freq(longest.index)  # type: ignore[arg-type]
    freq = parse_duration(freq) if isinstance(freq, str) else pd.Timedelta(freq)
    start = min(df.index[0] for df in frames.values())
    end = max(df.index[-1] for df in frames.values())
    index = pd.date_range(
        start.floor(freq) if freq <= pd.Timedelta("1D") else start, end, freq=freq, tz="UTC"
    )
    return index.as_unit("ns"), freq


def _wide(frames: Mapping[str, pd.DataFrame], col: str, index: pd.DatetimeIndex) -> pd.DataFrame:
    """One column of every asset on the bar grid (all-NaN for an asset without it)."""
    data = {}
    for sym, df in frames.items():
        if col in df.columns:
            s = df[col].astype(float)
            s.index = s.index.as_unit("ns")
            data[sym] = s.reindex(index)
        else:
            data[sym] = pd.Series(np.nan, index=index)
    return pd.DataFrame(data, index=index, columns=list(frames))


def _factor_frames(
    factors: Mapping[str, FactorSeries],
    index: pd.DatetimeIndex,
    freq: pd.Timedelta,
    max_staleness: str | pd.Timedelta,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Each factor as known at each bar's close (values, staleness, category)."""
    bar_close = index + freq
    staleness = pd.Timedelta(parse_duration(max_staleness))
    fvals, fstale, cats = {}, {}, {}
    for name, fs in factors.items():
        s = fs.values.copy()
        s.index = pd.DatetimeIndex(s.index).as_unit("ns")
        v, st = align_factor(s, bar_close, staleness)
        fvals[name], fstale[name], cats[name] = v, st, fs.category
    factor_frame = pd.DataFrame(fvals, index=index, columns=list(fvals))
    stale_frame = pd.DataFrame(fstale, index=index, columns=list(fstale))
    return factor_frame, stale_frame, cats


def _given_level(s: pd.Series, index: pd.DatetimeIndex) -> pd.Series:
    s = s.astype(float)
    s.index = pd.DatetimeIndex(s.index).as_unit("ns")
    return s.reindex(index)


def _benchmarks(
    close: pd.DataFrame,
    btc: str | None,
    given: dict[str, pd.Series],
    composite: str,
    composite_weights: pd.DataFrame | None,
) -> pd.DataFrame:
    """BTC and the crypto composite: from levels given directly, else computed from the assets."""
    bench: dict[str, pd.Series] = {}
    if btc is not None:
        if btc in given:
            bench[btc] = _given_level(given.pop(btc), close.index)
        elif btc in close.columns:
            bench[btc] = close[btc]
    if COMPOSITE_NAME in given:
        bench[COMPOSITE_NAME] = _given_level(given.pop(COMPOSITE_NAME), close.index)
    else:
        weights = composite_weights if composite == "cap" else None
        bench[COMPOSITE_NAME] = composite_index(close.pct_change(fill_method=None), weights)
    return pd.DataFrame(bench, index=close.index)


def build_panel(
    assets: Mapping[str, pd.DataFrame],
    factors: Mapping[str, FactorSeries] | None = None,
    *,
    freq: pd.Timedelta | str | None = None,
    btc_symbol: str | None = None,
    composite: str = "equal",
    composite_weights: pd.DataFrame | None = None,
    benchmark_series: Mapping[str, pd.Series] | None = None,
    max_staleness: str | pd.Timedelta = "5d",
    meta: dict | None = None,
) -> Panel:
    """Align validated per-asset frames and factor series into a `Panel`.

    assets: symbol -> frame indexed by UTC bar open time with `close` and optionally `volume`,
        `funding_rate`, `open_interest` (already validated by a loader).
    factors: name -> FactorSeries (values indexed by publication time).
    benchmark_series: levels given directly (e.g. by a service client) for benchmarks that
        would otherwise be computed (BTC from its asset, the composite from all assets).
    Benchmarks: the asset whose symbol starts with BTC (or `btc_symbol`), and the crypto
    composite `CRYPTO_EW` (equal-weighted; `composite="cap"` with `composite_weights`).
    """
    frames = _check_assets(assets)
    index, freq = _bar_index(frames, freq)
    close = _wide(frames, "close", index)
    factors = factors or {}
    factor_frame, stale_frame, cats = _factor_frames(factors, index, freq, max_staleness)
    given = dict(benchmark_series or {})
    btc = btc_symbol or find_btc(list(frames))
    if btc is None:
        btc = find_btc(given)
    benchmarks = _benchmarks(close, btc, given, composite, composite_weights)
    rules = {n: (fs.calendar, fs.lag) for n, fs in factors.items()}
    return Panel(
        close=close,
        volume=_wide(frames, "volume", index),
        funding_rate=_wide(frames, "funding_rate", index),
        open_interest=_wide(frames, "open_interest", index),
        factors=factor_frame,
        factor_staleness=stale_frame,
        factor_categories=cats,
        benchmarks=benchmarks,
        freq=freq,
        meta=panel_meta(meta, btc, composite, max_staleness, rules),
    )
