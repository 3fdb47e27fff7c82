"""`us_close_ns` (the table lookup serving publishes US factors with) equals the definition,
`us_close_utc`, and an independent scalar reference (Python's zoneinfo, one date at a time) on
every day of its table, across every DST change, and outside the table (the fallback)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.data.publication import (
    DAY_NS,
    US_CLOSE_TABLE_DAYS,
    publication_ns_many,
    publication_times,
    us_close_ns,
    us_close_utc,
)

NEW_YORK = ZoneInfo("America/New_York")
EPOCH = dt.date(1970, 1, 1)
# pandas' ns range, whole days: 1677-09-22 .. 2262-04-10
FIRST_DAY, LAST_DAY = -106_750, 106_749


def zoneinfo_close(day: int) -> int:
    """16:00 New York on day `day` (days since 1970-01-01) in UTC ns, by the standard library."""
    d = EPOCH + dt.timedelta(days=day)
    return int(dt.datetime(d.year, d.month, d.day, 16, tzinfo=NEW_YORK).timestamp()) * 10**9


def pandas_close(stamp: int) -> int:
    """The definition, one stamp at a time."""
    return int(us_close_utc(pd.DatetimeIndex([stamp], dtype="datetime64[ns]")).asi8[0])


def test_every_day_of_the_table_equals_zoneinfo_and_offsets_are_dst_or_not():
    days = np.arange(*US_CLOSE_TABLE_DAYS, dtype=np.int64)
    want = np.array([zoneinfo_close(d) for d in days.tolist()])
    # a year at a time, and each end of the table alone: lookups, never the fallback
    for lo in range(0, len(days), 365):
        np.testing.assert_array_equal(us_close_ns(days[lo : lo + 365] * DAY_NS), want[lo : lo + 365])
    for end in (days[:1], days[-1:], days[:1] - 1, days[-1:] + 1):  # the last two: outside, the fallback
        assert us_close_ns(end * DAY_NS).tolist() == [zoneinfo_close(int(end[0]))]
    got = us_close_ns(days * DAY_NS)
    np.testing.assert_array_equal(got, want)
    hours = (got - days * DAY_NS) // 3_600_000_000_000
    assert set(hours.tolist()) == {20, 21}  # EDT / EST
    # the changes of one year (2nd Sunday of March, 1st Sunday of November since 2007)
    d = {
        s: int(pd.Timestamp(s).value // DAY_NS)
        for s in ("2024-03-09", "2024-03-10", "2024-11-02", "2024-11-03")
    }
    assert [int(hours[v - US_CLOSE_TABLE_DAYS[0]]) for v in d.values()] == [21, 20, 20, 21]
    # the old rule (1st Sunday of April .. last Sunday of October) in 1990: 1990-04-01 and 1990-10-28
    for day, h in (("1990-03-31", 21), ("1990-04-01", 20), ("1990-10-27", 20), ("1990-10-28", 21)):
        assert int(hours[pd.Timestamp(day).value // DAY_NS - US_CLOSE_TABLE_DAYS[0]]) == h


@settings(max_examples=60, deadline=None)
@given(
    days=st.lists(st.integers(FIRST_DAY, LAST_DAY), min_size=0, max_size=40),
    inside=st.lists(st.integers(US_CLOSE_TABLE_DAYS[0], US_CLOSE_TABLE_DAYS[1] - 1), max_size=40),
    time_of_day=st.integers(0, DAY_NS - 1),
)
def test_any_stamps_equal_the_scalar_definition_and_zoneinfo(days, inside, time_of_day):
    """Stamps at any time of day, inside the table, outside it (the pandas fallback), or mixed."""
    for chosen in (inside, days + inside):
        stamps = np.array(chosen, dtype=np.int64) * DAY_NS + time_of_day
        got = us_close_ns(stamps)
        assert got.dtype == np.int64 and got.shape == stamps.shape
        assert got.tolist() == [pandas_close(s) for s in stamps.tolist()]
        assert got.tolist() == [zoneinfo_close(d) for d in chosen]


def test_publication_of_several_series_inside_and_outside_the_table_equals_one_at_a_time():
    day, jan2 = DAY_NS, pd.Timestamp("2024-01-02").value
    old = pd.Timestamp("1871-03-01").value  # before the table: the whole batch takes us_close_utc
    weekdays = pd.bdate_range("2023-03-01", "2024-12-31").as_unit("ns").asi8
    for extra in ([], [(np.array([old, old + day]), "us_close", None)]):
        series = [
            (weekdays, "us_close", None),
            (np.array([jan2 + 7 * 3_600 * 10**9]), "utc_close", pd.Timedelta("1h")),
            (weekdays[::3] + 5, "us_close", pd.Timedelta("1D")),
            (np.array([], dtype=np.int64), "us_close", None),
            *extra,
            (np.array([pd.Timestamp("2099-12-31 23:00").value]), "us_close", None),
        ]
        many = publication_ns_many(series)
        for (a, cal, lag), got in zip(series, many, strict=True):
            one = publication_times(pd.DatetimeIndex(a, tz="UTC"), cal, lag).asi8
            assert got.tolist() == one.tolist()
            if cal == "us_close":
                shift = 0 if lag is None else lag.value
                assert got.tolist() == [zoneinfo_close(int(s // DAY_NS)) + shift for s in a.tolist()]
