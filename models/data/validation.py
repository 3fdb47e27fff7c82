"""Checks on one parsed market-data table, collecting every problem instead of stopping at the first.

A data file is judged once, here, so that a user fixing a broken dataset sees all of its
problems in one `abeta data validate` run.  Each problem is a `DataError` naming the file, the
1-based data row (the first row after a header is row 1; for header-less files and parquet the
first row is row 1) and the column.  To keep the report readable, at most `MAX_ROWS_PER_CHECK`
rows are listed per check and file, followed by one line counting the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import DataError

MAX_ROWS_PER_CHECK = 5


@dataclass
class Problems:
    """An ordered collection of `DataError`s from any number of files."""

    errors: list[DataError] = field(default_factory=list)

    def add(
        self, message: str, file: str | None = None, row: int | None = None, column: str | None = None
    ) -> None:
        self.errors.append(DataError(message, file=file, row=row, column=column))

    def add_rows(self, message: str, file: str, rows: np.ndarray, column: str | None = None) -> None:
        """One error per offending row (at most MAX_ROWS_PER_CHECK), then a count of the rest."""
        rows = np.asarray(rows, dtype=np.int64)
        for r in rows[:MAX_ROWS_PER_CHECK]:
            self.add(message, file=file, row=int(r), column=column)
        if len(rows) > MAX_ROWS_PER_CHECK:
            self.add(
                f"{message} (and {len(rows) - MAX_ROWS_PER_CHECK} more rows like this)",
                file=file,
                column=column,
            )

    def __len__(self) -> int:
        return len(self.errors)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self) -> None:
        """Raise the first error, or an aggregate naming the first one and counting the others."""
        if not self.errors:
            return
        if len(self.errors) == 1:
            raise self.errors[0]
        raise DatasetErrors(self.errors)


class DatasetErrors(DataError):
    """Several data problems at once; file/row/column are those of the first, `.errors` has all."""

    def __init__(self, errors: list[DataError]):
        first = errors[0]
        self.errors = list(errors)
        more = len(errors) - 1
        super().__init__(
            f"{first.message} (and {more} more problem{'s' if more > 1 else ''}; "
            "`abeta data validate` lists them all)",
            file=first.file,
            row=first.row,
            column=first.column,
        )


def check_timestamps(
    index: pd.DatetimeIndex, rows: np.ndarray, file: str, column: str, problems: Problems
) -> bool:
    """Timestamps must be unique and increasing; returns True if they are."""
    ok = True
    values = index.asi8
    if len(values) > 1:
        diff = np.diff(values)
        dup = np.flatnonzero(diff == 0) + 1
        back = np.flatnonzero(diff < 0) + 1
        if len(dup):
            problems.add_rows("duplicate timestamp (same as the previous row)", file, rows[dup], column)
            ok = False
        if len(back):
            problems.add_rows(
                "timestamps are not sorted (earlier than the previous row)", file, rows[back], column
            )
            ok = False
    return ok


def check_values(
    values: pd.Series,
    rows: np.ndarray,
    file: str,
    problems: Problems,
    *,
    positive: bool = False,
    non_negative: bool = False,
    allow_missing: bool = False,
    column: str | None = None,
) -> bool:
    """Numbers must be finite (NaN allowed only if `allow_missing`), and > 0 or >= 0 when asked.

    `column` is the name shown in errors (the file's own column name); default: the series name.
    """
    column = column or str(values.name)
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    raw_missing = values.isna().to_numpy()
    ok = True
    unparsed = np.isnan(x) & ~raw_missing
    if unparsed.any():
        problems.add_rows("value is not a number", file, rows[unparsed], column)
        ok = False
    bad = ~np.isfinite(x) & ~unparsed
    if allow_missing:
        bad &= ~raw_missing
    if bad.any():
        problems.add_rows("value is missing or not finite", file, rows[bad], column)
        ok = False
    finite = np.isfinite(x)
    if positive:
        nonpos = finite & (x <= 0)
        if nonpos.any():
            problems.add_rows("price must be strictly positive", file, rows[nonpos], column)
            ok = False
    elif non_negative:
        neg = finite & (x < 0)
        if neg.any():
            problems.add_rows("value must not be negative", file, rows[neg], column)
            ok = False
    return ok


def check_grid(
    index: pd.DatetimeIndex, rows: np.ndarray, freq: pd.Timedelta, file: str, problems: Problems
) -> bool:
    """Bar open times must sit on the dataset's grid (multiples of `freq` from the epoch, for freq <= 1 day)."""
    if freq > pd.Timedelta("1D") or len(index) == 0:
        return True
    off = np.flatnonzero(index.asi8 % freq.value != 0)
    if len(off):
        from adaptive_beta.models.durations import format_freq

        problems.add_rows(
            f"timestamp is not on the {format_freq(freq)} bar grid", file, rows[off], "timestamp"
        )
        return False
    return True
