"""Request and response bodies of POST /backtest (pydantic v2).

The request is a /forecast body (asset histories + series) plus the book and the overlay:
`portfolio` (symbol -> weight, a fraction of NAV; long > 0), `hedge_instruments` (default: the
BTC and ETH perps of the request), `target_beta`, `rebalance`, `fee_bps`, `estimators` (classical
baseline names) and `include_model` (the served model's forecasts at every rebalance bar).

Shape checks live here (400 with pydantic's `loc`); checks that need the request's data (a
portfolio symbol without history, an unknown estimator, too many rebalances) are 422
`{"error", "field"}` in serving/endpoints/backtest.py.  Bounds use ge/le only (BentoML's OpenAPI 3.0).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field, model_validator

from adaptive_beta.serving.schemas import MAX_ASSETS, MAX_TARGET_BETA, HistoryRequest, ModelInfo

MAX_INSTRUMENTS = 8
MAX_ESTIMATORS = 16
MAX_GROSS_WEIGHT = 100.0  # sum |weight|: a 100x levered book is already far outside any mandate
DEFAULT_ESTIMATORS = ("rolling_ols_30d", "rolling_ols_90d", "welch_hl60d", "ewma_hl30d")
DURATION_PATTERN = r"^[0-9]{1,4}(min|h|d|w)$"


class BacktestRequest(HistoryRequest):
    portfolio: dict[str, float] = Field(
        min_length=1,
        max_length=MAX_ASSETS,
        description="symbol -> weight of the core book, a fraction of NAV (long > 0); reset at each rebalance",
    )
    hedge_instruments: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INSTRUMENTS,
        description="perps the overlay is sized in (default: the BTC and ETH perps among assets)",
    )
    benchmarks: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="benchmarks hedged to target_beta (default: the BTC benchmark)",
    )
    target_beta: float = Field(
        default=0.0,
        ge=-MAX_TARGET_BETA,
        le=MAX_TARGET_BETA,
        allow_inf_nan=False,
        description="target portfolio beta",
    )
    rebalance: str = Field(
        default="1d", pattern=DURATION_PATTERN, description="rebalance period: 8h, 1d, 1w, ..."
    )
    fee_bps: float = Field(
        default=4.0, ge=0.0, le=1000.0, allow_inf_nan=False, description="fee in bps of traded notional"
    )
    funding: bool = Field(default=True, description="pay/receive the funding_rate sent with each bar")
    estimators: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ESTIMATORS,
        description=f"classical baselines to compare (default: {', '.join(DEFAULT_ESTIMATORS)})",
    )
    include_model: bool = Field(
        default=True, description="also size the overlay from the served model's forecast at each rebalance"
    )

    @model_validator(mode="after")
    def _finite(self) -> BacktestRequest:
        for sym, w in self.portfolio.items():
            if not math.isfinite(w):
                raise ValueError(f"portfolio.{sym} is not a finite number")
        gross = sum(abs(w) for w in self.portfolio.values())
        if gross > MAX_GROSS_WEIGHT:
            raise ValueError(
                f"portfolio: gross weight {gross:.4g} is above {MAX_GROSS_WEIGHT} (weights are fractions of NAV)"
            )
        if not math.isfinite(self.target_beta) or not math.isfinite(self.fee_bps):
            raise ValueError("target_beta and fee_bps must be finite numbers")
        return self


class EstimatorSummary(BaseModel):
    """One overlay over the whole backtest (fractions of the starting NAV; None = not computable)."""

    estimator: str
    n_bars: int
    realised_beta: dict[str, float | None] = Field(
        description="benchmark -> OLS beta of the gross hedged return on the benchmark return"
    )
    beta_error: dict[str, float | None] = Field(description="benchmark -> |realised beta - target_beta|")
    rolling_beta_mad: dict[str, float | None] = Field(
        description="benchmark -> mean |rolling 30d realised beta - target| (how steady the hedge is)"
    )
    hedged_vol: float | None = Field(description="annualised volatility of the net return (365-day year)")
    max_drawdown: float | None
    total_return: float | None
    turnover: float | None = Field(description="annualised traded notional / NAV")
    fees: float | None
    funding: float | None
    costs: float | None = Field(description="fees + funding")
    skipped_rebalances: int


class BacktestResponse(BaseModel):
    request_id: str
    model: ModelInfo
    start: str = Field(description="first decision bar (open time), common to every estimator")
    end: str = Field(description="last bar whose return is earned")
    n_rebalances: int
    benchmarks: list[str]
    hedge_instruments: list[str]
    portfolio: dict[str, float]
    target_beta: float
    rebalance: str
    fee_bps: float
    estimators: list[EstimatorSummary] = Field(description="unhedged core first, then each overlay")
    ratios_vs_rolling_ols_30d: dict[str, dict[str, float | None]] = Field(
        description="estimator -> metric ratio vs the rolling-OLS 30d overlay (< 1 is better); empty without it"
    )
    notes: list[str] = Field(default_factory=list)
