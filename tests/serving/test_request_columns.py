"""Column-wise request checks: same numbers and same first error as the per-point checks they replace."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.serving.schemas import (
    AssetHistory,
    Bar,
    ForecastRequest,
    Point,
    epoch_microseconds,
    history_columns,
)


def _reference_error(points: list, where: str, positive: bool = True) -> str | None:
    """The per-point loop the service used before (first problem in point order)."""
    prev = None
    for i, p in enumerate(points):
        c = p.close
        if not math.isfinite(c):
            return f"{where}[{i}].close is not a finite number"
        if positive and c <= 0:
            return f"{where}[{i}].close must be > 0 (got {c})"
        for extra in ("volume", "funding_rate", "open_interest"):
            v = getattr(p, extra, None)
            if v is not None:
                if not math.isfinite(v):
                    return f"{where}[{i}].{extra} is not a finite number"
                if v < 0 and extra in ("volume", "open_interest"):
                    return f"{where}[{i}].{extra} must be >= 0 (got {v})"
        ts = p.timestamp if p.timestamp.tzinfo else p.timestamp.replace(tzinfo=UTC)
        if prev is not None and ts <= prev:
            kind = "duplicates the previous bar" if ts == prev else "is before the previous bar (not sorted)"
            return f"{where}[{i}].timestamp {ts.astimezone(UTC).isoformat()} {kind}"
        prev = ts
    return None


stamps = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.none() | st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(stamps, min_size=1, max_size=30))
def test_epoch_microseconds_equals_pandas_to_the_microsecond(values):
    got = epoch_microseconds(values)
    want = pd.to_datetime(values, utc=True).as_unit("us").asi8
    assert got.dtype == np.int64 and got.tolist() == want.tolist()


def test_epoch_microseconds_on_offsets_and_the_float_edge():
    east = timezone(timedelta(hours=5, minutes=30))
    values = [
        datetime(2024, 3, 1, 5, 30, 0, 1, tzinfo=east),  # 2024-03-01T00:00:00.000001Z
        datetime(2105, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),  # just below 2^32 s
        datetime(2106, 2, 7, 6, 28, 16, 1),  # above 2^32 s: exact integer path
        datetime(1970, 1, 1, 0, 0, 0, 999_999),  # below 1 s
    ]
    got = epoch_microseconds(values)
    assert got[0] == 1_709_251_200_000_001
    assert got[1] == 4_291_747_199_999_999
    assert got[2] == 4_294_967_296_000_001
    assert got[3] == 999_999


bar = st.fixed_dictionaries(
    {
        "close": st.sampled_from([1.0, 2.5, 0.0, -1.0, math.inf, math.nan]),
        "volume": st.sampled_from([None, 1.0, 0.0, -2.0, math.nan]),
        "funding_rate": st.sampled_from([None, -0.001, math.inf]),
        "step": st.sampled_from([1, 1, 1, 1, 0, -1]),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(bar, min_size=1, max_size=12))
def test_first_error_message_equals_the_per_point_loop(rows):
    t = datetime(2023, 1, 1, tzinfo=UTC)
    points = []
    for r in rows:
        t = t + timedelta(days=r["step"])
        points.append(
            Bar.model_construct(
                timestamp=t,
                close=r["close"],
                volume=r["volume"],
                funding_rate=r["funding_rate"],
                open_interest=None,
            )
        )
    where = "asset XUSDT: history"
    want = _reference_error(points, where)
    from adaptive_beta.serving.schemas import _check_history

    if want is None:
        cols = _check_history(points, where)
        assert cols.close.tolist() == [p.close for p in points]
        assert np.isnan(cols.extras["volume"][[p.volume is None for p in points]]).all()
    else:
        with pytest.raises(ValueError) as exc:
            _check_history(points, where)
        assert str(exc.value) == want


def _body(n: int = 5) -> dict:
    hist = [
        {"timestamp": f"2024-01-0{i + 1}T00:00:00Z", "close": 10.0 + i, "volume": None if i == 2 else 5.0}
        for i in range(n)
    ]
    series = {"SPY": [{"timestamp": f"2024-01-0{i + 1}", "close": 400.0 + i} for i in range(n)]}
    return {"assets": [{"symbol": "SOLUSDT", "history": hist}], "series": series}


def test_validated_request_carries_its_columns_through_model_construct():
    req = ForecastRequest.model_validate_json(__import__("json").dumps(_body()))
    again = ForecastRequest.model_construct(assets=req.assets, series=req.series)  # what the service does
    cols = history_columns(again.assets[0])
    assert cols.us.tolist() == [1_704_067_200_000_000 + i * 86_400_000_000 for i in range(5)]
    assert cols.close.tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert np.isnan(cols.extras["volume"][2]) and cols.extras["volume"][0] == 5.0
    spy = history_columns(again.series["SPY"])
    assert spy.close.tolist() == [400.0, 401.0, 402.0, 403.0, 404.0]
    assert spy.us[0] == 1_704_067_200_000_000
    # the list subclass serialises like a list: the audit hash of the request does not change
    plain = ForecastRequest.model_construct(
        assets=req.assets, series={k: list(v) for k, v in req.series.items()}
    )
    assert again.model_dump_json() == plain.model_dump_json()


def test_columns_built_on_demand_for_unvalidated_histories():
    pts = [Point(timestamp=datetime(2024, 1, d, tzinfo=UTC), close=1.0 + d) for d in (1, 2)]
    assert history_columns(pts).close.tolist() == [2.0, 3.0]
    bars = [Bar(timestamp=datetime(2024, 1, d), close=1.0) for d in (1, 2)]
    a = AssetHistory.model_construct(symbol="X", history=bars)
    assert history_columns(a).us.tolist() == [1_704_067_200_000_000, 1_704_153_600_000_000]


def test_panel_frames_from_columns_equal_the_per_point_frames():
    from adaptive_beta.models.data.panel_columns import _us_index
    from adaptive_beta.serving.app_state import _utc_index

    req = ForecastRequest.model_validate(_body())
    a = req.assets[0]
    cols = history_columns(a)
    want = pd.DataFrame(
        {
            "close": [b.close for b in a.history],
            "volume": [np.nan if b.volume is None else b.volume for b in a.history],
        },
        index=_utc_index([b.timestamp for b in a.history]),
    )
    got = pd.DataFrame({"close": cols.close, "volume": cols.extras["volume"]}, index=_us_index(cols.us))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    spy = req.series["SPY"]
    assert _us_index(history_columns(spy).us).equals(_utc_index([p.timestamp for p in spy]))


def test_request_sha256_is_spelling_free_and_sees_every_value_and_field():
    import copy
    import hashlib

    from adaptive_beta.serving.schemas import ExplainRequest, request_sha256

    body = _body()
    base = request_sha256(ForecastRequest.model_validate(body))
    respelled = copy.deepcopy(body)
    for b in respelled["assets"][0]["history"]:
        b["timestamp"] = b["timestamp"].replace("Z", "+00:00")
    respelled["assets"][0]["history"][0]["timestamp"] = "2024-01-01T05:30:00+05:30"
    assert request_sha256(ForecastRequest.model_validate(respelled)) == base
    changed = []
    for edit in (
        lambda d: d["assets"][0]["history"][4].__setitem__("close", 14.000000000000002),
        lambda d: d["assets"][0]["history"][2].__setitem__("volume", 0.0),  # absent -> 0 is a change
        lambda d: d["assets"][0]["history"][1].__setitem__("timestamp", "2024-01-02T00:00:00.000001Z"),
        lambda d: d["series"]["SPY"][0].__setitem__("close", 399.0),
        lambda d: d["assets"][0].__setitem__("symbol", "ETHUSDT"),
        lambda d: d.__setitem__("series", {"QQQ": d["series"]["SPY"]}),
    ):
        d = copy.deepcopy(body)
        edit(d)
        changed.append(request_sha256(ForecastRequest.model_validate(d)))
    assert base not in changed and len(set(changed)) == len(changed)
    ex1 = request_sha256(ExplainRequest.model_validate({**body, "top_groups": 1}))
    ex2 = request_sha256(ExplainRequest.model_validate({**body, "top_groups": 2}))
    assert ex1 != ex2
    # the documented canonical form, rebuilt by hand for this body
    req = ForecastRequest.model_validate(body)
    stateless = {"assets": {"__all__": {"history"}}, "series": True, "symbols": True, "universe": True}
    h = hashlib.sha256(req.model_dump_json(exclude=stateless).encode())
    day = 86_400_000_000
    h.update(b"asset\0SOLUSDT\0")
    h.update(np.array([1_704_067_200_000_000 + i * day for i in range(5)], "<i8").tobytes())
    h.update(np.array([10.0, 11.0, 12.0, 13.0, 14.0], "<f8").tobytes())
    h.update(np.array([5.0, 5.0, np.nan, 5.0, 5.0], "<f8").tobytes())
    h.update(np.full(5, np.nan, "<f8").tobytes() * 2)
    h.update(b"series\0SPY\0")
    h.update(np.array([1_704_067_200_000_000 + i * day for i in range(5)], "<i8").tobytes())
    h.update(np.array([400.0, 401.0, 402.0, 403.0, 404.0], "<f8").tobytes())
    assert h.hexdigest() == base
    # the same text as before the stored-state fields existed: earlier records' hashes still hold
    assert req.model_dump_json(exclude=stateless) == '{"assets":[{"symbol":"SOLUSDT"}]}'
