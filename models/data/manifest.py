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

Unknown keys are errors (a typo must not silently drop a setting).
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adaptive_beta.models.data.schema import FACTOR_CATEGORIES, DataError
from adaptive_beta.models.durations import Duration

MANIFEST_SUFFIXES = (".toml", ".yaml", ".yml")
FOLDER_MANIFEST = "dataset.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetSpec(_Strict):
    """One perpetual (or spot) price series."""

    symbol: str  # the name used everywhere downstream, e.g. BTCUSDT
    path: str  # price file (CSV/parquet), relative to root
    format: Literal["auto", "generic", "binance"] = "auto"  # binance: data.binance.vision kline CSV
    column: str | None = None  # the close column when not one of the usual names
    funding: str | None = None  # funding prints file (summed per bar)
    open_interest: str | None = None  # open interest observations file (last at or before close)
    drop_missing: bool = False  # drop rows with an empty close instead of reporting them


class AssetGlob(_Strict):
    """Every file matching `path`; symbol = file stem; `{symbol}` in funding/open_interest paths."""

    path: str
    format: Literal["auto", "generic", "binance"] = "auto"
    column: str | None = None
    funding: str | None = None
    open_interest: str | None = None
    drop_missing: bool = False


class FactorSpec(_Strict):
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


class Manifest(_Strict):
    """A dataset: its assets, factors and how they combine into a `Panel`."""

    name: str = "dataset"
    root: str = "."  # relative to the manifest file
    freq: Duration | None = None  # bar length, e.g. "8h"; default: inferred from the longest asset
    btc: str | None = None  # the BTC benchmark asset; default: first symbol starting with BTC
    composite: Literal["equal", "cap"] = "equal"
    weights: CapWeights | None = None  # required for composite = "cap"
    max_staleness: Duration = "5d"  # a factor value older than this at a bar close is missing
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


def parse_manifest(data: dict, file: str, overrides: dict | None = None) -> Manifest:
    """Validate a manifest mapping; errors name the manifest key (`factors[2].calendar`)."""
    merged = dict(data)
    merged.update(overrides or {})
    try:
        return Manifest.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _loc(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            raise DataError(f"unknown manifest key {key!r}", file=file, column=key) from None
        if err["type"] == "missing":
            raise DataError(f"manifest key {key!r} is required", file=file, column=key) from None
        msg = err["msg"].removeprefix("Value error, ")
        raise DataError(f"invalid manifest value at {key!r}: {msg}", file=file, column=key) from None


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
