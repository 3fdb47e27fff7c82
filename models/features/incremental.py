"""Incremental features: append one bar, get that bar's feature row, in O(1) per feature.

`compute_features` recomputes every feature over the whole history; a service that receives one
new bar every few hours needs only the newest row.  `IncrementalFeatures` keeps the state each
feature needs (running window sums in ring buffers, EWMA / Welch recursions, lagged values, a
rolling max; see `features/recursions.py`) and updates it when a bar is appended, vectorised
across assets.  Its rows equal the batch features of the same history (the test checks
<= 1e-9 absolute over thousands of bars with gaps, stale factors, weekends and late listings).

Coverage: every column of the default `FeatureSpec` and every optional field
(`welch_extra_halflives`, `long_beta_windows`, `factor_levels`, `vol_ratio`, `funding_z_window`,
`oi_z_window`, `high_vol_beta_window`; the last keeps a rolling median per benchmark in a sorted
list, O(log n) search per bar).

Inputs are panel rows (`Bar`): the asset bar grid, factors already as-of joined on the bar close
with the loaders' staleness rule (`schema.align_factor`), benchmark levels given (the composite
is the panel's job).  A missing value is NaN; the grid has no holes (a bar with no data is a bar
of NaNs).  Warm start: `from_panel` replays a panel; `to_bytes` / `from_bytes` save and restore
the whole state (one `.npz`), so a service restarts without the history.  Torch-free.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from adaptive_beta.models.data.schema import Panel
from adaptive_beta.models.durations import format_freq, parse_duration
from adaptive_beta.models.features.columns import FeatureLayout, feature_layout
from adaptive_beta.models.features.compute import _Bars
from adaptive_beta.models.features.incremental_blocks import (
    Benchmarks,
    Factors,
    FundingLeverage,
    MarketState,
    OwnHistory,
    Step,
)
from adaptive_beta.models.features.recursions import Lags, RollingMedian, StateArrays
from adaptive_beta.models.features.spec import FeatureSpec

STATE_FORMAT = 1  # bump when the saved state's layout changes


@dataclass
class Bar:
    """One bar of a panel for every series: the engine's input (missing values NaN)."""

    timestamp: pd.Timestamp  # bar open time (UTC), on the panel's grid
    close: np.ndarray  # (N,) per asset, in the engine's (sorted) symbol order
    volume: np.ndarray  # (N,)
    funding_rate: np.ndarray  # (N,) per bar
    open_interest: np.ndarray  # (N,)
    benchmarks: np.ndarray  # (K,) benchmark levels
    factors: np.ndarray  # (M,) factor levels as known at the bar's close
    factor_staleness: np.ndarray  # (M,) days since each factor value was published


@dataclass
class FeatureRow:
    """The features of one bar: `values[i, j]` is column `columns[j]` of asset `symbols[i]`."""

    timestamp: pd.Timestamp
    symbols: list[str]
    columns: list[str]
    values: np.ndarray  # (N, F) float64
    rows: np.ndarray  # (N,) bool: the asset has a close (the rows `compute_features` keeps)

    def frame(self) -> pd.DataFrame:
        """This bar's rows as in `compute_features(...).frame` (indexed by (timestamp, symbol))."""
        keep = np.flatnonzero(self.rows)
        idx = pd.MultiIndex.from_arrays(
            [pd.DatetimeIndex([self.timestamp] * len(keep)), pd.Index(self.symbols, dtype=object)[keep]],
            names=["timestamp", "symbol"],
        )
        return pd.DataFrame(self.values[keep], index=idx, columns=self.columns)


class StateHeader(BaseModel):
    """What a saved state was built for; restoring checks it against the arrays."""

    model_config = ConfigDict(extra="forbid")

    format: int = STATE_FORMAT
    spec: dict
    spec_hash: str
    freq: str
    symbols: list[str]
    benchmark_names: list[str]
    factor_names: list[str]
    factor_categories: dict[str, str]
    bars_seen: int
    last_timestamp: str | None


class PanelBars:
    """A panel's inputs as arrays (assets sorted), handing out one `Bar` per row."""

    def __init__(self, panel: Panel, symbols: list[str] | None = None):
        symbols = symbols or sorted(panel.symbols)
        p = panel.select(symbols) if symbols != panel.symbols else panel
        self.index, self.symbols = p.index, list(symbols)
        self.benchmark_names, self.factor_names = p.benchmark_names, p.factor_names

        def arr(frame: pd.DataFrame) -> np.ndarray:
            return frame.to_numpy(dtype=np.float64, na_value=np.nan)

        self.close, self.volume = arr(p.close), arr(p.volume)
        self.funding_rate, self.open_interest = arr(p.funding_rate), arr(p.open_interest)
        self.benchmarks = arr(p.benchmarks.reindex(p.index))
        self.factors, self.staleness = arr(p.factors), arr(p.factor_staleness[list(p.factor_names)])

    def __len__(self) -> int:
        return len(self.index)

    def bar(self, i: int) -> Bar:
        return Bar(
            self.index[i],
            self.close[i],
            self.volume[i],
            self.funding_rate[i],
            self.open_interest[i],
            self.benchmarks[i],
            self.factors[i],
            self.staleness[i],
        )


class IncrementalFeatures:
    """Per-series feature state for a fixed universe; `append(bar)` returns the newest `FeatureRow`."""

    def __init__(
        self,
        spec: FeatureSpec,
        freq: pd.Timedelta | str,
        symbols: Sequence[str],
        benchmark_names: Sequence[str],
        factor_names: Sequence[str] = (),
        factor_categories: Mapping[str, str] | None = None,
    ):
        self.spec = spec
        self.freq = pd.Timedelta(parse_duration(freq))
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols must be distinct, got {list(symbols)}")
        self.symbols = sorted(symbols)  # the batch's asset order
        self.benchmark_names = list(benchmark_names)
        self.factor_names = list(factor_names)
        self.factor_categories = {n: (factor_categories or {}).get(n, "other") for n in self.factor_names}
        self.layout: FeatureLayout = feature_layout(
            spec, self.benchmark_names, self.factor_names, self.factor_categories
        )
        self.bars_seen = 0
        self.last_timestamp: pd.Timestamp | None = None
        self._build()

    def _build(self) -> None:
        spec, n = self.spec, len(self.symbols)
        bars = self._bars = _Bars(self.freq)
        store = self.store = StateArrays()
        depth = max([1, *(bars(h) for h in spec.return_horizons), bars(spec.factor_return_horizon)])
        self._close = Lags(store, "close.lags", depth, (n,), True)
        self._own = OwnHistory(store, spec, bars, n)
        self._market = MarketState(store, spec, bars, self.benchmark_names)
        self._bench = Benchmarks(store, spec, bars, self.benchmark_names, n)
        self._funding = FundingLeverage(store, spec, bars, n)
        rate = np.array([self.factor_categories[f] == "rates" for f in self.factor_names], dtype=bool)
        self._factors = Factors(store, spec, bars, self.factor_names, rate, n) if self.factor_names else None
        self._levels = [
            (name, self.factor_names.index(name), self.factor_categories[name] == "rates")
            for name in spec.factor_levels
        ]

    @property
    def columns(self) -> list[str]:
        return self.layout.columns

    # --- warm start and persistence ---------------------------------------------------------
    @classmethod
    def like(cls, panel: Panel, spec: FeatureSpec | None = None) -> IncrementalFeatures:
        """An empty engine (no bar yet) for the universe, benchmarks and factors of `panel`."""
        return cls(
            spec or FeatureSpec(),
            panel.freq,
            list(panel.symbols),
            panel.benchmark_names,
            panel.factor_names,
            dict(panel.factor_categories),
        )

    @classmethod
    def from_panel(cls, panel: Panel, spec: FeatureSpec | None = None) -> IncrementalFeatures:
        """State after every bar of `panel` (a replay: the same arithmetic as live appends)."""
        engine = cls.like(panel, spec)
        engine.extend(PanelBars(panel, engine.symbols))
        return engine

    def extend(self, bars: PanelBars) -> None:
        """Append every bar of `bars` (rows on the grid after `last_timestamp`), without building rows."""
        names = (bars.symbols, bars.benchmark_names, bars.factor_names)
        if names != (self.symbols, self.benchmark_names, self.factor_names):
            raise ValueError(
                f"panel series {names} differ from the feature state's "
                f"{(self.symbols, self.benchmark_names, self.factor_names)}"
            )
        for i in range(len(bars)):
            self._update(bars.bar(i))

    def header(self) -> StateHeader:
        return StateHeader(
            spec=self.spec.to_dict(),
            spec_hash=self.spec.hash(),
            freq=format_freq(self.freq),
            symbols=self.symbols,
            benchmark_names=self.benchmark_names,
            factor_names=self.factor_names,
            factor_categories=self.factor_categories,
            bars_seen=self.bars_seen,
            last_timestamp=None if self.last_timestamp is None else self.last_timestamp.isoformat(),
        )

    def to_bytes(self) -> bytes:
        """The whole state as one `.npz` (arrays plus a JSON `StateHeader`)."""
        buf = io.BytesIO()
        header = np.frombuffer(self.header().model_dump_json().encode(), dtype=np.uint8)
        np.savez(buf, __header__=header, **self.store.arrays())
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> IncrementalFeatures:
        """Inverse of `to_bytes`; a state of another format or spec is a ValueError saying which."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a readable saved feature state ({exc})") from exc
        if "__header__" not in arrays:
            raise ValueError("not a saved feature state: no __header__ entry")
        h = StateHeader.model_validate_json(arrays.pop("__header__").tobytes())
        if h.format != STATE_FORMAT:
            raise ValueError(f"saved feature state has format {h.format}, this code reads {STATE_FORMAT}")
        spec = FeatureSpec.from_dict(h.spec)
        if spec.hash() != h.spec_hash:
            raise ValueError(f"saved feature state: spec hash {h.spec_hash} does not match its spec")
        engine = cls(spec, h.freq, h.symbols, h.benchmark_names, h.factor_names, h.factor_categories)
        engine.store.load(arrays)
        engine._after_load()
        engine.bars_seen = h.bars_seen
        engine.last_timestamp = None if h.last_timestamp is None else pd.Timestamp(h.last_timestamp)
        return engine

    def _after_load(self) -> None:
        for slot in self.store.slots.values():
            if isinstance(slot.owner, RollingMedian):
                slot.owner.rebuild()

    def add_asset(self, symbol: str) -> None:
        """A newly listed asset joins with the state of an all-missing history (its features
        then equal the batch features of a panel where it had NaN closes until now)."""
        if symbol in self.symbols:
            raise ValueError(f"asset {symbol!r} is already in the feature state")
        pos = int(np.searchsorted(np.array(self.symbols, dtype=object), symbol))
        self.store.insert_asset(pos)
        self.symbols.insert(pos, symbol)

    # --- appending ------------------------------------------------------------------------
    def append(self, bar: Bar) -> FeatureRow:
        """Append the next bar on the grid and return its features (rows for every asset)."""
        out = self._update(bar)
        values = np.empty((len(self.symbols), len(self.columns)))
        for j, name in enumerate(self.columns):
            values[:, j] = out[name]
        return FeatureRow(
            bar.timestamp, list(self.symbols), list(self.columns), values, np.isfinite(bar.close)
        )

    def _check(self, bar: Bar) -> None:
        """Refuse a bar before touching any state: wrong shapes, off-grid time, bad closes."""
        expect = {
            "close": len(self.symbols),
            "volume": len(self.symbols),
            "funding_rate": len(self.symbols),
            "open_interest": len(self.symbols),
            "benchmarks": len(self.benchmark_names),
            "factors": len(self.factor_names),
            "factor_staleness": len(self.factor_names),
        }
        for name, n in expect.items():
            shape = np.shape(getattr(bar, name))
            if shape != (n,):
                raise ValueError(f"bar {bar.timestamp}: field {name!r} has shape {shape}, expected ({n},)")
        ts = pd.Timestamp(bar.timestamp)
        if self.last_timestamp is not None and ts != self.last_timestamp + self.freq:
            raise ValueError(
                f"bar {ts}: expected the next bar on the {format_freq(self.freq)} grid, "
                f"{self.last_timestamp + self.freq} (send missing bars as NaN)"
            )
        close = np.asarray(bar.close, dtype=np.float64)
        bad = ~(np.isnan(close) | (np.isfinite(close) & (close > 0)))
        if bad.any():
            sym = self.symbols[int(np.flatnonzero(bad)[0])]
            raise ValueError(
                f"bar {ts}: field 'close' of {sym} is {close[bad][0]!r}; a close must be > 0 or NaN"
            )

    def _update(self, bar: Bar) -> dict:
        self._check(bar)
        t = self.bars_seen
        f64 = np.float64
        close = np.asarray(bar.close, dtype=f64)
        self._close.push(t, close)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = close / self._close.get(t, 1) - 1.0
        step = Step(
            t,
            close,
            r,
            self._close,
            np.asarray(bar.volume, dtype=f64),
            np.asarray(bar.funding_rate, dtype=f64),
            np.asarray(bar.open_interest, dtype=f64),
            np.asarray(bar.benchmarks, dtype=f64),
            np.asarray(bar.factors, dtype=f64),
            np.asarray(bar.factor_staleness, dtype=f64),
        )
        out: dict = {}
        self._own.step(step, out)
        br = self._market.step(t, step.benchmarks, out)
        self._bench.step(t, r, br, out)
        self._funding.step(t, step.funding_rate, step.open_interest, out)
        if self._factors is not None:
            self._factors.step(step, out)
        self._extras(step, out)
        self.bars_seen = t + 1
        self.last_timestamp = pd.Timestamp(bar.timestamp)
        return out

    def _extras(self, s: Step, out: dict) -> None:
        """The optional vol ratios and factor levels (functions of this bar's values only)."""
        if self.spec.vol_ratio:
            for name in self.benchmark_names:
                for w in self.spec.vol_windows:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        ratio = out[f"vol_{w}"] / out[f"mkt_{name}_vol_{w}"]
                    out[f"vol_ratio_{name}_{w}"] = np.where(np.isfinite(ratio), ratio, np.nan)
        for name, f, rates in self._levels:
            level = s.factors[f]
            if rates:
                out[f"fac_{name}_level"] = level
            else:
                out[f"fac_{name}_log_level"] = np.log(level) if level > 0 else np.nan
