"""The per-request fast paths of AppState give exactly what the pandas code they replace gave:
request timestamps -> UTC index, and the as-of feature rows the audit log keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.serving.app_state import AppState, _iso_many, _iso_us, _utc_index

OFFSETS = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
STAMPS = st.lists(
    st.tuples(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1)), OFFSETS),
    min_size=0,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(STAMPS)
def test_utc_index_equals_pandas_to_datetime_utc_to_the_microsecond(pairs):
    stamps = [d if tz is None else d.replace(tzinfo=tz) for d, tz in pairs]
    got = _utc_index(stamps)
    ref = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
    assert got.dtype == ref.dtype and (not stamps or got.dtype == "datetime64[us, UTC]")
    assert got.equals(ref)


def test_utc_index_reads_naive_as_utc_and_converts_offsets():
    got = _utc_index(
        [
            datetime(2024, 3, 1, 0, 0),
            datetime(2024, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2024, 3, 1, 8, 0, 0, 7, tzinfo=UTC),
        ]
    )
    assert got.asi8.tolist() == [1709251200_000000, 1709280000_000000, 1709280000_000007]


def test_feature_rows_equal_the_to_dict_reference_with_none_for_non_finite():
    cols = ["a", "b", "c", "d"]
    rows = pd.DataFrame(
        [[1.5, np.nan, np.inf, -0.0], [2.0**-1074, -np.inf, 3.0, 1e300]],
        index=pd.Index(["XUSDT", "YUSDT"], name="symbol"),
        columns=cols,
    )
    got = AppState.feature_rows(SimpleNamespace(rows=rows))
    ref = {
        s: {c: (None if not np.isfinite(v) else float(v)) for c, v in row.items()}
        for s, row in rows.to_dict(orient="index").items()
    }
    assert got == ref
    assert got["XUSDT"] == {"a": 1.5, "b": None, "c": None, "d": 0.0}
    assert all(type(v) is float for r in got.values() for v in r.values() if v is not None)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999), max_size=20)
)
def test_audit_summary_stamps_equal_the_pandas_isoformat_they_replace(us):
    ref = [t.isoformat() for t in pd.to_datetime(np.asarray(us, dtype=np.int64), unit="us", utc=True)]
    assert [_iso_us(u) for u in us] == ref == _iso_many(np.asarray(us, dtype=np.int64))
    whole = np.asarray(us, dtype=np.int64) // 1_000_000 * 1_000_000  # the numpy path of _iso_many
    assert _iso_many(whole) == [t.isoformat() for t in pd.to_datetime(whole, unit="us", utc=True)]
    assert _iso_us(1_735_776_000_000_007) == "2025-01-02T00:00:00.000007+00:00"
