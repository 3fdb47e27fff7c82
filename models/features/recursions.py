"""O(1)-per-bar building blocks of the incremental feature engine (`features/incremental.py`).

Each block keeps the state one causal statistic needs and updates it when one bar is appended,
vectorised over whatever shape it was built with (assets, benchmarks x assets, factors x
assets).  All state lives in numpy arrays registered with a `StateArrays` store, so the whole
engine serialises to one `.npz` and a new asset can be inserted along the asset axis.

Precision: a window sum is the difference of two running totals, as in the batch
`rolling_sum`, but the totals are rebased to zero once per window (see `WindowSums`), so
round-off never accumulates beyond about two windows of values (amortised O(1) per bar).  The
batch totals grow with the whole history instead: over thousands of bars the incremental sums
are the more accurate of the two (tests/models/test_features_incremental.py measures both).
Exponential sums use the recursion `S = decay * S + a`, the same first-order IIR filter as the
batch `ewm_sum` (scipy `lfilter`), so they agree bit for bit.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np


@dataclass
class _Slot:
    owner: object
    attr: str
    fill: float
    asset_axis: bool  # the last axis runs over assets (a new asset inserts a column there)


class StateArrays:
    """Registry of every state array of an engine: name -> (owner, attribute, fill value).

    Blocks keep their arrays as attributes (fast access per bar); the registry lets the engine
    save, restore and widen them all without knowing the blocks.
    """

    def __init__(self) -> None:
        self.slots: dict[str, _Slot] = {}

    def new(self, owner: object, attr: str, name: str, shape: tuple[int, ...], fill: float, asset_axis: bool):
        if name in self.slots:
            raise ValueError(f"state array {name!r} registered twice")
        array = np.full(shape, fill, dtype=np.float64)
        setattr(owner, attr, array)
        self.slots[name] = _Slot(owner, attr, fill, asset_axis)
        return array

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(s.owner, s.attr) for name, s in self.slots.items()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy saved arrays in; a missing, extra or wrongly shaped array is a ValueError naming it."""
        extra = sorted(set(arrays) - set(self.slots))
        missing = sorted(set(self.slots) - set(arrays))
        if extra or missing:
            raise ValueError(
                f"feature state does not match the engine: missing {missing}, unexpected {extra}"
            )
        for name, slot in self.slots.items():
            have = getattr(slot.owner, slot.attr)
            if arrays[name].shape != have.shape:
                raise ValueError(
                    f"feature state {name!r} has shape {arrays[name].shape}, expected {have.shape}"
                )
            np.copyto(have, arrays[name])

    def insert_asset(self, position: int) -> None:
        """Insert a fresh asset (the state of an all-missing history) at `position` of the asset axis."""
        for slot in self.slots.values():
            if slot.asset_axis:
                a = getattr(slot.owner, slot.attr)
                setattr(slot.owner, slot.attr, np.insert(a, position, slot.fill, axis=a.ndim - 1))


class WindowSums:
    """Sums over the last `window` bars of rows of shape `shape` (callers zero-fill missing values).

    A ring of the last `window` + 1 running totals C_t = C_{t-1} + a_t; the window sum is
    C_t - C_{t-window}, the batch `rolling_sum` rule.  Unlike the batch's totals, which grow
    with the whole history, these are rebased to zero once per window (every stored total minus
    the newest one), so the round-off of a window sum stays that of about two windows of values
    however long the engine runs (amortised O(1) per bar).  A window of zeros sums to exactly 0
    (equal totals stay equal through a rebase), as in the batch: no tiny negative sum of squares.
    Values must be finite.
    """

    def __init__(self, store: StateArrays, name: str, window: int, shape: tuple[int, ...], asset_axis: bool):
        if window < 1:
            raise ValueError(f"window must be at least one bar, got {window}")
        self.window = int(window)
        store.new(self, "totals", f"{name}.totals", (self.window + 1, *shape), 0.0, asset_axis)
        store.new(self, "sums", f"{name}.sums", tuple(shape), 0.0, asset_axis)

    def push(self, t: int, values: np.ndarray) -> np.ndarray:
        """Append bar number t (0, 1, 2, ...) and return the window sums (a view: copy to keep)."""
        size = self.window + 1
        totals = self.totals
        now = totals[t % size]
        np.add(totals[(t - 1) % size], values, out=now)  # slot of t-1 holds 0 before the first bar
        np.subtract(now, totals[(t + 1) % size], out=self.sums)  # slot of t - window (0 until written)
        if (t + 1) % self.window == 0:  # rebase: the newest total becomes exactly 0
            totals -= now.copy()
        return self.sums


class Lags:
    """The last `depth` + 1 rows, so `get(t, k)` is the row k <= depth bars before bar t (NaN before the first)."""

    def __init__(self, store: StateArrays, name: str, depth: int, shape: tuple[int, ...], asset_axis: bool):
        self.size = int(depth) + 1
        store.new(self, "buf", f"{name}.buf", (self.size, *shape), np.nan, asset_axis)

    def push(self, t: int, values: np.ndarray) -> None:
        self.buf[t % self.size] = values

    def get(self, t: int, k: int) -> np.ndarray:
        if not 0 <= k < self.size:
            raise ValueError(f"lag {k} is beyond the kept depth {self.size - 1}")
        return self.buf[(t - k) % self.size]  # slots not yet written hold the NaN fill


class EwmSums:
    """S_t = decay * S_{t-1} + a_t elementwise: the batch `ewm_sum` recursion, one bar at a time."""

    def __init__(self, store: StateArrays, name: str, decay: float, shape: tuple[int, ...], asset_axis: bool):
        self.decay = float(decay)
        store.new(self, "sums", f"{name}.sums", tuple(shape), 0.0, asset_axis)

    def push(self, values: np.ndarray) -> np.ndarray:
        sums = self.sums
        sums *= self.decay
        sums += values  # a + decay * S: the same two IEEE operations as lfilter
        return sums


class Counter:
    """Running count (cumulative sum) of valid observations: exact in float64 below 2**53."""

    def __init__(self, store: StateArrays, name: str, shape: tuple[int, ...], asset_axis: bool):
        store.new(self, "count", f"{name}.count", tuple(shape), 0.0, asset_axis)

    def push(self, valid: np.ndarray) -> np.ndarray:
        self.count += valid
        return self.count


class RollingMax:
    """Max of the finite values among the last `window` bars (NaN if none), like pandas'
    `rolling(window, min_periods=1).max()`.

    van Herk / Gil-Werman: bars are cut into blocks of `window`; the window ending at position j
    of the current block is the max of the running prefix max of this block and the suffix max
    (from j + 1) of the previous block, which is computed once per block.  O(1) amortised per
    bar, vectorised over the columns, and exact (a max does not round).
    """

    def __init__(self, store: StateArrays, name: str, window: int, shape: tuple[int, ...], asset_axis: bool):
        self.window = int(window)
        store.new(self, "block", f"{name}.block", (self.window, *shape), -np.inf, asset_axis)
        store.new(self, "suffix", f"{name}.suffix", (self.window + 1, *shape), -np.inf, asset_axis)
        store.new(self, "prefix", f"{name}.prefix", tuple(shape), -np.inf, asset_axis)

    def push(self, t: int, values: np.ndarray) -> np.ndarray:
        j = t % self.window
        v = np.where(np.isfinite(values), values, -np.inf)
        if j == 0:
            self.prefix[...] = v
        else:
            np.maximum(self.prefix, v, out=self.prefix)
        self.block[j] = v
        out = np.maximum(self.prefix, self.suffix[j + 1])
        if j == self.window - 1:  # block complete: its suffix maxima serve the next block
            self.suffix[: self.window] = np.maximum.accumulate(self.block[::-1], axis=0)[::-1]
        return np.where(np.isfinite(out), out, np.nan)


class RollingMedian:
    """Median of the finite values among the last `window` bars of a few scalar series (one per
    column of a 1-d row), NaN below `min_periods` values: pandas' `rolling(window,
    min_periods).median()`, including its mean of the two middle values for an even count.

    A sorted list per column (bisect: O(log n) search, a C memmove to insert or drop) beside a
    ring buffer; the sorted lists are rebuilt from the buffer after a restore.
    """

    def __init__(self, store: StateArrays, name: str, window: int, min_periods: int, width: int):
        self.window, self.min_periods = int(window), int(min_periods)
        store.new(self, "buf", f"{name}.buf", (self.window, width), np.nan, False)
        self.rebuild()

    def rebuild(self) -> None:
        self.sorted = [sorted(v for v in col if np.isfinite(v)) for col in self.buf.T]

    def push(self, t: int, values: np.ndarray) -> np.ndarray:
        pos = t % self.window
        out = np.full(len(self.sorted), np.nan)
        for k, col in enumerate(self.sorted):
            old, new = self.buf[pos, k], float(values[k])
            if np.isfinite(old):
                del col[bisect.bisect_left(col, old)]
            if np.isfinite(new):
                bisect.insort(col, new)
            n = len(col)
            if n >= self.min_periods and n > 0:
                out[k] = col[n // 2] if n % 2 else (col[n // 2 - 1] + col[n // 2]) / 2
        self.buf[pos] = values
        return out
