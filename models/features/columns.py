"""The feature columns `compute_features` produces, from the spec and the panel's names alone.

The incremental engine (`features/incremental.py`) fills a row by column name; this module says
which names, in which order and in which group, without computing anything, so a service knows
its feature schema before the first bar.  `tests/models/test_features_incremental.py` checks it
against `compute_features` for the default and the optional spec fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from adaptive_beta.models.features.compute import CATEGORY_GROUP
from adaptive_beta.models.features.spec import FeatureSpec


@dataclass(frozen=True)
class FeatureLayout:
    """Ordered feature columns, their groups and the base (Welch) column of each benchmark."""

    columns: list[str]
    groups: dict[str, str]
    base_columns: dict[str, str]


def _factor_group(name: str, categories: Mapping[str, str]) -> str:
    return CATEGORY_GROUP.get(categories.get(name, "other"), "fx_rates")


def _benchmark_columns(spec: FeatureSpec, name: str) -> list[str]:
    cols = [f"beta_welch_{name}"]
    for hl in spec.welch_extra_halflives:
        cols += [f"beta_welch_{name}_{hl}", f"rel_welch_{name}_{hl}"]
    for w in (*spec.beta_windows, *spec.long_beta_windows):
        cols += [f"beta_ols_{name}_{w}", f"corr_{name}_{w}", f"rel_ols_{name}_{w}"]
    for hl in spec.ewma_halflives:
        cols += [f"beta_ewma_{name}_{hl}", f"corr_ewma_{name}_{hl}", f"rel_ewma_{name}_{hl}"]
    w = spec.downside_window
    cols += [f"beta_down_{name}_{w}", f"rel_down_{name}_{w}"]
    if spec.high_vol_beta_window:
        w = spec.high_vol_beta_window
        cols += [f"beta_hivol_{name}_{w}", f"rel_hivol_{name}_{w}"]
    return cols


def _funding_columns(spec: FeatureSpec) -> list[str]:
    cols = ["funding_ann"]
    for w in spec.funding_windows:
        cols += [f"funding_ann_mean_{w}", f"funding_ann_chg_{w}"]
    cols += [f"oi_chg_{w}" for w in spec.oi_windows]
    if spec.funding_z_window:
        cols.append(f"funding_z_{spec.funding_z_window}")
    if spec.oi_z_window:
        cols.append(f"oi_chg_z_{spec.oi_z_window}")
    return cols


def _factor_columns(spec: FeatureSpec, name: str) -> list[str]:
    cols = []
    for w in spec.factor_windows:
        cols += [f"fac_{name}_ret_{w}", f"fac_{name}_vol_{w}"]
    cols.append(f"fac_{name}_stale")
    for w in spec.factor_beta_windows:
        cols += [f"beta_{name}_{w}", f"corr_{name}_{w}"]
    return cols


def feature_layout(
    spec: FeatureSpec,
    benchmark_names: Sequence[str],
    factor_names: Sequence[str],
    factor_categories: Mapping[str, str],
) -> FeatureLayout:
    """Columns in `compute_features` order: own history, benchmark features, market state,
    funding/leverage, factor features, volume ratios, factor levels."""
    groups: dict[str, str] = {}

    def add(cols: list[str], group: str) -> None:
        for c in cols:
            if c in groups:
                raise ValueError(f"duplicate feature column {c!r} (two benchmarks or factors share a name?)")
            groups[c] = group

    own = [f"ret_{h}" for h in spec.return_horizons] + [f"vol_{w}" for w in spec.vol_windows]
    own += [f"drawdown_{spec.drawdown_window}", f"volume_z_{spec.volume_z_window}"]
    add(own, "own_history")
    for name in benchmark_names:
        add(_benchmark_columns(spec, name), "crypto_benchmark")
    for name in benchmark_names:
        add([f"mkt_{name}_ret_{h}" for h in spec.return_horizons], "crypto_benchmark")
        add([f"mkt_{name}_vol_{w}" for w in spec.vol_windows], "crypto_benchmark")
    add(_funding_columns(spec), "funding_leverage")
    for name in factor_names:
        add(_factor_columns(spec, name), _factor_group(name, factor_categories))
    if spec.vol_ratio:
        for name in benchmark_names:
            add([f"vol_ratio_{name}_{w}" for w in spec.vol_windows], "crypto_benchmark")
    missing = [f for f in spec.factor_levels if f not in factor_names]
    if missing:
        raise ValueError(
            f"factor_levels names {missing}, which the panel does not have (its factors: {list(factor_names)})"
        )
    for name in spec.factor_levels:
        rates = factor_categories.get(name, "other") == "rates"
        add(
            [f"fac_{name}_level" if rates else f"fac_{name}_log_level"],
            _factor_group(name, factor_categories),
        )
    base = {name: f"beta_welch_{name}" for name in benchmark_names}
    return FeatureLayout(columns=list(groups), groups=groups, base_columns=base)
