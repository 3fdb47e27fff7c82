"""Stress scenarios as data: pydantic models read from TOML/YAML, errors naming file and field.

Kinds (field `kind`):

- `benchmark_shock`: `shocks` = benchmark or factor -> simple return (e.g. BTCUSDT = -0.30).  Every
  position that is itself a shocked series (the BTC perp for `BTCUSDT`) moves by exactly that
  shock; every other position moves by beta(position, driver) x shock(driver).  `driver` defaults
  to the first key of `shocks`.
- `correlation_breakdown`: the same rule with at least two shocked series that move by different
  amounts (BTC -20 % while the composite falls -35 %): the BTC perp hedge earns the BTC move, the
  book loses its composite beta times the composite move.
- `beta_shift`: a shock as above, but realised betas differ from the forecasts: each rule in
  `multipliers` scales beta(asset, benchmark) for `assets` = "book" (the positions), "altcoins"
  (non-BTC/ETH symbols), "all" or a list of symbols, on `benchmark` ("*" = every benchmark).  The
  overlay was sized with the forecasts; the P&L uses the shifted betas.  A symbol's beta to its own
  benchmark series stays 1.
- `historical`: `start`..`end` (inclusive dates): each position earns its compounded panel return
  over the bars opening in that window, applied to today's positions.

Scenario files: a list of tables under `scenario` (TOML `[[scenario]]`, YAML `scenario:`).
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from adaptive_beta.models.data.schema import DataError


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""


def _check_shocks(v: dict[str, float]) -> dict[str, float]:
    if not v:
        raise ValueError("give at least one shocked series, e.g. {BTCUSDT = -0.3}")
    for k, x in v.items():
        if not math.isfinite(x) or x <= -1.0:
            raise ValueError(f"shock of {k!r} must be a finite simple return above -1 (got {x})")
    return v


class _ShockBase(_Base):
    shocks: dict[str, float]
    driver: str | None = None

    @field_validator("shocks")
    @classmethod
    def _shocks_ok(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_shocks(v)

    @model_validator(mode="after")
    def _driver_ok(self):
        if self.driver is not None and self.driver not in self.shocks:
            raise ValueError(f"driver {self.driver!r} is not one of the shocked series {list(self.shocks)}")
        return self

    @property
    def driver_name(self) -> str:
        return self.driver or next(iter(self.shocks))


class BenchmarkShock(_ShockBase):
    kind: Literal["benchmark_shock"] = "benchmark_shock"


class CorrelationBreakdown(_ShockBase):
    kind: Literal["correlation_breakdown"] = "correlation_breakdown"

    @field_validator("shocks")
    @classmethod
    def _two_moves(cls, v: dict[str, float]) -> dict[str, float]:
        if len(v) < 2 or len(set(v.values())) < 2:
            raise ValueError("a correlation breakdown needs at least two series shocked by different amounts")
        return v


class BetaMultiplier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assets: Literal["book", "altcoins", "all"] | list[str] = "book"
    benchmark: str = "*"
    factor: float

    @field_validator("factor")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("factor must be finite")
        return v


class BetaShift(_ShockBase):
    kind: Literal["beta_shift"] = "beta_shift"
    multipliers: list[BetaMultiplier] = Field(min_length=1)


class HistoricalReplay(_Base):
    kind: Literal["historical"] = "historical"
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _order(self):
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


Scenario = Annotated[
    BenchmarkShock | CorrelationBreakdown | BetaShift | HistoricalReplay, Field(discriminator="kind")
]
_LIST = TypeAdapter(list[Scenario])


def _message(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = err["loc"]
        # loc: (index, kind, field, ...) -> scenario[index].field
        where = f"scenario[{loc[0]}]" if loc and isinstance(loc[0], int) else "scenario"
        rest = [str(p) for p in loc[2:]] if len(loc) > 2 else [str(p) for p in loc[1:]]
        field = ".".join(rest)
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{source}: {where} field {field!r}: {msg}" if field else f"{source}: {where}: {msg}")
    return "; ".join(parts)


def parse_scenarios(data: object, source: str = "scenarios") -> list:
    """Validated scenarios from a parsed file (a table with `scenario = [...]`, or a list)."""
    items = data.get("scenario") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise DataError("no scenarios: expected a list of tables under 'scenario'", file=source)
    try:
        scenarios = _LIST.validate_python(items)
    except ValidationError as exc:
        raise DataError(_message(exc, source)) from None
    names = [s.name for s in scenarios]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"scenario name(s) {dup} used twice", file=source, column="name")
    return scenarios


def load_scenarios(path: str | Path) -> list:
    """Read and validate a scenario file (.toml, .yaml/.yml)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("scenario file does not exist", file=str(p))
    text = p.read_text()
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # TOMLDecodeError / YAMLError
        raise DataError(f"not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}", file=str(p)) from exc
    return parse_scenarios(data, str(p))


def default_scenarios_path() -> Path:
    """The documented default scenarios, shipped inside the package (docs/scenarios/default.toml links here)."""
    return Path(__file__).resolve().parent / "default_scenarios.toml"
