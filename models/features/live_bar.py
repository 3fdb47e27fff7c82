"""The next panel row from raw data, by `build_panel`'s rules: the input of incremental features.

A service that stores raw bars and factor prints needs, for each new bar, exactly the row
`build_panel` would have produced for it, or its features drift from training's.
`LiveBarBuilder` keeps what that row depends on besides the bar itself: the previous closes and
the equal-weighted composite level (`schema.composite_index`, a running product), and each
factor's latest publication (`schema.align_factor`: the last value published at or before the
bar close, NaN once older than `max_staleness`).  The BTC benchmark is the BTC asset's close.

One edge differs from the batch rule, and only before the composite's first return: the batch
sets the composite to 1.0 on the bar before its first return, which a live feed cannot know in
advance; here every bar with a close before that return gets 1.0.  The two agree whenever the
first bar with a close is followed by a bar with a return (the usual start).  Cap-weighted
composites and benchmark levels given by a client are not built here (pass such levels yourself).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import COMPOSITE_NAME, Panel, find_btc
from adaptive_beta.models.durations import parse_duration
from adaptive_beta.models.features.incremental import Bar

_DAY_NS = 86_400e9


class LiveBarBuilder:
    """Builds one `Bar` per grid bar from the assets' raw values and the factors' publications."""

    def __init__(
        self,
        symbols: Sequence[str],
        freq: pd.Timedelta | str,
        factor_names: Sequence[str] = (),
        btc_symbol: str | None = None,
        max_staleness: str | pd.Timedelta = "5d",
    ):
        self.symbols = sorted(symbols)
        self.freq = pd.Timedelta(parse_duration(freq))
        self.btc = btc_symbol or find_btc(self.symbols)
        if self.btc is not None and self.btc not in self.symbols:
            raise ValueError(f"btc_symbol {self.btc!r} is not one of the assets {self.symbols}")
        self.benchmark_names = ([self.btc] if self.btc else []) + [COMPOSITE_NAME]
        self.factor_names = list(factor_names)
        self.max_staleness_ns = pd.Timedelta(parse_duration(max_staleness)).value
        self.prev_close = np.full(len(self.symbols), np.nan)
        self.level = np.nan
        self.started = False  # the composite has had its first return
        self.pending: dict[str, list[tuple[int, float]]] = {f: [] for f in self.factor_names}
        self.latest: dict[str, tuple[int, float] | None] = dict.fromkeys(self.factor_names)

    @classmethod
    def from_panel(cls, panel: Panel, max_staleness: str | pd.Timedelta | None = None) -> LiveBarBuilder:
        """The state after the panel's last bar (a panel built by `build_panel` with the same rules)."""
        if panel.meta.get("composite", "equal") != "equal":
            raise ValueError(
                f"live bars build the equal-weighted composite, the panel's is {panel.meta['composite']!r}"
            )
        staleness = max_staleness or panel.meta.get("max_staleness", "5d")
        b = cls(panel.symbols, panel.freq, panel.factor_names, panel.meta.get("btc_symbol"), staleness)
        if b.benchmark_names != panel.benchmark_names:
            raise ValueError(
                f"panel benchmarks {panel.benchmark_names} are not the live ones {b.benchmark_names}"
            )
        b.prev_close = panel.close[b.symbols].to_numpy(dtype=np.float64, na_value=np.nan)[-1].copy()
        comp = panel.benchmarks[COMPOSITE_NAME].to_numpy(dtype=np.float64, na_value=np.nan)
        b.level = comp[-1]
        b.started = bool(np.isfinite(comp).any())  # a finite level means the first return came
        close_ns = (panel.index[-1] + panel.freq).value
        for name in b.factor_names:
            age = panel.factor_staleness[name].iloc[-1]
            if np.isfinite(age):
                b.latest[name] = (close_ns - int(round(age * _DAY_NS)), float(panel.factors[name].iloc[-1]))
        return b

    def publish(self, name: str, published_at: pd.Timestamp, value: float) -> None:
        """A factor print, known from `published_at` (UTC) on; NaN prints are ignored (as the panel)."""
        if name not in self.pending:
            raise ValueError(f"unknown factor {name!r}; known: {self.factor_names}")
        if np.isfinite(value):
            bisect.insort(self.pending[name], (pd.Timestamp(published_at).value, float(value)))

    def bar(self, timestamp: pd.Timestamp, close, volume=None, funding_rate=None, open_interest=None) -> Bar:
        """The panel row of the bar opening at `timestamp` (per-asset arrays in sorted symbol order)."""
        n = len(self.symbols)

        def col(values, name: str) -> np.ndarray:
            a = np.full(n, np.nan) if values is None else np.asarray(values, dtype=np.float64)
            if a.shape != (n,):
                raise ValueError(f"bar {timestamp}: field {name!r} has shape {a.shape}, expected ({n},)")
            return a

        close = col(close, "close")
        with np.errstate(invalid="ignore", divide="ignore"):
            r = close / self.prev_close - 1.0
        live = np.isfinite(r)
        comp = np.where(live, r, 0.0).sum() / live.sum() if live.any() else np.nan
        if self.started:
            self.level = self.level * (1.0 + (comp if np.isfinite(comp) else 0.0))
        elif np.isfinite(comp):
            self.started, self.level = True, 1.0 + comp
        else:  # before the first return: a base of 1.0 wherever one could follow (module docstring)
            self.level = 1.0 if np.isfinite(close).any() else np.nan
        self.prev_close = close
        levels = [close[self.symbols.index(self.btc)]] if self.btc else []
        factors, stale = self._factors(pd.Timestamp(timestamp) + self.freq)
        return Bar(
            pd.Timestamp(timestamp),
            close,
            col(volume, "volume"),
            col(funding_rate, "funding_rate"),
            col(open_interest, "open_interest"),
            np.array([*levels, self.level]),
            factors,
            stale,
        )

    def _factors(self, bar_close: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        values = np.full(len(self.factor_names), np.nan)
        stale = np.full(len(self.factor_names), np.nan)
        close_ns = bar_close.value
        for f, name in enumerate(self.factor_names):
            queue = self.pending[name]
            k = bisect.bisect_right(queue, (close_ns, np.inf))
            if k:
                self.latest[name] = queue[k - 1]
                del queue[:k]
            latest = self.latest[name]
            if latest is not None and close_ns - latest[0] <= self.max_staleness_ns:
                values[f], stale[f] = latest[1], (close_ns - latest[0]) / _DAY_NS
        return values, stale
