"""Market data for the pages, only when configured: `ABETA_REALISED_DATA` names a dataset folder or
manifest that `models.loaders.load_dataset` reads.  It supplies (a) the closes up to a forecast's
as-of time (the request's own history is not logged, only its sha256) and (b) the realised forward
beta once a forecast's horizon has passed (`models.targets.forward_betas`, the training target).
"""

from __future__ import annotations

import logging
import os
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
        return cls(
            path=os.environ.get("ABETA_REALISED_DATA") or None,
            horizon=os.environ.get("ABETA_REALISED_HORIZON", cls.horizon),
        )


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
                    from models.loaders import load_dataset

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
                from models.targets import forward_betas

                self._fwd = forward_betas(panel, self.cfg.horizon)
            return self._fwd

    def realised(self, symbol: str, as_of: str | None, benchmark: str) -> float | None:
        """Realised beta over the bars after `as_of` (None while the horizon has not passed)."""
        fwd = self.forward()
        if fwd is None or as_of is None or benchmark not in fwd.columns:
            return None
        t = pd.Timestamp(as_of)
        t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
        try:
            v = fwd.loc[(t, symbol), benchmark]
        except KeyError:
            return None
        v = float(v)
        return v if v == v else None
