"""ISO-8601 timestamp columns -> int64 microseconds in one vectorised pass, for the columnar form.

Why: a stateless request carries ~5,000 timestamps.  Parsed by pydantic into `datetime`s and
converted one by one (`datetime.timestamp()` calls the tzinfo of every stamp), they cost ~2 ms per
661 aware stamps, more than the rest of the request's validation together.  The strings of a
column almost always share one layout (`2025-01-02T00:00:00+00:00`, `...Z`, or a date
`2025-01-02` for a daily factor), so the column is read as one block of ASCII bytes, one row per
stamp, and its fields are computed with a few whole-column numpy operations.

Why bytes: the strings are joined with a separator no layout allows and encoded as ASCII (~10 us
for 661 stamps); a copy of every string as UCS-4 (`np.array(values, dtype="<U26")`) and a
per-string length or type check cost several times that.  The separator makes those checks
unnecessary: if every row of `width + 1` bytes matches the layout and ends in the separator, the
joined text holds exactly one separator per string, each where a row ends, so every string has
exactly `width` characters (mixed lengths that happen to add up are refused); a non-string fails
the join and a non-ASCII character the encoding.

The fast path accepts only what pydantic accepts and reads it the same way (the same instant, to
the microsecond; naive stamps as UTC, as everywhere in the service); any other column (mixed
layouts, fractional seconds, lower-case separators, numbers, an impossible date such as
2023-02-29, a length outside the field's limits) returns None and pydantic validates it as before,
with the same errors.  `tests/serving/test_iso_stamps.py` checks both halves against pydantic.
"""

from __future__ import annotations

import numpy as np

_SEP = "|"  # joins the strings; allowed at no position of any layout (see the module docstring)
# layout width -> (pattern, fields).  In a pattern a digit is the highest digit allowed at its
# position ("1" the tens of a month, "5" of a minute...), "s" the offset's sign (+ or -), anything
# else stands for itself.  The tight digits leave the few remaining range rules to `iso_microseconds`.
_DATE = ("month_index", "day")
_LAYOUTS_SPEC = {
    10: ("9999-19-39", _DATE),  # a date: midnight, naive (UTC)
    19: ("9999-19-39T29:59:59", (*_DATE, "time")),  # naive (UTC)
    20: ("9999-19-39T29:59:59Z", (*_DATE, "time")),
    25: ("9999-19-39T29:59:59s29:59", (*_DATE, "time", "offset", "sign")),
}
# field -> (first character, digits, multiplier) terms: every field is a linear combination of
# the characters' values (a digit's value, the sign's distance from "+": 0 "+", 1 ",", 2 "-")
_FIELDS = {
    "month_index": ((0, 4, 20), (5, 2, 1)),  # year * 20 + month: the row of the month table
    "day": ((8, 2, 1),),
    "time": ((11, 2, 3600), (14, 2, 60), (17, 2, 1)),  # seconds since midnight
    "offset": ((20, 2, 3600), (23, 2, 60)),  # seconds
    "sign": ((19, 1, 1),),
}
_DAY_S = 86_400
_US_PER_S = 1_000_000
_TILE_ROWS = 1024  # rows checked per numpy call (the tiled class bounds are this long)


def _month_table() -> tuple[np.ndarray, np.ndarray]:
    """Per `year * 20 + month`: days since 1970-01-01 of the month's first day (int32) and the
    month's length in days (uint8; 0 for year 0000 and months 00 and 13-19, which are refused).

    Why a table (1 MB): two lookups replace the calendar arithmetic; numpy's calendar (the
    proleptic Gregorian calendar, as pydantic's) builds it once at import."""
    months = np.arange("0001-01", "10000-02", dtype="datetime64[M]")  # one past 9999-12
    first_days = months.astype("datetime64[D]").astype(np.int64)
    years, month0 = np.divmod(months[:-1].astype(np.int64) + 1970 * 12, 12)
    rows = years * 20 + month0 + 1
    first = np.zeros(10_000 * 20, np.int32)
    length = np.zeros(10_000 * 20, np.uint8)
    first[rows] = first_days[:-1]
    length[rows] = np.diff(first_days)
    return first, length


_MONTH_FIRST_DAY, _MONTH_DAYS = _month_table()


class IsoStamps(list):
    """A timestamp column read by the fast path: the strings as sent, plus `us` (int64
    microseconds since the epoch, UTC).  Only ever read through `us` and `len`."""

    us: np.ndarray


class _Layout:
    """Per layout, built once: the allowed code range of every byte of a row (the pattern plus
    the separator) and the matrix that turns a row's values into its fields in one product.

    Why tiled over `_TILE_ROWS` rows: the check then runs on flat contiguous bytes; broadcast as
    an (n, row) array against one row of bounds, numpy runs its inner loop once per row, ~3x
    slower for 661 stamps."""

    def __init__(self, pattern: str, fields: tuple[str, ...]):
        self.width = len(pattern)
        self.row = self.width + 1
        self.time = "time" in fields
        self.offset = "offset" in fields
        lo, hi = zip(*(self._allowed(ch) for ch in pattern + _SEP), strict=True)
        self.lo = np.tile(np.array(lo, dtype=np.uint8), _TILE_ROWS)
        self.span = np.tile(np.array(hi, dtype=np.uint8), _TILE_ROWS) - self.lo  # lo <= code <= lo + span
        self.weights = np.zeros((self.row, len(fields)), dtype=np.float32)
        for j, name in enumerate(fields):
            for first, n, multiplier in _FIELDS[name]:
                for k in range(n):
                    self.weights[first + k, j] = multiplier * 10 ** (n - 1 - k)

    @staticmethod
    def _allowed(ch: str) -> tuple[int, int]:
        if ch.isdigit():
            return ord("0"), ord(ch)
        if ch == "s":
            return ord("+"), ord("-")  # and "," between them, refused by `iso_microseconds`
        return ord(ch), ord(ch)

    def values(self, codes: np.ndarray) -> np.ndarray | None:
        """Every byte's distance from the lowest code allowed at its position (a digit's value),
        or None if a byte is outside its range.  Unsigned: a code below the range wraps to a
        large value."""
        out = np.empty_like(codes)
        for start in range(0, len(codes), len(self.lo)):
            part = out[start : start + len(self.lo)]
            np.subtract(codes[start : start + len(part)], self.lo[: len(part)], out=part)
            if not (part <= self.span[: len(part)]).all():
                return None
        return out

    def fields(self, codes: np.ndarray) -> np.ndarray | None:
        """[n, fields] int64 (month index, day, then time, offset, sign where the layout has
        them), or None."""
        values = self.values(codes)
        if values is None:
            return None
        rows = values.reshape(-1, self.row).astype(np.float32)  # half the bytes of float64
        # exact: values <= 9, so every partial sum is an integer < 2^24 (at most 9 * 40271, time)
        return (rows @ self.weights).astype(np.int64)


_LAYOUTS = {width: _Layout(*spec) for width, spec in _LAYOUTS_SPEC.items()}


def iso_microseconds(values: list, min_length: int = 0, max_length: int | None = None) -> np.ndarray | None:
    """int64 microseconds since the epoch (UTC) of a list of ISO strings of one layout, or None.

    None means "not for the fast path": pydantic then validates the column as before.
    """
    n = len(values)
    if n == 0 or n < min_length or (max_length is not None and n > max_length):
        return None
    first = values[0]
    if not isinstance(first, str) or len(first) not in _LAYOUTS:
        return None
    layout = _LAYOUTS[len(first)]
    try:  # numbers (unix times) etc. fail the join, non-ASCII the encoding: pydantic's rules
        joined = (_SEP.join(values) + _SEP).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None
    if len(joined) != n * layout.row:
        return None
    f = layout.fields(np.frombuffer(joined, dtype=np.uint8))
    if f is None:
        return None
    month_row, day0 = f[:, 0], f[:, 1] - 1
    if not (day0.view(np.uint64) < _MONTH_DAYS[month_row]).all():  # day 00 wraps to a huge value
        return None  # e.g. 2023-02-29 or month 13: pydantic's error, not ours
    seconds = (_MONTH_FIRST_DAY[month_row] + day0) * _DAY_S
    if layout.time:
        if f[:, 2].max() >= _DAY_S:  # hour 24-29 (minutes and seconds are <= 59 by the pattern)
            return None
        seconds += f[:, 2]
    if layout.offset:  # local time minus its offset: UTC
        offset, sign = f[:, 3], f[:, 4] - 1  # -1 "+", 0 ",", +1 "-"
        if offset.max() >= _DAY_S or not sign.all():
            return None
        seconds += sign * offset
    return seconds * _US_PER_S


def fast_stamps(values, min_length: int = 0, max_length: int | None = None) -> IsoStamps | None:
    """`IsoStamps` of a JSON timestamp column if the fast path can read it, else None."""
    if not isinstance(values, list):
        return None
    us = iso_microseconds(values, min_length, max_length)
    if us is None:
        return None
    out = IsoStamps(values)
    out.us = us
    return out
