"""`BundleMeta`: the typed, versioned train -> serve contract (a bundle's `meta.json`).

Written once by `adaptive_beta.training.export.export_bundle`, read by serving, monitoring, the
backtest and the compliance pages as attributes (never by string key).  Besides the network's
shape (feature columns, lookback, stride) it records what serving needs to rebuild the exact
inputs training saw: each input series' kind, calendar, publication lag and staleness rule
(`inputs`), the benchmarks and regimes, the feature spec's hash, the history a request must carry
and the training period.

`SCHEMA_VERSION` is bumped whenever a field changes meaning or a required field is added; a
bundle written under another version does not load (`BundleError`, one line): serving a model
with a contract it does not understand is how train/serve skew starts.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adaptive_beta.models.data.publication import Calendar, publication_times
from adaptive_beta.models.durations import Duration, parse_duration

SCHEMA_VERSION = 2  # 1: the untyped meta dict (no schema_version field, no input calendars)
BUNDLE_FORMAT = "adaptive-beta-bundle/1"  # manifest format (files and their sha256), unchanged


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, protected_namespaces=(), ser_json_inf_nan="constants"
    )


class Period(_Strict):
    """Inclusive [start, end] of bar open times (ISO strings); None = open (the data's first / last bar)."""

    start: str | None
    end: str | None

    def bounds(self) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        return tuple(None if v is None else _utc(v) for v in (self.start, self.end))  # type: ignore[return-value]


class InputSeries(_Strict):
    """How one series a request carries becomes a model input, exactly as in training.

    kind "bar": levels on the bar grid (a benchmark), matched to bar open times exactly.
    kind "factor": observations published by `calendar` + `lag`
        (`adaptive_beta.models.data.publication`), as-of joined on bar closes; a value older than
        the bundle's `max_staleness` at a bar close is missing.
    """

    kind: Literal["bar", "factor"]
    category: str
    calendar: Calendar | None = None  # factors only
    lag: Duration | None = None  # factors only: extra publication delay on top of the calendar

    def published(self, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """UTC publication time of each observation of this factor (the training rule)."""
        if self.kind != "factor" or self.calendar is None:
            raise ValueError("only a factor series has publication times")
        return publication_times(index, self.calendar, parse_duration(self.lag) if self.lag else None)


class RequiredHistory(_Strict):
    frequency: str
    min_periods: int  # bars of history per asset a request must carry
    feature_warmup_bars: int
    window_bars: int
    series: list[str]  # every series a request must carry (benchmarks, then factors)


class OnnxInfo(_Strict):
    opset: int
    input: str
    outputs: list[str]


class BundleMeta(_Strict):
    """meta.json of a bundle (schema `SCHEMA_VERSION`)."""

    schema_version: int
    created_at: str
    model_name: str = "adaptive-beta"
    model_version: str | None = None  # fixed at export (tests, hand releases); else the registry's
    run_id: str | None = None  # MLflow run that produced the bundle
    arch: str
    # outputs
    benchmarks: list[str]
    regimes: list[str]
    interval_level: float
    calib_scale: list[float]
    # inputs
    inputs: dict[str, InputSeries]  # every series in required_history.series
    max_staleness: Duration  # staleness rule of every factor: older than this at a bar close = missing
    btc_symbol: str | None = None
    feature_columns: list[str]
    feature_groups: dict[str, str]
    base_columns: dict[str, str]  # benchmark -> feature column of its base beta
    feature_spec_hash: str  # FeatureSpec.hash() of feature_spec.json
    lookback: Duration
    lookback_bars: int
    stride: int
    steps: int
    freq: Duration
    required_history: RequiredHistory
    # provenance
    training_period: Period  # bars whose windows the network was fitted on
    validation_period: Period  # early stopping and interval calibration
    horizon: str | None = None
    regime_horizon: str | None = None
    data_source: str | None = None
    data_fingerprint: str | None = None
    n_train_windows: int
    n_val_windows: int
    best_epoch: int
    history: list[dict[str, Any]] = Field(default_factory=list)
    fit_config: dict[str, Any]  # the ModelConfig the network was trained with
    metrics: dict[str, Any] = Field(default_factory=dict)
    onnx: OnnxInfo
    parity_max_abs_diff: float

    def factors(self) -> dict[str, InputSeries]:
        return {k: v for k, v in self.inputs.items() if v.kind == "factor"}

    def is_bar_series(self, name: str) -> bool:
        s = self.inputs.get(name)
        return s is not None and s.kind == "bar"

    def training_end(self) -> pd.Timestamp | None:
        """Last bar the network was fitted on: forecasts after it are out of sample."""
        return self.training_period.bounds()[1]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "meta.json") -> BundleMeta:
        """Parse meta.json; raise `BundleMetaError` (one line) on another schema or a bad field."""
        import json

        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise BundleMetaError(f"{where} is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise BundleMetaError(f"{where} is not a JSON object")
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            said = (
                "no schema_version (an older exporter)" if version is None else f"schema_version {version!r}"
            )
            raise BundleMetaError(
                f"{where} has {said}; this code reads bundle schema {SCHEMA_VERSION} only: "
                "re-export the model with this version of adaptive-beta (abeta train)"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise BundleMetaError(
                f"{where} field {loc!r}: {first['msg']} ({exc.error_count()} problem(s))"
            ) from exc


class BundleMetaError(ValueError):
    """meta.json is not a bundle contract this code reads (folder.load_bundle turns it into BundleError)."""


def _utc(t: str) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def bundle_inputs(panel, factor_names: list[str] | None = None) -> dict[str, Any]:
    """The input fields of a bundle trained on `panel` (merge into `export_bundle`'s meta):
    `inputs` (each factor with the publication rule the panel's loader applied,
    `panel.meta["factor_publication"]`), `max_staleness` and `btc_symbol`.  The exporter adds the
    benchmarks as bar series.  factor_names: default every factor of the panel.

    Raises ValueError naming a factor whose rule the panel does not record (a panel built by hand
    from already-published series): serving could not publish that factor as training did.
    """
    rules = panel.meta.get("factor_publication", {})
    names = list(panel.factor_names if factor_names is None else factor_names)
    missing = [n for n in names if n not in rules]
    if missing:
        raise ValueError(
            f"factor(s) {missing}: the panel does not record their publication calendar and lag "
            "(load the data with adaptive_beta.models.data.loaders.load_dataset)"
        )
    inputs = {
        n: InputSeries(
            kind="factor",
            category=panel.factor_categories.get(n, "other"),
            calendar=rules[n]["calendar"],
            lag=rules[n]["lag"],
        )
        for n in names
    }
    return {
        "inputs": inputs,
        "max_staleness": panel.meta["max_staleness"],
        "btc_symbol": panel.meta.get("btc_symbol"),
    }
