"""The market store's data types and errors: a series' bars in, counts and restatements out.

Kept apart from the database code so the service, the bulk loader and the tests share one
vocabulary without importing sqlite3 or SQLAlchemy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import DataError

VALUE_COLUMNS = ("close", "volume", "funding_rate", "open_interest")  # an asset's stored columns
KINDS = ("asset", "series")  # an asset (perp, all columns) or an input series (benchmark/factor: close)


def freq_label(freq_us: int | None) -> str:
    """`8h bars` or `irregular observations` (a series' bar length, for messages)."""
    if freq_us is None:
        return "irregular observations"
    from adaptive_beta.models.durations import format_freq

    return f"{format_freq(pd.Timedelta(int(freq_us), unit='us'))} bars"


def iso(us: int) -> str:
    """int64 microseconds since the epoch -> UTC ISO 8601 (how errors and reports name a bar)."""
    return pd.Timestamp(int(us), unit="us", tz="UTC").isoformat()


@dataclass(frozen=True)
class SeriesBars:
    """Bars of one series to append, as numpy columns (strictly increasing stamps).

    `freq_us` is the series' bar length: consecutive bars must be exactly that far apart (a
    gap is refused).  None for irregular observations (a factor's daily closes skip weekends
    and holidays): only their order is checked.
    """

    name: str
    kind: str  # "asset" | "series"
    us: np.ndarray  # int64 microseconds since the epoch, UTC, strictly increasing
    columns: dict[
        str, np.ndarray
    ]  # "close" and, for an asset, volume/funding_rate/open_interest (NaN absent)
    freq_us: int | None
    positive: bool = True  # levels must stay > 0 (everything but interest rates): the jump check applies

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"series {self.name}: kind {self.kind!r} is not one of {KINDS}")

    def row(self, i: int) -> dict[str, float | None]:
        """Bar i as stored: every column of its kind, None where absent (NaN)."""
        names = VALUE_COLUMNS if self.kind == "asset" else ("close",)
        out: dict[str, float | None] = {}
        for c in names:
            col = self.columns.get(c)
            v = None if col is None else float(col[i])
            out[c] = None if v is None or math.isnan(v) else v
        return out


@dataclass
class SeriesCounts:
    """What one append did to one series."""

    appended: int = 0
    duplicate: int = 0
    restated: int = 0
    last_us: int | None = None  # the series' last stored bar after the append

    def as_dict(self) -> dict:
        return {
            "appended": self.appended,
            "duplicate": self.duplicate,
            "restated": self.restated,
            "last": iso(self.last_us) if self.last_us is not None else None,
        }


@dataclass(frozen=True)
class Restatement:
    """A stored bar replaced by an explicit restatement: kept in the audit log, old and new."""

    series: str
    ts_us: int
    old: dict[str, float | None]
    new: dict[str, float | None]

    def as_dict(self) -> dict:
        return {"series": self.series, "timestamp": iso(self.ts_us), "old": self.old, "new": self.new}


@dataclass
class AppendResult:
    counts: dict[str, SeriesCounts] = field(default_factory=dict)
    restatements: list[Restatement] = field(default_factory=list)


@dataclass(frozen=True)
class SeriesInfo:
    """A stored series: what `abeta store info` prints."""

    name: str
    kind: str
    freq_us: int | None
    n_bars: int
    first_us: int
    last_us: int


class MarketDataError(DataError):
    """Bars the store refuses; nothing of the append is stored.  `status` is the HTTP answer:
    409 when the bars contradict what is stored (a different value, out of order, a gap, another
    kind or frequency), 422 when they are implausible next to it (a price jump)."""

    def __init__(self, message: str, series: str, ts_us: int | None = None, status: int = 409):
        super().__init__(message, column=series)
        self.series = series
        self.ts_us = ts_us
        self.status = status


def same_value(a: float | None, b: float | None) -> bool:
    """Stored equality: both absent, or the same float64 exactly."""
    if a is None or b is None:
        return a is None and b is None
    return a == b
