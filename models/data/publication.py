"""When a value became known: factor publication times, funding prints and open interest per bar.

The panel joins every outside series as of each bar's close, so a series must be indexed by
the time it was *published*; a wrong rule here leaks the future into every feature.

Factor calendars (`calendar` in a manifest; default chosen from the data and the category):

- `us_close`: a date D is the US close, published D 16:00 America/New_York, converted to UTC
  with the date's own DST offset (20:00 UTC in summer, 21:00 UTC in winter).  Default for
  date-only equity, commodity, fx, rates and volatility series.
- `utc_close`: a date D is a UTC calendar day, published at its end, D+1 00:00 UTC.  Default
  for date-only crypto_benchmark series and for category `other` (the latest, safest rule).
- `bar_open`: a timestamp with a time of day is the open of a bar whose length is the most
  common spacing of the series; the value is published at open + bar length.  Default for
  timestamps with a time of day.
- `timestamp`: the timestamp already is the publication time.

A manifest `lag` (e.g. `"1d"` for FRED H.15 yields, released the next business day) is added
on top of the calendar rule.

Funding: a print at time p is paid at p (rounded to the hour, Binance prints carry ms jitter),
so a bar [open, close) receives the sum of the prints in (open, close]: the print at 08:00 UTC
belongs to the 00:00 bar of an 8h grid, which closes at 08:00.  Between the first and last
print, a bar without a print received 0 (hourly bars on an 8h funding schedule); outside that
span funding is unknown (NaN).

Open interest: the last observation at or before the bar close, NaN when that observation is
older than one bar plus one observation interval (a feed that stopped is not carried forward).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
import pandas as pd

CALENDARS = ("us_close", "utc_close", "bar_open", "timestamp")
Calendar = Literal["us_close", "utc_close", "bar_open", "timestamp"]
US_CLOSE_CATEGORIES = ("equity", "commodity", "fx", "rates", "volatility")
DAY_NS = 86_400_000_000_000
# Days (since 1970-01-01) that `us_close_ns` looks up in a table: 1900-01-01 .. 2099-12-31.
US_CLOSE_TABLE_DAYS = (-25_567, 47_482)


def default_calendar(category: str, date_only: bool) -> Calendar:
    """The publication rule used when a manifest does not name one."""
    if not date_only:
        return "bar_open"
    return "us_close" if category in US_CLOSE_CATEGORIES else "utc_close"


def us_close_utc(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Dates -> 16:00 America/New_York on that date, in UTC (DST-correct per date)."""
    dates = pd.DatetimeIndex(index)
    if dates.tz is not None:
        dates = dates.tz_convert("UTC").tz_localize(None)
    local = (dates.normalize() + pd.Timedelta(hours=16)).tz_localize("America/New_York")
    return local.tz_convert("UTC").as_unit("ns")


@cache
def _us_close_offsets() -> np.ndarray:
    """ns from UTC midnight to the US close of each day of US_CLOSE_TABLE_DAYS, computed once
    by `us_close_utc` itself (~10 ms, 0.6 MB), so a lookup equals the definition by construction."""
    first, stop = US_CLOSE_TABLE_DAYS
    days = np.arange(first, stop, dtype=np.int64) * DAY_NS
    offsets = us_close_utc(pd.DatetimeIndex(days.astype("datetime64[ns]"))).asi8 - days
    offsets.flags.writeable = False
    return offsets


def us_close_ns(stamps: np.ndarray) -> np.ndarray:
    """`us_close_utc` of int64 UTC ns stamps (each stamp's date), as int64 ns.

    Why not `us_close_utc`: its tz_localize costs ~0.4 ms per call and serving publishes every
    factor of every request.  Here a date's close is its midnight plus the offset looked up in
    a table that `us_close_utc` filled once; a stamp outside the table's years takes
    `us_close_utc` (the definition) for the whole batch.
    """
    a = np.asarray(stamps, dtype=np.int64)
    day = a // DAY_NS
    k = day - US_CLOSE_TABLE_DAYS[0]
    if len(a) and (k.min() < 0 or k.max() >= US_CLOSE_TABLE_DAYS[1] - US_CLOSE_TABLE_DAYS[0]):
        return us_close_utc(pd.DatetimeIndex((day * DAY_NS).astype("datetime64[ns]"))).asi8
    return day * DAY_NS + _us_close_offsets()[k]


def bar_length(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The most common spacing between consecutive timestamps (1 day for a single timestamp)."""
    if len(index) < 2:
        return pd.Timedelta("1D")
    diffs = np.diff(pd.DatetimeIndex(index).asi8)
    values, counts = np.unique(diffs, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


def publication_times(
    index: pd.DatetimeIndex, calendar: Calendar, lag: pd.Timedelta | None = None
) -> pd.DatetimeIndex:
    """UTC publication time of each observation under `calendar` (see module docstring)."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    stamps = idx.tz_convert("UTC").as_unit("ns").asi8
    (out,) = publication_ns_many([(stamps, calendar, lag)])
    return pd.DatetimeIndex(out, tz="UTC").as_unit("ns")


def publication_ns_many(
    series: list[tuple[np.ndarray, Calendar, pd.Timedelta | None]],
) -> list[np.ndarray]:
    """`publication_times` of several series given as int64 UTC ns stamps, as int64 ns.

    The one implementation of the calendar rules; all `us_close` series share one `us_close_ns`
    lookup (and one `us_close_utc` conversion when a date falls outside its table).
    """
    out: list[np.ndarray] = []
    us_close: list[int] = []  # positions of the us_close series, converted together below
    for stamps, calendar, _ in series:
        a = np.asarray(stamps, dtype=np.int64)
        if calendar == "us_close":
            us_close.append(len(out))
            out.append(a)
        elif calendar == "utc_close":
            out.append((a // DAY_NS) * DAY_NS + DAY_NS)
        elif calendar == "bar_open":
            out.append(a + bar_length(pd.DatetimeIndex(a, tz="UTC")).value)
        elif calendar == "timestamp":
            out.append(a.copy())
        else:
            raise ValueError(f"unknown calendar {calendar!r}; expected one of {CALENDARS}")
    if us_close:
        ends = np.cumsum([len(out[i]) for i in us_close])[:-1]
        parts = np.split(us_close_ns(np.concatenate([out[i] for i in us_close])), ends)
        for i, part in zip(us_close, parts, strict=True):
            out[i] = part
    return [
        a if lag is None else a + pd.Timedelta(lag).value for a, (_, _, lag) in zip(out, series, strict=True)
    ]


def funding_per_bar(prints: pd.Series, bar_open: pd.DatetimeIndex, freq: pd.Timedelta) -> pd.Series:
    """Sum of funding prints paid in (open, open + freq] of each bar (see module docstring)."""
    opens = pd.DatetimeIndex(bar_open).as_unit("ns")
    out = pd.Series(np.nan, index=opens, name="funding_rate")
    s = prints.dropna()
    if s.empty or len(opens) == 0:
        return out
    paid = pd.DatetimeIndex(s.index).tz_convert("UTC").as_unit("ns").round("h")
    closes = opens.asi8 + freq.value
    # bar i receives prints with opens[i] < p <= closes[i]
    pos = np.searchsorted(closes, paid.asi8, side="left")
    inside = (pos < len(opens)) & (paid.asi8 > opens.asi8[np.minimum(pos, len(opens) - 1)])
    sums = np.bincount(pos[inside], weights=s.to_numpy(dtype=float)[inside], minlength=len(opens))
    span = (closes >= paid.asi8.min()) & (opens.asi8 < paid.asi8.max())
    vals = np.where(span, sums, np.nan)
    return pd.Series(vals, index=opens, name="funding_rate")


def open_interest_per_bar(oi: pd.Series, bar_open: pd.DatetimeIndex, freq: pd.Timedelta) -> pd.Series:
    """Last open interest observed at or before each bar close (see module docstring)."""
    opens = pd.DatetimeIndex(bar_open).as_unit("ns")
    s = oi.dropna()
    if s.empty or len(opens) == 0:
        return pd.Series(np.nan, index=opens, name="open_interest")
    obs = pd.DatetimeIndex(s.index).tz_convert("UTC").as_unit("ns").asi8
    closes = opens.asi8 + freq.value
    pos = np.searchsorted(obs, closes, side="right") - 1
    ok = pos >= 0
    vals = np.full(len(opens), np.nan)
    vals[ok] = s.to_numpy(dtype=float)[pos[ok]]
    limit = freq.value + bar_length(pd.DatetimeIndex(obs)).value
    age = np.where(ok, closes - obs[np.maximum(pos, 0)], 0)
    vals[ok & (age > limit)] = np.nan
    return pd.Series(vals, index=opens, name="open_interest")
