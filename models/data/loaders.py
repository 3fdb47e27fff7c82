"""`load_dataset(path) -> Panel`: a folder or a manifest, read, checked and aligned.

`path` is a folder following the convention (`assets/`, optional `factors/`, optional
`truth/`, optional `dataset.toml` whose settings apply) or a manifest file (.toml/.yaml/.yml,
see `adaptive_beta.models.data.manifest`).  Every file is read and validated before anything is built, and all
problems are collected: `validate_dataset` returns them, `load_dataset` raises the first (a
`DatasetErrors` carrying all of them when there are several).

Assets are read at their native bar length; a dataset `freq` that is a multiple of it
coarsens complete groups of bars (close = last, volume = sum, open interest = last, funding =
sum), and a coarser native bar than `freq` is an error.  Funding prints and open interest from
separate files are put on bars as documented in `adaptive_beta.models.data.publication`, and factors are indexed
by their publication time before `adaptive_beta.models.data.schema.build_panel` aligns them.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_beta.models.data.manifest import (
    FOLDER_MANIFEST,
    MANIFEST_SUFFIXES,
    AssetSpec,
    CapWeights,
    Manifest,
    ReadOptions,
    parse_manifest,
)
from adaptive_beta.models.data.manifest import read_manifest as _read_manifest
from adaptive_beta.models.data.publication import (
    bar_length,
    default_calendar,
    funding_per_bar,
    open_interest_per_bar,
    publication_times,
)
from adaptive_beta.models.data.readers import (
    SUFFIXES,
    Table,
    TimeOptions,
    asset_frame,
    find_column,
    parse_timestamps,
    read_raw,
    read_tables,
    series_frame,
)
from adaptive_beta.models.data.schema import DataError, FactorSeries, Panel, build_panel, infer_category
from adaptive_beta.models.data.timezones import shift_hint
from adaptive_beta.models.data.validation import Problems, check_grid
from adaptive_beta.models.durations import format_freq, parse_duration

QUOTE_SUFFIXES = ("USDT", "USDC", "BUSD", "USD", "PERP")


@dataclass
class FileSummary:
    """What one file contributed: for the one-line-per-file report of `abeta data validate`."""

    role: str  # asset | funding | open_interest | factor | weights | truth
    name: str
    file: str
    rows: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    detail: str = ""
    ok: bool = True

    def line(self) -> str:
        span = f"{self.first:%Y-%m-%d %H:%M} .. {self.last:%Y-%m-%d %H:%M}" if self.first is not None else "-"
        status = "ok" if self.ok else "ERROR"
        extra = f"; {self.detail}" if self.detail else ""
        return f"{status:5} {self.role:13} {self.name:12} {self.rows:7d} rows  {span}{extra}  ({self.file})"


@dataclass
class DatasetReport:
    """Everything `abeta data validate` prints: per-file summaries, all errors, the panel if built."""

    source: str
    files: list[FileSummary] = field(default_factory=list)
    errors: list = field(default_factory=list)
    panel: Panel | None = None
    seconds: float = 0.0
    manifest_error: DataError | None = None  # the manifest itself is bad (all its problems in one)


@dataclass
class _Resolved:
    manifest: Manifest
    root: Path
    label: str  # what errors about manifest keys name as their file
    digest: str
    folder: Path | None  # convention folder (for truth/), if any


def load_dataset(path: str | Path, **overrides) -> Panel:
    """Read a dataset folder or manifest into a `Panel`; raise `DataError` on any problem.

    `overrides` replace manifest settings (`freq="1d"`, `btc="ETHUSDT"`, `max_staleness="3d"`).
    """
    report = inspect_dataset(path, **overrides)
    if report.manifest_error is not None:  # one error listing every manifest problem
        raise report.manifest_error
    Problems(report.errors).raise_if_any()
    assert report.panel is not None
    return report.panel


def validate_dataset(path: str | Path, **overrides) -> list[DataError]:
    """Every problem of the dataset (all files, not only the first bad one); empty when it loads."""
    return inspect_dataset(path, **overrides).errors


def inspect_dataset(path: str | Path, **overrides) -> DatasetReport:
    """Read and check everything, build the panel if there were no errors, and report."""
    t0 = time.perf_counter()
    report = DatasetReport(source=str(path))
    problems = Problems()
    try:
        res = _resolve(Path(path), overrides)
    except DataError as exc:
        report.errors = list(getattr(exc, "errors", [exc]))
        report.manifest_error = exc
        return report
    m = manifest = res.manifest
    freq = parse_duration(m.freq) if m.freq else None
    specs = _asset_specs(res, problems)
    natives = _read_assets(specs, res, problems, report)
    if freq is None and natives:
        freq = bar_length(max((n[1] for n in natives.values()), key=len).index)
    assets: dict[str, pd.DataFrame] = {}
    for spec, frame, rows, table in natives.values():
        if freq is None:
            continue
        frame = _on_grid(frame, rows, table, freq, problems, res)
        if frame is None:  # the file's summary line must not say "ok" above its grid errors
            for summary in report.files:
                if summary.role == "asset" and summary.name == spec.symbol:
                    summary.ok = False
            continue
        frame = _attach_perp_series(spec, frame, res.root, freq, problems, report)
        if frame is not None:
            assets[spec.symbol] = frame
    factors = _read_factors(res, problems, report)
    weights = None
    if manifest.composite == "cap" and manifest.weights is not None and assets:
        weights = _read_weights(manifest.weights, res, list(assets), problems, report)
        if weights is not None:  # as of each bar open (build_panel joins on exact timestamps)
            bars = pd.DatetimeIndex(sorted(set().union(*(f.index for f in assets.values()))))
            weights = weights.reindex(weights.index.union(bars)).ffill().reindex(bars)
    symbols = list(dict.fromkeys([*natives, *(s.symbol for s, w in specs if w not in EXPANDING)]))
    if m.btc is not None and specs and m.btc not in symbols:
        problems.add(
            f"btc symbol {m.btc!r} is not among the assets {symbols}",
            res.label,
            column="btc",
        )
    if not specs and not problems:
        problems.add(
            "dataset has no assets (no assets/ folder, assets list or assets_glob)",
            res.label,
            column="assets",
        )
    truth = _read_truth(res.folder, problems, report) if res.folder is not None else {}
    if not problems and assets:
        meta = {
            "source": str(Path(path).resolve()),
            "manifest_sha256": res.digest,
            "dataset": manifest.name,
            **truth,
        }
        if weights is not None:
            meta["composite_weights"] = manifest.weights.path if manifest.weights else None
        try:
            report.panel = build_panel(
                assets,
                factors,
                freq=freq,
                btc_symbol=manifest.btc,
                composite=manifest.composite,
                composite_weights=weights,
                max_staleness=manifest.max_staleness,
                meta=meta,
            )
        except DataError as exc:
            problems.errors.append(exc)
    report.errors = problems.errors
    report.seconds = time.perf_counter() - t0
    return report


def _read_assets(
    specs: list[tuple[AssetSpec, str]], res: _Resolved, problems: Problems, report: DatasetReport
) -> dict[str, tuple[AssetSpec, pd.DataFrame, np.ndarray, Table]]:
    """Every asset at its native bar, by symbol; a symbol in two files is an error."""
    natives: dict[str, tuple[AssetSpec, pd.DataFrame, np.ndarray, Table]] = {}
    for spec, where in specs:
        for got in _read_asset(spec, where, res, problems, report):
            sym, file = got[0].symbol, got[3].file
            if sym in natives:
                problems.add(
                    f"asset symbol {sym!r} appears in two files ({natives[sym][3].file} and {file})",
                    file,
                    column="symbol",
                )
                continue
            natives[sym] = got
    return natives


# --- where the files are -----------------------------------------------------------------------
def _resolve(path: Path, overrides: dict) -> _Resolved:
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        manifest, root, digest = _read_manifest(path, overrides)
        folder = root if (root / "truth").is_dir() or (root / "assets").is_dir() else None
        return _Resolved(manifest, root, str(path), digest, folder)
    if path.is_dir():
        mf = path / FOLDER_MANIFEST
        if mf.is_file():
            manifest, root, digest = _read_manifest(mf, overrides)
            return _Resolved(manifest, root, str(mf), digest, path)
        manifest = parse_manifest({}, str(path), overrides)
        return _Resolved(manifest, path.resolve(), str(path), _folder_digest(path), path)
    if not path.exists():
        raise DataError(
            "dataset path does not exist; give a folder or a .toml/.yaml manifest", file=str(path)
        )
    raise DataError("not a dataset: expected a folder or a .toml/.yaml/.yml manifest", file=str(path))


def _folder_digest(folder: Path) -> str:
    """sha256 of the sorted relative paths and sizes of every data file in a plain folder."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(folder).as_posix()}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()


def _data_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))


def _stem(p: Path) -> str:
    name = p.name
    for suf in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return p.stem


def _asset_specs(res: _Resolved, problems: Problems) -> list[tuple[AssetSpec, str]]:
    """(spec, manifest key) for each asset: explicit list, glob, or the assets/ folder."""
    m = res.manifest
    out: list[tuple[AssetSpec, str]] = []
    for i, spec in enumerate(m.assets):
        out.append((spec, f"assets[{i}]"))
    if m.assets_glob is not None:
        g = m.assets_glob
        files = sorted(p for p in res.root.glob(g.path) if p.is_file())
        if not files:
            problems.add(f"no file matches {g.path!r} under {res.root}", res.label, column="assets_glob.path")
        for p in files:
            sym = _stem(p)
            out.append(
                (
                    AssetSpec(
                        symbol=sym,
                        path=str(p.relative_to(res.root)),
                        format=g.format,
                        column=g.column,
                        funding=g.funding.format(symbol=sym) if g.funding else None,
                        open_interest=g.open_interest.format(symbol=sym) if g.open_interest else None,
                        drop_missing=g.drop_missing,
                        layout=g.layout,
                        timestamp_column=g.timestamp_column,
                        timezone=g.timezone,
                        date_only=g.date_only,
                    ),
                    "assets_glob",
                )
            )
    if not m.assets and m.assets_glob is None:
        for p in _data_files(res.root / "assets"):
            out.append((AssetSpec(symbol=_stem(p), path=str(p.relative_to(res.root))), "assets/"))
    # a manifest path that does not exist is a manifest error, named by its key
    kept = []
    seen: set[str] = set()
    for spec, where in out:
        if spec.symbol in seen:
            problems.add(
                f"asset symbol {spec.symbol!r} appears twice (assets list and glob)", res.label, column=where
            )
            continue
        seen.add(spec.symbol)
        missing = False
        for key in ("path", "funding", "open_interest"):
            rel = getattr(spec, key)
            if rel is not None and not (res.root / rel).is_file():
                problems.add(
                    f"asset {spec.symbol}: file {rel!r} does not exist under {res.root}",
                    res.label,
                    column=f"{where}.{key}",
                )
                missing = True
        if not missing:
            kept.append((spec, where))
    return kept


# --- assets --------------------------------------------------------------------------------------
EXPANDING = ("assets/", "assets_glob")  # specs named after their file: a wide/long file gives many


def time_options(spec: ReadOptions, manifest: Manifest) -> TimeOptions:
    """The spec's timestamp column, time zone and date-only flag, else the manifest's."""

    def pick(key: str):
        own = getattr(spec, key)
        return own if own is not None else getattr(manifest, key)

    return TimeOptions(pick("timestamp_column"), pick("timezone"), bool(pick("date_only")))


def _read_asset(
    spec: AssetSpec, where: str, res: _Resolved, problems: Problems, report: DatasetReport
) -> list[tuple[AssetSpec, pd.DataFrame, np.ndarray, Table]]:
    """The asset(s) of one price file: one, or one per symbol of a wide/long file in folder/glob mode."""
    path = res.root / spec.path
    layout = spec.layout or res.manifest.layout
    n_before = len(problems)
    tables = read_tables(
        path,
        problems,
        fmt=spec.format,
        column=spec.column,
        time=time_options(spec, res.manifest),
        layout=layout,
    )
    if where in EXPANDING and tables is not None and None not in tables:
        picked = [(spec.model_copy(update={"symbol": str(k)}), t) for k, t in tables.items()]
        if spec.funding or spec.open_interest:  # glob templates were filled with the file stem
            problems.add(
                "funding/open_interest templates apply to one-symbol files, not wide or long ones",
                res.label,
                column=f"{where}.funding",
            )
    else:
        table = _one_table(tables, spec.symbol, str(path), problems)
        picked = [(spec, table)] if table is not None else []
    if not picked:
        report.files.append(FileSummary("asset", spec.symbol, str(path), ok=False))
    out = []
    for sub, table in picked:
        summary = FileSummary("asset", sub.symbol, str(path))
        report.files.append(summary)
        n_sub = len(problems)
        checked = asset_frame(table, problems, drop_missing=spec.drop_missing)
        summary.ok = (
            checked is not None and len(problems) == n_sub and (len(picked) > 1 or len(problems) == n_before)
        )
        if checked is not None:
            _summarise(summary, checked[0].index)
            out.append((sub, checked[0], checked[1], table))
    return out


def _one_table(tables: dict | None, symbol: str, file: str, problems: Problems) -> Table | None:
    if tables is None:
        return None
    if None in tables:
        return tables[None]
    if symbol in tables:
        return tables[symbol]
    problems.add(f"file holds symbols {sorted(tables)} but not {symbol!r}", file, column="symbol")
    return None


def _summarise(summary: FileSummary, index: pd.DatetimeIndex) -> None:
    summary.rows = len(index)
    if len(index):
        summary.first, summary.last = index[0], index[-1]


def _on_grid(
    frame: pd.DataFrame,
    rows: np.ndarray,
    table: Table,
    freq: pd.Timedelta,
    problems: Problems,
    res: _Resolved,
) -> pd.DataFrame | None:
    """The asset's bars at the dataset frequency: as is, or coarsened from a finer native bar.

    Bars off the grid by a time-zone offset get one error saying so (and which manifest keys
    fix it) instead of one per row.
    """
    file = table.file
    native = bar_length(frame.index) if len(frame) > 1 else freq
    hint = shift_hint(frame.index, min(native, freq)) if native <= freq else None
    if hint is not None:
        problems.add(hint, file, row=int(rows[0]), column=table.column("timestamp"))
        return None
    if native == freq:
        return frame if check_grid(frame.index, rows, freq, file, problems) else None
    if native > freq or freq.value % native.value != 0:
        problems.add(
            f"bars are {format_freq(native)} apart but the dataset frequency is {format_freq(freq)} "
            "(only coarsening to a multiple is supported)",
            file,
            column="timestamp",
        )
        return None
    if not check_grid(frame.index, rows, native, file, problems):
        return None
    return coarsen(frame, native, freq)


def coarsen(frame: pd.DataFrame, native: pd.Timedelta, freq: pd.Timedelta) -> pd.DataFrame:
    """Complete groups of native bars -> one bar of `freq` (close last, volume/funding sum, OI last).

    A group missing any native bar is dropped, so every coarse close is the close at the true
    bar end.  Labels are bar open times on the epoch-aligned grid of `freq`.
    """
    key = frame.index.floor(freq) if freq <= pd.Timedelta("1D") else frame.index
    g = frame.groupby(key)
    agg = {"close": "last", "volume": "sum", "funding_rate": "sum", "open_interest": "last"}
    out = g.agg({c: agg[c] for c in frame.columns if c in agg})
    if "volume" in out:
        out["volume"] = g["volume"].sum(min_count=1)
    if "funding_rate" in out:
        out["funding_rate"] = g["funding_rate"].sum(min_count=1)
    complete = g.size() == int(freq / native)
    out = out.loc[complete.to_numpy()]
    out.index = pd.DatetimeIndex(out.index).as_unit("ns")
    out.index.name = "timestamp"
    return out


def _attach_perp_series(
    spec: AssetSpec,
    frame: pd.DataFrame,
    root: Path,
    freq: pd.Timedelta,
    problems: Problems,
    report: DatasetReport,
) -> pd.DataFrame | None:
    frame = frame.copy()
    for key, column, per_bar in (
        ("funding", "funding_rate", funding_per_bar),
        ("open_interest", "open_interest", open_interest_per_bar),
    ):
        rel = getattr(spec, key)
        if rel is None:
            continue
        path = root / rel
        summary = FileSummary(column, spec.symbol, str(path))
        report.files.append(summary)
        n_before = len(problems)
        tables = read_tables(path, problems, value_columns=(column,), required=column)
        table = _one_table(tables, spec.symbol, str(path), problems)
        got = series_frame(table, column, problems, non_negative=column == "open_interest") if table else None
        summary.ok = len(problems) == n_before
        if got is None:
            continue
        s = got[0]
        _summarise(summary, s.index)
        frame[column] = per_bar(s, frame.index, freq).to_numpy()
    return frame


# --- factors -------------------------------------------------------------------------------------
def factor_observations(path: str | Path, **overrides) -> dict[str, FactorSeries]:
    """Each factor of a dataset as observed (indexed by its observation date or time, transforms
    applied) with its category, calendar and lag: what a client sends the service, which then
    publishes it by the bundle's rule exactly as `load_dataset` does.  Raises `DataError`."""
    report = DatasetReport(source=str(path))
    problems = Problems()
    out = _factor_observations(_resolve(Path(path), overrides), problems, report)
    problems.raise_if_any()
    return out


def _read_factors(res: _Resolved, problems: Problems, report: DatasetReport) -> dict[str, FactorSeries]:
    """The factors indexed by publication time (`publication_times` of their calendar and lag)."""
    out = {}
    for name, obs in _factor_observations(res, problems, report).items():
        pub = publication_times(obs.values.index, obs.calendar, parse_duration(obs.lag) if obs.lag else None)
        out[name] = FactorSeries(
            pd.Series(obs.values.to_numpy(), index=pub, name=name), obs.category, obs.calendar, obs.lag
        )
    return out


def _factor_observations(
    res: _Resolved, problems: Problems, report: DatasetReport
) -> dict[str, FactorSeries]:
    from adaptive_beta.models.data.manifest import FactorSpec

    specs = list(res.manifest.factors)
    keys = [f"factors[{i}]" for i in range(len(specs))]
    if not specs:
        for p in _data_files(res.root / "factors"):
            specs.append(FactorSpec(name=_stem(p), path=str(p.relative_to(res.root))))
            keys.append("factors/")
    out: dict[str, FactorSeries] = {}
    for spec, where in zip(specs, keys, strict=True):
        path = res.root / spec.path
        if not path.is_file():
            problems.add(
                f"factor {spec.name}: file {spec.path!r} does not exist under {res.root}",
                res.label,
                column=f"{where}.path",
            )
            continue
        summary = FileSummary("factor", spec.name, str(path))
        report.files.append(summary)
        n_before = len(problems)
        tables = read_tables(
            path,
            problems,
            value_columns=("close",),
            required="close",
            column=spec.column,
            time=time_options(spec, res.manifest),
        )
        table = _one_table(tables, spec.name, str(path), problems)
        got = (
            series_frame(table, "close", problems, drop_missing=spec.drop_missing)
            if table is not None
            else None
        )
        s = got[0] if got is not None else None
        if got is not None and spec.transform == "invert":
            s, rows = got
            zero = np.flatnonzero(s.to_numpy() == 0)
            if len(zero):
                problems.add_rows("cannot invert a zero value", table.file, rows[zero], table.column("close"))
                s = None
            else:
                s = 1.0 / s
        summary.ok = len(problems) == n_before
        if s is None or table is None:
            continue
        category = spec.category or infer_category(spec.name)
        calendar = spec.calendar or default_calendar(category, table.date_only)
        out[spec.name] = FactorSeries(
            pd.Series(s.to_numpy(), index=s.index, name=spec.name), category, calendar, spec.lag
        )
        _summarise(summary, s.index)
        summary.detail = f"{category}, published {calendar}" + (f" + {spec.lag}" if spec.lag else "")
    return out


# --- composite weights ---------------------------------------------------------------------------
def base_symbol(symbol: str) -> str:
    """BTCUSDT, BTC-USD, BTC/USDT:USDT -> BTC (the ticker market-cap tables use)."""
    head = re.split(r"[-_/:]", symbol.upper())[0]
    for q in QUOTE_SUFFIXES:
        if head.endswith(q) and len(head) > len(q):
            return head[: -len(q)]
    return head


def _read_weights(
    spec: CapWeights, res: _Resolved, symbols: list[str], problems: Problems, report: DatasetReport
) -> pd.DataFrame | None:
    """Market cap per asset as known at each time: a snapshot dated D is usable from D+1 00:00 UTC."""
    path = res.root / spec.path
    if not path.is_file():
        problems.add(
            f"weights file {spec.path!r} does not exist under {res.root}", res.label, column="weights.path"
        )
        return None
    summary = FileSummary("weights", "composite", str(path))
    report.files.append(summary)
    try:
        raw = read_raw(path)
    except DataError as exc:
        problems.errors.append(exc)
        summary.ok = False
        return None
    cols = [str(c) for c in raw.columns]
    for key in ("symbol_column", "cap_column", "date_column"):
        name = getattr(spec, key)
        if find_column(cols, "symbol", name) is None:
            problems.add(f"missing column named by weights.{key}", str(path), column=name)
            summary.ok = False
    if not summary.ok:
        return None
    when = parse_timestamps(raw[spec.date_column])
    caps = pd.to_numeric(raw[spec.cap_column], errors="coerce")
    bad = np.flatnonzero(
        np.asarray(when.isna()) | ~np.isfinite(caps.to_numpy(dtype=float)) | (caps.to_numpy() < 0)
    )
    if len(bad):
        problems.add_rows("bad snapshot date or market cap", str(path), bad + 1, spec.cap_column)
        summary.ok = False
        return None
    long = pd.DataFrame(
        {
            "when": when.normalize() + pd.Timedelta("1D"),
            "sym": raw[spec.symbol_column].astype(str),
            "cap": caps,
        }
    )
    wide = long.groupby(["when", "sym"])["cap"].max().unstack("sym")
    mapping = {s: spec.symbols.get(s, base_symbol(s)) for s in symbols}
    missing = sorted(s for s, b in mapping.items() if b not in wide.columns)
    if missing:
        problems.add(
            f'no market cap for {missing}; map them with [weights.symbols] (asset = "TICKER")',
            str(path),
            column=spec.symbol_column,
        )
        summary.ok = False
        return None
    w = pd.DataFrame({s: wide[b] for s, b in mapping.items()}).sort_index()
    _summarise(summary, w.index)
    summary.rows = len(long)
    summary.detail = f"{len(w)} snapshots, usable from the day after each"
    return w


# --- simulated truth -----------------------------------------------------------------------------
def _read_truth(folder: Path, problems: Problems, report: DatasetReport) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    for key, name, index in (
        ("truth_betas", "betas.parquet", ["timestamp", "symbol"]),
        ("truth_market", "market.parquet", ["timestamp"]),
    ):
        path = folder / "truth" / name
        if not path.is_file():
            continue
        summary = FileSummary("truth", name.split(".")[0], str(path))
        report.files.append(summary)
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            problems.add(f"cannot read simulated truth: {exc}", str(path))
            summary.ok = False
            continue
        if "timestamp" not in df.columns or ("symbol" in index and "symbol" not in df.columns):
            col = "timestamp" if "timestamp" not in df.columns else "symbol"
            problems.add("missing column in simulated truth", str(path), column=col)
            summary.ok = False
            continue
        ts = parse_timestamps(df["timestamp"])
        bad = np.flatnonzero(np.asarray(ts.isna()))
        if len(bad):
            problems.add_rows("unparseable timestamp", str(path), bad + 1, "timestamp")
            summary.ok = False
            continue
        df = df.assign(timestamp=ts).set_index(index).sort_index()
        out[key] = df
        _summarise(summary, df.index.get_level_values("timestamp").unique())
        summary.rows = len(df)
    return out
