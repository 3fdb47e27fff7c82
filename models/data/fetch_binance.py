"""Binance USD-M public data (data.binance.vision) -> a dataset folder `abeta data validate` reads.

The public archive publishes, per symbol, zipped CSVs with a `.CHECKSUM` (sha256) beside each:

- klines: `data/futures/um/monthly/klines/SYM/8h/SYM-8h-YYYY-MM.zip` (and `daily/.../SYM-8h-YYYY-MM-DD.zip`
  for the current month, whose monthly file does not exist yet);
- funding rates: `data/futures/um/monthly/fundingRate/SYM/SYM-fundingRate-YYYY-MM.zip`;
- open interest: `data/futures/um/daily/metrics/SYM/SYM-metrics-YYYY-MM-DD.zip` (5-minute metrics).

The zips are kept under `OUT/raw/` in the archive's own layout (so a second run skips what is
complete and verified, and resumes what is partial), then each symbol's rows between `start`
and `end` are written as `assets/SYM.csv` (the Binance kline columns, with header),
`funding/SYM.csv` (timestamp, funding_rate) and `open_interest/SYM.csv` (timestamp,
open_interest), with a `dataset.toml` that names them: the folder is a dataset as it stands.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from adaptive_beta.models.data.downloads import Downloader, NotFound, Outcome
from adaptive_beta.models.data.readers import BINANCE_KLINE_COLUMNS
from adaptive_beta.models.data.schema import DataError, find_btc

KINDS = ("klines", "funding", "open_interest")
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")


@dataclass
class FetchReport:
    """What a fetch did: per-file outcomes, archive files that do not exist, files written."""

    outcomes: list[Outcome] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # URLs answered 404 (not published)
    written: list[Path] = field(default_factory=list)


def archive_paths(
    kind: str, symbol: str, interval: str, month: pd.Period, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[list[str], list[str]]:
    """(monthly, daily) archive paths of one month; daily ones only for days in [start, end)."""
    m = f"{month.year:04d}-{month.month:02d}"
    first = max(month.start_time.tz_localize("UTC"), start.floor("D"))
    last = min(month.end_time.tz_localize("UTC"), end - pd.Timedelta(1))
    days = [f"{d:%Y-%m-%d}" for d in pd.date_range(first.floor("D"), last.floor("D"), freq="D")]
    if kind == "klines":
        head = f"data/futures/um/{{}}/klines/{symbol}/{interval}/{symbol}-{interval}-"
        return [head.format("monthly") + f"{m}.zip"], [head.format("daily") + f"{d}.zip" for d in days]
    if kind == "funding":
        return [f"data/futures/um/monthly/fundingRate/{symbol}/{symbol}-fundingRate-{m}.zip"], []
    if kind == "open_interest":
        return [], [f"data/futures/um/daily/metrics/{symbol}/{symbol}-metrics-{d}.zip" for d in days]
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def fetch_binance(
    symbols: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    out: Path,
    *,
    interval: str = "8h",
    kinds: tuple[str, ...] = KINDS,
    base_url: str,
    downloader: Downloader,
    progress: Callable[[Iterator], Iterator] = iter,
    say: Callable[[str], None] = lambda _: None,
) -> FetchReport:
    """Download (or resume) the archive files covering [start, end) and write the dataset folder."""
    if interval not in INTERVALS:
        raise DataError(
            f"unknown interval {interval!r}; expected one of {list(INTERVALS)}", column="interval"
        )
    report = FetchReport()
    months = pd.period_range(start.tz_localize(None), (end - pd.Timedelta(1)).tz_localize(None), freq="M")
    jobs = [(k, s, m) for s in symbols for k in kinds for m in months]
    zips: dict[tuple[str, str], list[Path]] = {}
    for kind, sym, month in progress(iter(jobs)):
        got = _fetch_month(kind, sym, interval, month, (start, end), out, base_url, downloader, report, say)
        zips.setdefault((kind, sym), []).extend(got)
    for (kind, sym), files in zips.items():
        if not files:
            raise DataError(f"no {kind} published for {sym} between {start:%Y-%m-%d} and {end:%Y-%m-%d}")
        frame = _combine(kind, files)
        ts = frame["timestamp"] if kind != "klines" else frame["open_time"]
        frame = frame.loc[(ts >= start) & (ts < end)] if kind != "klines" else _trim_klines(frame, start, end)
        folder = {"klines": "assets", "funding": "funding", "open_interest": "open_interest"}[kind]
        path = out / folder / f"{sym}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        report.written.append(path)
    report.written.append(write_manifest(out, interval, kinds, symbols))
    return report


def _fetch_month(
    kind: str,
    symbol: str,
    interval: str,
    month: pd.Period,
    span: tuple[pd.Timestamp, pd.Timestamp],
    out: Path,
    base_url: str,
    downloader: Downloader,
    report: FetchReport,
    say: Callable[[str], None],
) -> list[Path]:
    """The month's files: the monthly zip, else (not published yet) the daily ones."""
    monthly, daily = archive_paths(kind, symbol, interval, month, *span)
    for rel in monthly:
        got = _fetch_one(rel, out, base_url, downloader, report, say)
        if got is not None:
            return [got]
    return [p for rel in daily if (p := _fetch_one(rel, out, base_url, downloader, report, say)) is not None]


def _fetch_one(
    rel: str,
    out: Path,
    base_url: str,
    downloader: Downloader,
    report: FetchReport,
    say: Callable[[str], None],
) -> Path | None:
    url = f"{base_url.rstrip('/')}/{rel}"
    try:
        outcome = downloader.file(url, out / "raw" / rel, checksum_url=url + ".CHECKSUM")
    except NotFound:
        report.missing.append(url)
        return None
    report.outcomes.append(outcome)
    say(f"{outcome.status:10} {rel} ({outcome.bytes} bytes{', sha256 ok' if outcome.verified else ''})")
    return outcome.path


def _read_zip_csv(path: Path) -> pd.DataFrame:
    """The one CSV inside a Binance archive zip, with or without its header row."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".csv"))
            text = zf.read(name).decode("utf-8-sig")
    except (zipfile.BadZipFile, StopIteration) as exc:
        raise DataError(f"not a Binance archive zip with a CSV inside: {exc}", file=str(path)) from None
    first = text.split("\n", 1)[0].split(",")[0].strip()
    headerless = first.replace(".", "", 1).isdigit()
    return pd.read_csv(io.StringIO(text), header=None if headerless else 0)


def _combine(kind: str, files: list[Path]) -> pd.DataFrame:
    parts = [_read_zip_csv(p) for p in files]
    if kind == "klines":
        frames = []
        for p, f in zip(files, parts, strict=True):
            if len(f.columns) != len(BINANCE_KLINE_COLUMNS):
                raise DataError(f"kline file has {len(f.columns)} columns, expected 12", file=str(p))
            frames.append(f.set_axis(BINANCE_KLINE_COLUMNS, axis=1))
        df = pd.concat(frames, ignore_index=True)
        df["open_time"] = pd.to_numeric(df["open_time"])
        return df.drop_duplicates("open_time").sort_values("open_time", kind="stable")
    src = {
        "funding": ("calc_time", "last_funding_rate"),
        "open_interest": ("create_time", "sum_open_interest"),
    }
    ts_col, val_col = src[kind]
    name = "funding_rate" if kind == "funding" else "open_interest"
    frames = []
    for p, f in zip(files, parts, strict=True):
        missing = [c for c in (ts_col, val_col) if c not in f.columns]
        if missing:
            raise DataError(f"missing column(s) {missing}; found {list(f.columns)}", file=str(p))
        when = f[ts_col]
        stamp = (
            pd.to_datetime(pd.to_numeric(when), unit="ms", utc=True)
            if pd.api.types.is_numeric_dtype(when)
            else pd.to_datetime(when, utc=True)
        )
        frames.append(pd.DataFrame({"timestamp": stamp, name: f[val_col]}))
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates("timestamp").sort_values("timestamp", kind="stable")


def _trim_klines(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    t = frame["open_time"]
    ms = t.where(t < 1e14, t // 1000)  # microsecond stamps (spot since 2025) -> ms
    lo, hi = start.value // 1_000_000, end.value // 1_000_000
    return frame.loc[(ms >= lo) & (ms < hi)]


def write_manifest(out: Path, interval: str, kinds: tuple[str, ...], symbols: list[str]) -> Path:
    """`dataset.toml` naming the written files, so `abeta data validate OUT` reads them."""
    lines = [
        "# written by `abeta data fetch binance`: Binance USD-M public data (data.binance.vision)",
        f'name = "binance-um-{interval}"',
        f'freq = "{interval}"',
    ]
    btc = find_btc(symbols)
    if btc:
        lines.append(f'btc = "{btc}"')
    lines += ["", "[assets_glob]", 'path = "assets/*.csv"', 'format = "binance"']
    if "funding" in kinds:
        lines.append('funding = "funding/{symbol}.csv"')
    if "open_interest" in kinds:
        lines.append('open_interest = "open_interest/{symbol}.csv"')
    path = out / "dataset.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
