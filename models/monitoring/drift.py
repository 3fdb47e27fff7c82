"""Drift statistics (pure, numpy/pandas only): population stability index and beta-shift runs.

Population stability index (PSI).  The training distribution of a feature is summarised by
`n_bins` quantile bins of its finite training values plus one bin for missing values (a feed
that goes dead or an asset without funding data is drift too).  With e_i and a_i the shares of
the training ("expected") and recent ("actual") rows in bin i,

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

which is the symmetric Kullback-Leibler (Jeffreys) divergence of the two binned laws, so it is
>= 0, zero only when the shares agree, and unchanged by any strictly increasing transform of
the feature (the bins are quantiles).  Shares are floored at `eps` before the log so an empty
bin gives a large but finite value.  Conventional reading: < 0.1 stable, 0.1-0.25 a shift worth
watching, > 0.25 a material shift (Siddiqi 2006; Yurdakul 2018).  A group's PSI is the mean PSI
of its features (the max is reported next to it): one feature of twenty drifting moves the
group less than all of them drifting together.

Beta shift.  A forecast interval is wrong when the realised forward beta lands outside it;
with overlapping horizons single misses come in clusters, so misses are counted per calendar
period (`period`) and a series (asset, benchmark) is flagged when the majority of its completed
forecasts fall outside the interval, on the same side, for `consecutive` periods in a row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PSI_WARN = 0.1  # conventional: above this a distribution has shifted noticeably
PSI_ALERT = 0.25  # conventional: above this the shift is material
DEFAULT_BINS = 10
DEFAULT_EPS = 1e-4

__all__ = [
    "DEFAULT_BINS",
    "FeatureReference",
    "PSI_ALERT",
    "PSI_WARN",
    "beta_shift_runs",
    "bin_shares",
    "build_reference",
    "feature_psi",
    "group_psi",
    "psi",
    "psi_from_samples",
    "psi_status",
    "quantile_edges",
]


def quantile_edges(reference: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Interior cut points of `n_bins` equal-count bins of the finite reference values (unique, sorted).

    Ties collapse duplicate cut points, so a feature with few distinct values gets fewer bins.
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    x = np.asarray(reference, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.empty(0)
    cuts = np.quantile(x, np.arange(1, n_bins) / n_bins, method="inverted_cdf")  # cuts are sample values
    return np.unique(cuts)


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of `values` in the bins cut at `edges` (a value equal to a cut goes up), then missing.

    Returns len(edges) + 2 shares summing to 1 (the last is the share of non-finite values);
    all zeros for an empty input.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return np.zeros(len(edges) + 2)
    finite = np.isfinite(v)
    counts = np.bincount(np.searchsorted(edges, v[finite], side="right"), minlength=len(edges) + 1)
    return np.append(counts, (~finite).sum()).astype(np.float64) / v.size


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """PSI of two share vectors over the same bins; shares are floored at `eps` (and renormalised)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise ValueError(f"expected and actual shares differ in length ({e.shape} vs {a.shape})")
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def psi_from_samples(
    reference: np.ndarray, current: np.ndarray, n_bins: int = DEFAULT_BINS, eps: float = DEFAULT_EPS
) -> float:
    """PSI of `current` against quantile bins of `reference` (missing values in their own bin)."""
    edges = quantile_edges(reference, n_bins)
    return psi(bin_shares(reference, edges), bin_shares(current, edges), eps)


def psi_status(value: float, warn: float = PSI_WARN, alert: float = PSI_ALERT) -> str:
    """`stable` (< warn), `watch` (warn..alert), `drift` (> alert) or `n/a` (NaN)."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return "drift" if value > alert else "watch" if value > warn else "stable"


@dataclass
class FeatureReference:
    """Training distribution of one feature: quantile cut points and the shares per bin (last = missing)."""

    edges: list[float]
    shares: list[float]
    n: int  # training rows summarised
    group: str = "other"

    def to_dict(self) -> dict:
        return {"edges": self.edges, "shares": self.shares, "n": self.n, "group": self.group}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureReference:
        return cls([float(x) for x in d["edges"]], [float(x) for x in d["shares"]], int(d["n"]), d["group"])


def build_reference(
    frame: pd.DataFrame, groups: dict[str, str] | None = None, n_bins: int = DEFAULT_BINS
) -> dict[str, FeatureReference]:
    """Quantile-bin reference of every column of a training feature frame."""
    groups = groups or {}
    out = {}
    for col in frame.columns:
        x = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        edges = quantile_edges(x, n_bins)
        out[col] = FeatureReference(
            [float(e) for e in edges],
            [float(s) for s in bin_shares(x, edges)],
            int(x.size),
            groups.get(col, "other"),
        )
    return out


def feature_psi(
    reference: dict[str, FeatureReference], current: pd.DataFrame, eps: float = DEFAULT_EPS
) -> pd.DataFrame:
    """PSI of each reference feature in `current` (a feature absent from `current` counts as all missing).

    Columns: feature, group, psi, n_reference, n_current, missing_reference, missing_current.
    """
    rows = []
    n = len(current)
    for col, ref in reference.items():
        x = current[col].to_numpy(dtype=np.float64, na_value=np.nan) if col in current else np.full(n, np.nan)
        edges = np.asarray(ref.edges, dtype=np.float64)
        shares = bin_shares(x, edges)
        value = psi(ref.shares, shares, eps) if n else float("nan")
        rows.append(
            {
                "feature": col,
                "group": ref.group,
                "psi": value,
                "n_reference": ref.n,
                "n_current": n,
                "missing_reference": float(ref.shares[-1]),
                "missing_current": float(shares[-1]) if n else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["feature", "group", "psi"])


def group_psi(features: pd.DataFrame, warn: float = PSI_WARN, alert: float = PSI_ALERT) -> pd.DataFrame:
    """Per group: mean and max feature PSI, the worst feature, counts above warn/alert, and a status.

    `features` is the output of `feature_psi`.  Status follows the group mean.
    """
    rows = []
    for g, part in features.groupby("group", sort=True):
        v = part["psi"].to_numpy(dtype=np.float64)
        ok = np.isfinite(v)
        mean = float(v[ok].mean()) if ok.any() else float("nan")
        worst = part.iloc[int(np.nanargmax(np.where(ok, v, -np.inf)))] if ok.any() else None
        rows.append(
            {
                "group": g,
                "psi": mean,
                "psi_max": float(v[ok].max()) if ok.any() else float("nan"),
                "worst_feature": None if worst is None else str(worst["feature"]),
                "n_features": int(len(part)),
                "n_watch": int(((v > warn) & (v <= alert)).sum()),
                "n_drift": int((v > alert).sum()),
                "status": psi_status(mean, warn, alert),
            }
        )
    return pd.DataFrame(rows)


def beta_shift_runs(
    completed: pd.DataFrame, period: pd.Timedelta, consecutive: int = 3, origin: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Runs of periods in which realised forward betas fall outside the forecast intervals.

    completed: one row per completed forecast with columns `as_of` (Timestamp), `symbol`,
        `benchmark`, `beta`, `lo`, `hi`, `realised`.
    Each as_of is assigned to a period of length `period` counted from `origin` (default: the
    earliest as_of).  A period is *outside* when more than half of its forecasts miss the interval
    and the mean miss (realised minus the nearer bound) has one sign; a run needs consecutive
    period numbers with the same sign.  Returns per (symbol, benchmark): periods, outside_periods,
    longest_run, direction (`above`/`below`/None: side of the longest run), run_end (last period
    start of that run), flagged (longest_run >= consecutive).
    """
    cols = [
        "symbol",
        "benchmark",
        "periods",
        "outside_periods",
        "longest_run",
        "direction",
        "run_end",
        "flagged",
    ]
    if completed.empty:
        return pd.DataFrame(columns=cols)
    if consecutive < 1:
        raise ValueError(f"consecutive must be at least 1, got {consecutive}")
    df = completed.copy()
    origin = pd.Timestamp(df["as_of"].min()) if origin is None else pd.Timestamp(origin)
    df["period"] = ((df["as_of"] - origin) // period).astype(np.int64)
    above = df["realised"] > df["hi"]
    below = df["realised"] < df["lo"]
    df["miss"] = np.where(above, df["realised"] - df["hi"], np.where(below, df["realised"] - df["lo"], 0.0))
    df["outside"] = (above | below).astype(np.float64)
    per = df.groupby(["symbol", "benchmark", "period"], sort=True).agg(
        share=("outside", "mean"), miss=("miss", "mean")
    )
    rows = []
    for (sym, bench), part in per.groupby(level=[0, 1], sort=True):
        periods = part.index.get_level_values("period").to_numpy()
        sign = np.where(part["share"].to_numpy() > 0.5, np.sign(part["miss"].to_numpy()), 0.0)
        best, best_sign, best_end, run, prev_p, prev_s = 0, 0.0, None, 0, None, 0.0
        for p, s in zip(periods, sign, strict=True):
            run = (
                run + 1
                if (s != 0 and prev_p is not None and p == prev_p + 1 and s == prev_s)
                else int(s != 0)
            )
            if run > best:
                best, best_sign, best_end = run, s, p
            prev_p, prev_s = p, s
        rows.append(
            {
                "symbol": sym,
                "benchmark": bench,
                "periods": int(len(periods)),
                "outside_periods": int((sign != 0).sum()),
                "longest_run": int(best),
                "direction": None if best == 0 else ("above" if best_sign > 0 else "below"),
                "run_end": None if best_end is None else (origin + int(best_end) * period).isoformat(),
                "flagged": bool(best >= consecutive),
            }
        )
    return pd.DataFrame(rows, columns=cols)
