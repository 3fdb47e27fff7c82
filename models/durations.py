"""Durations (`30d`, `8h`, `90d`) instead of row counts.

Real data comes in daily, 8-hourly and hourly bars; a window given as a row count silently
means three different things.  Every window, horizon and lookback in configs is a duration
string, converted to a number of bars only here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated

import pandas as pd
from pydantic import AfterValidator

_UNITS = {"m": "min", "min": "min", "h": "h", "d": "D", "w": "W"}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(min|m|h|d|w)\s*$", re.IGNORECASE)


def parse_duration(text: str | pd.Timedelta) -> pd.Timedelta:
    """Parse `"30d"`, `"8h"`, `"2w"`, `"90min"` into a Timedelta; raise ValueError naming the text."""
    if isinstance(text, pd.Timedelta):
        return text
    return _parse_text(str(text))


@lru_cache(maxsize=512)
def _parse_text(text: str) -> pd.Timedelta:
    """Memoised: a config names a few dozen durations, and every feature computation asks for
    them again (~12 us each as a pandas Timedelta; Timedelta is immutable, so sharing is safe)."""
    m = _PATTERN.match(text)
    if not m:
        raise ValueError(
            f"invalid duration {text!r}: expected a number and a unit (min, h, d, w), e.g. '30d' or '8h'"
        )
    value, unit = float(m.group(1)), m.group(2).lower()
    td = pd.Timedelta(value, unit=_UNITS[unit])
    if td <= pd.Timedelta(0):
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return td


def check_duration(text: str) -> str:
    """`text` unchanged if it parses as a duration; else the ValueError of `parse_duration`."""
    parse_duration(text)
    return text


def parse_duration_or_zero(text: str) -> pd.Timedelta:
    """Like `parse_duration`, but `"0d"`/`"0"` (any unit) mean an empty period: Timedelta(0)."""
    if str(text).strip().rstrip("dhmwinDHMWIN") in ("0", "0.0", ""):
        return pd.Timedelta(0)
    return parse_duration(text)


def check_duration_or_zero(text: str) -> str:
    parse_duration_or_zero(text)
    return text


# The one duration validator of every config class (pydantic names the field in its error):
# `window: Duration = "90d"`, `step: Duration | None = None`, `windows: tuple[Duration, ...]`.
Duration = Annotated[str, AfterValidator(check_duration)]
ZeroOrDuration = Annotated[str, AfterValidator(check_duration_or_zero)]  # "0d" allowed: none


def to_periods(duration: str | pd.Timedelta, freq: pd.Timedelta, minimum: int = 1) -> int:
    """Number of bars of length `freq` in `duration` (rounded, at least `minimum`)."""
    td = parse_duration(duration)
    return max(minimum, int(round(td / freq)))


def format_freq(freq: pd.Timedelta) -> str:
    """Short label of a bar frequency: `1d`, `8h`, `1h`, `15min`."""
    seconds = int(freq.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}min"
