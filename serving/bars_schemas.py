"""Request and response bodies of POST /bars, and its checks against the model.

The body is a `/forecast` body (`assets` with `history`, and `series`), so a client that can
build one can feed the other, with two differences: an asset may carry a single new bar (a feed
posts what is new), and `restate: true` allows replacing stored bars.  Every bar passes the same
shape checks (serving/schemas.py: sorted unique timestamps, finite positive closes, bounded
sizes: 400) and the same checks against the model as a forecast request (`check_bars`: the
model's bar grid for assets and bar series, no timestamp in the future, no implausible jump,
no series the model does not use: 422).  What contradicts the stored bars is a 409
(`BarsConflict`, models/market/store.py says the rules).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Annotated

import pandas as pd
from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from adaptive_beta.serving.schemas import (
    COLUMNS,
    MAX_ASSETS,
    MAX_HISTORY,
    ROWS,
    AssetHistory,
    Bar,
    BarColumns,
    HistoryRequest,
    RequestError,
    _check_grid,
    _check_plausible,
    _form,
    check_series_used,
    history_columns,
)


class BarsConflict(RequestError):
    """The bars contradict the stored ones (HTTP 409; `field` names the series and bar)."""

    status = 409


class NewBarColumns(BarColumns):
    timestamps: list[datetime] = Field(
        min_length=1, max_length=MAX_HISTORY, description="bar open times, sorted"
    )


class NewBars(AssetHistory):
    history: Annotated[
        Annotated[list[Bar], Field(min_length=1, max_length=MAX_HISTORY), Tag(ROWS)]
        | Annotated[NewBarColumns, Tag(COLUMNS)],
        Discriminator(_form),
    ] = Field(description="new bars sorted by time (one is enough), as bar objects or columns")


class BarsRequest(HistoryRequest):
    assets: list[NewBars] = Field(default_factory=list, max_length=MAX_ASSETS)
    restate: bool = Field(
        default=False,
        description="replace stored bars whose values differ (each replacement is written to the audit log); "
        "without it a different value for a stored bar is a 409",
    )

    @model_validator(mode="after")
    def _something(self) -> BarsRequest:
        if not self.assets and not self.series:
            raise ValueError("no bars: send assets with history and/or series")
        return self


class SeriesAppend(BaseModel):
    kind: str = Field(description="asset or series")
    appended: int = Field(description="new bars stored")
    duplicate: int = Field(description="bars already stored with the same values (nothing written)")
    restated: int = Field(description="stored bars replaced (restate: true), each audited")
    last: str | None = Field(description="the series' last stored bar after this request (UTC ISO 8601)")


class ForecastsRefresh(BaseModel):
    updated: int = Field(description="assets whose stored-state forecast these bars completed (computed now)")
    as_of: str | None = Field(default=None, description="the last bar the stored-state forecasts have seen")
    note: str | None = Field(
        default=None, description="why no forecast was refreshed (e.g. a series missing)"
    )


class BarsResponse(BaseModel):
    series: dict[str, SeriesAppend]
    restatement_record: str | None = Field(
        default=None, description="request_id of the audit record of the restatements, if any"
    )
    forecasts: ForecastsRefresh | None = Field(
        default=None, description="the stored-state forecasts after these bars (POST /forecast with symbols)"
    )


def check_bars(
    req: BarsRequest, freq: pd.Timedelta, bar_series: Collection[str], model_series: Collection[str]
) -> None:
    """The checks of a forecast request that apply to new bars (see the module docstring)."""
    from adaptive_beta.models.data.schema import infer_category

    check_series_used(req, model_series)
    for i, a in enumerate(req.assets):
        where = f"assets[{i}].history"
        cols = history_columns(a)
        _check_grid(cols.us, freq, f"asset {a.symbol}", where, cols.columnar)
        _check_plausible(cols, freq, f"asset {a.symbol}", where, positive=True)
    for name, pts in req.series.items():
        cols = history_columns(pts)
        if name in bar_series:
            _check_grid(cols.us, freq, f"series {name}", f"series.{name}", cols.columnar)
        _check_plausible(cols, freq, f"series {name}", f"series.{name}", infer_category(name) != "rates")
