"""Market data for the pages, only when configured: `ABETA_REALISED_DATA` names a dataset folder or
manifest that `adaptive_beta.models.data.loaders.load_dataset` reads.  It supplies (a) the closes up to a forecast's
as-of time for records logged before the service kept the request's last closes (features.inputs)
and (b) the realised forward beta once a forecast's horizon has passed (`adaptive_beta.models.features.targets.forward_betas`,
the training target), or that the forecast is still pending.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketConfig:
    path: str | None = None  # ABETA_REALISED_DATA
    horizon: str = "30d"  # ABETA_REALISED_HORIZON: the forecast horizon the model was trained for

    @classmethod
    def from_env(cls) -> MarketConfig:
        from adaptive_beta.models.settings import get_settings

        settings = get_settings()
        return cls(path=settings.realised_data, horizon=settings.realised_horizon)


@dataclass(frozen=True)
class Outcome:
    """A forecast against later data: status realised | pending | unavailable."""

    status: str
    value: float | None = None  # the realised forward beta (status realised)
    due: pd.Timestamp | None = None  # when the horizon window closes
    note: str = ""  # why unavailable


def _utc(stamp: str) -> pd.Timestamp:
    t = pd.Timestamp(stamp)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


class MarketData:
    """Lazily loaded panel and forward betas (loaded once per process)."""

    def __init__(self, cfg: MarketConfig):
        self.cfg = cfg
        self._lock = threading.Lock()
        self._panel = None
        self._fwd: pd.DataFrame | None = None
        self.error: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.cfg.path)

    def panel(self):
        if not self.configured:
            return None
        with self._lock:
            if self._panel is None and self.error is None:
                try:
                    from adaptive_beta.models.data.loaders import load_dataset

                    self._panel = load_dataset(self.cfg.path)
                except Exception as exc:
                    self.error = f"market data {self.cfg.path} cannot be loaded: {exc}"
                    log.error(self.error)
            return self._panel

    def closes(self, symbol: str, as_of: str | None, bars: int = 60) -> pd.Series | None:
        """The last `bars` closes of `symbol` at or before `as_of`."""
        panel = self.panel()
        if panel is None or as_of is None or symbol not in panel.close.columns:
            return None
        t = pd.Timestamp(as_of)
        t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
        s = panel.close[symbol]
        s = s[s.index <= t].dropna().iloc[-bars:]
        return s if len(s) else None

    def forward(self) -> pd.DataFrame | None:
        panel = self.panel()
        if panel is None:
            return None
        with self._lock:
            if self._fwd is None:
                from adaptive_beta.models.features.targets import forward_betas

                self._fwd = forward_betas(panel, self.cfg.horizon)
            return self._fwd

    def outcome(self, symbol: str, as_of: str | None, benchmark: str) -> Outcome:
        """Where a forecast made at bar `as_of` stands against the market data.

        realised: the forward beta over bars as_of+1 .. as_of+H exists (`forward_betas`, H = horizon
        in bars); pending: that window runs past the last bar of the data (due = the close of bar
        as_of+H, i.e. as_of + (H+1) bars); unavailable: the asset or bar is not in the data, or the
        window has too few valid returns (forward_betas' min_fraction) or a flat benchmark.
        """
        from adaptive_beta.models.durations import to_periods

        panel = self.panel()
        fwd = self.forward()
        if panel is None or fwd is None or as_of is None:
            return Outcome("unavailable", note="no market data")
        t = _utc(as_of)
        h = to_periods(self.cfg.horizon, panel.freq)
        due = t + (h + 1) * panel.freq
        index = panel.index
        pos = int(index.searchsorted(t))
        if symbol not in panel.close.columns:
            return Outcome("unavailable", note=f"{symbol} is not in the market data")
        if benchmark not in fwd.columns:
            return Outcome("unavailable", note=f"benchmark {benchmark} is not in the market data")
        if t >= index[0] and pos + h > len(index) - 1:
            return Outcome("pending", due=due)
        if pos >= len(index) or index[pos] != t:
            return Outcome("unavailable", note=f"bar {t.isoformat()} is not on the market data's grid")
        v = self.realised(symbol, as_of, benchmark)
        if v is None:
            return Outcome("unavailable", note="too few valid returns in the window, or a flat benchmark")
        return Outcome("realised", value=v, due=due)

    def realised(self, symbol: str, as_of: str | None, benchmark: str) -> float | None:
        """Realised beta over the bars after `as_of` (None while the horizon has not passed)."""
        fwd = self.forward()
        if fwd is None or as_of is None or benchmark not in fwd.columns:
            return None
        t = _utc(as_of)
        try:
            v = fwd.loc[(t, symbol), benchmark]
        except KeyError:
            return None
        v = float(v)
        return v if v == v else None
