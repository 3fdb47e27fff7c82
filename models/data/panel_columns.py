"""A panel from numpy columns and raw factor observations: how serving builds a request's panel.

`panel_from_observations` is the one entry point: it publishes each factor's observations by
its calendar and lag (`adaptive_beta.models.data.publication`, the rule training applied), then
builds the Panel with `panel_from_columns`, a numpy fast path for the service's fixed shape
(asset frames with all four columns, the crypto benchmarks given as series, factors at
publication times), or, outside that shape, with `adaptive_beta.models.data.schema.build_panel`.
`panel_from_columns` places every history on the grid with one integer division of its
microsecond stamps and as-of joins the factors with the same `searchsorted` rule as
`align_factor`; `tests/models/test_panel_columns.py` asserts it equals `build_panel` frame by frame.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from adaptive_beta.models.data.publication import publication_ns_many
from adaptive_beta.models.data.schema import (
    COMPOSITE_NAME,
    FactorSeries,
    Panel,
    build_panel,
    find_btc,
    panel_meta,
)
from adaptive_beta.models.durations import parse_duration

COLUMNS = ("close", "volume", "funding_rate", "open_interest")
NS_PER_US = 1000


def _grid(index_ns: np.ndarray, freq_ns: int, us: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """out[k] = values[i] where stamp i equals grid point k (reindex: exact matches only)."""
    off = us.astype(np.int64) * NS_PER_US - index_ns[0]
    pos, rem = np.divmod(off, freq_ns)
    ok = (rem == 0) & (pos >= 0) & (pos < len(index_ns))
    out[pos[ok]] = values[ok]


def panel_from_columns(
    assets: Mapping[str, tuple[np.ndarray, dict[str, np.ndarray]]],
    benchmark_series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    factors: Mapping[str, tuple[np.ndarray, np.ndarray, str]],
    freq: pd.Timedelta,
    btc_symbol: str | None,
    max_staleness: str | pd.Timedelta = "5d",
    rules: Mapping[str, tuple[str | None, str | None]] | None = None,
) -> Panel | None:
    """The Panel `build_panel` gives for these inputs, or None when they fall outside the fast shape.

    assets: symbol -> (int64 us stamps, {column: float64 values} for all of COLUMNS).
    benchmark_series: name -> (us stamps, levels); must hold the composite (else None).
    factors: name -> (publication stamps as int64 ns, sorted, values, category).
    rules: name -> (calendar, lag) the factor was published by (recorded in the panel's meta).
    """
    if not assets or COMPOSITE_NAME not in benchmark_series:
        return None
    if any(set(cols) != set(COLUMNS) for _, cols in assets.values()):
        return None
    freq = pd.Timedelta(freq)
    freq_ns = int(freq.value)
    if freq_ns <= 0:
        return None
    first = min(int(us[0]) for us, _ in assets.values())
    last = max(int(us[-1]) for us, _ in assets.values())
    start = pd.Timestamp(first, unit="us", tz="UTC")
    end = pd.Timestamp(last, unit="us", tz="UTC")
    index = pd.date_range(
        start.floor(freq) if freq <= pd.Timedelta("1D") else start, end, freq=freq, tz="UTC"
    )
    index = index.as_unit("ns")
    index_ns = index.asi8
    t = len(index_ns)
    symbols = list(assets)
    frames = _asset_frames(assets, index, freq_ns)

    joined = _asof_factors(factors, index_ns + freq_ns, pd.Timedelta(parse_duration(max_staleness)).value)
    if joined is None:
        return None  # unsorted or duplicate publication times: let build_panel handle it
    fvals, fstale, cats = joined
    factor_names = pd.Index(list(fvals))  # one label index for both frames
    factor_frame = _frame(fvals, index, factor_names)
    stale_frame = _frame(fstale, index, factor_names)

    # benchmarks: BTC (given, else the asset's close), then the given composite
    given = dict(benchmark_series)
    btc = btc_symbol or find_btc(symbols)
    if btc is None:
        btc = find_btc(given)
    bench: dict[str, np.ndarray] = {}

    def on_grid(us: np.ndarray, levels: np.ndarray) -> np.ndarray:
        col = np.full(t, np.nan)
        _grid(index_ns, freq_ns, us, levels.astype(np.float64), col)
        return col

    if btc is not None:
        if btc in given:
            bench[btc] = on_grid(*given.pop(btc))
        elif btc in frames["close"].columns:
            bench[btc] = frames["close"][btc].to_numpy(dtype=np.float64)
    bench[COMPOSITE_NAME] = on_grid(*given.pop(COMPOSITE_NAME))
    benchmarks = _frame(bench, index, pd.Index(list(bench)))
    return Panel(
        close=frames["close"],
        volume=frames["volume"],
        funding_rate=frames["funding_rate"],
        open_interest=frames["open_interest"],
        factors=factor_frame,
        factor_staleness=stale_frame,
        factor_categories=cats,
        benchmarks=benchmarks,
        freq=freq,
        meta=panel_meta(None, btc, "equal", max_staleness, rules or {}),
    )


def _asset_frames(assets, index: pd.DatetimeIndex, freq_ns: int) -> dict[str, pd.DataFrame]:
    """Column -> T x N frame of the assets' values on the grid (NaN where a bar is missing)."""
    index_ns, symbols = index.asi8, list(assets)
    wide = {c: np.full((len(index_ns), len(symbols)), np.nan) for c in COLUMNS}
    for j, sym in enumerate(symbols):
        us, cols = assets[sym]
        for c in COLUMNS:
            col = np.full(len(index_ns), np.nan)
            _grid(index_ns, freq_ns, us, cols[c], col)
            wide[c][:, j] = col
    labels = pd.Index(symbols)  # one label index for the four frames (a string index costs ~50 us)
    return {c: pd.DataFrame(wide[c], index=index, columns=labels) for c in COLUMNS}


def _frame(columns: Mapping[str, np.ndarray], index: pd.DatetimeIndex, labels: pd.Index) -> pd.DataFrame:
    """`pd.DataFrame(columns, index=index)` for equal-length float64 columns, ~5x cheaper.

    Built from one stacked array laid out as pandas lays out a dict of arrays (a single
    (columns, rows) block), so the frame, its `to_numpy()` and every sum over it are the same.
    """
    if not columns:
        return pd.DataFrame(dict(columns), index=index, columns=list(columns))
    return pd.DataFrame(np.vstack(list(columns.values())).T, index=index, columns=labels)


def _asof_factors(
    factors: Mapping[str, tuple[np.ndarray, np.ndarray, str]], closes: np.ndarray, max_age: int
) -> tuple[dict, dict, dict] | None:
    """(values, staleness in days, categories) per factor as of each bar close: the
    `adaptive_beta.models.data.schema.align_factor` rule; None if publication times are unsorted."""
    t = len(closes)
    fvals, fstale, cats = {}, {}, {}
    for name, (pub, vals, category) in factors.items():
        keep = ~np.isnan(vals)
        pub, vals = pub[keep], vals[keep]
        if len(pub) > 1 and not (np.diff(pub) > 0).all():
            return None
        v, st = np.full(t, np.nan), np.full(t, np.nan)
        if len(pub):
            pos = np.searchsorted(pub, closes, side="right") - 1
            ok = pos >= 0
            v[ok] = vals[pos[ok]]
            age = closes[ok] - pub[pos[ok]]
            st[ok] = age / 86_400e9
            too_old = np.zeros(t, dtype=bool)
            too_old[ok] = age > max_age
            v[too_old] = np.nan
            st[too_old] = np.nan
        fvals[name], fstale[name], cats[name] = v, st, category
    return fvals, fstale, cats


def panel_from_observations(
    assets: Mapping[str, tuple[np.ndarray, dict[str, np.ndarray]]],
    bar_series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    factors: Mapping[str, tuple[np.ndarray, np.ndarray, str, str, str | None]],
    freq: pd.Timedelta,
    btc_symbol: str | None,
    max_staleness: str | pd.Timedelta,
) -> Panel:
    """The Panel of raw columns: assets and bar series on the grid, factors published by their rule.

    assets: symbol -> (int64 us bar open stamps, {column: float64 values}; absent columns are NaN).
    bar_series: name -> (us stamps, levels) given directly (BTC, the composite).
    factors: name -> (us observation stamps, values, category, calendar, lag or None).
    Raises DataError (from `build_panel`) for inputs no panel can be built from.
    """
    pubs = publication_ns_many(
        [
            (us.astype(np.int64) * NS_PER_US, cal, None if lag is None else parse_duration(lag))
            for us, _, _, cal, lag in factors.values()
        ]
    )
    rules = {name: (f[3], f[4]) for name, f in factors.items()}
    full = {
        sym: (us, {c: cols.get(c, np.full(len(us), np.nan)) for c in COLUMNS})
        for sym, (us, cols) in assets.items()
    }
    published = {name: (pub, f[1], f[2]) for (name, f), pub in zip(factors.items(), pubs, strict=True)}
    panel = panel_from_columns(full, bar_series, published, freq, btc_symbol, max_staleness, rules)
    if panel is not None:
        return panel
    frames = {
        sym: pd.DataFrame(cols, index=_us_index(us), columns=list(COLUMNS))
        for sym, (us, cols) in full.items()
    }
    benchmarks = {
        name: pd.Series(levels, index=_us_index(us), dtype=float) for name, (us, levels) in bar_series.items()
    }
    series = {
        name: FactorSeries(
            pd.Series(vals, index=pd.DatetimeIndex(pub, tz="UTC"), dtype=float),
            cat,
            rules[name][0],
            rules[name][1],
        )
        for name, (pub, vals, cat) in published.items()
    }
    return build_panel(
        frames,
        series,
        freq=freq,
        btc_symbol=btc_symbol,
        benchmark_series=benchmarks,
        max_staleness=max_staleness,
    )


def _us_index(us: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(us, dtype=np.int64).astype("datetime64[us]")).tz_localize("UTC")
