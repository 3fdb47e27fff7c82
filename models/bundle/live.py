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
        self.ring = np.full((self.span, n, f), np.nan)  # float64 rows, oldest first after `_ordered`
        self.filled = 0  # rows pushed so far (the ring is full once filled >= span)
        self.head = 0  # next slot to write
        self.bars_listed = np.zeros(n, dtype=np.int64)  # bars since each asset's first close
        self.latest: dict[str, LiveForecast] = {}
        # the same coalition values with the GRU's input projection summed per group (None: the
        # graph has another shape; the plain batched path then)
        self.coalitions = GruCoalitions.from_bundle(bundle, self.groups, self.means, predict)

    @classmethod
    def from_panel(
        cls, panel: Panel, bundle: Bundle, predict: PredictFn, groups: Sequence[Sequence[int]], progress=None
    ) -> LiveModelState:
        """Replay `panel` bar by bar (features, ring) and forecast every asset at its last usable bar."""
        engine = IncrementalFeatures.like(panel, bundle.spec)
        state = cls(bundle, predict, engine, groups)
        bars = PanelBars(panel, engine.symbols)
        for i in range(len(bars)):
            state._advance(bars.bar(i))
            if progress is not None:
                progress(i + 1, len(bars))
        state._forecast(state._ready())
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
        newest = self.ring[(self.head - 1) % self.span]
        ok = np.isfinite(newest[:, self.base_cols]).all(axis=1) & (self.bars_listed >= self.min_periods)
        return np.flatnonzero(ok)

    def _ordered(self) -> np.ndarray:
        """The ring as a [span, N, F] float32 cube, oldest row first (NaN where no close)."""
        idx = (self.head + np.arange(self.span)) % self.span
        return self.ring[idx].astype(np.float32)

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
        newest = self.ring[(self.head - 1) % self.span]
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
