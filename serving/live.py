"""Stored-state forecasts: the service keeps the market state and forecasts once per new bar.

`LiveMarket` ties the market-data store (`POST /bars`, models/market/store.py) to the model's
live state (`adaptive_beta.models.bundle.live.LiveModelState`): at the first stored-state request
it replays the stored bars (the last `ABETA_LIVE_HISTORY_BARS`, default all) into incremental
features; afterwards each grid bar that the store holds for every bar series the model needs
(its benchmarks) is appended once, and every asset it completes gets its forecast, interval,
regime probabilities and exact group Shapley values computed then, in one batch, and kept.
`POST /forecast {"symbols": [...]}` or `{"universe": true}` then reads what is kept.  The
replay itself runs in a short-lived child process (serving/live_replay.py), which hands back the
compact state, so the worker keeps only that.

Every worker (and every replica) catches up from the store on each call (one indexed query on
the series table), so a bar posted to one worker is seen by all.  A restatement changes bars the
state has already used: the worker that stored it rebuilds at once; the others when they next
see that the store's restatement count moved.

What the audit record names (`features.bars`): the replay's first bar, the bar it replayed to,
the forecast's last bar, the stored assets it read, and `sha256`, a hash chain over exactly the stored bars read: the replay window's
`MarketWindow.sha256`, then for each appended bar sha256(previous hex + the hex of the tail window
read for it).  `replay_chain` recomputes it from the store, so compliance can check a record and
reproduce the forecast from the same bars.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adaptive_beta.models.bundle.inference import ModelInputs
from adaptive_beta.models.bundle.live import LiveModelState
from adaptive_beta.models.bundle.panel_frame import is_bar_input
from adaptive_beta.models.features.incremental import Bar
from adaptive_beta.models.market.bars import iso
from adaptive_beta.serving.live_replay import replay
from adaptive_beta.serving.schemas import RequestError

TAIL_BARS = 2  # bars read per appended bar: the new one and the one before (returns)


class StoreEmpty(RequestError):
    """The store does not (yet) hold what the model needs: a 409 naming what is missing."""

    status = 409


@dataclass
class StoredInputs(ModelInputs):
    """`ModelInputs` of a stored-state request, plus what the audit record names."""

    bars: dict = field(default_factory=dict)


def release_heap() -> None:
    """Give the C heap's free pages back to the OS after a bar's forecasts (glibc `malloc_trim`).

    The explanation batch allocates many arrays of a few MB; glibc's dynamic mmap threshold puts
    them on the heap, and the freed pages stay in the worker's RSS (~80 MiB after 200 assets'
    forecasts of the 8h model) until trimmed.  A no-op where glibc is not the C library."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, looked up once (None where glibc is not the C library)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def chain(previous: str, window_sha256: str) -> str:
    """One link of the bars hash chain (module docstring)."""
    return hashlib.sha256((previous + window_sha256).encode()).hexdigest()


class LiveMarket:
    """One worker's stored-state forecasts over one market-data store."""

    def __init__(self, state, store, history_bars: int = 0):
        meta = state.bundle.meta
        self.state, self.store, self.history_bars = state, store, int(history_bars)
        self.lock = threading.RLock()
        self.series = list(meta.required_history.series)
        self.bar_series = [s for s in self.series if is_bar_input(meta, s)]
        self.freq_us = int(state.freq / pd.Timedelta(microseconds=1))
        self.model: LiveModelState | None = None
        self.assets: list[str] = []
        self.read_series: list[str] = []  # required series not stored as assets
        self.first_us: int | None = None
        self.replay_last: pd.Timestamp | None = None
        self.sha256 = ""

    # ---------------------------------------------------------------------------------- sync
    def sync(self, restated: bool = False, rescan: bool = False) -> list[str]:
        """Build the state (first call, after a restatement, or when `rescan` finds an asset the
        state does not hold: a new listing) or append the bars stored since; the symbols whose
        forecasts this computed."""
        with self.lock:
            if restated or (rescan and self.model is not None and self._new_assets()):
                self.model = None
            if self.model is None:
                self._build()
                release_heap()
                return sorted(self.model.latest)
            updated = self._catch_up()
            if updated:
                release_heap()
            return updated

    def _new_assets(self) -> bool:
        """Whether the store holds an asset the live state was built without (one query)."""
        return bool(set(self._stored_assets(self.store.info())) - set(self.assets))

    def _stored_assets(self, info) -> list[str]:
        """Every stored asset, a benchmark stored as an asset (BTCUSDT) included: it is forecast
        too, and the panel derives the benchmark from it as a stateless request does."""
        return sorted(i.name for i in info if i.kind == "asset")

    def _build(self) -> None:
        info = self.store.info()
        names = {i.name for i in info}
        missing = [s for s in self.series if s not in names]
        if missing:
            raise StoreEmpty(
                f"the market-data store holds no bars of {', '.join(missing)}, which the model needs; "
                "POST /bars first",
                "symbols",
            )
        self.assets = self._stored_assets(info)
        self.read_series = [s for s in self.series if s not in self.assets]
        if not self.assets:
            raise StoreEmpty("the market-data store holds no asset bars yet; POST /bars first", "symbols")
        last = self.history_bars or max(i.n_bars for i in info)
        bundle, groups = self.state.bundle, list(self.state.groups.values())
        # the replay runs in a child process, so what it allocates leaves with it (live_replay.py)
        snap, facts = replay(self.store, bundle, self.state.market_db, self.assets, self.read_series, last)
        self.model = LiveModelState.restore(snap, bundle, self.state.predict, groups)
        del snap
        self.model.forecast_ready()
        self.first_us, self.sha256 = int(facts["first_us"]), str(facts["sha256"])
        self.replay_last = self.model.last_timestamp

    def _catch_up(self) -> list[str]:
        heads = {i.name: i for i in self.store.info(self.bar_series)}  # the bars that set the target
        updated: set[str] = set()
        if not all(b in heads for b in self.bar_series):
            return []
        target = min(heads[b].last_us for b in self.bar_series)
        assert self.model is not None and self.model.last_timestamp is not None
        t = int(self.model.last_timestamp.value // 1000) + self.freq_us
        while t <= target:
            window = self.store.window(self.assets, self.read_series, TAIL_BARS, end_us=t)
            updated.update(self.model.append(self._bar(window, t)))
            self.sha256 = chain(self.sha256, window.sha256)
            t += self.freq_us
        return sorted(updated)

    def _bar(self, window, t_us: int) -> Bar:
        """The engine's input row at `t_us` from a tail window (NaN for an asset without that bar)."""
        panel = window.panel(self.state.bundle.meta)
        ts = pd.Timestamp(t_us, unit="us", tz="UTC")
        i = panel.index.get_indexer([ts])[0]
        if i < 0:
            raise StoreEmpty(f"no stored bar at {ts.isoformat()} for the model's bar series", "symbols")
        symbols = self.model.symbols

        def per_asset(frame: pd.DataFrame) -> np.ndarray:
            return frame.reindex(columns=symbols).iloc[i].to_numpy(dtype=np.float64, na_value=np.nan)

        eng = self.model.engine
        return Bar(
            ts,
            per_asset(panel.close),
            per_asset(panel.volume),
            per_asset(panel.funding_rate),
            per_asset(panel.open_interest),
            panel.benchmarks.reindex(columns=eng.benchmark_names).iloc[i].to_numpy(dtype=np.float64),
            panel.factors.reindex(columns=eng.factor_names).iloc[i].to_numpy(dtype=np.float64),
            panel.factor_staleness.reindex(columns=eng.factor_names).iloc[i].to_numpy(dtype=np.float64),
        )

    # ---------------------------------------------------------------------------------- reads
    def inputs(self, symbols: list[str] | None) -> tuple[StoredInputs, dict, tuple]:
        """(inputs, model outputs, (phi, base, full)) of the kept forecasts of `symbols` (None: all)."""
        wanted, fs, bars = self.kept(symbols)
        rows = pd.DataFrame(
            np.stack([f.row for f in fs]),
            index=pd.Index(wanted, name="symbol"),
            columns=self.state.bundle.feature_columns,
        )
        inputs = StoredInputs(np.stack([f.window for f in fs]), wanted, [f.as_of for f in fs], rows, bars)
        out = {
            "beta": np.stack([f.beta for f in fs]),
            "beta_lo": np.stack([f.lo for f in fs]),
            "beta_hi": np.stack([f.hi for f in fs]),
            "regime_prob": np.stack([f.regime_prob for f in fs]),
        }
        shap = (np.stack([f.phi for f in fs]), fs[0].base, np.stack([f.full for f in fs]))
        return inputs, out, shap

    def kept(self, symbols: list[str] | None) -> tuple[list[str], list, dict]:
        """(symbols, their kept `LiveForecast`s, what the audit record names of the stored bars)
        for `symbols` (None: every asset with a forecast), without copying any array."""
        self.sync()
        with self.lock:
            assert self.model is not None
            kept = self.model.latest
            wanted = sorted(kept) if symbols is None else list(symbols)
            if any(s not in kept for s in wanted) and self._new_assets():  # listed since the build
                self.sync(rescan=True)
                kept = self.model.latest
            unknown = [s for s in wanted if s not in kept]
            if unknown:
                i = wanted.index(unknown[0])
                stored = unknown[0] in self.model.symbols
                why = (
                    "has no forecast yet (too little stored history, or no usable bar)"
                    if stored
                    else "is not in the market-data store"
                )
                raise RequestError(f"symbol {unknown[0]} {why}", f"symbols[{i}]")
            if not wanted:
                raise StoreEmpty(
                    "no asset has a forecast yet: the store holds too little history", "universe"
                )
            return wanted, [kept[s] for s in wanted], self.bars_named()

    def bars_named(self) -> dict:
        """`features.bars` of a record: the stored bars the kept forecasts were computed from."""
        return {
            "source": "market-data store",
            "first": iso(self.first_us) if self.first_us is not None else None,
            "replayed_to": self.replay_last.isoformat() if self.replay_last is not None else None,
            "last": self.model.last_timestamp.isoformat(),
            "n_assets": len(self.assets),
            "assets": list(self.assets),
            "sha256": self.sha256,
        }


def bars_chain(store, meta, assets: list[str], bars: dict, freq: pd.Timedelta) -> str:
    """Recompute a record's `features.bars.sha256` from the store (`bars` is that record's
    `features.bars`; `assets` the stored assets the replay read, as `GET /bars/info` lists them):
    the replay window, then one link per appended bar.  Equal to the record's value if and only
    if the store still holds exactly the bars the forecast used."""
    first, replay_last, last = (
        int(pd.Timestamp(bars[k]).value // 1000) for k in ("first", "replayed_to", "last")
    )
    freq_us = int(freq / pd.Timedelta(microseconds=1))
    series = [s for s in meta.required_history.series if s not in assets]
    n = (replay_last - first) // freq_us + 1
    digest = store.window(assets, series, n, end_us=replay_last).sha256
    for t in range(replay_last + freq_us, last + 1, freq_us):
        digest = chain(digest, store.window(assets, series, TAIL_BARS, end_us=t).sha256)
    return digest
