"""`abeta data fetch binance|ccxt`: download market data into a dataset folder `abeta data validate` reads.

Both write OUT/assets/SYM.csv (+ funding/, open_interest/) and OUT/dataset.toml, show progress
(tqdm, on a terminal) and one line per file, and can be run again to resume: complete files are
skipped, partial ones resumed.  Errors (unknown symbol or exchange, a server that keeps failing)
print one line and exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

START_HELP = "First bar (UTC date or time), e.g. 2024-01-01."
END_HELP = "End (exclusive; UTC date or time); default: today 00:00 UTC."


def _span(start: str, end: str | None) -> tuple:
    import pandas as pd

    from adaptive_beta.models.data.schema import DataError

    try:
        lo = pd.Timestamp(start, tz="UTC") if pd.Timestamp(start).tz is None else pd.Timestamp(start)
        hi = pd.Timestamp.now(tz="UTC").floor("D") if end is None else pd.Timestamp(end)
    except ValueError as exc:
        raise DataError(f"bad --start/--end: {exc}", column="start") from None
    hi = hi.tz_localize("UTC") if hi.tz is None else hi.tz_convert("UTC")
    lo = lo.tz_convert("UTC")
    if hi <= lo:
        raise DataError(f"--end {hi} is not after --start {lo}", column="end")
    return lo, hi


@contextmanager
def _errors_exit_2() -> Iterator[None]:
    """A DataError prints one line and exits 2, as `abeta` does (also under CliRunner)."""
    from adaptive_beta.models.data.schema import DataError

    try:
        yield
    except DataError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _progress(show: bool | None):
    from functools import partial

    from tqdm import tqdm

    enabled = sys.stderr.isatty() if show is None else show
    return partial(tqdm, file=sys.stderr, disable=not enabled)


def binance(
    symbols: list[str] = typer.Argument(..., help="USD-M symbols, e.g. BTCUSDT ETHUSDT."),
    start: str = typer.Option(..., "--start", help=START_HELP),
    end: str | None = typer.Option(None, "--end", help=END_HELP),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (created; rerun to resume)."),
    interval: str = typer.Option("8h", "--interval", help="Kline interval: 1m ... 8h, 12h, 1d."),
    funding: bool = typer.Option(True, "--funding/--no-funding", help="Also fetch funding rates."),
    open_interest: bool = typer.Option(
        True, "--open-interest/--no-open-interest", help="Also fetch open interest (daily metrics files)."
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="Archive URL; default ABETA_BINANCE_DATA_URL (https://data.binance.vision)."
    ),
    retries: int = typer.Option(5, "--retries", min=0, help="Retries on 429/5xx/dropped connections."),
    backoff: float = typer.Option(0.5, "--backoff", min=0, help="First retry wait in seconds (doubles)."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: on a terminal)."
    ),
) -> None:
    """Binance USD-M public data (data.binance.vision): klines, funding rates, open interest."""
    with _errors_exit_2():
        _binance(
            symbols, start, end, out, interval, funding, open_interest, base_url, retries, backoff, progress
        )


def _binance(
    symbols, start, end, out, interval, funding, open_interest, base_url, retries, backoff, progress
):
    from adaptive_beta.models.data.downloads import Downloader
    from adaptive_beta.models.data.fetch_binance import fetch_binance
    from adaptive_beta.models.settings import get_settings

    lo, hi = _span(start, end)
    kinds = ("klines",) + (("funding",) if funding else ()) + (("open_interest",) if open_interest else ())
    bar = _progress(progress)
    report = fetch_binance(
        [s.upper() for s in symbols],
        lo,
        hi,
        out,
        interval=interval,
        kinds=kinds,
        base_url=base_url or get_settings().binance_data_url,
        downloader=Downloader(retries=retries, backoff=backoff),
        progress=lambda jobs: bar(list(jobs), desc="archive months", unit="month"),
        say=typer.echo,
    )
    counts = {s: sum(o.status == s for o in report.outcomes) for s in ("downloaded", "resumed", "skipped")}
    verified = sum(o.verified for o in report.outcomes)
    typer.echo(
        f"{counts['downloaded']} downloaded, {counts['resumed']} resumed, {counts['skipped']} already complete; "
        f"{verified} verified by sha256; {len(report.missing)} not published"
    )
    for path in report.written:
        typer.echo(f"wrote {path}")
    typer.echo(f"next: abeta data validate {out}")


def ccxt(
    exchange_id: str = typer.Argument(
        ..., metavar="EXCHANGE", help="ccxt exchange id, e.g. binanceusdm, bybit."
    ),
    symbols: list[str] = typer.Argument(..., help="ccxt symbols, e.g. BTC/USDT:USDT ETH/USDT:USDT."),
    start: str = typer.Option(..., "--start", help=START_HELP),
    end: str | None = typer.Option(None, "--end", help=END_HELP),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (created; rerun to resume)."),
    timeframe: str = typer.Option("8h", "--timeframe", help="Bar length in ccxt's notation (1h, 8h, 1d)."),
    funding: bool = typer.Option(True, "--funding/--no-funding", help="Also fetch funding rate history."),
    base_url: str | None = typer.Option(
        None, "--base-url", help="Replace the exchange's API host (a proxy); default ABETA_CCXT_URL (none)."
    ),
    retries: int = typer.Option(5, "--retries", min=0, help="Retries on network errors, 429 and 5xx."),
    backoff: float = typer.Option(1.0, "--backoff", min=0, help="First retry wait in seconds (doubles)."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: on a terminal)."
    ),
) -> None:
    """OHLCV bars (and funding rates) from any ccxt exchange."""
    with _errors_exit_2():
        _ccxt(exchange_id, symbols, start, end, out, timeframe, funding, base_url, retries, backoff, progress)


def _ccxt(
    exchange_id: str,
    symbols: list[str],
    start: str,
    end: str | None,
    out: Path,
    timeframe: str,
    funding: bool,
    base_url: str | None,
    retries: int,
    backoff: float,
    progress: bool | None,
) -> None:
    from adaptive_beta.models.data import fetch_ccxt as fc
    from adaptive_beta.models.settings import get_settings

    lo, hi = _span(start, end)
    ex = fc.exchange(exchange_id, base_url or get_settings().ccxt_url)
    step = ex.parse_timeframe(timeframe)
    ids = []
    opts = {"retries": retries, "backoff": backoff, "say": typer.echo}
    for sym in symbols:
        with _progress(progress)(total=int((hi - lo).total_seconds() // step), desc=sym, unit="bar") as bar:
            path, n = fc.fetch_ohlcv(ex, sym, timeframe, lo, hi, out, tick=bar.update, **opts)
        typer.echo(f"{n:6d} new bars   {path}")
        ids.append(path.stem)
        if funding:
            path, n = fc.fetch_funding(ex, sym, lo, hi, out, **opts)
            typer.echo(f"{n:6d} new prints {path}")
    typer.echo(f"wrote {fc.write_manifest(out, exchange_id, timeframe, ids, funding)}")
    typer.echo(f"next: abeta data validate {out}")
