"""Walk-forward splits with an embargo, so no training target peeks into validation or test.

A forward-beta target at row t is computed from returns of rows t+1 .. t+H (H = horizon in
bars).  If training ended at row p and validation started at p+1, the last H training targets
would be built from returns that lie inside the validation period: the model would be scored
on data it was fitted to.  Every fold therefore leaves an *embargo* of E >= H bars between the
last training row and the first validation row, and again between validation and test:

    | train ............ | E bars | val ...... | E bars | test ...... |
                 last train row p, first val row p + E + 1  (so p + H < first val row)

Folds walk forward: the test blocks are consecutive (`step` = `test` by default) up to the end of
the data; training either expands from the first row (`expanding`) or keeps at most `train_max`
(`rolling`).  All lengths are duration strings, converted to bars of the index's frequency here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from adaptive_beta.models.data.schema import infer_freq
from adaptive_beta.models.durations import (
    Duration,
    ZeroOrDuration,
    format_freq,
    parse_duration,
    parse_duration_or_zero,
    to_periods,
)

PARTS = ("train", "val", "test")


class WalkForwardConfig(BaseModel):
    """Lengths of the walk-forward periods, as durations (`"30d"`, `"8h"`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon: Duration = "30d"  # forward window of the target; the embargo must be at least this long
    mode: Literal["expanding", "rolling"] = "expanding"  # training grows from the start, or slides
    train_min: Duration = "365d"  # shortest training period (the first fold's)
    train_max: Duration = "730d"  # longest training period in rolling mode (ignored when expanding)
    val: ZeroOrDuration = "90d"  # validation block for early stopping / model selection ("0d": none)
    test: Duration = "180d"  # each fold's test block
    step: Duration | None = None  # distance between consecutive test starts; default = test
    embargo: Duration | None = None  # gap after train and after val; default = horizon; must be >= horizon
    max_folds: int | None = None  # keep only the most recent folds
    start: str | None = None  # first timestamp used (ISO, UTC); default: first row of the data
    end: str | None = None  # last timestamp used; default: last row of the data

    @field_validator("max_folds")
    @classmethod
    def _max_folds(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("must be at least 1")
        return v

    @field_validator("start", "end")
    @classmethod
    def _timestamp(cls, v: str | None) -> str | None:
        if v is not None:
            pd.Timestamp(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> WalkForwardConfig:
        h = parse_duration(self.horizon)
        if self.embargo is not None and parse_duration(self.embargo) < h:
            raise ValueError(
                f"embargo {self.embargo!r} is shorter than horizon {self.horizon!r}: training targets "
                "would overlap the validation/test periods (field 'embargo')"
            )
        if self.step is not None and parse_duration(self.step) < parse_duration(self.test):
            raise ValueError(
                f"step {self.step!r} is shorter than test {self.test!r}: test blocks would overlap (field 'step')"
            )
        if self.mode == "rolling" and parse_duration(self.train_max) < parse_duration(self.train_min):
            raise ValueError(f"train_max {self.train_max!r} is shorter than train_min {self.train_min!r}")
        return self

    # --- resolved lengths ------------------------------------------------------------------
    @property
    def embargo_td(self) -> pd.Timedelta:
        return parse_duration(self.embargo if self.embargo is not None else self.horizon)

    @property
    def step_td(self) -> pd.Timedelta:
        return parse_duration(self.step if self.step is not None else self.test)

    def bars(self, freq: pd.Timedelta) -> dict[str, int]:
        """Every length in bars of `freq` (embargo never fewer bars than the horizon)."""
        h = to_periods(self.horizon, freq)
        val_td = parse_duration_or_zero(self.val)
        return {
            "horizon": h,
            "embargo": max(h, to_periods(self.embargo_td, freq)),
            "train_min": to_periods(self.train_min, freq),
            "train_max": to_periods(self.train_max, freq),
            "val": 0 if val_td == pd.Timedelta(0) else to_periods(val_td, freq),
            "test": to_periods(self.test, freq),
            "step": to_periods(self.step_td, freq),
        }


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: inclusive timestamp bounds (bar open times) of each period."""

    k: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    val_start: pd.Timestamp | None  # None when the config has no validation block
    val_end: pd.Timestamp | None
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def name(self) -> str:
        return f"fold{self.k}"

    def ranges(self) -> dict[str, tuple[pd.Timestamp, pd.Timestamp] | None]:
        """`{"train": (start, end), "val": (start, end) | None, "test": (start, end)}`, inclusive."""
        val = None if self.val_start is None else (self.val_start, self.val_end)
        return {
            "train": (self.train_start, self.train_end),
            "val": val,
            "test": (self.test_start, self.test_end),
        }

    def mask(self, timestamps: pd.Index | pd.MultiIndex, part: str) -> np.ndarray:
        """Boolean mask of `timestamps` in period `part` (`train`, `val`, `test`).

        Accepts a DatetimeIndex (wide frames) or a MultiIndex with a `timestamp` level (long
        frames), so models' long predictions are split the same way as wide panels.
        """
        if part not in PARTS:
            raise ValueError(f"unknown fold part {part!r}; expected one of {PARTS}")
        bounds = self.ranges()[part]
        ts = _timestamps(timestamps)
        if bounds is None:
            return np.zeros(len(ts), dtype=bool)
        lo, hi = bounds
        return np.asarray((ts >= lo) & (ts <= hi))

    def to_dict(self) -> dict[str, str | int | None]:
        out: dict[str, str | int | None] = {"k": self.k}
        for part, bounds in self.ranges().items():
            out[f"{part}_start"] = None if bounds is None else bounds[0].isoformat()
            out[f"{part}_end"] = None if bounds is None else bounds[1].isoformat()
        return out


def _timestamps(index: pd.Index) -> pd.DatetimeIndex:
    if isinstance(index, pd.MultiIndex):
        level = "timestamp" if "timestamp" in index.names else 0
        return pd.DatetimeIndex(index.get_level_values(level))
    return pd.DatetimeIndex(index)


def _as_utc(text: str, tz) -> pd.Timestamp:
    ts = pd.Timestamp(text)
    if ts.tzinfo is None and tz is not None:
        ts = ts.tz_localize("UTC")
    return ts


def make_folds(index: pd.DatetimeIndex, cfg: WalkForwardConfig | None = None) -> list[Fold]:
    """Walk-forward folds over a sorted DatetimeIndex (the panel's bar open times).

    Fold k's test block starts `step` bars after fold k-1's; the last block is cut at the end of
    the data and kept only if at least one of its rows has a complete forward target (its
    first row + H bars lie inside the data).  Raises ValueError when the data is too short for
    one fold, saying how many bars were needed.
    """
    cfg = cfg or WalkForwardConfig()
    idx = pd.DatetimeIndex(index)
    if not idx.is_monotonic_increasing or idx.has_duplicates:
        raise ValueError("make_folds needs a sorted index of unique timestamps")
    if cfg.start is not None:
        idx = idx[idx >= _as_utc(cfg.start, idx.tz)]
    if cfg.end is not None:
        idx = idx[idx <= _as_utc(cfg.end, idx.tz)]
    if len(idx) < 2:
        raise ValueError(
            f"data too short for walk-forward folds: {len(idx)} timestamp(s) between start and end"
        )
    freq = infer_freq(idx)
    b = cfg.bars(freq)
    h, e, val, test, step = b["horizon"], b["embargo"], b["val"], b["test"], b["step"]
    gap_val = e if val > 0 else 0  # the embargo after validation exists only if validation does
    last = len(idx) - 1
    first_test = b["train_min"] + e + val + gap_val  # 0-based position of fold 0's first test row
    needed = first_test + h + 1
    if needed > len(idx):
        raise ValueError(
            f"data too short for one walk-forward fold: {len(idx)} bars of {format_freq(freq)} "
            f"from {idx[0]:%Y-%m-%d %H:%M} to {idx[-1]:%Y-%m-%d %H:%M}, "
            f"but train_min ({b['train_min']}) + embargo ({e}) + val ({val}) + embargo ({gap_val}) "
            f"+ one test row with its {h}-bar target needs {needed}"
        )
    folds: list[Fold] = []
    ts = first_test
    while ts + h <= last:
        te = min(ts + test - 1, last)
        if val > 0:
            val_end = ts - e - 1
            val_start = val_end - val + 1
            train_end = val_start - e - 1
        else:
            val_end = val_start = None
            train_end = ts - e - 1
        train_start = 0 if cfg.mode == "expanding" else max(0, train_end - b["train_max"] + 1)
        folds.append(
            Fold(
                k=len(folds),
                train_start=idx[train_start],
                train_end=idx[train_end],
                val_start=None if val_start is None else idx[val_start],
                val_end=None if val_end is None else idx[val_end],
                test_start=idx[ts],
                test_end=idx[te],
            )
        )
        ts += step
    if cfg.max_folds is not None and len(folds) > cfg.max_folds:
        kept = folds[-cfg.max_folds :]
        folds = [
            Fold(i, *(getattr(f, n) for n in list(Fold.__dataclass_fields__)[1:])) for i, f in enumerate(kept)
        ]
    return folds


def fold_masks(index: pd.Index, fold: Fold) -> dict[str, np.ndarray]:
    """`{"train": mask, "val": mask, "test": mask}` of `index` (DatetimeIndex or (timestamp, symbol))."""
    return {part: fold.mask(index, part) for part in PARTS}


def pooled_test_mask(index: pd.Index, folds: list[Fold]) -> np.ndarray:
    """Rows of `index` inside any fold's test block (the pooled out-of-sample period)."""
    out = np.zeros(len(index), dtype=bool)
    for f in folds:
        out |= f.mask(index, "test")
    return out
