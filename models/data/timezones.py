"""Recognise bars stamped in a local time zone, so an off-grid error can say what fixes it.

Daily bars a vendor stamped at New York midnight arrive as 04:00/05:00 UTC (summer/winter):
every bar is off the UTC day grid by the same few hours, changing by one hour at the DST
dates.  Rather than one "not on the grid" error per row, the loader reports the pattern once,
names the zones whose local midnight (or whose offset) matches every bar, and the manifest keys
(`timezone`, `date_only`) that read the file correctly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Zones tried, in order, when naming the zone of a shifted file (the markets quants load most).
COMMON_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "Asia/Seoul",
    "Asia/Tokyo",
    "Australia/Sydney",
)
HOUR_NS = 3_600_000_000_000


def matching_zones(index: pd.DatetimeIndex, freq: pd.Timedelta) -> list[str]:
    """Zones in which every timestamp sits on the `freq` grid of local wall-clock time."""
    out = []
    for zone in COMMON_ZONES:
        local = index.tz_convert(zone).tz_localize(None).as_unit("ns")
        if bool((local.asi8 % freq.value == 0).all()):
            out.append(zone)
    return out


def shift_hint(index: pd.DatetimeIndex, freq: pd.Timedelta) -> str | None:
    """A sentence saying the bars look shifted by a time zone and which manifest keys fix it.

    None unless every bar is off the grid by a whole number of hours (or half hours) and at most
    two distinct offsets occur (standard and daylight time) - the signature of a zone shift.
    """
    if len(index) == 0 or freq > pd.Timedelta("1D"):
        return None
    index = pd.DatetimeIndex(index).as_unit("ns")
    offsets = np.unique(index.asi8 % freq.value)
    if 0 in offsets or len(offsets) > 2 or np.any(offsets % (HOUR_NS // 2)):
        return None
    if len(offsets) == 2 and offsets[1] - offsets[0] != HOUR_NS:
        return None
    hours = " or ".join(f"{pd.Timedelta(int(o), unit='ns')}"[-8:-3] for o in offsets)
    daily = freq == pd.Timedelta("1D")
    zones = matching_zones(index, freq)
    where = f"local midnight in {' / '.join(zones[:3])}" if zones and daily else "a local time zone"
    if zones and not daily:
        where = f"the {freq} grid of {' / '.join(zones[:3])}"
    fix = f'timezone = "{zones[0] if zones else "<zone of the file>"}"'
    if daily:
        fix += " and date_only = true"
    return (
        f"every bar is stamped at {hours} UTC, off the {_label(freq)} UTC grid: the timestamps look "
        f"shifted by a time zone ({where}); set {fix} in the manifest "
        "(dataset.toml in a dataset folder) to read them as UTC bars"
    )


def _label(freq: pd.Timedelta) -> str:
    from adaptive_beta.models.durations import format_freq

    return format_freq(freq)
