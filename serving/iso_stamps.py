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

# layout width -> (has a time of day, offset kind): date, naive date-time, `Z`, `+HH:MM` / `-HH:MM`
_LAYOUTS = {10: (False, None), 19: (True, None), 20: (True, "Z"), 25: (True, "offset")}
_DIGITS_DATE = (0, 1, 2, 3, 5, 6, 8, 9)
_DIGITS_TIME = (11, 12, 14, 15, 17, 18)
_DIGITS_OFFSET = (20, 21, 23, 24)
_US_PER_S = 1_000_000


class IsoStamps(list):
    """A timestamp column read by the fast path: the strings as sent, plus `us` (int64
    microseconds since the epoch, UTC).  Only ever read through `us` and `len`."""

    us: np.ndarray


def _number(codes: np.ndarray, *cols: int) -> np.ndarray:
    out = np.zeros(codes.shape[0], dtype=np.int64)
    for c in cols:
        out = out * 10 + (codes[:, c] - 48)
    return out


def _layout_ok(codes: np.ndarray, width: int, timed: bool, offset: str | None) -> bool:
    """Digits where digits belong, the exact separators, nothing beyond `width` characters."""
    digits = list(_DIGITS_DATE) + (list(_DIGITS_TIME) if timed else [])
    seps = {4: "-", 7: "-"}
    if timed:
        seps.update({10: "T", 13: ":", 16: ":"})
    if offset == "Z":
        seps[19] = "Z"
    if offset == "offset":
        digits += list(_DIGITS_OFFSET)
        seps[22] = ":"
    d = codes[:, digits] - 48
    if d.min() < 0 or d.max() > 9 or codes[:, width].any():  # the extra column: longer strings
        return False
    for col, ch in seps.items():
        if not (codes[:, col] == ord(ch)).all():
            return False
    return offset != "offset" or bool(((codes[:, 19] == ord("+")) | (codes[:, 19] == ord("-"))).all())


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
    width = len(first)
    timed, offset = _LAYOUTS[width]
    # one column more than the layout: a longer string shows there instead of being truncated
    codes = np.array(values, dtype=f"<U{width + 1}").view(np.uint32).reshape(n, width + 1).astype(np.int64)
    if not _layout_ok(codes, width, timed, offset):
        return None
    year, month, day = _number(codes, 0, 1, 2, 3), _number(codes, 5, 6), _number(codes, 8, 9)
    if year.min() < 1 or month.min() < 1 or month.max() > 12 or day.min() < 1:
        return None
    months = (np.datetime64("0001-01", "M") + ((year - 1) * 12 + month - 1)).astype("datetime64[M]")
    first_day = months.astype("datetime64[D]")
    if (day > ((months + 1).astype("datetime64[D]") - first_day).astype(np.int64)).any():
        return None  # e.g. 2023-02-29: pydantic's error, not ours
    days = first_day.astype(np.int64) + (day - 1)  # days since 1970-01-01
    seconds = days * 86_400
    if timed:
        hour, minute, sec = _number(codes, 11, 12), _number(codes, 14, 15), _number(codes, 17, 18)
        if hour.max() > 23 or minute.max() > 59 or sec.max() > 59:
            return None
        seconds = seconds + hour * 3600 + minute * 60 + sec
    if offset == "offset":
        oh, om = _number(codes, 20, 21), _number(codes, 23, 24)
        if oh.max() > 23 or om.max() > 59:
            return None
        sign = np.where(codes[:, 19] == ord("-"), -1, 1)
        seconds = seconds - sign * (oh * 3600 + om * 60)  # local time minus its offset: UTC
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
