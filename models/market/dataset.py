"""A dataset the loaders read (models/data/loaders.py) as the store's series: what a feed would
have posted to POST /bars, so a bulk load and a live feed fill the store the same way.

* each asset of the Panel: its bars from its first close on (close, volume, funding rate, open
  interest as the loaders put them on bars), at the panel's bar length;
* each benchmark that is not also an asset (the composite `CRYPTO_EW`; `BTCUSDT` is stored once,
  as the asset) as an input series at the same bar length;
* each factor as observed (`factor_observations`: observation dates, transforms applied), an
  irregular series, as a client sends it in `series` and the model publishes it by its own rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import infer_category
from adaptive_beta.models.market.bars import SeriesBars


def _us(index: pd.Index) -> np.ndarray:
    stamps = pd.DatetimeIndex(index)
    stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    return stamps.as_unit("us").asi8.astype(np.int64)


def dataset_series(path: str | Path) -> list[SeriesBars]:
    """The dataset's series (see the module docstring); DataError naming file/row/column as the
    loaders do when the dataset does not load."""
    from adaptive_beta.models.data.loaders import factor_observations, load_dataset

    panel = load_dataset(path)
    freq_us = int(panel.freq / pd.Timedelta(microseconds=1))
    out = []
    for sym in panel.symbols:
        close = panel.close[sym]
        keep = close.index >= close.first_valid_index() if close.notna().any() else np.zeros(len(close), bool)
        cols = {
            "close": close.to_numpy(dtype=np.float64)[keep],
            **{
                c: getattr(panel, c)[sym].to_numpy(dtype=np.float64)[keep]
                for c in ("volume", "funding_rate", "open_interest")
            },
        }
        out.append(SeriesBars(sym, "asset", _us(close.index[keep]), cols, freq_us))
    for name in panel.benchmarks.columns:
        if name in panel.symbols:
            continue
        s = panel.benchmarks[name].dropna()
        out.append(SeriesBars(str(name), "series", _us(s.index), {"close": s.to_numpy(np.float64)}, freq_us))
    for name, obs in factor_observations(path).items():
        s = obs.values.dropna().sort_index()
        positive = infer_category(name) != "rates"
        out.append(
            SeriesBars(name, "series", _us(s.index), {"close": s.to_numpy(np.float64)}, None, positive)
        )
    return out
