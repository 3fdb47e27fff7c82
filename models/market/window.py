"""Reading the store as model input: the last N bars of a set of series, hashed.

A `MarketWindow` holds the same observations a stateless `/forecast` request carries (assets:
symbol -> (int64 us stamps, {close, volume, funding_rate, open_interest}); series: name -> (us,
{close})), so `window.panel(meta)` builds the Panel with the very function the request path uses
(`models/bundle/panel_frame.observation_panel`), and a forecast made from stored bars can name
exactly which bars it used: `sha256` over their canonical bytes and the time range.

Canonical bytes (what `sha256` hashes), assets first then series, each group by name:
`kind + b"\\0" + name + b"\\0"`, the bar count as little-endian int64, the stamps as little-endian
int64 microseconds since the epoch (UTC), then each column as little-endian float64 (assets:
close, volume, funding_rate, open_interest; series: close), absent values as the one quiet NaN.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.market.bars import VALUE_COLUMNS, iso

DAY_US = 86_400_000_000
FACTOR_LEAD_US = 7 * DAY_US  # factor observations from a week before the first bar (as request builders do)
Observations = Mapping[str, tuple[np.ndarray, dict[str, np.ndarray]]]


def content_sha256(assets: Observations, series: Observations) -> str:
    """sha256 of the canonical bytes of the module docstring."""
    h = hashlib.sha256()
    for kind, obs, names in (("asset", assets, VALUE_COLUMNS), ("series", series, ("close",))):
        for name in sorted(obs):
            us, cols = obs[name]
            h.update(kind.encode() + b"\0" + name.encode() + b"\0")
            h.update(np.int64(len(us)).astype("<i8").tobytes())
            h.update(np.asarray(us, dtype=np.int64).astype("<i8").tobytes())
            for c in names:
                v = np.asarray(cols.get(c, np.full(len(us), np.nan)), dtype=np.float64)
                h.update(np.where(np.isnan(v), np.nan, v).astype("<f8").tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class MarketWindow:
    """Stored bars as model input (see the module docstring)."""

    assets: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]
    series: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]
    sha256: str
    first_us: int | None  # the earliest and latest bar returned, over every series
    last_us: int | None

    def ranges(self) -> dict[str, dict[str, Any]]:
        """name -> {"n", "first", "last"} of the bars returned (what an audit record names)."""
        out = {}
        for obs in (self.assets, self.series):
            for name, (us, _) in obs.items():
                out[name] = {"n": len(us), "first": iso(us[0]), "last": iso(us[-1])} if len(us) else {"n": 0}
        return out

    def panel(self, meta: Any):
        """The Panel the model sees for these bars (`observation_panel`, as the request path)."""
        from adaptive_beta.models.bundle.panel_frame import observation_panel

        return observation_panel(
            meta, self.assets, {k: (us, {"close": c["close"]}) for k, (us, c) in self.series.items()}
        )


def read_window(
    store: Any,
    assets: Sequence[str],
    series: Sequence[str],
    last: int,
    end_us: int | None = None,
    factor_lead_us: int = FACTOR_LEAD_US,
) -> MarketWindow:
    """The last `last` bars (up to `end_us`) of each asset and bar series; of an irregular series
    (a factor's observations) every point from `factor_lead_us` before the first bar returned to
    (not including) the close of the last one (as `panel_frame_from_panel` cuts a request's factors).

    Raises DataError naming a series that is not stored.
    """
    info = {i.name: i for i in store.info()}
    missing = [n for n in (*assets, *series) if n not in info]
    if missing:
        raise DataError(f"not in the market-data store: {', '.join(missing)}", column=missing[0])
    got_assets = {a: store.bars(a, last=last, end_us=end_us) for a in assets}
    firsts = [int(us[0]) for us, _ in got_assets.values() if len(us)]
    got_series: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for name in (n for n in series if info[n].freq_us is not None):
        us, cols = store.bars(name, last=last, end_us=end_us)
        got_series[name] = (us, {"close": cols["close"]})
        if len(us):
            firsts.append(int(us[0]))
    start = (min(firsts) - factor_lead_us) if firsts else None
    closes = [
        int(us[-1]) + info[n].freq_us for n, (us, _) in (*got_assets.items(), *got_series.items()) if len(us)
    ]
    stop = max(closes) - 1 if closes else end_us  # factor points before the last bar's close
    for name in (n for n in series if info[n].freq_us is None):
        us, cols = store.bars(name, start_us=start, end_us=stop, last=None if start is not None else last)
        got_series[name] = (us, {"close": cols["close"]})
    stamps = [us for us, _ in (*got_assets.values(), *got_series.values()) if len(us)]
    first = min(int(us[0]) for us in stamps) if stamps else None
    latest = max(int(us[-1]) for us in stamps) if stamps else None
    ordered = {n: got_series[n] for n in series}
    return MarketWindow(got_assets, ordered, content_sha256(got_assets, ordered), first, latest)
