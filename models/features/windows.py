"""Feature table -> dense cube -> fixed-geometry windows [N, L, F] (numpy only, torch-free).

Training and serving cut windows with the same functions so the geometry cannot drift: a window
ending at row t holds rows t - (L-1)*stride, ..., t - stride, t of the panel grid (oldest first),
with L = ceil(lookback_bars / stride) and stride chosen so that L <= max_steps.  A long lookback
on hourly data is thus subsampled rather than truncated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adaptive_beta.models.durations import to_periods


@dataclass(frozen=True)
class WindowGeometry:
    """How many bars a window spans and how it is subsampled."""

    lookback_bars: int  # history in bars (lookback duration / freq)
    stride: int  # bars between consecutive sequence steps
    steps: int  # sequence length L fed to the network

    @property
    def span(self) -> int:
        """Bars from the oldest to the newest row of a window, inclusive."""
        return window_span(self.lookback_bars, self.stride)


def window_geometry(lookback: str | pd.Timedelta, freq: pd.Timedelta, max_steps: int = 32) -> WindowGeometry:
    """Lookback in bars for this freq, the stride that keeps the sequence at <= max_steps steps."""
    bars = to_periods(lookback, freq, minimum=1)
    stride = max(1, math.ceil(bars / max_steps))
    return WindowGeometry(lookback_bars=bars, stride=stride, steps=n_steps(bars, stride))


def n_steps(lookback_bars: int, stride: int) -> int:
    """Sequence length of a window of `lookback_bars` bars sampled every `stride` bars."""
    return max(1, math.ceil(lookback_bars / stride))


def window_span(lookback_bars: int, stride: int) -> int:
    """Bars from the oldest to the newest row of a window, inclusive: (L - 1) * stride + 1.

    The one span rule: a window ending at row t needs t >= span - 1, and a request needs `span`
    bars on the grid after the feature warm-up.
    """
    return (n_steps(lookback_bars, stride) - 1) * stride + 1


def feature_cube(
    frame: pd.DataFrame,
    columns: list[str],
    timestamps: pd.DatetimeIndex | None = None,
    symbols: list[str] | None = None,
) -> tuple[np.ndarray, pd.DatetimeIndex, list[str]]:
    """Dense float32 cube [T, N, F] from a frame indexed by (timestamp, symbol); missing rows are NaN.

    `timestamps` defaults to the sorted timestamps of the frame (pass the panel index to keep bars
    where no asset has a row, so that strides stay in wall-clock time).
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"feature frame lacks column(s) {missing}")
    ts_level = frame.index.get_level_values(0)
    sym_level = frame.index.get_level_values(1)
    if timestamps is None:
        timestamps = pd.DatetimeIndex(np.unique(ts_level))
    if symbols is None:
        symbols = list(pd.unique(sym_level))
    ti = timestamps.get_indexer(ts_level)
    si = pd.Index(symbols).get_indexer(sym_level)
    keep = (ti >= 0) & (si >= 0)
    cube = np.full((len(timestamps), len(symbols), len(columns)), np.nan, dtype=np.float32)
    values = frame[columns].to_numpy(dtype=np.float32, na_value=np.nan)
    cube[ti[keep], si[keep]] = values[keep]
    return cube, timestamps, list(symbols)


def sample_index(valid: np.ndarray, lookback_bars: int, stride: int) -> np.ndarray:
    """(t, n) pairs [S, 2] where `valid[t, n]` holds and a full window fits on the grid (t >= span - 1).

    `valid` is a [T, N] bool mask, typically "base beta finite and some target finite".
    """
    span = window_span(lookback_bars, stride)
    ok = np.asarray(valid, dtype=bool).copy()
    ok[: span - 1] = False
    t, n = np.nonzero(ok)
    return np.stack([t, n], axis=1).astype(np.int64)


def gather_windows(cube: np.ndarray, pairs: np.ndarray, lookback_bars: int, stride: int) -> np.ndarray:
    """Windows [B, L, F] (oldest step first) ending at each (t, n) of `pairs` [B, 2]."""
    first = window_span(lookback_bars, stride) - 1  # rows before the end the window starts
    offsets = np.arange(-first, 1, stride)  # [L]
    t = pairs[:, 0:1] + offsets[None, :]  # [B, L]
    if t.size and t.min() < 0:
        raise ValueError(f"a window starts before the first bar: need t >= {first}")
    n = np.broadcast_to(pairs[:, 1:2], t.shape)
    return np.ascontiguousarray(cube[t, n])  # [B, L, F]


def window_ends(
    cube: np.ndarray,
    timestamps: pd.DatetimeIndex,
    columns: list[str],
    lookback_bars: int,
    stride: int,
    symbols: list[str],
    require_finite: list[str] | None = None,
) -> list[int]:
    """Row of each asset's latest window on the grid: its last row with finite `require_finite`
    columns (the base betas).  ValueError naming the asset when no row qualifies or the window
    would start before the grid.  The one end rule for serving (`latest_windows`, `make_inputs`)."""
    span = window_span(lookback_bars, stride)
    need = [columns.index(c) for c in (require_finite or [])]
    ends: list[int] = []
    for j, sym in enumerate(symbols):
        ok = np.isfinite(cube[:, j, need]).all(axis=1) if need else np.isfinite(cube[:, j]).any(axis=1)
        rows = np.nonzero(ok)[0]
        if rows.size == 0:
            raise ValueError(f"asset {sym}: no bar with finite {require_finite or 'features'}")
        end = int(rows[-1])
        if end < span - 1:
            raise ValueError(
                f"asset {sym}: window needs {span} bars up to {timestamps[end]}, only {end + 1} on the grid "
                f"({span - 1 - end} missing)"
            )
        ends.append(end)
    return ends


def latest_windows(
    frame: pd.DataFrame,
    columns: list[str],
    lookback_bars: int,
    stride: int,
    symbols: list[str],
    timestamps: pd.DatetimeIndex | None = None,
    require_finite: list[str] | None = None,
) -> tuple[np.ndarray, list[pd.Timestamp], list[int]]:
    """Each asset's most recent window, for serving.

    The window of asset s ends at its latest grid row where the `require_finite` columns (the base
    betas) are finite.  Returns x [N, L, F] float32, the as-of timestamp per asset and the end row
    index on the grid.  Raises ValueError naming the asset when no row qualifies or the window
    would start before the grid.
    """
    cube, timestamps, _ = feature_cube(frame, columns, timestamps, symbols)
    ends = window_ends(cube, timestamps, columns, lookback_bars, stride, symbols, require_finite)
    pairs = np.stack([np.array(ends), np.arange(len(symbols))], axis=1).astype(np.int64)
    x = gather_windows(cube, pairs, lookback_bars, stride)
    return x, [timestamps[e] for e in ends], ends
