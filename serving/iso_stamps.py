"""ISO-8601 timestamp columns -> int64 microseconds in one vectorised pass, for the columnar form.

Why: a stateless request carries ~5,000 timestamps.  Parsed by pydantic into `datetime`s and
converted one by one (`datetime.timestamp()` calls the tzinfo of every stamp), they cost ~2 ms per
661 aware stamps, more than the rest of the request's validation together.  The strings of a
column almost always share one layout (`2025-01-02T00:00:00+00:00`, `...Z`, or a date
`2025-01-02` for a daily factor), so the column is read as one fixed-width numpy array and its
fields are computed with integer arithmetic and numpy's calendar (`datetime64`).

The fast path accepts only what pydantic accepts and reads it the same way (the same instant, to
the microsecond; naive stamps as UTC, as everywhere in the service); any other column (mixed
layouts, fractional seconds, lower-case separators, numbers, an impossible date such as
2023-02-29, a length outside the field's limits) returns None and pydantic validates it as before,
with the same errors.  `tests/serving/test_iso_stamps.py` checks both halves against pydantic.
"""

from __future__ import annotations

import numpy as np

# layout width -> character classes: d a digit, s the offset's sign, anything else itself
_PATTERNS = {
    10: "dddd-dd-dd",  # a date: midnight, naive (UTC)
    19: "dddd-dd-ddTdd:dd:dd",  # naive (UTC)
    20: "dddd-dd-ddTdd:dd:ddZ",
    25: "dddd-dd-ddTdd:dd:ddsdd:dd",  # s: the offset sign, + or -
}
# fields read from the digits: (name, first character, width, lowest, highest allowed)
_FIELDS = (
    ("year", 0, 4, 1, 9999),
    ("month", 5, 2, 1, 12),
    ("day", 8, 2, 1, 31),
    ("hour", 11, 2, 0, 23),
    ("minute", 14, 2, 0, 59),
    ("second", 17, 2, 0, 59),
    ("offset_hour", 20, 2, 0, 23),
    ("offset_minute", 23, 2, 0, 59),
)
_US_PER_S = 1_000_000
_MINUS, _COMMA = ord("-"), ord(",")


class IsoStamps(list):
    """A timestamp column read by the fast path: the strings as sent, plus `us` (int64
    microseconds since the epoch, UTC).  Only ever read through `us` and `len`."""

    us: np.ndarray


class _Layout:
    """Per layout, built once: the allowed code range of every character (plus one column that
    must be empty, so a longer string is refused, not truncated) and the matrix that turns the
    characters into the fields' numbers in one product."""

    def __init__(self, pattern: str):
        width = len(pattern)
        self.width = width
        self.offset = "s" in pattern
        self.lo = np.zeros(width + 1, dtype=np.uint32)
        self.span = np.zeros(width + 1, dtype=np.uint32)  # allowed: lo <= code <= lo + span
        for k, ch in enumerate(pattern):
            lo, hi = {"d": ("0", "9"), "s": ("+", "-")}.get(ch, (ch, ch))
            self.lo[k], self.span[k] = ord(lo), ord(hi) - ord(lo)
        fields = [f for f in _FIELDS if f[1] + f[2] <= width]
        self.weights = np.zeros((len(fields), width + 1))
        for j, (_, first, n, _, _) in enumerate(fields):
            for k in range(n):
                self.weights[j, first + k] = 10 ** (n - 1 - k)
        self.bias = 48 * self.weights.sum(axis=1, keepdims=True)  # the code of "0" at every digit
        self.lowest = np.array([f[3] for f in fields])[:, None]
        self.highest = np.array([f[4] for f in fields])[:, None]

    def fields(self, codes: np.ndarray) -> np.ndarray | None:
        """[fields, n] int64 (year, month, day, then hour... where the layout has them), or None."""
        if not ((codes - self.lo) <= self.span).all():  # unsigned: below `lo` wraps to a huge value
            return None
        if self.offset and (codes[:, 19] == _COMMA).any():  # between "+" and "-" in the code table
            return None
        f = np.rint(self.weights @ codes.T - self.bias).astype(np.int64)  # exact: integers < 2^53
        if (f < self.lowest).any() or (f > self.highest).any():
            return None
        return f


_LAYOUTS = {width: _Layout(pattern) for width, pattern in _PATTERNS.items()}


def iso_microseconds(values: list, min_length: int = 0, max_length: int | None = None) -> np.ndarray | None:
    """int64 microseconds since the epoch (UTC) of a list of ISO strings of one layout, or None.

    None means "not for the fast path": pydantic then validates the column as before.
    """
    n = len(values)
    if n == 0 or n < min_length or (max_length is not None and n > max_length):
        return None
    first = values[0]
    if type(first) is not str or len(first) not in _LAYOUTS:
        return None
    if set(map(type, values)) != {str}:  # numbers (unix times) etc.: pydantic's rules
        return None
    layout = _LAYOUTS[len(first)]
    codes = np.array(values, dtype=f"<U{layout.width + 1}").view(np.uint32).reshape(n, layout.width + 1)
    f = layout.fields(codes)
    if f is None:
        return None
    months = np.datetime64("0001-01", "M") + ((f[0] - 1) * 12 + f[1] - 1)
    first_day = months.astype("datetime64[D]")
    if (f[2] > ((months + 1).astype("datetime64[D]") - first_day).astype(np.int64)).any():
        return None  # e.g. 2023-02-29: pydantic's error, not ours
    seconds = (first_day.astype(np.int64) + (f[2] - 1)) * 86_400  # days since 1970-01-01
    if len(f) > 3:
        seconds += f[3] * 3600 + f[4] * 60 + f[5]
    if layout.offset:  # local time minus its offset: UTC
        sign = np.where(codes[:, 19] == _MINUS, -1, 1)
        seconds -= sign * (f[6] * 3600 + f[7] * 60)
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
