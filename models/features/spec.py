"""`FeatureSpec`: every window of the feature pipeline, as durations, versioned and hashable.

The spec travels with a model (bundle `feature_spec.json`) and its hash is logged with every
served prediction, so serving recomputes exactly the features the network was trained on.
Windows are durations (`"30d"`), never row counts: the same spec means the same thing on
daily, 8-hourly and hourly bars (`min_history(freq)` gives the warm-up in bars).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator, model_validator

from adaptive_beta.models.durations import Duration, parse_duration, to_periods


def _distinct(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(value)) != len(value):
        raise ValueError(f"durations must be distinct, got {list(value)}")
    return tuple(value)


Durations = Annotated[tuple[Duration, ...], AfterValidator(_distinct)]


class FeatureSpec(BaseModel):
    """Windows and constants of `compute_features`; the defaults are the shipped spec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = "1"  # bump when the feature code changes meaning (the hash includes it)
    return_horizons: Durations = ("1d", "7d", "30d")  # own and market returns over these spans
    vol_windows: Durations = ("7d", "30d", "90d")  # realised vol (annualised) windows
    beta_windows: Durations = ("30d", "90d", "180d")  # rolling OLS beta / correlation to benchmarks
    ewma_halflives: Durations = ("30d", "90d")  # EWMA beta half-lives
    welch_halflife: Duration = "60d"  # the base beta (Welch 2022) the network corrects
    welch_lower: float = -2.0  # Welch band: asset return clipped to [lower, upper] x benchmark return
    welch_upper: float = 4.0
    downside_window: Duration = "90d"  # beta on bars where the benchmark fell
    volume_z_window: Duration = "30d"  # z-score of log volume
    funding_windows: Durations = ("1d", "7d", "30d")  # mean annualised funding and its change
    oi_windows: Durations = ("1d", "7d")  # log change of open interest
    factor_windows: Durations = ("7d", "30d")  # factor returns and realised vols (market-wide)
    factor_beta_windows: Durations = ("30d", "90d")  # betas / correlations of assets to each factor
    factor_return_horizon: Duration = "1d"  # factor betas use overlapping returns over this span
    factor_return_clip: float = 0.5  # per-bar factor change clipped to +-this (WTI printed -36.98)
    drawdown_window: Duration = "90d"  # drawdown from the rolling high

    # --- optional features (issue 10 items 2-3): off by default, see OPTIONAL_FIELDS -------
    welch_extra_halflives: Durations = ()  # more Welch betas, e.g. ("120d",) (Welch's ~4 months)
    long_beta_windows: Durations = ()  # more rolling OLS betas (HAR cascade), e.g. ("7d", "365d")
    factor_levels: tuple[str, ...] = ()  # factors whose (log) level is a feature, e.g. ("VIX",)
    vol_ratio: bool = False  # each asset's vol over each benchmark's, per vol window
    funding_z_window: Duration | None = None  # z-score of annualised funding over this window
    oi_z_window: Duration | None = None  # z-score of the per-bar log change of open interest
    high_vol_beta_window: Duration | None = None  # beta on bars with |benchmark return| > trailing median

    @field_validator("factor_return_clip")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"factor_return_clip must be positive, got {value!r}")
        return value

    @field_validator("factor_levels")
    @classmethod
    def _distinct_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"factor names must be distinct, got {list(value)}")
        return tuple(value)

    @model_validator(mode="after")
    def _no_column_twice(self) -> FeatureSpec:
        """An extra window equal to a default one would name the same column twice: say so here,
        where the spec is written, not deep in `compute_features`."""
        for extra, existing in (
            ("long_beta_windows", "beta_windows"),
            ("welch_extra_halflives", "welch_halflife"),
        ):
            have = getattr(self, existing)
            clash = set(getattr(self, extra)) & set(have if isinstance(have, tuple) else (have,))
            if clash:
                raise ValueError(f"{extra} repeats {existing}: {sorted(clash)}")
        return self

    # --- identity -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists).

        An optional field (`OPTIONAL_FIELDS`) is left out while it has its default (off), so adding
        one changes neither the shipped spec's hash nor that of any bundle written before it.
        """
        off = {
            name for name in OPTIONAL_FIELDS if getattr(self, name) == type(self).model_fields[name].default
        }
        return self.model_dump(mode="json", exclude=off)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of `to_dict`; unknown fields are an error (a typo must not silently default)."""
        return cls.model_validate(data)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace; what `hash()` digests."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_dict(json.loads(text))

    def hash(self) -> str:  # noqa: A003 - the contract's name
        """sha256 of the canonical JSON, version included: the identity logged with predictions."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    # --- warm-up ------------------------------------------------------------------------
    def min_history(self, freq: pd.Timedelta | str) -> int:
        """Bars of history before the first row where every feature can be finite.

        The longest window (or half-life: EWMA betas need `halflife` valid bars) plus the bars
        a return needs before it: one for per-bar returns, the horizon for factor returns.
        """
        freq = parse_duration(freq)
        bars = [to_periods(d, freq) for d in self.return_horizons]
        bars += [
            to_periods(d, freq) + 1 for d in (*self.vol_windows, *self.beta_windows, *self.long_beta_windows)
        ]
        bars += [to_periods(d, freq) + 1 for d in self._halflives()]
        bars += [to_periods(self.downside_window, freq) + 1, to_periods(self.drawdown_window, freq)]
        bars += [to_periods(self.volume_z_window, freq)]
        bars += [to_periods(d, freq) + 1 for d in (*self.funding_windows, *self.oi_windows)]
        bars += [to_periods(d, freq) + 1 for d in self.factor_windows]
        h = to_periods(self.factor_return_horizon, freq)
        bars += [to_periods(d, freq) + h for d in self.factor_beta_windows]
        bars += [to_periods(d, freq) + 1 for d in (self.funding_z_window, self.oi_z_window) if d]
        if self.high_vol_beta_window:  # each bar's flag needs its own trailing median window first
            bars.append(2 * to_periods(self.high_vol_beta_window, freq))
        return max(bars)

    def _halflives(self) -> tuple[str, ...]:
        """Every half-life of an exponentially weighted feature (they all weight the whole past)."""
        return (*self.ewma_halflives, self.welch_halflife, *self.welch_extra_halflives)

    def serving_history(self, freq: pd.Timedelta | str, tolerance: float = 0.01) -> int:
        """Bars a caller must send so that features match those computed on the full history.

        Windowed features need `min_history` bars, but the EWMA and Welch betas weight the whole
        past: cut to the last n bars they lose the weight 0.5 ** (n / halflife).  This is the
        number of bars that keeps that lost weight below `tolerance` for the longest half-life
        (e.g. 90d half-life, 1 %: 598 days), and at least `min_history`.
        """
        if not 0.0 < tolerance < 1.0:
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
        freq = parse_duration(freq)
        longest = max(parse_duration(d) / freq for d in self._halflives())
        return max(self.min_history(freq), int(math.ceil(longest * math.log2(1.0 / tolerance))))


# Fields added after the spec shipped: off by default and omitted from `to_dict` while off.
OPTIONAL_FIELDS = (
    "welch_extra_halflives",
    "long_beta_windows",
    "factor_levels",
    "vol_ratio",
    "funding_z_window",
    "oi_z_window",
    "high_vol_beta_window",
)


def feature_spec_hash(spec: FeatureSpec | Mapping[str, Any]) -> str:
    """The one feature-spec identity (`FeatureSpec.hash`): sha256 of the canonical JSON.

    A plain dict (e.g. a bundle's `feature_spec.json` as read) is validated into a `FeatureSpec`
    first, so the same spec hashes the same whatever form it arrives in.
    """
    if not isinstance(spec, FeatureSpec):
        spec = FeatureSpec.from_dict(dict(spec))
    return spec.hash()
