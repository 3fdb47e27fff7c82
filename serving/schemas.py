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

import functools
import hashlib
import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    RootModel,
    StrictFloat,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from adaptive_beta.models.settings import settings_at_import
from adaptive_beta.serving.iso_stamps import IsoStamps, fast_stamps

MAX_ASSETS = settings_at_import().max_assets  # ABETA_MAX_ASSETS: per request
MAX_HISTORY = settings_at_import().max_history  # ABETA_MAX_HISTORY: bars per asset / points per series
MAX_SERIES = settings_at_import().max_series  # ABETA_MAX_SERIES
MAX_SYMBOLS = 1000  # stored-state requests name symbols only: a universe of hundreds fits
MAX_PRICE_JUMP = settings_at_import().max_price_jump  # ABETA_MAX_PRICE_JUMP: per bar, either way
CLOCK_SKEW_S = settings_at_import().clock_skew_s  # ABETA_CLOCK_SKEW_S: timestamps up to now + this
SYMBOL_PATTERN = r"^[A-Za-z0-9_.\-^=]{1,40}$"
# the symbol rule: asset and instrument symbols and series names (the keys of `series`)
Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
MAX_TARGET_BETA = 5.0  # |target portfolio beta| (/hedge, /backtest): beyond it no mandate makes sense
MAX_NOTIONAL_USD = 1e12  # |notional|, NAV and order limits in USD: finite sums and products downstream


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
    # StrictFloat: a JSON number (int or float); `true` or "123.5" is a client bug, not a price
    close: StrictFloat = Field(description="close price, a JSON number, finite and > 0")
    volume: StrictFloat | None = Field(default=None, description="traded volume (base units), >= 0")
    funding_rate: StrictFloat | None = Field(
        default=None, description="funding rate for the interval ending in this bar"
    )
    open_interest: StrictFloat | None = Field(
        default=None, description="open interest at the bar close (contracts or USD, as in training), >= 0"
    )


class Point(_Strict):
    timestamp: datetime = Field(description="bar open time (crypto) or publication time (factors), ISO-8601")
    close: StrictFloat = Field(description="level, a JSON number, finite (> 0 except for rates)")


_EXTRAS = ("volume", "funding_rate", "open_interest")
_NON_NEGATIVE = frozenset({"volume", "open_interest"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
# float POSIX seconds identify the microsecond exactly while half their ulp is below 0.5 us: 1 s to 2^32 s
_FAST_SECONDS = (1.0, 2.0**32)


@dataclass(frozen=True)
class HistoryColumns:
    """One history as numpy columns, built once while the request is validated and reused after.

    `us` is int64 microseconds since the epoch, UTC (naive timestamps read as UTC); `close` and
    the optional fields (`extras`, NaN where absent) are float64.  The grid checks, the panel and
    the audit hash read these instead of walking thousands of pydantic points again.
    """

    us: np.ndarray
    close: np.ndarray
    extras: dict[str, np.ndarray]
    columnar: bool = False  # sent as columns: error paths name `timestamps[i]`, not `[i].timestamp`


def point_path(where: str, i: int, name: str, columnar: bool) -> str:
    """The request path of field `name` of point i: `history[3].close` or `history.close[3]`."""
    if columnar:
        return f"{where}.{'timestamps' if name == 'timestamp' else name}[{i}]"
    return f"{where}[{i}].{name}"


def epoch_microseconds(stamps: list[datetime]) -> np.ndarray:
    """Datetimes -> exact int64 microseconds since the epoch, UTC (naive read as UTC).

    Fast path: aware `datetime.timestamp()` and, for naive stamps, `(d - 1970-01-01).total_seconds()`
    are the correctly rounded float of us / 1e6 (CPython divides the exact integer), so between 1 s and 2^32 s (1970 to 2106) splitting it into whole
    seconds and a fraction recovers the microsecond exactly; anything else takes exact integer
    datetime arithmetic.  `tests/serving/test_request_columns.py` checks it against pandas.
    """
    if isinstance(stamps, IsoStamps):  # read by the columnar fast path while it was validated
        return stamps.us
    n = len(stamps)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    naive_epoch = _NAIVE_EPOCH  # naive: timedelta.total_seconds(), the same exact-integer division
    f = np.fromiter(
        ((d - naive_epoch).total_seconds() if d.tzinfo is None else d.timestamp() for d in stamps),
        dtype=np.float64,
        count=n,
    )
    if f.min() >= _FAST_SECONDS[0] and f.max() < _FAST_SECONDS[1]:
        whole = np.floor(f)
        return whole.astype(np.int64) * 1_000_000 + np.rint((f - whole) * 1e6).astype(np.int64)
    return np.fromiter(
        (((d if d.tzinfo is not None else d.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND for d in stamps),
        dtype=np.int64,
        count=n,
    )


def _floats(values: list) -> tuple[np.ndarray, np.ndarray | None]:
    """(float64 array with NaN for None, mask of the None entries or None if there are none)."""
    a = np.array(values, dtype=np.float64)  # None -> NaN
    nan = np.isnan(a)
    if not nan.any():
        return a, None
    none = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(nan):
        none[i] = values[i] is None
    return a, (none if none.any() else None)


def _point_error(points: list, i: int, extras: list[str], where: str, positive: bool) -> None:
    """Raise the message of the first problem at point i (same order as the checks below)."""
    p = points[i]
    c = p.close
    if not math.isfinite(c):
        raise ValueError(f"{where}[{i}].close is not a finite number")
    if positive and c <= 0:
        raise ValueError(f"{where}[{i}].close must be > 0 (got {c})")
    for extra in extras:
        v = getattr(p, extra)
        if v is not None:
            if not math.isfinite(v):
                raise ValueError(f"{where}[{i}].{extra} is not a finite number")
            if v < 0 and extra in _NON_NEGATIVE:
                raise ValueError(f"{where}[{i}].{extra} must be >= 0 (got {v})")
    ts = _utc(p.timestamp)
    if i > 0 and ts <= _utc(points[i - 1].timestamp):
        if ts == _utc(points[i - 1].timestamp):
            raise ValueError(f"{where}[{i}].timestamp {ts.isoformat()} duplicates the previous bar")
        raise ValueError(f"{where}[{i}].timestamp {ts.isoformat()} is before the previous bar (not sorted)")
    raise AssertionError(
        f"{where}[{i}]: flagged by the column checks but no problem found"
    )  # pragma: no cover


def _check_history(points: list, where: str, positive: bool = True) -> HistoryColumns:
    """Finite (and positive) closes, finite optional fields, strictly increasing timestamps.

    Column-wise (thousands of points per request): each field is read once into a numpy array
    and checked vectorised; the first bad point (in point order, checks in the order close,
    optional fields, timestamp) is then re-checked on its own to raise the one-point message.
    Returns the columns so later steps do not walk the points again.
    """
    n = len(points)
    if n == 0:
        empty = np.empty(0, dtype=np.float64)
        return HistoryColumns(np.empty(0, dtype=np.int64), empty, {})
    extras = _extras_of(type(points[0]))
    close = np.array([p.close for p in points], dtype=np.float64)
    bad = ~np.isfinite(close)
    if positive:
        bad |= close <= 0
    cols: dict[str, np.ndarray] = {}
    for extra in extras:
        a, none = _floats([getattr(p, extra) for p in points])
        with np.errstate(invalid="ignore"):
            wrong = ~np.isfinite(a)
            if none is not None:
                wrong &= ~none
            if extra in _NON_NEGATIVE:
                wrong |= a < 0
        bad |= wrong
        cols[extra] = a
    us = epoch_microseconds([p.timestamp for p in points])
    bad[1:] |= us[1:] <= us[:-1]
    if bad.any():
        _point_error(points, int(np.argmax(bad)), extras, where, positive)
    return HistoryColumns(us, close, cols)


def _check_columns(data: BarColumns | SeriesColumns, where: str, positive: bool = True) -> HistoryColumns:
    """`_check_history` for the columnar form: equal lengths, then the same checks in the same
    order, vectorised over the arrays the JSON decoder already built (no per-point objects).
    Each check is one reduction on the good path; the first bad point is located only on failure
    (a request validates ~9 columns: this is ~1/3 of its validation's Python time otherwise)."""
    n = len(data.timestamps)
    # as for bar objects, every optional field of a bar is a column (NaN where absent)
    extras = _extras_of(type(data))
    sent = [f for f in extras if getattr(data, f) is not None]
    for name in ["close", *sent]:
        if len(getattr(data, name)) != n:
            raise ValueError(f"{where}.{name} has {len(getattr(data, name))} values for {n} timestamps")
    close = np.array(data.close, dtype=np.float64)
    if not (np.isfinite(close).all() and (not positive or (close > 0).all())):
        bad = ~np.isfinite(close) | ((close <= 0) if positive else False)
        i = int(np.argmax(bad))
        c = close[i]
        what = "is not a finite number" if not math.isfinite(c) else f"must be > 0 (got {c})"
        raise ValueError(f"{where}.close[{i}] {what}")
    cols: dict[str, np.ndarray] = {}
    for extra in extras:
        cols[extra] = _extra_column(data, extra, n, where) if extra in sent else np.full(n, np.nan)
    us = epoch_microseconds(data.timestamps)
    if n > 1 and not (us[1:] > us[:-1]).all():
        i = int(np.argmax(us[1:] <= us[:-1])) + 1
        ts = (_EPOCH + timedelta(microseconds=int(us[i]))).isoformat()  # = _utc(timestamps[i]).isoformat()
        order = (
            "duplicates the previous bar" if us[i] == us[i - 1] else "is before the previous bar (not sorted)"
        )
        raise ValueError(f"{where}.timestamps[{i}] {ts} {order}")
    return HistoryColumns(us, close, cols, columnar=True)


@functools.cache  # per model class: `model_fields` is a slow descriptor in pydantic 2.12
def _extras_of(model: type) -> tuple[str, ...]:
    """The optional bar fields `model` has."""
    return tuple(f for f in _EXTRAS if f in model.model_fields)


def _extra_column(data: BarColumns, extra: str, n: int, where: str) -> np.ndarray:
    """One sent optional column as float64 (None -> NaN), its first bad value a ValueError."""
    a, none = _floats(getattr(data, extra))
    with np.errstate(invalid="ignore"):
        wrong = ~np.isfinite(a) & (~none if none is not None else True)
        if extra in _NON_NEGATIVE:
            wrong |= a < 0
    for i in np.flatnonzero(wrong)[:1]:
        what = "is not a finite number" if not math.isfinite(a[i]) else f"must be >= 0 (got {a[i]})"
        raise ValueError(f"{where}.{extra}[{i}] {what}")
    return a


class PointList(list):
    """A validated series (list of Point) that also carries its `HistoryColumns` as `.columns`."""

    columns: HistoryColumns | None = None


def history_columns(owner) -> HistoryColumns:
    """The columns of an AssetHistory or a series' point list: cached at validation, else built now."""
    if isinstance(owner, AssetHistory):
        cols = owner._columns
        if cols is None:
            cols = _history_of(owner.history, f"asset {owner.symbol}: history")
            owner._columns = cols
        return cols
    if isinstance(owner, SeriesColumns):
        if owner._columns is None:
            owner._columns = _check_columns(owner, "series", positive=False)
        return owner._columns
    cols = getattr(owner, "columns", None)
    return cols if cols is not None else _check_history(list(owner), "series", positive=False)


def _history_of(history, where: str, positive: bool = True) -> HistoryColumns:
    """The checked columns of either form of a history."""
    if isinstance(history, BarColumns | SeriesColumns):
        return _check_columns(history, where, positive)
    return _check_history(history, where, positive)


def request_sha256(req: ForecastRequest) -> str:
    """sha256 of a request's canonical form: the audit log's `input_sha256`.

    The canonical form (documented in docs/serving.md) is, concatenated:
    1. the request's JSON as pydantic writes it (`model_dump_json`) WITHOUT the histories and
       series: `assets[*].history` and `series` excluded (so symbols, order and every other field
       such as `top_groups`, `positions` or `scenarios` are covered);
    2. per asset in request order: `b"asset\0" + symbol + b"\0"`, then the little-endian bytes of
       int64 microseconds since the epoch (UTC) of every timestamp, then float64 close, volume,
       funding_rate, open_interest (NaN where absent);
    3. per series in request order: `b"series\0" + name + b"\0"`, int64 microseconds, float64 close.
    A stored-state request (`symbols` / `universe`) is its JSON alone (no histories to add).
    Equal requests (the same instants, values and fields) hash equal whatever the timestamp
    spelling (`Z`, `+00:00`, an offset, a naive UTC stamp).  About 0.1 ms instead of ~2 ms for
    re-serialising ~6,000 points to JSON.
    """
    h = hashlib.sha256()
    exclude: dict = {"assets": {"__all__": {"history"}}, "series": True}
    if not getattr(req, "stored", False):  # the stateless canonical form predates the stored-state fields
        exclude.update({"symbols": True, "universe": True})
    h.update(req.model_dump_json(exclude=exclude).encode())
    for a in req.assets:
        cols = history_columns(a)
        h.update(b"asset\0" + a.symbol.encode() + b"\0")
        h.update(cols.us.astype("<i8").tobytes())
        h.update(cols.close.astype("<f8").tobytes())
        for extra in _EXTRAS:
            v = cols.extras.get(extra)
            v = np.full(len(cols.close), np.nan) if v is None else v
            h.update(np.where(np.isnan(v), np.nan, v).astype("<f8").tobytes())  # one NaN bit pattern
    for name, pts in req.series.items():
        cols = history_columns(pts)
        h.update(b"series\0" + name.encode() + b"\0")
        h.update(cols.us.astype("<i8").tobytes())
        h.update(cols.close.astype("<f8").tobytes())
    return h.hexdigest()


def _timestamps_column(cls, value, handler):
    """A column of ISO strings of one layout is read in one vectorised pass (`iso_stamps`), within
    the field's length limits; anything else is pydantic's `list[datetime]` (its errors unchanged)."""
    fast = fast_stamps(value, *_length_limits(cls))
    return fast if fast is not None else handler(value)


@functools.cache  # per model class, as `_extras_of`
def _length_limits(model: type) -> tuple[int, int | None]:
    """(min_length, max_length) of the model's `timestamps` field."""
    limits = {type(m).__name__: m for m in model.model_fields["timestamps"].metadata}
    return getattr(limits.get("MinLen"), "min_length", 0), getattr(limits.get("MaxLen"), "max_length", None)


class BarColumns(_Strict):
    """A history as columns: one JSON array per field instead of one object per bar.

    Why: a stateless request carries ~661 bars per asset and per series; as objects, every bar is
    a JSON object to decode and a pydantic model to build, which dominates the request's cost. As
    columns the same data is a handful of arrays (timestamps parsed by the same rules as `Bar`).
    The audit hash (`request_sha256`) is the same for both forms of the same data.
    """

    timestamps: list[datetime] = Field(
        min_length=2,
        max_length=MAX_HISTORY,
        description="bar open times, ISO-8601 (UTC if no offset), sorted",
    )
    close: list[StrictFloat] = Field(
        description="close prices, JSON numbers, finite and > 0; one per timestamp"
    )
    volume: list[StrictFloat | None] | None = Field(default=None, description="traded volume per bar, >= 0")
    funding_rate: list[StrictFloat | None] | None = Field(default=None, description="funding rate per bar")
    open_interest: list[StrictFloat | None] | None = Field(
        default=None, description="open interest per bar, >= 0"
    )

    _fast_timestamps = field_validator("timestamps", mode="wrap")(_timestamps_column)

    def __len__(self) -> int:
        return len(self.timestamps)


class SeriesColumns(_Strict):
    """A benchmark or factor series as columns (see `BarColumns`)."""

    timestamps: list[datetime] = Field(
        min_length=1, max_length=MAX_HISTORY, description="bar open or publication times, ISO-8601, sorted"
    )
    close: list[StrictFloat] = Field(description="levels, JSON numbers, finite (> 0 except for rates)")

    _columns: HistoryColumns | None = PrivateAttr(default=None)
    _fast_timestamps = field_validator("timestamps", mode="wrap")(_timestamps_column)

    def __len__(self) -> int:
        return len(self.timestamps)


# a history or series is either a list of objects or columns; the JSON type decides (array or object)
ROWS, COLUMNS = "rows", "columns"
UNION_TAGS = frozenset({ROWS, COLUMNS})  # the service's error paths leave these tags out


def _form(v) -> str:
    return COLUMNS if isinstance(v, dict | BarColumns | SeriesColumns) else ROWS


History = Annotated[
    Annotated[list[Bar], Field(min_length=2, max_length=MAX_HISTORY), Tag(ROWS)]
    | Annotated[BarColumns, Tag(COLUMNS)],
    Discriminator(_form),
]


class SeriesValues(RootModel[Annotated[list[Point], Tag(ROWS)] | Annotated[SeriesColumns, Tag(COLUMNS)]]):
    """One series in either form. A root model, not a bare annotated union, because BentoML's
    IO descriptor re-applies a dict value's discriminator and fails at start-up; the request's
    validator unwraps it, so `req.series[name]` is the point list or the columns."""

    root: Annotated[
        Annotated[list[Point], Tag(ROWS)] | Annotated[SeriesColumns, Tag(COLUMNS)], Discriminator(_form)
    ]


class AssetHistory(_Strict):
    symbol: Symbol = Field(description="perp symbol, e.g. SOLUSDT")
    history: History = Field(
        description="bars sorted by time: a list of bar objects, or columns "
        '({"timestamps": [...], "close": [...]}, cheaper to send and decode)'
    )

    _columns: HistoryColumns | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _sorted_finite(self) -> AssetHistory:
        self._columns = _history_of(self.history, f"asset {self.symbol}: history")
        return self


def _check_series(series: dict[str, list[Point] | SeriesColumns]) -> dict[str, list[Point] | SeriesColumns]:
    """Checks every series; returns point lists as `PointList`s carrying their columns (columnar
    series carry them in `_columns`)."""
    from adaptive_beta.models.data.schema import infer_category

    out: dict[str, list[Point] | SeriesColumns] = {}
    for name, pts in series.items():
        if not len(pts):
            raise ValueError(f"series {name}: empty")
        if len(pts) > MAX_HISTORY:
            raise ValueError(f"series {name}: {len(pts)} points, more than the limit {MAX_HISTORY}")
        positive = infer_category(name) != "rates"
        if isinstance(pts, SeriesColumns):
            pts._columns = _check_columns(pts, f"series {name}", positive)
            out[name] = pts
            continue
        checked = PointList(pts)
        checked.columns = _check_history(pts, f"series {name}", positive)
        out[name] = checked
    return out


class HistoryRequest(_Strict):
    """A body that carries its own history: assets with bars, and the series the model uses."""

    assets: list[AssetHistory] = Field(min_length=1, max_length=MAX_ASSETS)
    series: dict[Symbol, SeriesValues] = Field(
        default_factory=dict,
        max_length=MAX_SERIES,
        description="benchmarks (BTCUSDT, CRYPTO_EW) and cross-market factors (SPY, GLD, DXY, ...)",
    )

    @field_validator("series")
    @classmethod
    def _series_ok(cls, v: dict[str, SeriesValues]) -> dict[str, list[Point] | SeriesColumns]:
        return _check_series({k: p.root if isinstance(p, SeriesValues) else p for k, p in v.items()})

    @model_validator(mode="after")
    def _unique_symbols(self) -> HistoryRequest:
        seen: set[str] = set()
        for i, a in enumerate(self.assets):
            if a.symbol in seen:
                raise ValueError(f"assets[{i}].symbol {a.symbol} appears twice in the request")
            seen.add(a.symbol)
        return self


class ForecastRequest(HistoryRequest):
    """Either the history itself (`assets`, `series`: stateless), or `symbols` / `universe` to
    read the forecasts the service keeps from its market-data store (stored state, `POST /bars`)."""

    assets: list[AssetHistory] = Field(
        default_factory=list, max_length=MAX_ASSETS, description="assets with history (stateless form)"
    )
    symbols: list[Symbol] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SYMBOLS,
        description="stored-state form: the assets whose kept forecasts to return (no history sent)",
    )
    universe: bool = Field(default=False, description="stored-state form: every asset with a kept forecast")

    @model_validator(mode="after")
    def _one_form(self) -> ForecastRequest:
        forms = [
            name
            for name, used in (
                ("assets", bool(self.assets)),
                ("symbols", self.symbols is not None),
                ("universe", self.universe),
            )
            if used
        ]
        if len(forms) != 1:
            raise ValueError(
                "send exactly one of assets (with history), symbols (stored state) or universe: true"
                + (f"; got {' and '.join(forms)}" if forms else "")
            )
        if not self.assets and self.series:
            raise ValueError("series go with assets (stateless form); the stored state has its own")
        if self.symbols is not None and len(set(self.symbols)) != len(self.symbols):
            dup = next(s for s in self.symbols if self.symbols.count(s) > 1)
            raise ValueError(f"symbols: {dup} appears twice")
        return self

    @property
    def stored(self) -> bool:
        """A stored-state request (symbols or universe), answered from the kept forecasts."""
        return not self.assets


class ExplainRequest(ForecastRequest):
    top_groups: int = Field(default=2, ge=0, le=10, description="groups detailed feature by feature")


class HedgeInstrument(_Strict):
    symbol: Symbol
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


class HedgeRequest(HistoryRequest):
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


def check_bounds(req: HedgeRequest) -> None:
    """422 naming the field for a target beta or a USD amount beyond the service's bounds.

    Finite but extreme numbers (1e308) otherwise overflow to inf inside the hedge arithmetic.
    """
    for b, v in req.target.items():
        if abs(v) > MAX_TARGET_BETA:
            raise RequestError(
                f"target beta {v:g} is outside [-{MAX_TARGET_BETA:g}, {MAX_TARGET_BETA:g}]", f"target.{b}"
            )
    amounts = [(f"positions.{s}", v) for s, v in req.positions.items()]
    amounts.append(("nav", req.nav))
    for i, inst in enumerate(req.instruments):
        amounts += [(f"instruments[{i}].{k}", getattr(inst, k)) for k in ("min_notional", "max_notional")]
    for where, v in amounts:
        if v is not None and abs(v) > MAX_NOTIONAL_USD:
            raise RequestError(
                f"{v:g} USD is beyond the limit of {MAX_NOTIONAL_USD:g} USD in absolute value", where
            )


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
    req: ForecastRequest,
    freq: pd.Timedelta,
    min_periods: int,
    required_series: list[str],
    benchmarks: Collection[str] = (),
) -> None:
    """Raise RequestError (field path + asset) if the request cannot feed the model; see module docstring.

    A required bar series (`is_bar_series`: one of the model's `benchmarks`, the composite or a
    crypto-benchmark name) must sit on the model's bar grid, as the panel builder aligns it so.
    """
    from adaptive_beta.models.data.schema import infer_category, is_bar_series

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
        cols = history_columns(a)
        _check_grid(cols.us, freq, f"asset {a.symbol}", where, cols.columnar)
        _check_plausible(cols, freq, f"asset {a.symbol}", where, positive=True)
        if len(cols.close) > 2 and np.all(cols.close == cols.close[0]):
            raise RequestError(
                f"asset {a.symbol}: every close is {cols.close[0]:g}: a constant price has no beta",
                f"{where}",
            )
    for name, pts in req.series.items():
        cols = history_columns(pts)
        if name in required_series and is_bar_series(name, benchmarks):
            _check_grid(cols.us, freq, f"series {name}", f"series.{name}", cols.columnar)
        positive = infer_category(name) != "rates"
        _check_plausible(cols, freq, f"series {name}", f"series.{name}", positive)


def check_series_used(
    req: ForecastRequest, model_series: Collection[str], extra: Collection[str] = ()
) -> None:
    """422 naming `series.<name>` for a series neither the model nor the endpoint (`extra`, e.g. the
    series a /stress scenario shocks) uses: it would only be carried into the audit log."""
    used = set(model_series) | set(extra)
    for name in req.series:
        if name not in used:
            raise RequestError(
                f"series {name!r} is not used by the model (it uses {', '.join(model_series)})"
                + (f" nor by this request ({', '.join(sorted(extra))})" if extra else "")
                + "; remove it",
                f"series.{name}",
            )


def _check_plausible(cols: HistoryColumns, freq: pd.Timedelta, what: str, where: str, positive: bool) -> None:
    """Well-formed but impossible data (422 naming the point): a bar that opens after now plus one
    bar (and the clock-skew allowance), or a price that moves more than MAX_PRICE_JUMP x in one
    step (a unit or decimal error, or a bad print such as 1e308 mid-history)."""
    us, close = cols.us, cols.close
    now_us = int((datetime.now(UTC) - _EPOCH) / _MICROSECOND)
    limit = now_us + int(freq / pd.Timedelta(microseconds=1)) + int(CLOCK_SKEW_S * 1e6)
    late = np.flatnonzero(us > limit)
    if late.size:
        i = int(late[0])
        stamp = (_EPOCH + timedelta(microseconds=int(us[i]))).isoformat()
        raise RequestError(
            f"{what}: timestamp {stamp} is in the future (after now plus one {freq} bar)",
            point_path(where, i, "timestamp", cols.columnar),
        )
    if positive and close.size > 1:
        ratio = np.abs(np.diff(np.log(close)))
        jumps = np.flatnonzero(ratio > math.log(MAX_PRICE_JUMP))
        if jumps.size:
            i = int(jumps[0]) + 1
            raise RequestError(
                f"{what}: close {close[i]:g} is {math.exp(ratio[i - 1]):.3g}x away from the previous close "
                f"{close[i - 1]:g}: an implausible jump (limit {MAX_PRICE_JUMP:g}x per step, "
                "setting ABETA_MAX_PRICE_JUMP)",
                point_path(where, i, "close", cols.columnar),
            )


def _check_grid(us: np.ndarray, freq: pd.Timedelta, what: str, where: str, columnar: bool = False) -> None:
    """Every step between consecutive stamps (int64 us, UTC) equals `freq`; else the first bad step."""
    steps = np.diff(us)
    step_us = freq // pd.Timedelta(microseconds=1)
    bad = np.flatnonzero(steps != step_us)  # vectorised: thousands of bars per request
    if bad.size:
        i = int(bad[0])
        gap = pd.Timedelta(int(steps[i]), unit="us")
        kind = "missing bar(s)" if gap > freq else "a bar off the grid"
        left, right = (pd.Timestamp(int(us[k]), unit="us", tz="UTC").isoformat() for k in (i, i + 1))
        raise RequestError(
            f"{what}: {kind} between {left} and {right} (step {gap}, the model's frequency is {freq})",
            point_path(where, i + 1, "timestamp", columnar),
        )
