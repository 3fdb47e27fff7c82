"""The model's forecasts kept up to date bar by bar (issue 12: the service keeps the market state).

Why: a stateless request re-derives ~661 bars of features per asset on every call, although only
one bar changed since the last one.  Here the features advance by one bar in O(1)
(`adaptive_beta.models.features.incremental.IncrementalFeatures`), the last `span` feature rows
are kept in a ring, and when a bar arrives every asset whose inputs it completes gets its window
cut by the same `gather_windows` as training and serving, one ONNX batch for the forecasts and one
for the exact group Shapley values.  A request for symbols then only reads what is kept.

The end rule is the stateless path's (`make_inputs`): an asset's window ends at the new bar only
if the asset has a close there and its base betas are finite; otherwise it keeps its previous
forecast (with its older `as_of`), so a caller can see it is stale.  An asset needs
`required_history.min_periods` bars since its first close before it is forecast, as a stateless
request needs that much history.  Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adaptive_beta.models.bundle.folder import Bundle
from adaptive_beta.models.bundle.gru_shapley import GruCoalitions
from adaptive_beta.models.bundle.shapley import batched_beta_shapley, shapley_of_windows, training_means
from adaptive_beta.models.data.schema import Panel
from adaptive_beta.models.features.incremental import Bar, IncrementalFeatures, PanelBars
from adaptive_beta.models.features.windows import gather_windows, window_span

PredictFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class LiveForecast:
    """One asset's forecast as of one bar, with what explains it (bundle column order)."""

    symbol: str
    as_of: pd.Timestamp
    beta: np.ndarray  # [K] per benchmark
    lo: np.ndarray  # [K]
    hi: np.ndarray  # [K]
    regime_prob: np.ndarray  # [R]
    phi: np.ndarray  # [G, K] exact group Shapley values vs the training-mean baseline
    base: np.ndarray  # [K] the baseline's beta
    full: np.ndarray  # [K] the beta Shapley explains (== beta up to float32)
    row: np.ndarray  # [F] the feature row at as_of (float64)
    window: np.ndarray  # [L, F] float32: the model input, for a replay


class LiveModelState:
    """Feature state, the last `span` feature rows and the latest forecast of every asset."""

    def __init__(
        self, bundle: Bundle, predict: PredictFn, engine: IncrementalFeatures, groups: Sequence[Sequence[int]]
    ):
        meta = bundle.meta
        self.bundle, self.predict, self.engine = bundle, predict, engine
        self.groups = [list(g) for g in groups]
        self.means = training_means(bundle)
        self.lookback, self.stride = meta.lookback_bars, meta.stride
        self.span = window_span(self.lookback, self.stride)
        self.min_periods = int(meta.required_history.min_periods)
        pos = {c: j for j, c in enumerate(engine.columns)}
        missing = [c for c in bundle.feature_columns if c not in pos]
        if missing:
            raise ValueError(f"the feature state does not produce column(s) {missing} the model expects")
        self.take = np.array([pos[c] for c in bundle.feature_columns], dtype=np.int64)
        self.base_cols = [bundle.feature_columns.index(meta.base_columns[b]) for b in bundle.benchmarks]
        n, f = len(engine.symbols), len(self.take)
        # float32 rows (the windows' precision), oldest first after `_ordered`; the newest row also
        # in float64 (`last_row`: the audit's feature row and the end rule).  Half the memory of a
        # float64 ring (17 MiB for 200 assets of the 8h model), the same windows.
        self.ring = np.full((self.span, n, f), np.nan, dtype=np.float32)
        self.last_row = np.full((n, f), np.nan)
        self.filled = 0  # rows pushed so far (the ring is full once filled >= span)
        self.head = 0  # next slot to write
        self.bars_listed = np.zeros(n, dtype=np.int64)  # bars since each asset's first close
        self.latest: dict[str, LiveForecast] = {}
        self._coalitions: GruCoalitions | None | bool = False  # made at the first forecast

    @property
    def coalitions(self) -> GruCoalitions | None:
        """The coalition values with the GRU's input projection summed per group (gru_shapley.py);
        None when the graph has another shape (the plain batched path then).  Made on first use,
        so a replay without forecasts (serving/live_replay.py) needs no model session."""
        if self._coalitions is False:
            self._coalitions = GruCoalitions.from_bundle(self.bundle, self.groups, self.means, self.predict)
        return self._coalitions  # type: ignore[return-value]

    @classmethod
    def from_panel(
        cls,
        panel: Panel,
        bundle: Bundle,
        predict: PredictFn | None,
        groups: Sequence[Sequence[int]],
        progress=None,
        forecast: bool = True,
    ) -> LiveModelState:
        """Replay `panel` bar by bar (features, ring) and forecast every asset at its last usable
        bar (`forecast=False`: the state only, e.g. in a replay process without a model session)."""
        engine = IncrementalFeatures.like(panel, bundle.spec)
        state = cls(bundle, predict, engine, groups)
        bars = PanelBars(panel, engine.symbols)
        for i in range(len(bars)):
            state._advance(bars.bar(i))
            if progress is not None:
                progress(i + 1, len(bars))
        if forecast:
            state.forecast_ready()
        return state

    def forecast_ready(self) -> list[str]:
        """Forecast every asset whose window ends at the newest bar (after a replay or a restore)."""
        return self._forecast(self._ready())

    # ------------------------------------------------------------------------ snapshot / restore
    def snapshot(self) -> dict[str, np.ndarray]:
        """The replayed state as arrays (the feature engine as its `.npz` bytes), for `restore` in
        another process; the kept forecasts are not part of it (`forecast_ready` redoes them)."""
        return {
            "engine": np.frombuffer(self.engine.to_bytes(), dtype=np.uint8),
            "ring": self.ring,
            "last_row": self.last_row,
            "counters": np.array([self.filled, self.head], dtype=np.int64),
            "bars_listed": self.bars_listed,
        }

    @classmethod
    def restore(
        cls,
        snap: Mapping[str, np.ndarray],
        bundle: Bundle,
        predict: PredictFn,
        groups: Sequence[Sequence[int]],
    ) -> LiveModelState:
        """The state `snapshot` saved (ValueError if it does not fit `bundle`), without forecasts."""
        engine = IncrementalFeatures.from_bytes(np.asarray(snap["engine"], dtype=np.uint8).tobytes())
        state = cls(bundle, predict, engine, groups)
        if snap["ring"].shape != state.ring.shape or snap["last_row"].shape != state.last_row.shape:
            raise ValueError(f"saved ring {snap['ring'].shape} does not fit this bundle's {state.ring.shape}")
        state.ring[...] = snap["ring"]
        state.last_row[...] = snap["last_row"]
        state.filled, state.head = (int(v) for v in snap["counters"])
        state.bars_listed[...] = snap["bars_listed"]
        return state

    @property
    def symbols(self) -> list[str]:
        return self.engine.symbols

    @property
    def last_timestamp(self) -> pd.Timestamp | None:
        return self.engine.last_timestamp

    def append(self, bar: Bar) -> list[str]:
        """Advance by one grid bar; recompute the forecasts this bar completes. Returns their symbols."""
        ready = self._advance(bar)
        return self._forecast(ready)

    # ----------------------------------------------------------------------------------- steps
    def _advance(self, bar: Bar) -> np.ndarray:
        """Features of the new bar into the ring; the assets whose window can end at it."""
        row = self.engine.append(bar)
        values = np.where(row.rows[:, None], row.values[:, self.take], np.nan)
        self.ring[self.head] = values
        self.last_row = values
        self.head = (self.head + 1) % self.span
        self.filled += 1
        self.bars_listed += (self.bars_listed > 0) | row.rows
        return self._ready()

    def _ready(self) -> np.ndarray:
        """Indices of assets whose latest window ends at the newest bar: a close there (a row
        without one is all NaN in the ring, base betas included), finite base betas, a full window
        on the grid and enough history since listing."""
        if self.filled < self.span:
            return np.empty(0, dtype=np.int64)
        ok = np.isfinite(self.last_row[:, self.base_cols]).all(axis=1) & (
            self.bars_listed >= self.min_periods
        )
        return np.flatnonzero(ok)

    def _ordered(self) -> np.ndarray:
        """The ring as a [span, N, F] float32 cube (a copy), oldest row first (NaN where no close)."""
        idx = (self.head + np.arange(self.span)) % self.span
        return self.ring[idx]

    def _forecast(self, assets: np.ndarray) -> list[str]:
        if assets.size == 0:
            return []
        cube = self._ordered()
        pairs = np.stack([np.full(assets.size, self.span - 1), assets], axis=1).astype(np.int64)
        x = gather_windows(cube, pairs, self.lookback, self.stride)
        out = self.predict(x)
        if self.coalitions is not None:
            phi, base, full = shapley_of_windows(self.coalitions.beta_values(x))
        else:
            phi, base, full = batched_beta_shapley(self.predict, x, self.means, self.groups)
        as_of = self.engine.last_timestamp
        newest = self.last_row
        done = []
        for i, j in enumerate(assets):
            sym = self.symbols[int(j)]
            self.latest[sym] = LiveForecast(
                symbol=sym,
                as_of=as_of,
                beta=out["beta"][i].astype(np.float64),
                lo=out["beta_lo"][i].astype(np.float64),
                hi=out["beta_hi"][i].astype(np.float64),
                regime_prob=out["regime_prob"][i].astype(np.float64),
                phi=phi[i],
                base=base,
                full=full[i],
                row=newest[int(j)].copy(),
                window=x[i],
            )
            done.append(sym)
        return done
