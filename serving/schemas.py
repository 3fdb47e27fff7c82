"""Request and response bodies of the prediction service (pydantic v2).

Two layers of validation, both naming the field and the asset:
1. Shape checks that need no model (pydantic validators here): sorted unique timestamps, finite
   positive closes, bounded batch and history sizes.  BentoML answers these with 400 and the
   pydantic error list (`loc` is the field path).
2. Checks against the loaded bundle (`check_against_model`): enough history for the model's
   lookback, no missing bars at the model's frequency, every required series present.  The
   service answers these with 422 and `{"error", "field"}`.

Timestamps are ISO-8601; naive ones are read as UTC.  For an asset or a crypto benchmark a
timestamp is the bar's OPEN time (as in exchange files); for a cross-market factor (SPY, DXY...)
it is the time the value was published.  A factor point at exactly 00:00 UTC is read as a date:
the daily close of that date, published at 16:00 America/New_York, as the training loaders do.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_ASSETS = int(os.environ.get("ABETA_MAX_ASSETS", "64"))  # per request
MAX_HISTORY = int(os.environ.get("ABETA_MAX_HISTORY", "2000"))  # bars per asset / points per series
MAX_SERIES = int(os.environ.get("ABETA_MAX_SERIES", "32"))
SYMBOL_PATTERN = r"^[A-Za-z0-9_.\-^=]{1,40}$"


class RequestError(ValueError):
    """A request that parses but does not fit the model: `field` is the JSON path, e.g. `assets[2].history`."""

    def __init__(self, message: str, field: str):
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}")


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bar(_Strict):
    timestamp: datetime = Field(description="bar open time, ISO-8601 (UTC if no offset)")
    close: float = Field(description="close price, finite and > 0")
    volume: float | None = Field(default=None, description="traded volume (base units), >= 0")
    funding_rate: float | None = Field(
        default=None, description="funding rate for the interval ending in this bar"
    )
    open_interest: float | None = Field(
        default=None, description="open interest at the bar close (contracts or USD, as in training), >= 0"
    )


class Point(_Strict):
    timestamp: datetime = Field(description="bar open time (crypto) or publication time (factors), ISO-8601")
    close: float = Field(description="level, finite (> 0 except for rates)")


_EXTRAS = ("volume", "funding_rate", "open_interest")
_NON_NEGATIVE = frozenset({"volume", "open_interest"})


def _check_history(points: list, where: str, positive: bool = True) -> None:
    """Finite (and positive) closes, finite optional fields, strictly increasing timestamps.

    Hot path (thousands of points per request): the optional fields are looked up once per
    model class (a missing attribute on a pydantic model costs ~3 us), and aware timestamps
    are compared as they are (aware datetimes compare as instants; only naive ones are made UTC).
    """
    if not points:
        return
    fields = type(points[0]).model_fields
    extras = [f for f in _EXTRAS if f in fields]
    isfinite = math.isfinite
    prev = None
    for i, p in enumerate(points):
        c = p.close
        if not isfinite(c):
            raise ValueError(f"{where}[{i}].close is not a finite number")
        if positive and c <= 0:
            raise ValueError(f"{where}[{i}].close must be > 0 (got {c})")
        for extra in extras:
            v = getattr(p, extra)
            if v is not None:
                if not isfinite(v):
                    raise ValueError(f"{where}[{i}].{extra} is not a finite number")
                if v < 0 and extra in _NON_NEGATIVE:
                    raise ValueError(f"{where}[{i}].{extra} must be >= 0 (got {v})")
        ts = p.timestamp
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        if prev is not None and ts <= prev:
            if ts == prev:
                raise ValueError(f"{where}[{i}].timestamp {_utc(ts).isoformat()} duplicates the previous bar")
            raise ValueError(
                f"{where}[{i}].timestamp {_utc(ts).isoformat()} is before the previous bar (not sorted)"
            )
        prev = ts


class AssetHistory(_Strict):
    symbol: str = Field(pattern=SYMBOL_PATTERN, description="perp symbol, e.g. SOLUSDT")
    history: list[Bar] = Field(min_length=2, max_length=MAX_HISTORY, description="bars sorted by time")

    @model_validator(mode="after")
    def _sorted_finite(self) -> AssetHistory:
        _check_history(self.history, f"asset {self.symbol}: history")
        return self


def _check_series(series: dict[str, list[Point]]) -> None:
    for name, pts in series.items():
        if not pts:
            raise ValueError(f"series {name}: empty")
        if len(pts) > MAX_HISTORY:
            raise ValueError(f"series {name}: {len(pts)} points, more than the limit {MAX_HISTORY}")
        from models.schema import infer_category

        _check_history(pts, f"series {name}", positive=infer_category(name) != "rates")


class ForecastRequest(_Strict):
    assets: list[AssetHistory] = Field(min_length=1, max_length=MAX_ASSETS)
    series: dict[str, list[Point]] = Field(
        default_factory=dict,
        max_length=MAX_SERIES,
        description="benchmarks (BTCUSDT, CRYPTO_EW) and cross-market factors (SPY, GLD, DXY, ...)",
    )

    @field_validator("series")
    @classmethod
    def _series_ok(cls, v: dict[str, list[Point]]) -> dict[str, list[Point]]:
        _check_series(v)
        return v

    @model_validator(mode="after")
    def _unique_symbols(self) -> ForecastRequest:
        seen: set[str] = set()
        for i, a in enumerate(self.assets):
            if a.symbol in seen:
                raise ValueError(f"assets[{i}].symbol {a.symbol} appears twice in the request")
            seen.add(a.symbol)
        return self


class ExplainRequest(ForecastRequest):
    top_groups: int = Field(default=2, ge=0, le=10, description="groups detailed feature by feature")


class HedgeInstrument(_Strict):
    symbol: str = Field(pattern=SYMBOL_PATTERN)
    min_notional: float | None = Field(default=None, description="lower limit of the order (USD, signed)")
    max_notional: float | None = Field(default=None, description="upper limit of the order (USD, signed)")

    @model_validator(mode="after")
    def _limits(self) -> HedgeInstrument:
        for name in ("min_notional", "max_notional"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"instrument {self.symbol}: {name} is not finite")
        if (
            self.min_notional is not None
            and self.max_notional is not None
            and self.min_notional > self.max_notional
        ):
            raise ValueError(f"instrument {self.symbol}: min_notional is above max_notional")
        return self


class HedgeRequest(ForecastRequest):
    positions: dict[str, float] = Field(
        min_length=1, max_length=MAX_ASSETS, description="symbol -> USD notional"
    )
    target: dict[str, float] = Field(min_length=1, description="benchmark -> target portfolio beta")
    instruments: list[HedgeInstrument] = Field(min_length=1, max_length=8)
    nav: float | None = Field(
        default=None, ge=0, description="portfolio NAV in USD (> 0); default gross notional"
    )
    interval_method: str = Field(default="worst_case", pattern="^(worst_case|independent)$")

    @model_validator(mode="after")
    def _consistent(self) -> HedgeRequest:
        have = {a.symbol for a in self.assets}
        for sym, v in self.positions.items():
            if not math.isfinite(v):
                raise ValueError(f"positions.{sym} is not a finite number")
            if sym not in have:
                raise ValueError(f"positions.{sym}: no history for {sym} in assets")
        for i, inst in enumerate(self.instruments):
            if inst.symbol not in have:
                raise ValueError(f"instruments[{i}].symbol {inst.symbol}: no history for it in assets")
        for b, v in self.target.items():
            if not math.isfinite(v):
                raise ValueError(f"target.{b} is not a finite number")
        return self


# --- responses ---------------------------------------------------------------------------------


class BetaForecast(BaseModel):
    beta: float
    lo: float = Field(description="lower end of the 90 % interval")
    hi: float = Field(description="upper end of the 90 % interval")


class Driver(BaseModel):
    group: str
    contribution: float = Field(description="signed contribution to the beta (Shapley, vs the baseline)")
    text: str


class AssetForecast(BaseModel):
    symbol: str
    as_of: str = Field(description="open time of the last bar used")
    betas: dict[str, BetaForecast]
    regime_probabilities: dict[str, float]
    summary: str
    drivers: dict[str, list[Driver]] = Field(description="benchmark -> top drivers")


class ModelInfo(BaseModel):
    name: str
    version: str
    bundle_sha256: str
    feature_spec_hash: str


class ForecastResponse(BaseModel):
    request_id: str
    model: ModelInfo
    forecasts: list[AssetForecast]


class FeatureContribution(BaseModel):
    feature: str
    contribution: float
    method: str


class GroupContribution(BaseModel):
    group: str
    contribution: float
    features: list[FeatureContribution] = Field(default_factory=list)


class BenchmarkExplanation(BaseModel):
    forecast: float
    baseline_forecast: float
    groups: list[GroupContribution]


class AssetExplanation(BaseModel):
    symbol: str
    as_of: str
    benchmarks: dict[str, BenchmarkExplanation]


class ExplainResponse(BaseModel):
    request_id: str
    model: ModelInfo
    baseline: str
    explanations: list[AssetExplanation]


class HedgeOrder(BaseModel):
    symbol: str
    notional: float


class HedgeResponse(BaseModel):
    request_id: str
    model: ModelInfo
    orders: list[HedgeOrder]
    portfolio_beta: dict[str, float]
    target: dict[str, float]
    residual_beta: dict[str, float]
    residual_interval: dict[str, tuple[float, float]]
    betas_used: dict[str, dict[str, float]]
    nav: float
    reachable: bool
    method: str
    notes: list[str]


# --- checks against the loaded model --------------------------------------------------------------


def check_against_model(
    req: ForecastRequest, freq: pd.Timedelta, min_periods: int, required_series: list[str]
) -> None:
    """Raise RequestError (field path + asset) if the request cannot feed the model; see module docstring."""
    symbols = {a.symbol for a in req.assets}
    for name in required_series:
        if name not in req.series and name not in symbols:
            raise RequestError(
                f"the model needs series {name!r}; add it to series (or as an asset)", f"series.{name}"
            )
    for i, a in enumerate(req.assets):
        where = f"assets[{i}].history"
        if len(a.history) < min_periods:
            raise RequestError(
                f"asset {a.symbol}: {len(a.history)} bars, the model needs at least {min_periods} of {freq}",
                where,
            )
        _check_grid([_utc(b.timestamp) for b in a.history], freq, f"asset {a.symbol}", where)
    for name, pts in req.series.items():
        if name in required_series and _is_bar_series(name):
            _check_grid([_utc(p.timestamp) for p in pts], freq, f"series {name}", f"series.{name}")


def _is_bar_series(name: str) -> bool:
    from models.schema import COMPOSITE_NAME, infer_category

    return name == COMPOSITE_NAME or infer_category(name) == "crypto_benchmark"


def _check_grid(stamps: list[datetime], freq: pd.Timedelta, what: str, where: str) -> None:
    idx = pd.DatetimeIndex(stamps)
    steps = idx[1:] - idx[:-1]
    bad = np.flatnonzero(np.asarray(steps != freq))  # vectorised: thousands of bars per request
    if bad.size:
        i = int(bad[0])
        gap = steps[i]
        kind = "missing bar(s)" if gap > freq else "a bar off the grid"
        raise RequestError(
            f"{what}: {kind} between {idx[i].isoformat()} and {idx[i + 1].isoformat()} "
            f"(step {gap}, the model's frequency is {freq})",
            f"{where}[{i + 1}].timestamp",
        )
