"""Readers for market-data files: generic CSV/parquet, Binance public-data klines, ccxt OHLCV rows.

Every reader ends in the same shape: a frame indexed by tz-aware UTC timestamps (ns) with
canonical columns `close` [+ `volume`, `funding_rate`, `open_interest`], validated by
`adaptive_beta.models.data.validation`.  Column names are matched through aliases (`Date`, `open_time`,
`Adj Close`, `fundingRate`, ...) after lower-casing and removing punctuation, so files from
Yahoo, FRED, CBOE, Binance and pandas exports load without per-file code.

Timestamps may be ISO strings or dates, datetime columns (naive = UTC), a parquet datetime
index, or epoch numbers; the unit of an epoch number is taken from its magnitude per value
(seconds < 1e11 <= milliseconds < 1e14 <= microseconds < 1e17 <= nanoseconds), which also reads
Binance files that switched from milliseconds to microseconds (spot, from 2025).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.data.validation import Problems, check_timestamps, check_values

BINANCE_KLINE_COLUMNS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_asset_volume",
    "count",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
]
CCXT_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]

# canonical column -> aliases (normalised: lower case, letters and digits only), in order of preference
ALIASES: dict[str, tuple[str, ...]] = {
    # calctime / createtime: Binance public-data funding and metrics files; fundingtime: its REST API
    "timestamp": (
        "timestamp",
        "datetime",
        "date",
        "time",
        "opentime",
        "ts",
        "index",
        "calctime",
        "createtime",
        "fundingtime",
    ),
    "close": ("close", "adjclose", "closeprice", "price", "value", "last"),
    "volume": ("volume", "vol"),
    "funding_rate": ("fundingrate", "funding", "lastfundingrate"),
    "open_interest": ("openinterest", "sumopeninterest", "oi"),
    "symbol": ("symbol", "ticker", "asset", "pair", "instrument"),
}
SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz")


def normalise_name(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def find_column(columns: list[str], canonical: str, explicit: str | None = None) -> str | None:
    """The file's column for `canonical` (or the explicitly named one, matched exactly then loosely)."""
    if explicit is not None:
        if explicit in columns:
            return explicit
        loose = {normalise_name(c): c for c in columns}
        return loose.get(normalise_name(explicit))
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(normalise_name(c), c)
    for alias in ALIASES[canonical]:
        if alias in by_norm:
            return by_norm[alias]
    return None


@dataclass
class Table:
    """One parsed file (or one symbol of a long file): canonical columns, UTC index, source rows."""

    frame: pd.DataFrame  # index: tz-aware UTC ns timestamps in file order; canonical columns
    rows: np.ndarray  # 1-based data row in the source file for each frame row
    file: str
    date_only: bool  # every timestamp is a midnight and bars are >= 1 day apart (a date column)
    broken: bool = False  # timestamp problems were recorded; values are still checked, then dropped
    source_columns: dict[str, str] = field(default_factory=dict)  # canonical -> column name in the file

    def column(self, canonical: str) -> str:
        """The file's own name for a canonical column (what error messages show)."""
        return self.source_columns.get(canonical, canonical)


def parse_timestamps(values: pd.Series | pd.Index, tz: str | None = None) -> pd.DatetimeIndex:
    """Parse any supported timestamp column into a UTC ns DatetimeIndex (NaT where unparseable).

    Naive values (no offset) are wall-clock time in `tz` (default UTC); values with an offset,
    tz-aware columns and epoch numbers are absolute and only converted.
    """
    local = _parse_local(pd.Series(values))
    if local.tz is None:
        local = local.tz_localize(tz or "UTC", ambiguous="NaT", nonexistent="NaT")
    return local.tz_convert("UTC").as_unit("ns")


def _parse_local(s: pd.Series) -> pd.DatetimeIndex:
    """Naive DatetimeIndex for naive inputs (dates, strings without offset), UTC-aware otherwise."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(s)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return pd.DatetimeIndex(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.DatetimeIndex(np.full(len(s), np.datetime64("NaT", "ns")))
    numeric = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_numeric_dtype(s.dtype) else s
    n_numeric = int(pd.Series(numeric).notna().sum())
    if n_numeric and n_numeric == int(s.notna().sum()):
        x = np.asarray(numeric, dtype=float)
        if _looks_like_yyyymmdd(x):
            text = pd.Series(x).map(lambda v: f"{v:.0f}" if np.isfinite(v) else None)
            return pd.DatetimeIndex(pd.to_datetime(text, format="%Y%m%d", errors="coerce"))
        return _from_epoch(x)
    text = s.astype("string").str.strip()
    out = _to_datetime(text, "ISO8601")
    if out.isna().sum() > text.isna().sum():
        mixed = _to_datetime(text, "mixed")
        if not out.notna().any():
            out = mixed
        elif (mixed.tz is None) == (out.tz is None):
            out = pd.DatetimeIndex(pd.Series(out).fillna(pd.Series(mixed)))
    return out


def _to_datetime(text: pd.Series, fmt: str) -> pd.DatetimeIndex:
    """Naive values stay naive (they may be local time); mixed offsets are converted to UTC."""
    try:
        return pd.DatetimeIndex(pd.to_datetime(text, errors="coerce", format=fmt))
    except (ValueError, TypeError):
        return pd.DatetimeIndex(pd.to_datetime(text, utc=True, errors="coerce", format=fmt))


def to_dates(index: pd.DatetimeIndex, tz: str | None) -> pd.DatetimeIndex:
    """Each timestamp's calendar date in `tz` (default UTC), stamped 00:00 UTC: date-only bars."""
    local = index.tz_convert(tz or "UTC").tz_localize(None).normalize()
    return local.tz_localize("UTC").as_unit("ns")


def _looks_like_yyyymmdd(x: np.ndarray) -> bool:
    """Integers like 20200101 (dates written as numbers), not epoch seconds of August 1970."""
    v = x[np.isfinite(x)]
    return bool(len(v)) and bool(np.all((v == np.round(v)) & (v >= 19000101) & (v <= 21001231)))


def _from_epoch(x: np.ndarray) -> pd.DatetimeIndex:
    ns = np.full(len(x), np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    finite = np.isfinite(x) & (x >= 0)
    mag = np.abs(x)
    scale = np.where(mag < 1e11, 1e9, np.where(mag < 1e14, 1e6, np.where(mag < 1e17, 1e3, 1.0)))
    ok = finite & (mag * scale < 9.2e18)
    ns[ok] = np.round(x[ok] * scale[ok]).astype(np.int64)
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def read_raw(path: Path, fmt: str = "auto") -> pd.DataFrame:
    """The file as a raw frame (strings/numbers as stored); header-less kline CSVs get their names.

    Raises DataError for an unreadable or empty file.
    """
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
            if isinstance(df.index, pd.DatetimeIndex) or df.index.name is not None:
                df = df.reset_index(names=df.index.name or "timestamp")
        elif name.endswith((".csv", ".csv.gz", ".txt")):
            df = _read_csv(path, fmt)
        else:
            raise DataError("unsupported file type; expected .csv or .parquet", file=str(path))
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError("file is empty (no header and no data rows)", file=str(path)) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read file: {exc}", file=str(path)) from None
    if len(df) == 0:
        raise DataError("file has no data rows", file=str(path))
    return df


def _read_csv(path: Path, fmt: str) -> pd.DataFrame:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline().strip()
    if not first:
        raise pd.errors.EmptyDataError("empty")
    cells = [c.strip() for c in first.split(",")]
    headerless = _is_number(cells[0])
    if not headerless:
        df = pd.read_csv(path)
        if fmt == "binance" and len(df.columns) == 12 and find_column(list(df.columns), "timestamp") is None:
            df.columns = BINANCE_KLINE_COLUMNS
        return df
    if len(cells) == 12 or fmt == "binance":
        if len(cells) != 12:
            raise DataError(
                f"Binance kline file must have 12 columns, found {len(cells)}", file=str(path), row=1
            )
        return pd.read_csv(path, header=None, names=BINANCE_KLINE_COLUMNS)
    if len(cells) == 6:
        return pd.read_csv(path, header=None, names=CCXT_COLUMNS)
    raise DataError(
        f"file has no header row and {len(cells)} columns; add a header (timestamp, close, ...)",
        file=str(path),
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class TimeOptions:
    """How to read a file's time column (the manifest keys of the same names)."""

    timestamp_column: str | None = None  # default: the first usual name (timestamp, date, ...)
    timezone: str | None = None  # zone of naive timestamps; default UTC
    date_only: bool = False  # bars are dates: local date -> 00:00 UTC


def to_tables(
    raw: pd.DataFrame,
    file: str,
    problems: Problems,
    *,
    value_columns: tuple[str, ...] = ("close", "volume", "funding_rate", "open_interest"),
    required: str = "close",
    column: str | None = None,
    time: TimeOptions = TimeOptions(),
    layout: str = "auto",
) -> dict[str | None, Table] | None:
    """Canonicalise a raw frame: find the timestamp and value columns, parse timestamps.

    Returns {None: table} for a single-series file, or {symbol: table} for a long file (a
    symbol column holding several symbols) or a wide file (one close column per symbol; only
    for `layout` "wide", or "auto" when the header has no close column but several others);
    None (with problems recorded) when unusable.
    """
    cols = [str(c) for c in raw.columns]
    raw = raw.set_axis(cols, axis=1)
    ts_col = find_column(cols, "timestamp", time.timestamp_column)
    if ts_col is None:
        want = [time.timestamp_column] if time.timestamp_column else list(ALIASES["timestamp"])
        problems.add(
            f"missing timestamp column; expected one of {want}, found {cols}"
            + ("" if time.timestamp_column else "; name it with timestamp_column in the manifest"),
            file,
            column=time.timestamp_column or "timestamp",
        )
        return None
    others = [c for c in cols if c != ts_col]
    if layout == "wide" or (layout == "auto" and _looks_wide(others, column, required)):
        return _wide_tables(raw, ts_col, others, file, problems, time)
    picked: dict[str, str] = {}
    for canon in value_columns:
        explicit = column if canon == required else None
        c = find_column(others, canon, explicit)
        if c is not None:
            picked[canon] = c
    if required not in picked:
        want = [column] if column else list(ALIASES[required])
        problems.add(
            f"missing {required} column; expected one of {want}, found {cols}",
            file,
            column=column or required,
        )
        return None
    frame = pd.DataFrame({canon: raw[c].rename(canon) for canon, c in picked.items()})
    frame.columns = list(picked)
    sym_col = find_column([c for c in others if c not in picked.values()], "symbol")
    if layout == "long" and sym_col is None:
        problems.add(
            f"long layout needs a symbol column; expected one of {list(ALIASES['symbol'])}, found {cols}",
            file,
            column="symbol",
        )
        return None
    split = sym_col is not None and (layout == "long" or raw[sym_col].nunique(dropna=True) > 1)
    labels = raw[sym_col].astype("string").to_numpy() if split else None
    return _split_tables(frame, raw[ts_col], labels, file, ts_col, problems, time, dict(picked))


def _looks_wide(others: list[str], column: str | None, required: str) -> bool:
    """No close (or symbol) column but several value columns: one close column per symbol."""
    if column is not None or len(others) < 2:
        return False
    return find_column(others, required) is None and find_column(others, "symbol") is None


def _wide_tables(
    raw: pd.DataFrame,
    ts_col: str,
    others: list[str],
    file: str,
    problems: Problems,
    time: TimeOptions,
) -> dict[str | None, Table] | None:
    """One table per value column of a wide file, the column name being the symbol."""
    if not others:
        problems.add("wide file has no symbol columns besides the timestamp", file, column=ts_col)
        return None
    index, rows, bad = _index(raw[ts_col], file, ts_col, problems, time)
    ordered = check_timestamps(index, rows, file, ts_col, problems)
    out: dict[str | None, Table] = {}
    for c in others:
        frame = pd.DataFrame({"close": raw[c].to_numpy()[~bad]}, index=index)
        out[c] = Table(
            frame=frame,
            rows=rows,
            file=f"{file} [column {c}]",
            date_only=time.date_only or _is_date_only(index),
            broken=bool(bad.any()) or not ordered,
            source_columns={"close": c},
        )
    return out


def _index(
    values: pd.Series, file: str, ts_col: str, problems: Problems, time: TimeOptions
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """(parsed UTC index of the good rows, their 1-based source rows, mask of unparseable rows)."""
    rows = np.arange(1, len(values) + 1, dtype=np.int64)
    index = parse_timestamps(values, time.timezone)
    bad = np.asarray(index.isna())
    if bad.any():
        what = "unparseable timestamp"
        if time.timezone:
            what += f" (or a wall-clock time that does not exist or is ambiguous in {time.timezone})"
        problems.add_rows(what, file, rows[bad], ts_col)
    index, rows = index[~bad], rows[~bad]
    if time.date_only:
        index = to_dates(index, time.timezone)
    index.name = "timestamp"
    return index, rows, bad


def _split_tables(
    frame: pd.DataFrame,
    stamps: pd.Series,
    labels: np.ndarray | None,
    file: str,
    ts_col: str,
    problems: Problems,
    time: TimeOptions,
    source_columns: dict[str, str],
) -> dict[str | None, Table]:
    """Parse the index, then one table per symbol label (or one table when `labels` is None)."""
    index, rows, bad = _index(stamps, file, ts_col, problems, time)
    frame = frame.loc[~bad]
    frame.index = index
    groups: dict[str | None, np.ndarray] = {}
    if labels is None:
        groups[None] = np.ones(len(frame), dtype=bool)
    else:
        kept = pd.Series(labels[~bad], dtype="string")
        empty = kept.isna().to_numpy() | (kept.str.strip() == "").fillna(True).to_numpy()
        if empty.any():
            problems.add_rows("missing symbol", file, rows[empty], "symbol")
        for sym in pd.unique(kept[~empty]):
            groups[str(sym)] = kept.eq(sym).fillna(False).to_numpy(dtype=bool)
    out: dict[str | None, Table] = {}
    for key, m in groups.items():
        f, r = frame.loc[m], rows[m]
        label = file if key is None else f"{file} [symbol {key}]"
        ordered = check_timestamps(f.index, r, label, ts_col, problems)
        out[key] = Table(
            frame=f,
            rows=r,
            file=label,
            date_only=time.date_only or _is_date_only(f.index),
            broken=bool(bad.any()) or not ordered,
            source_columns=dict(source_columns),
        )
    return out


def _is_date_only(index: pd.DatetimeIndex) -> bool:
    if len(index) == 0:
        return False
    midnight = bool((index.asi8 % 86_400_000_000_000 == 0).all())
    if not midnight:
        return False
    if len(index) < 2:
        return True
    return bool(np.median(np.diff(index.asi8)) >= 86_400e9)


def asset_frame(
    table: Table, problems: Problems, drop_missing: bool = False
) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Validate an asset table: prices finite and > 0, volume/open interest >= 0, funding finite.

    `drop_missing` drops rows whose close is empty (e.g. trailing rows of a file that holds
    only mark prices there) instead of reporting them.
    """
    f, rows = table.frame, table.rows
    if drop_missing:
        keep = f["close"].notna().to_numpy()
        f, rows = f.loc[keep], rows[keep]
        if len(f) == 0:
            problems.add("no rows with a close price", table.file, column="close")
            return None
    ok = check_values(f["close"], rows, table.file, problems, positive=True, column=table.column("close"))
    for name, non_negative in (("volume", True), ("open_interest", True), ("funding_rate", False)):
        if name in f:
            ok &= check_values(
                f[name],
                rows,
                table.file,
                problems,
                non_negative=non_negative,
                allow_missing=True,
                column=table.column(name),
            )
    if not ok or table.broken:
        return None
    return f.apply(pd.to_numeric, errors="coerce").astype(float), rows


def series_frame(
    table: Table, name: str, problems: Problems, non_negative: bool = False, drop_missing: bool = False
) -> tuple[pd.Series, np.ndarray] | None:
    """Validate a single-value table (factor, funding prints, open interest): finite numbers.

    `drop_missing` drops empty and non-numeric cells (FRED writes "." for a holiday) instead of
    reporting them; infinities are still errors.  Returns (values, source rows).
    """
    s, rows = table.frame[name], table.rows
    if drop_missing:
        keep = pd.to_numeric(s, errors="coerce").notna().to_numpy()
        s, rows = s.loc[keep], rows[keep]
    ok = check_values(s, rows, table.file, problems, non_negative=non_negative, column=table.column(name))
    if not ok or table.broken:
        return None
    return pd.to_numeric(s).astype(float), rows


def read_tables(
    path: str | Path, problems: Problems, *, fmt: str = "auto", **kwargs
) -> dict[str | None, Table] | None:
    """Read and canonicalise one file, recording problems instead of raising."""
    path = Path(path)
    try:
        raw = read_raw(path, fmt)
    except DataError as exc:
        problems.errors.append(exc)
        return None
    return to_tables(raw, str(path), problems, **kwargs)


def read_prices(
    path: str | Path, *, fmt: str = "auto", column: str | None = None, drop_missing: bool = False
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Read a price file into a validated frame (or {symbol: frame} for a long file); raise DataError."""
    problems = Problems()
    tables = read_tables(path, problems, fmt=fmt, column=column)
    out: dict[str | None, pd.DataFrame] = {}
    for key, table in (tables or {}).items():
        checked = asset_frame(table, problems, drop_missing=drop_missing)
        if checked is not None:
            out[key] = checked[0]
    problems.raise_if_any()
    if None in out:
        return out[None]
    return {str(k): v for k, v in out.items()}


def read_binance_klines(path: str | Path) -> pd.DataFrame:
    """A data.binance.vision kline CSV (12 columns, with or without header; open_time in ms or us)."""
    result = read_prices(path, fmt="binance")
    assert isinstance(result, pd.DataFrame)
    return result


def from_ccxt(rows: list[list[float]] | np.ndarray, symbol: str) -> pd.DataFrame:
    """ccxt `fetch_ohlcv` rows `[[ms, open, high, low, close, volume], ...]` as a validated frame."""
    label = f"ccxt {symbol}"
    arr = list(rows)
    if not arr:
        raise DataError("no OHLCV rows", file=label)
    widths = {len(r) for r in arr}
    if widths != {6}:
        raise DataError(
            f"ccxt OHLCV rows must have 6 fields [ms, o, h, l, c, v], found widths {sorted(widths)}",
            file=label,
        )
    raw = pd.DataFrame(arr, columns=CCXT_COLUMNS)
    problems = Problems()
    tables = to_tables(raw, label, problems)
    checked = asset_frame(tables[None], problems) if tables else None
    problems.raise_if_any()
    assert checked is not None
    return checked[0]
