"""The columnar timestamp fast path (serving/iso_stamps.py) reads exactly what pydantic reads.

Accepted columns give the same int64 microseconds as pydantic's `datetime` plus
`epoch_microseconds`; every column it declines (odd layouts, impossible dates, numbers, lengths
beyond the field's limits) is validated by pydantic as before, with the same error.  The accepted
set is pinned from both sides on random corruptions of valid columns: the fast path reads a column
exactly when its strings share one layout (a strict regular expression, ASCII digits) and pydantic
accepts them all.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from adaptive_beta.serving.iso_stamps import _TILE_ROWS, IsoStamps, fast_stamps, iso_microseconds
from adaptive_beta.serving.schemas import BarColumns, SeriesColumns, epoch_microseconds

PYDANTIC = TypeAdapter(list[datetime])
OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1)  # minutes, as pydantic allows
RANDOM_STAMPS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: d.replace(microsecond=0)
)
LEAP_DAYS = st.builds(
    datetime,
    st.integers(1, 9999).filter(lambda y: y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)),
    st.just(2),
    st.just(29),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)
STAMPS = st.one_of(RANDOM_STAMPS, LEAP_DAYS)
LAYOUTS = ["date", "naive", "Z", "offset"]
# what the fast path reads: one of these layouts, ASCII digits only (`\d` would take any digit)
LAYOUT_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?)?")
# replacement characters: digits (other valid or out-of-range fields), the layouts' separators
# and their look-alikes, the join separator, NUL, and non-ASCII digits and letters
ODD_CHARS = "0123456789" * 3 + "-T:Z+,|. tz\x00é１٣"


def _text(d: datetime, layout: str, offset_min: int) -> str:
    if layout == "date":
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    base = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    if layout == "naive":
        return base
    if layout == "Z":
        return base + "Z"
    sign = "-" if offset_min < 0 else "+"
    h, m = divmod(abs(offset_min), 60)
    return f"{base}{sign}{h:02d}:{m:02d}"


def _reference(texts: list[str]) -> np.ndarray:
    """What the service computed before the fast path: pydantic datetimes, then exact microseconds."""
    return epoch_microseconds(PYDANTIC.validate_json(json.dumps(texts)))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(STAMPS, OFFSETS), min_size=1, max_size=30),
    st.sampled_from(LAYOUTS),
)
def test_fast_path_gives_pydantics_instants_to_the_microsecond(pairs, layout):
    texts = [_text(d, layout, off) for d, off in pairs]
    got = iso_microseconds(texts)
    assert got is not None and got.dtype == np.int64
    assert got.tolist() == _reference(texts).tolist()


def _expected(texts: list) -> list[int] | None:
    """The fast path's contract, independently: pydantic's microseconds if every item is a string
    of one layout and pydantic accepts them all, else None."""
    layouts = {len(t) for t in texts if isinstance(t, str) and LAYOUT_RE.fullmatch(t)}
    if len(layouts) != 1 or not all(isinstance(t, str) and LAYOUT_RE.fullmatch(t) for t in texts):
        return None
    try:
        return _reference(texts).tolist()
    except ValidationError:
        return None


@st.composite
def corrupted_columns(draw) -> list:
    """A valid column of one layout, then one to three edits: a character replaced, deleted or
    inserted, a character moved from one stamp to another (lengths that still add up to a
    multiple of the width), a stamp of another layout, a leap day in any year, or a number."""
    layout = draw(st.sampled_from(LAYOUTS))
    texts: list = [
        _text(d, layout, off) for d, off in draw(st.lists(st.tuples(STAMPS, OFFSETS), min_size=1, max_size=8))
    ]
    for _ in range(draw(st.integers(1, 3))):
        i, j = draw(st.integers(0, len(texts) - 1)), draw(st.integers(0, len(texts) - 1))
        s = texts[i] if isinstance(texts[i], str) else "1970-01-01"
        pos = draw(st.integers(0, len(s)))
        edit = draw(st.sampled_from(["replace", "delete", "insert", "move", "layout", "leap day", "number"]))
        if edit == "replace":
            texts[i] = s[:pos] + draw(st.sampled_from(ODD_CHARS)) + s[pos + 1 :]
        elif edit == "delete":
            texts[i] = s[:pos] + s[pos + 1 :]
        elif edit == "insert":
            texts[i] = s[:pos] + draw(st.sampled_from(ODD_CHARS)) + s[pos:]
        elif edit == "move" and i != j and isinstance(texts[j], str):
            texts[i], texts[j] = s[:-1], s[-1] + texts[j]
        elif edit == "layout":
            texts[i] = _text(draw(STAMPS), draw(st.sampled_from(LAYOUTS)), draw(OFFSETS))
        elif edit == "leap day":  # Feb 29 of a random year: a day only in leap years
            texts[i] = f"{draw(st.integers(0, 9999)):04d}-02-29{s[10:]}"
        elif edit == "number":
            texts[i] = draw(st.integers(0, 2**31))
    return texts


@settings(max_examples=600, deadline=None)
@given(corrupted_columns())
def test_corrupted_columns_are_read_exactly_when_pydantic_reads_them_alike(texts):
    got = iso_microseconds(texts)
    assert (None if got is None else got.tolist()) == _expected(texts)


def test_a_column_longer_than_a_check_tile():
    """The byte check runs in tiles of `_TILE_ROWS` rows: the last tile is partial, and a bad
    stamp in any tile is seen."""
    texts = [
        f"{2000 + i // 366:04d}-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00-01:30"
        for i in range(2 * _TILE_ROWS + 77)
    ]
    assert iso_microseconds(texts).tolist() == _reference(texts).tolist()
    for bad in (0, _TILE_ROWS - 1, _TILE_ROWS, 2 * _TILE_ROWS + 50, len(texts) - 1):
        broken = [*texts[:bad], texts[bad].replace("T", "t"), *texts[bad + 1 :]]
        assert iso_microseconds(broken) is None


def test_str_subclasses_read_as_their_text_as_in_pydantic():
    class Text(str):
        pass

    texts = [Text("2024-02-29T12:00:00+05:00"), "2024-03-01T00:00:00+00:00"]
    expected = epoch_microseconds(PYDANTIC.validate_python(texts)).tolist()
    assert iso_microseconds(texts).tolist() == expected == [1709190000_000000, 1709251200_000000]


def test_known_instants_and_offsets():
    texts = ["2025-01-02T00:00:00+00:00", "2025-01-02T02:30:00+02:30", "2025-01-01T19:00:00-05:00"]
    assert iso_microseconds(texts).tolist() == [1735776000_000000] * 3
    assert iso_microseconds(["2024-02-29", "1970-01-01"]).tolist() == [1709164800_000000, 0]
    assert iso_microseconds(["2025-01-02T00:00:00Z"]).tolist() == [1735776000_000000]


@pytest.mark.parametrize(
    "texts",
    [
        ["2023-02-29"],  # not a day
        ["2024-13-01"],
        ["0000-01-01"],  # year 0: pydantic refuses it
        ["2024-01-01T24:00:00"],
        ["2024-01-01T23:59:60Z"],
        ["2024-01-01T00:00:00+24:00"],
        ["2024-01-01T00:00:00+00:60"],
        ["2024-01-01t00:00:00Z"],  # layouts the fast path leaves to pydantic
        ["2024-01-01 00:00:00Z"],
        ["2024-01-01T00:00:00.5Z"],
        ["2024-01-01T00:00:00z"],
        ["2024-01-01", "2024-01-02T00:00:00Z"],  # mixed layouts in one column
        ["2024-01-01", "2024-01-02x"],  # a longer string
        ["2024-01-01", "2024-1-02"],
        ["2024-01-01", 1704153600],  # a number: pydantic's unix-time rule
        ["１９７０-01-01"],  # non-ASCII digits
        ["2024-01-01", "2024-01-0٣"],
        ["2024-01-01", "2024-01-02\x00"],  # a NUL after the stamp (pydantic refuses it)
        ["2024-01-01", "2024-01-0", "12024-01-01"],  # lengths add up: the bytes read as 3 dates
        ["2024-01-01", "2024-01-02|", "2024-01-0"],  # the join's separator inside a string
        ["2024-01-01T00:00:00,01:00"],  # "," sits between "+" and "-"
    ],
)
def test_columns_outside_the_fast_path_are_declined(texts):
    assert iso_microseconds(texts) is None


@pytest.mark.parametrize(
    "bad",
    [
        ["2024-01-01T00:00:00Z", "2023-02-29T00:00:00Z"],
        ["2024-01-01T00:00:00Z", "2024-01-01T24:00:00Z"],
        ["2024-01-01T00:00:00Z", "not a time"],
        ["0000-01-01T00:00:00Z", "2024-01-01T00:00:00Z"],
    ],
)
def test_a_bad_timestamp_gets_pydantics_error_with_its_index(bad):
    body = json.dumps({"timestamps": bad, "close": [1.0, 2.0]})
    with pytest.raises(ValidationError) as got:
        BarColumns.model_validate_json(body)
    with pytest.raises(ValidationError) as ref:
        PYDANTIC.validate_json(json.dumps(bad))
    (g,), (r,) = got.value.errors(), ref.value.errors()
    assert g["loc"] == ("timestamps", *r["loc"]) and g["type"] == r["type"] and g["msg"] == r["msg"]


def test_the_fields_length_limits_still_apply():
    with pytest.raises(ValidationError) as exc:
        BarColumns.model_validate_json(json.dumps({"timestamps": ["2024-01-01"], "close": [1.0]}))
    assert exc.value.errors()[0]["type"] == "too_short"
    one = SeriesColumns.model_validate_json(json.dumps({"timestamps": ["2024-01-01"], "close": [1.0]}))
    assert epoch_microseconds(one.timestamps).tolist() == [1704067200_000000]
    assert fast_stamps(["2024-01-01"] * 3, max_length=2) is None


def test_a_validated_column_carries_its_microseconds():
    cols = BarColumns.model_validate_json(
        json.dumps(
            {"timestamps": ["2025-01-01T00:00:00+00:00", "2025-01-02T00:00:00+00:00"], "close": [1.0, 2.0]}
        )
    )
    assert isinstance(cols.timestamps, IsoStamps) and len(cols) == 2
    assert epoch_microseconds(cols.timestamps).tolist() == [
        int((datetime(2025, 1, d, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
        for d in (1, 2)
    ]
    # an offset column: the same instants as the UTC spelling
    shifted = BarColumns.model_validate_json(
        json.dumps(
            {
                "timestamps": [
                    datetime(2025, 1, d, 1, tzinfo=timezone(timedelta(hours=1))).isoformat() for d in (1, 2)
                ],
                "close": [1.0, 2.0],
            }
        )
    )
    assert epoch_microseconds(shifted.timestamps).tolist() == epoch_microseconds(cols.timestamps).tolist()
