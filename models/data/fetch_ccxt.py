"""OHLCV bars and funding rates from any ccxt exchange -> a dataset folder `abeta data validate` reads.

ccxt knows each exchange's endpoints, symbols, pagination limits and rate limits, so one loop
serves Binance, Bybit, OKX, ...: `fetch_ohlcv` pages from `start` (the exchange's own page
size) until `end`, and `fetch_funding_rate_history` likewise.  Rows are appended to
`assets/ID.csv` (timestamp, open, high, low, close, volume: ccxt's own row, which
`adaptive_beta.models.data.readers` reads) and `funding/ID.csv` (timestamp, funding_rate), `ID`
being the exchange's market id (BTCUSDT for BTC/USDT:USDT on Binance).  A rerun resumes after
the last row written.  Bars not yet closed are left out.  Network errors, rate limits (429) and
unavailability (5xx) are retried with exponential backoff; other exchange errors stop the run
with the exchange's message.

`base_url` replaces the scheme and host of every API URL of the exchange (a proxy, or the
local server of the tests).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from adaptive_beta.models.data.schema import DataError, find_btc


def exchange(exchange_id: str, base_url: str | None = None):
    """A ccxt exchange instance (rate limited), its API URLs pointed at `base_url` if given."""
    import ccxt

    if exchange_id not in ccxt.exchanges:
        import difflib

        close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise DataError(f"unknown ccxt exchange {exchange_id!r}{hint}", column="exchange")
    ex = getattr(ccxt, exchange_id)({"enableRateLimit": True})
    if base_url:
        ex.urls["api"] = _rebase(ex.urls.get("api", {}), base_url.rstrip("/"))
    return ex


def _rebase(urls, base: str):
    if isinstance(urls, dict):
        return {k: _rebase(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith("http"):
        parts = urlsplit(urls)
        return base + parts.path + (f"?{parts.query}" if parts.query else "")
    return urls


def with_retry(call: Callable, retries: int, backoff: float, say: Callable[[str], None]):
    """`call()`, retried on ccxt network errors (incl. 429 rate limits and 5xx) with backoff."""
    import ccxt

    for attempt in range(retries + 1):
        try:
            return call()
        except ccxt.NetworkError as exc:
            if attempt == retries:
                raise DataError(f"exchange unreachable after {retries} retries: {exc}") from None
            wait = backoff * 2**attempt
            say(f"retry in {wait:.2f} s after {type(exc).__name__}")
            time.sleep(wait)
        except ccxt.BaseError as exc:
            raise DataError(f"exchange error: {exc}") from None
    raise AssertionError("unreachable")


def _last_timestamp(path: Path) -> int | None:
    """The last timestamp (ms) already written, for resuming; None for a new file."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    tail = pd.read_csv(path, usecols=["timestamp"])["timestamp"]
    return int(tail.iloc[-1]) if len(tail) else None


def _append(path: Path, header: list[str], rows: list[list]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(header)
        w.writerows(rows)


def fetch_ohlcv(
    ex,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    out: Path,
    *,
    retries: int = 5,
    backoff: float = 1.0,
    say: Callable[[str], None] = lambda _: None,
    tick: Callable[[int], None] = lambda _: None,
) -> tuple[Path, int]:
    """Closed bars of `symbol` opening in [start, end), appended to assets/ID.csv; (file, new rows)."""
    market = with_retry(lambda: ex.load_markets() and ex.market(symbol), retries, backoff, say)
    step = int(ex.parse_timeframe(timeframe) * 1000)
    path = out / "assets" / f"{market['id']}.csv"
    last = _last_timestamp(path)
    since = start.value // 1_000_000 if last is None else last + step
    stop = min(end.value // 1_000_000, (int(time.time() * 1000) // step) * step)  # closed bars only
    added = 0
    while since < stop:
        page = with_retry(lambda s=since: ex.fetch_ohlcv(symbol, timeframe, s), retries, backoff, say)
        rows = [r[:6] for r in page if since <= r[0] < stop]
        if not rows:
            break
        _append(path, ["timestamp", "open", "high", "low", "close", "volume"], rows)
        added += len(rows)
        tick(len(rows))
        since = int(rows[-1][0]) + step
    return path, added


def fetch_funding(
    ex,
    symbol: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    out: Path,
    *,
    retries: int = 5,
    backoff: float = 1.0,
    say: Callable[[str], None] = lambda _: None,
    tick: Callable[[int], None] = lambda _: None,
) -> tuple[Path, int]:
    """Funding prints of `symbol` in [start, end), appended to funding/ID.csv; (file, new rows)."""
    market = with_retry(lambda: ex.load_markets() and ex.market(symbol), retries, backoff, say)
    path = out / "funding" / f"{market['id']}.csv"
    last = _last_timestamp(path)
    since = start.value // 1_000_000 if last is None else last + 1
    stop = end.value // 1_000_000
    added = 0
    while since < stop:
        page = with_retry(lambda s=since: ex.fetch_funding_rate_history(symbol, s), retries, backoff, say)
        rows = [[int(p["timestamp"]), p["fundingRate"]] for p in page if since <= p["timestamp"] < stop]
        if not rows:
            break
        _append(path, ["timestamp", "funding_rate"], rows)
        added += len(rows)
        tick(len(rows))
        since = rows[-1][0] + 1
    return path, added


def write_manifest(out: Path, exchange_id: str, timeframe: str, ids: list[str], funding: bool) -> Path:
    """`dataset.toml` naming the written files, so `abeta data validate OUT` reads them."""
    lines = [
        f"# written by `abeta data fetch ccxt`: {exchange_id} via ccxt",
        f'name = "{exchange_id}-{timeframe}"',
        f'freq = "{timeframe}"',
    ]
    btc = find_btc(ids)
    if btc:
        lines.append(f'btc = "{btc}"')
    lines += ["", "[assets_glob]", 'path = "assets/*.csv"']
    if funding:
        lines.append('funding = "funding/{symbol}.csv"')
    path = out / "dataset.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
