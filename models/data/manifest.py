"""Dataset manifests: which files make a dataset and how to read them (TOML or YAML).

A manifest is optional for a folder that follows the convention (`assets/<SYMBOL>.csv|parquet`,
`factors/<NAME>.csv|parquet`, optional `truth/`); it is needed to point at files elsewhere, to
pick columns, to set factor calendars or to weight the crypto composite by market cap.  Paths
are relative to `root`, which is relative to the manifest file.  Example (TOML)::

    name = "binance-perps-8h"
    root = "../../../shared/data/real"
    freq = "8h"
    btc = "BTCUSDT"

    [assets_glob]
    path = "pietroc21_binance_perps/ohlcv_perp/*.parquet"
    funding = "pietroc21_binance_perps/funding_rates/{symbol}.parquet"

    [[factors]]
    name = "EURUSD"
    path = "kksimsr_fred_fx/fx_EUR.csv"
    transform = "invert"

Files whose timestamps are not UTC say so: `timezone = "America/New_York"` reads naive
timestamps as New York wall-clock time (aware ones and epoch numbers are absolute already), and
`date_only = true` takes each bar's calendar date in that zone and stamps the bar at 00:00 UTC
of that date (daily bars a vendor stamped at a local midnight).  `timestamp_column` names the
time column when it is not one of the usual names.  The three keys may be set at the top level
(every file) or per asset, glob or factor (that entry only).  `layout` says how a price file
holds its symbols: `single` (symbol = file name), `wide` (a timestamp column and one close
column per symbol), `long` (symbol, timestamp, close [, volume, ...] rows); `auto` tells them
apart from the header.

Unknown keys are errors (a typo must not silently drop a setting), reported with the closest
known key; every manifest problem is reported in one run.
"""

from __future__ import annotations

import difflib
import hashlib
import tomllib
import zoneinfo
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adaptive_beta.models.data.schema import FACTOR_CATEGORIES, DataError
from adaptive_beta.models.data.validation import DatasetErrors
from adaptive_beta.models.durations import Duration

MANIFEST_SUFFIXES = (".toml", ".yaml", ".yml")
FOLDER_MANIFEST = "dataset.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _known_zone(name: str) -> str:
    """An IANA zone name; a typo gets the closest names (`America/New_Yrok` -> New_York)."""
    if name in _zones() or name.upper() == "UTC":
        return name
    close = difflib.get_close_matches(name, sorted(_zones()), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'America/New_York'){hint}")


TimeZone = Annotated[str, AfterValidator(_known_zone)]
Layout = Literal["auto", "single", "wide", "long"]


class ReadOptions(_Strict):
    """How to read a file's time column; None inherits the manifest's top-level value."""

    timestamp_column: str | None = None  # the time column when not one of the usual names
    timezone: TimeZone | None = None  # zone of naive timestamps (and of dates for date_only); default UTC
    date_only: bool | None = None  # bars are dates: local calendar date -> 00:00 UTC of that date


class AssetSpec(ReadOptions):
    """One perpetual (or spot) price series."""

    symbol: str  # the name used everywhere downstream, e.g. BTCUSDT
    path: str  # price file (CSV/parquet), relative to root
    format: Literal["auto", "generic", "binance"] = "auto"  # binance: data.binance.vision kline CSV
    layout: Layout | None = None  # default: the manifest's top-level layout
    column: str | None = None  # the close column when not one of the usual names
    funding: str | None = None  # funding prints file (summed per bar)
    open_interest: str | None = None  # open interest observations file (last at or before close)
    drop_missing: bool = False  # drop rows with an empty close instead of reporting them


class AssetGlob(ReadOptions):
    """Every file matching `path`; symbol = file stem; `{symbol}` in funding/open_interest paths."""

    path: str
    format: Literal["auto", "generic", "binance"] = "auto"
    layout: Layout | None = None  # default: the manifest's top-level layout
    column: str | None = None
    funding: str | None = None
    open_interest: str | None = None
    drop_missing: bool = False


class FactorSpec(ReadOptions):
    """One cross-market series (equity index, gold, dollar, rates, volatility, ...)."""

    name: str
    path: str
    category: str | None = None  # default: adaptive_beta.models.data.schema.infer_category(name)
    calendar: Literal["us_close", "utc_close", "bar_open", "timestamp"] | None = None  # publication rule
    column: str | None = None  # the value column when not one of the usual names
    transform: Literal["invert"] | None = None  # invert: 1/x, e.g. EUR per USD -> EURUSD
    lag: Duration | None = None  # extra publication delay, e.g. "1d" for next-day releases
    drop_missing: bool = False  # skip empty/non-numeric cells (FRED "." holidays) instead of reporting them

    @field_validator("category")
    @classmethod
    def _known_category(cls, v: str | None) -> str | None:
        if v is not None and v not in FACTOR_CATEGORIES:
            raise ValueError(f"unknown category {v!r}; expected one of {list(FACTOR_CATEGORIES)}")
        return v


class CapWeights(_Strict):
    """Market caps for a cap-weighted composite, e.g. CoinMarketCap monthly snapshots (long format).

    A snapshot dated D is used from the end of that UTC day (D+1 00:00) on, so the composite
    never weights by a cap it could not have known.
    """

    path: str
    symbol_column: str = "Symbol"
    cap_column: str = "Market Cap"
    date_column: str = "snapshot_date"
    symbols: dict[str, str] = Field(default_factory=dict)  # asset symbol -> symbol in the file


class Manifest(ReadOptions):
    """A dataset: its assets, factors and how they combine into a `Panel`."""

    name: str = "dataset"
    root: str = "."  # relative to the manifest file
    freq: Duration | None = None  # bar length, e.g. "8h"; default: inferred from the longest asset
    btc: str | None = None  # the BTC benchmark asset; default: first symbol starting with BTC
    composite: Literal["equal", "cap"] = "equal"
    weights: CapWeights | None = None  # required for composite = "cap"
    max_staleness: Duration = "5d"  # a factor value older than this at a bar close is missing
    layout: Layout = "auto"  # how files in assets/ (and globbed files) hold their symbols
    assets: list[AssetSpec] = Field(default_factory=list)
    assets_glob: AssetGlob | None = None
    factors: list[FactorSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.composite == "cap" and self.weights is None:
            raise ValueError('composite = "cap" needs a [weights] table (path to market caps)')
        seen: set[str] = set()
        for a in self.assets:
            if a.symbol in seen:
                raise ValueError(f"asset symbol {a.symbol!r} is listed twice")
            seen.add(a.symbol)
        names = [f.name for f in self.factors]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"factor name(s) {sorted(dup)} listed twice")
        return self


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_TABLES: dict[str, type[BaseModel]] = {
    "assets": AssetSpec,
    "assets_glob": AssetGlob,
    "factors": FactorSpec,
    "weights": CapWeights,
}


class ManifestErrors(DatasetErrors):
    """Every problem of one manifest at once; the message lists them all, one per line."""

    def __init__(self, errors: list[DataError]):
        super().__init__(errors)
        lines = "\n".join(f"  {e}" for e in errors)
        self.message = f"{len(errors)} problems in the manifest:\n{lines}"
        self.args = (f"file {errors[0].file}: {self.message}",)


def _known_keys(loc: tuple) -> list[str]:
    """The keys allowed next to the (unknown) key at `loc`: of its table, or the top level."""
    table = next((p for p in loc[:-1] if isinstance(p, str)), None)
    return list((_TABLES.get(table) or Manifest).model_fields) if table else list(Manifest.model_fields)


def _did_you_mean(key: str, known: list[str]) -> str | None:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None


def parse_manifest(data: dict, file: str, overrides: dict | None = None) -> Manifest:
    """Validate a manifest mapping; every error in one go, each naming its key (`factors[2].calendar`).

    An unknown key is reported with the closest known key ("did you mean 'path'"), and the
    required key it was meant to be is then not reported as missing too.
    """
    merged = dict(data)
    merged.update(overrides or {})
    try:
        return Manifest.model_validate(merged)
    except ValidationError as exc:
        errors = _manifest_errors(exc, file)
    if len(errors) == 1:
        raise errors[0] from None
    raise ManifestErrors(errors) from None


def _manifest_errors(exc: ValidationError, file: str) -> list[DataError]:
    raw = exc.errors()
    meant: set[tuple] = set()  # (parent loc, key) that an unknown key probably meant
    for err in raw:
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            guess = _did_you_mean(str(loc[-1]), _known_keys(loc))
            if guess:
                meant.add((loc[:-1], guess))
    out: list[DataError] = []
    seen: set[str] = set()
    for err in raw:
        loc = tuple(err["loc"])
        key = _loc(loc)
        if key in seen:  # one message per key (a union reports each alternative)
            continue
        seen.add(key)
        if err["type"] == "extra_forbidden":
            guess = _did_you_mean(str(loc[-1]), _known_keys(loc))
            hint = f"; did you mean {guess!r}?" if guess else ""
            out.append(DataError(f"unknown manifest key {key!r}{hint}", file=file, column=key))
        elif err["type"] == "missing":
            if (loc[:-1], loc[-1]) not in meant:
                out.append(DataError(f"manifest key {key!r} is required", file=file, column=key))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            out.append(DataError(f"invalid manifest value at {key!r}: {msg}", file=file, column=key))
    return out


def read_manifest(path: str | Path, overrides: dict | None = None) -> tuple[Manifest, Path, str]:
    """(manifest, root folder, sha256 of the manifest text) of a .toml/.yaml/.yml file."""
    p = Path(path)
    if not p.is_file():
        raise DataError("manifest file does not exist", file=str(p))
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"manifest is not valid {p.suffix.lstrip('.').upper()}: {exc}", file=str(p)) from None
    if not isinstance(data, dict):
        raise DataError("manifest must be a mapping of keys to values", file=str(p))
    manifest = parse_manifest(data, str(p), overrides)
    root = (p.parent / manifest.root).resolve()
    if not root.is_dir():
        raise DataError(
            f"root folder {manifest.root!r} does not exist (resolved to {root})", file=str(p), column="root"
        )
    return manifest, root, hashlib.sha256(text.encode()).hexdigest()
