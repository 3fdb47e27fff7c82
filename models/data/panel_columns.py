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
from functools import lru_cache

import numpy as np
import pandas as pd

from adaptive_beta.models.data.labels import labels
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


def _grid_rows(index_ns: np.ndarray, freq_ns: int, us: np.ndarray) -> tuple[np.ndarray, np.ndarray | slice]:
    """(grid rows, which stamps): stamp i lands on grid point rows[k] for the k-th stamp kept
    (reindex: exact matches only).  `slice(None)` when every stamp lands (no copy of the values)."""
    off = us.astype(np.int64) * NS_PER_US - index_ns[0]
    pos, rem = np.divmod(off, freq_ns)
    ok = (rem == 0) & (pos >= 0) & (pos < len(index_ns))
    return (pos, slice(None)) if ok.all() else (pos[ok], ok)


GRID_CACHE_POINTS = 50_000  # longer grids (a request spanning years of hourly bars) are not kept


@lru_cache(maxsize=16)
def _cached_grid(first_us: int, last_us: int, freq: pd.Timedelta) -> pd.DatetimeIndex:
    return _new_grid(first_us, last_us, freq)


def _new_grid(first_us: int, last_us: int, freq: pd.Timedelta) -> pd.DatetimeIndex:
    start = pd.Timestamp(first_us, unit="us", tz="UTC")
    end = pd.Timestamp(last_us, unit="us", tz="UTC")
    index = pd.date_range(
        start.floor(freq) if freq <= pd.Timedelta("1D") else start, end, freq=freq, tz="UTC"
    )
    return index.as_unit("ns")


def grid_index(first_us: int, last_us: int, freq: pd.Timedelta) -> pd.DatetimeIndex:
    """The panel's grid: bar opens every `freq` from the first stamp (floored to `freq` for bars
    up to a day) to the last.  Cached (~70 us of date_range per request, and the requests of
    one day share their grid) when it is short, handed out as a view like
    `adaptive_beta.models.data.labels.labels`."""
    if (last_us - first_us) * NS_PER_US // freq.value >= GRID_CACHE_POINTS:
        return _new_grid(first_us, last_us, freq)
    return _cached_grid(first_us, last_us, freq).view()


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
    index = grid_index(first, last, freq)
    index_ns = index.asi8
    t = len(index_ns)
    symbols = list(assets)
    frames = _asset_frames(assets, index, freq_ns)

    joined = _asof_factors(factors, index_ns + freq_ns, pd.Timedelta(parse_duration(max_staleness)).value)
    if joined is None:
        return None  # unsorted or duplicate publication times: let build_panel handle it
    names, fvals, fstale, cats = joined

    # benchmarks: BTC (given, else the asset's close), then the given composite
    given = dict(benchmark_series)
    btc = btc_symbol or find_btc(symbols)
    if btc is None:
        btc = find_btc(given)
    bench: dict[str, np.ndarray] = {}

    def on_grid(us: np.ndarray, levels: np.ndarray) -> np.ndarray:
        col = np.full(t, np.nan)
        rows, ok = _grid_rows(index_ns, freq_ns, us)
        col[rows] = levels.astype(np.float64)[ok]
        return col

    if btc is not None:
        if btc in given:
            bench[btc] = on_grid(*given.pop(btc))
        elif btc in frames["close"].columns:
            bench[btc] = frames["close"][btc].to_numpy(dtype=np.float64)
    bench[COMPOSITE_NAME] = on_grid(*given.pop(COMPOSITE_NAME))
    return Panel(
        close=frames["close"],
        volume=frames["volume"],
        funding_rate=frames["funding_rate"],
        open_interest=frames["open_interest"],
        factors=_frame(fvals, index, names),
        factor_staleness=_frame(fstale, index, names),
        factor_categories=cats,
        benchmarks=_frame(np.vstack(list(bench.values())), index, list(bench)),
        freq=freq,
        meta=panel_meta(None, btc, "equal", max_staleness, rules or {}),
    )


def _asset_frames(assets, index: pd.DatetimeIndex, freq_ns: int) -> dict[str, pd.DataFrame]:
    """Column -> T x N frame of the assets' values on the grid (NaN where a bar is missing)."""
    index_ns, symbols = index.asi8, list(assets)
    wide = {c: np.full((len(index_ns), len(symbols)), np.nan) for c in COLUMNS}
    for j, sym in enumerate(symbols):
        us, cols = assets[sym]
        rows, ok = _grid_rows(index_ns, freq_ns, us)  # once per asset, for its four columns
        for c in COLUMNS:
            wide[c][rows, j] = cols[c][ok]
    names = labels(symbols)  # one label index for the four frames
    return {c: pd.DataFrame(wide[c], index=index, columns=names) for c in COLUMNS}


def _frame(rows: np.ndarray, index: pd.DatetimeIndex, names: list[str]) -> pd.DataFrame:
    """`pd.DataFrame(dict(zip(names, rows)), index=index)` for a (columns, T) float64 array, ~5x cheaper.

    The frame holds `rows` as pandas lays out a dict of arrays (a single (columns, rows) block),
    so the frame, its `to_numpy()` and every sum over it are the same.
    """
    if not names:
        return pd.DataFrame({}, index=index, columns=[])
    return pd.DataFrame(rows.T, index=index, columns=labels(names))


def _asof_factors(
    factors: Mapping[str, tuple[np.ndarray, np.ndarray, str]], closes: np.ndarray, max_age: int
) -> tuple[list[str], np.ndarray, np.ndarray, dict] | None:
    """(names, values [M, T], staleness in days [M, T], categories) of each factor as of each bar
    close: the `adaptive_beta.models.data.schema.align_factor` rule; None if publication times
    are unsorted.

    Consecutive factors published at the same instants (one market calendar: a request's US
    factors) are joined together, with one search; the closes ascend, so the bars that see a
    publication are a suffix of the grid.
    """
    values = np.full((len(factors), len(closes)), np.nan)
    stale = np.full((len(factors), len(closes)), np.nan)
    groups: list[tuple[np.ndarray, list[int], list[np.ndarray]]] = []  # (publication times, rows, values)
    for m, (pub, vals, _) in enumerate(factors.values()):
        missing = np.isnan(vals)
        if missing.any():
            pub, vals = pub[~missing], vals[~missing]
        if len(pub) > 1 and not (pub[1:] > pub[:-1]).all():
            return None
        if not len(pub):
            continue
        if groups and np.array_equal(pub, groups[-1][0]):
            groups[-1][1].append(m)
            groups[-1][2].append(vals)
        else:
            groups.append((pub, [m], [vals]))
    for pub, rows, vals in groups:
        first = int(np.searchsorted(closes, pub[0], side="left"))  # the first close that sees one
        pos = np.searchsorted(pub, closes[first:], side="right") - 1
        age = closes[first:] - pub[pos]
        fresh = age <= max_age
        values[rows, first:] = np.where(fresh, np.stack(vals)[:, pos], np.nan)
        stale[rows, first:] = np.where(fresh, age / 86_400e9, np.nan)
    return list(factors), values, stale, {name: f[2] for name, f in factors.items()}


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
