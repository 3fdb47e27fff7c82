"""Request and response bodies of POST /stress (pydantic v2).

The request is a /forecast body (asset histories + series, as /hedge takes them) plus the book:
`positions` (symbol -> signed USD notional), optional `scenarios` (the tables of a scenario file
as JSON; default docs/scenarios/default.toml), optional explicit `betas` (symbol -> series ->
beta; they replace the model's forecasts for the pairs they name), and the overlay: `hedge`
(instrument -> USD notional held) or `hedge_instruments` + `target` (sized with models/portfolio/hedge.py).

Scenarios are left as plain objects here and validated by `adaptive_beta.models.portfolio.scenarios.parse_scenarios` in
serving/endpoints/stress.py, so a bad scenario field is a 422 naming `scenarios[i].<field>` with the
same message as the CLI gives for a scenario file.  Bounds use ge/le only (BentoML's OpenAPI 3.0).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field, model_validator

from adaptive_beta.models.portfolio.stress import ScenarioResult
from adaptive_beta.serving.schemas import MAX_ASSETS, HistoryRequest, ModelInfo

MAX_SCENARIOS = 32
MAX_INSTRUMENTS = 8


def _finite_map(values: dict[str, float], where: str) -> None:
    for k, v in values.items():
        if not math.isfinite(v):
            raise ValueError(f"{where}.{k} is not a finite number")


class StressRequest(HistoryRequest):
    positions: dict[str, float] = Field(
        min_length=1, max_length=MAX_ASSETS, description="symbol -> signed USD notional (long > 0)"
    )
    scenarios: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=MAX_SCENARIOS,
        description=(
            "scenario tables as in a scenario file (fields of models/portfolio/scenarios.py: name, kind, shocks, "
            "driver, multipliers, start, end); default: docs/scenarios/default.toml"
        ),
    )
    betas: dict[str, dict[str, float]] | None = Field(
        default=None,
        max_length=MAX_ASSETS,
        description="symbol -> benchmark or factor -> beta; replaces the forecast for the pairs given",
    )
    hedge: dict[str, float] | None = Field(
        default=None,
        max_length=MAX_INSTRUMENTS,
        description="overlay held: instrument -> USD notional (default: sized on `target`)",
    )
    hedge_instruments: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INSTRUMENTS,
        description="instruments the overlay is sized in (default: the keys of `hedge`, else the BTC perp)",
    )
    target: dict[str, float] | None = Field(
        default=None,
        description="benchmark -> target portfolio beta (default 0 on each instrument's own benchmark)",
    )
    nav: float | None = Field(default=None, ge=0, description="portfolio NAV in USD; default gross notional")

    @model_validator(mode="after")
    def _consistent(self) -> StressRequest:
        have = {a.symbol for a in self.assets}
        _finite_map(self.positions, "positions")
        for sym in self.positions:
            if sym not in have:
                raise ValueError(f"positions.{sym}: no history for {sym} in assets")
        if self.hedge is not None:
            _finite_map(self.hedge, "hedge")
            for sym in self.hedge:
                if sym not in have:
                    raise ValueError(f"hedge.{sym}: no history for {sym} in assets")
        for i, sym in enumerate(self.hedge_instruments or []):
            if sym not in have:
                raise ValueError(f"hedge_instruments[{i}] {sym}: no history for it in assets")
        if self.target is not None:
            _finite_map(self.target, "target")
        for sym, row in (self.betas or {}).items():
            _finite_map(row, f"betas.{sym}")
        if self.nav is not None and self.nav <= 0:
            raise ValueError("nav must be > 0")
        return self


class SkippedScenario(BaseModel):
    name: str
    reason: str


class StressResponse(BaseModel):
    request_id: str
    model: ModelInfo
    nav: float
    target: dict[str, float]
    hedge_instruments: list[str]
    hedge_source: str = Field(description="'given' (the request's hedge) or 'overlay' (sized on target)")
    positions: dict[str, float]
    betas_used: dict[str, dict[str, float]] = Field(
        description="symbol -> series -> beta the scenarios used (before any beta_shift)"
    )
    beta_sources: dict[str, str] = Field(
        description="series -> where its betas come from (model forecast, history OLS, request)"
    )
    scenarios: list[ScenarioResult]
    skipped: list[SkippedScenario] = Field(
        default_factory=list, description="default scenarios the request's data cannot run, and why"
    )
