"""The market-data store: bars per (series, timestamp) in SQLite or PostgreSQL.

    store = open_market_store("audit/market.db")      # or postgresql://...
    result = store.append([SeriesBars(...)], restate=False)
    window = store.window(["SOLUSDT"], ["BTCUSDT", "SPY"], last=661)   # models/market/window.py

Why a database and not memory: a restart, or a second replica of the service, must see the same
state, so the store lives in the same kind of database as the audit log (models/database.py).

Rules of `append` (one transaction under a write lock, all or nothing):
* a bar already stored with the same values is a duplicate (counted, nothing written);
* a different value for a stored bar is refused (`MarketDataError`, 409) unless `restate=True`,
  which replaces it and reports the old and new values (the service audits them before the
  transaction commits: if the audit log cannot take them, nothing is restated);
* a new bar older than the series' last bar is out of order (409); a new bar more than one
  bar length after the previous one is a gap (409); both name the series and the timestamp;
* a series keeps its kind (asset or input series) and bar length from its first append.

Tables: `market_series` (one row per series: kind, bar length, count, first and last bar) and
`market_bars` (series, ts_us, close, volume, funding_rate, open_interest), timestamps as int64
microseconds since the epoch, UTC.  Unlike the audit log the bars table is not append-only:
restatements update it, and the audit log keeps the history of those.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_beta.models.database import close_connections, postgres_engine, sqlite_connect, sqlite_file
from adaptive_beta.models.market.bars import (
    VALUE_COLUMNS,
    AppendResult,
    MarketDataError,
    Restatement,
    SeriesBars,
    SeriesCounts,
    SeriesInfo,
    freq_label,
    iso,
    same_value,
)

SERIES, BARS = "market_series", "market_bars"
_VALUES = ", ".join(VALUE_COLUMNS)
_DDL = [
    f"""CREATE TABLE IF NOT EXISTS {SERIES} (
        name TEXT PRIMARY KEY, kind TEXT NOT NULL, freq_us BIGINT,
        n_bars BIGINT NOT NULL, first_us BIGINT NOT NULL, last_us BIGINT NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {BARS} (
        series TEXT NOT NULL, ts_us BIGINT NOT NULL, close DOUBLE PRECISION NOT NULL,
        volume DOUBLE PRECISION, funding_rate DOUBLE PRECISION, open_interest DOUBLE PRECISION,
        PRIMARY KEY (series, ts_us))""",
]
_INSERT = f"INSERT INTO {BARS} (series, ts_us, {_VALUES}) VALUES (:series, :ts_us, :close, :volume, :funding_rate, :open_interest)"
_UPDATE = f"UPDATE {BARS} SET {', '.join(f'{c} = :{c}' for c in VALUE_COLUMNS)} WHERE series = :series AND ts_us = :ts_us"
Exec = Callable[[str, Any], list[Sequence[Any]]]  # (sql, params or list of params) -> rows


class MarketStore:
    """Reads and the append rules, over `_read(sql, params)` and `_write_tx()` from a backend."""

    description = ""

    # ---------------------------------------------------------------- backend hooks
    def _read(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    def _write_tx(self) -> Any:  # a context manager yielding an Exec inside a locked transaction
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> MarketStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- reads
    def info(self, names: Sequence[str] | None = None) -> list[SeriesInfo]:
        """Every stored series (or those of `names`), by name."""
        sql = f"SELECT name, kind, freq_us, n_bars, first_us, last_us FROM {SERIES}"
        params: dict[str, Any] = {}
        if names is not None:  # a stored-state call's catch-up asks for the few bar series, not ~200 rows
            params = {f"n{i}": n for i, n in enumerate(dict.fromkeys(names))}
            sql += f" WHERE name IN ({', '.join(':' + k for k in params) or 'NULL'})"
        rows = self._read(sql + " ORDER BY name", params)
        return [SeriesInfo(r[0], r[1], _int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]

    def bars(
        self, name: str, last: int | None = None, start_us: int | None = None, end_us: int | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(int64 us stamps, {column: float64 values, NaN absent}) of one series, oldest first:
        the bars in [start_us, end_us] (either open), of those the last `last`."""
        sql = f"SELECT ts_us, {_VALUES} FROM {BARS} WHERE series = :s"
        params: dict[str, Any] = {"s": name}
        if start_us is not None:
            sql += " AND ts_us >= :a"
            params["a"] = int(start_us)
        if end_us is not None:
            sql += " AND ts_us <= :b"
            params["b"] = int(end_us)
        sql += " ORDER BY ts_us DESC"
        if last is not None:
            sql += " LIMIT :n"
            params["n"] = int(last)
        rows = self._read(sql, params)[::-1]
        us = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        values = np.array(rows, dtype=np.float64).reshape(len(rows), 1 + len(VALUE_COLUMNS))  # NULL -> NaN
        return us, {c: values[:, k + 1].copy() for k, c in enumerate(VALUE_COLUMNS)}

    def window(self, assets: Sequence[str], series: Sequence[str], last: int, **kw: Any):
        """The last `last` bars of `assets` and `series` as a `MarketWindow` (models/market/window.py)."""
        from adaptive_beta.models.market.window import read_window

        return read_window(self, assets, series, last, **kw)

    # ---------------------------------------------------------------- append
    def append(
        self,
        batch: Sequence[SeriesBars],
        restate: bool = False,
        max_jump: float | None = None,
        on_restate: Callable[[list[Restatement]], None] | None = None,
    ) -> AppendResult:
        """Store the bars by the rules of the module docstring; `MarketDataError` stores nothing.

        `max_jump`: a first new bar whose close is more than this x (or 1/x) the stored last
        close is implausible (422).  `on_restate(restatements)` runs inside the transaction before
        it commits (the service's audit append): if it raises, nothing is stored.
        """
        result = AppendResult()
        with self._write_tx() as ex:
            for bars in batch:
                counts, restated = _append_series(ex, bars, restate, max_jump)
                result.counts[bars.name] = counts
                result.restatements += restated
            if result.restatements and on_restate is not None:
                on_restate(result.restatements)
        return result


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _check_kind(bars: SeriesBars, row: Sequence[Any] | None) -> None:
    if row is None:
        return
    kind, freq = row[1], _int(row[2])
    if kind != bars.kind:
        raise MarketDataError(
            f"{bars.name} is stored as an {kind}, not an {bars.kind} (send it under "
            f"{'assets' if kind == 'asset' else 'series'})",
            bars.name,
        )
    if freq != bars.freq_us:
        raise MarketDataError(
            f"series {bars.name} is stored as {freq_label(freq)}, these are {freq_label(bars.freq_us)}",
            bars.name,
        )


def _stored(ex: Exec, bars: SeriesBars) -> dict[int, dict[str, float | None]]:
    """The stored bars of `bars.name` within the stamps of `bars`: ts_us -> stored row."""
    sql = f"SELECT ts_us, {_VALUES} FROM {BARS} WHERE series = :s AND ts_us >= :a AND ts_us <= :b"
    rows = ex(sql, {"s": bars.name, "a": int(bars.us[0]), "b": int(bars.us[-1])})
    names = VALUE_COLUMNS if bars.kind == "asset" else ("close",)
    return {
        int(r[0]): {c: (None if r[k + 1] is None else float(r[k + 1])) for k, c in enumerate(names)}
        for r in rows
    }


def _order_checks(
    bars: SeriesBars, new: list[int], last_us: int | None, last_close: float | None, max_jump
) -> None:
    """Out-of-order, gap and jump checks of the new bars (indices into `bars`) after `last_us`."""
    prev = last_us
    for pos, i in enumerate(new):
        t = int(bars.us[i])
        if prev is not None and t < prev:
            raise MarketDataError(
                f"series {bars.name}: bar {iso(t)} is out of order: it is older than the stored last bar "
                f"{iso(prev)} and not stored (bars are appended in time order)",
                bars.name,
                t,
            )
        if prev is not None and bars.freq_us is not None and t - prev != bars.freq_us:
            kind = "a gap: missing bar(s)" if t - prev > bars.freq_us else "off the series' bar grid"
            raise MarketDataError(
                f"series {bars.name}: bar {iso(t)} leaves {kind} after {iso(prev)} "
                f"({freq_label(bars.freq_us)}); send the missing bars first",
                bars.name,
                t,
            )
        if pos == 0 and max_jump is not None and bars.positive and last_close is not None and last_close > 0:
            c = float(bars.columns["close"][i])
            if c > 0 and max(c / last_close, last_close / c) > max_jump:
                raise MarketDataError(
                    f"series {bars.name}: close {c:g} at {iso(t)} is {max(c / last_close, last_close / c):.3g}x "
                    f"away from the stored last close {last_close:g}: an implausible jump (limit {max_jump:g}x)",
                    bars.name,
                    t,
                    status=422,
                )
        prev = t


def _append_series(
    ex: Exec, bars: SeriesBars, restate: bool, max_jump: float | None
) -> tuple[SeriesCounts, list[Restatement]]:
    """One series' part of an append (inside the caller's transaction)."""
    counts = SeriesCounts()
    head = ex(
        f"SELECT name, kind, freq_us, n_bars, first_us, last_us FROM {SERIES} WHERE name = :s",
        {"s": bars.name},
    )
    row = head[0] if head else None
    _check_kind(bars, row)
    if len(bars.us) == 0:
        counts.last_us = _int(row[5]) if row else None
        return counts, []
    stored = _stored(ex, bars) if row is not None else {}
    new, restated, updates = [], [], []
    for i, t in enumerate(bars.us.tolist()):
        old = stored.get(t)
        if old is None:
            new.append(i)
            continue
        incoming = bars.row(i)
        if all(same_value(old[c], incoming[c]) for c in incoming):
            counts.duplicate += 1
        elif not restate:
            diff = next(c for c in incoming if not same_value(old[c], incoming[c]))
            raise MarketDataError(
                f"series {bars.name}: bar {iso(t)} is stored with {diff} {old[diff]}, this request sends "
                f'{incoming[diff]}; send it with "restate": true to replace it (audited)',
                bars.name,
                t,
            )
        else:
            restated.append(Restatement(bars.name, t, old, incoming))
            updates.append({"series": bars.name, "ts_us": t, **_full(incoming)})
    last_us = _int(row[5]) if row else None
    last_close = None
    if new and row is not None and max_jump is not None:
        last_close = ex(
            f"SELECT close FROM {BARS} WHERE series = :s AND ts_us = :t", {"s": bars.name, "t": last_us}
        )[0][0]
    _order_checks(bars, new, last_us, last_close, max_jump)
    if updates:
        ex(_UPDATE, updates)
    if new:
        ex(_INSERT, [{"series": bars.name, "ts_us": int(bars.us[i]), **_full(bars.row(i))} for i in new])
        _update_head(ex, bars, row, new)
    counts.appended, counts.restated = len(new), len(restated)
    counts.last_us = int(bars.us[new[-1]]) if new else last_us
    return counts, restated


def _full(row: dict[str, float | None]) -> dict[str, float | None]:
    return {c: row.get(c) for c in VALUE_COLUMNS}


def _update_head(ex: Exec, bars: SeriesBars, row: Sequence[Any] | None, new: list[int]) -> None:
    first, last, n = int(bars.us[new[0]]), int(bars.us[new[-1]]), len(new)
    if row is None:
        sql = f"INSERT INTO {SERIES} (name, kind, freq_us, n_bars, first_us, last_us) VALUES (:s, :k, :f, :n, :a, :b)"
        ex(sql, {"s": bars.name, "k": bars.kind, "f": bars.freq_us, "n": n, "a": first, "b": last})
    else:
        sql = f"UPDATE {SERIES} SET n_bars = n_bars + :n, last_us = :b WHERE name = :s"
        ex(sql, {"s": bars.name, "n": n, "b": last})


# ----------------------------------------------------------------------------------- SQLite


class SqliteMarketStore(MarketStore):
    """One SQLite file (WAL, synchronous=FULL): writers serialised by BEGIN IMMEDIATE, readers
    on one connection per thread."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout_s: float = 5.0):
        self.path = Path(path).expanduser().absolute()
        self.description = str(self.path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = sqlite_connect(self.path, busy_timeout_s)
        for stmt in _DDL:
            self._writer.execute(stmt)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = [self._writer]

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite_connect(self.path, self.busy_timeout_s)
            self._local.conn = conn
            with self._write_lock:
                self._conns.append(conn)
        return conn

    def _read(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        return self._reader().execute(sql, params).fetchall()

    @contextmanager
    def _write_tx(self) -> Iterator[Exec]:
        conn = self._writer

        def ex(sql: str, params: Any) -> list[Sequence[Any]]:
            if isinstance(params, list):
                conn.executemany(sql, params)
                return []
            return conn.execute(sql, params).fetchall()

        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield ex
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._write_lock:
            close_connections(self._conns)
        self._local = threading.local()


# ------------------------------------------------------------------------------- PostgreSQL


class PostgresMarketStore(MarketStore):
    """PostgreSQL through SQLAlchemy; `LOCK TABLE market_series` serialises appenders across
    processes and replicas (reads are not blocked)."""

    def __init__(self, url: str, busy_timeout_s: float = 5.0):
        from sqlalchemy import text

        self.engine, self.description = postgres_engine(url, "market-data store")
        self.text = text
        self.busy_timeout_s = busy_timeout_s
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(7302114410)"))  # two processes creating at once
            for stmt in _DDL:
                conn.execute(text(stmt))

    def _read(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(self.text(sql), params).fetchall())

    @contextmanager
    def _write_tx(self) -> Iterator[Exec]:
        with self.engine.begin() as conn:
            conn.execute(self.text(f"SET LOCAL lock_timeout = {int(self.busy_timeout_s * 1000)}"))
            conn.execute(self.text(f"LOCK TABLE {SERIES} IN SHARE ROW EXCLUSIVE MODE"))

            def ex(sql: str, params: Any) -> list[Sequence[Any]]:
                res = conn.execute(self.text(sql), params)
                return list(res.fetchall()) if res.returns_rows else []

            yield ex

    def close(self) -> None:
        self.engine.dispose()


def open_market_store(url: str | os.PathLike[str], busy_timeout_s: float = 5.0) -> MarketStore:
    """A path or sqlite:///path -> SQLite (created with its folder); postgresql://... -> PostgreSQL."""
    path = sqlite_file(url, "market-data store")
    if path is None:
        return PostgresMarketStore(os.fspath(url), busy_timeout_s)
    return SqliteMarketStore(path, busy_timeout_s)
