"""Hedge overlay: notional per hedge instrument that brings a portfolio's forecast beta to a target.

Definitions (used by the service and its docs):

- Positions are signed USD notionals n_i (long > 0).  The portfolio's *dollar beta* to benchmark b
  is D_b = sum_i n_i beta_ib: the USD P&L per 1.00 (100 %) move of b.
- NAV is given by the caller; if not, it is the portfolio's gross notional sum_i |n_i|.
  *Portfolio beta* is dollar beta per unit of NAV: B_b = D_b / NAV.
- The overlay adds notionals h_j in hedge instruments with betas c_jb.  The target T_b is a
  portfolio beta, so the target dollar beta is T_b * NAV.  We solve

      min_h  sum_b ( (D_b + sum_j h_j c_jb) / NAV - T_b )^2       (least squares across benchmarks)
      s.t.   lo_j <= h_j <= hi_j                                   (optional per-instrument limits)

  Unbounded (or when the unbounded answer is within the limits): the exact closed form
  h = pinv(C^T) (T*NAV - D), i.e. the minimum-norm least-squares solution (fewest notional among
  exact hedges when there are more instruments than benchmarks).  Otherwise the bounded problem
  is solved by `scipy.optimize.lsq_linear` (BVLS).
- Residual interval per benchmark: each beta lies in its 90 % interval [lo, hi]; the residual
  beta sum_k w_k beta_kb (w = post-hedge notional / NAV, over assets and instruments) is bounded
  by interval arithmetic (long legs at lo/hi, short legs at hi/lo).  This "worst case" bound
  assumes nothing about how forecast errors co-move (they do co-move: a regime change moves all
  betas together), so it is conservative; `interval_method="independent"` instead combines
  half-widths in quadrature (normal, independent errors), which is tighter and optimistic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Interval = tuple[float, float]


@dataclass(frozen=True)
class HedgeResult:
    orders: dict[str, float]  # hedge instrument -> USD notional to trade (signed)
    residual_beta: dict[str, float]  # benchmark -> portfolio beta after the overlay
    residual_interval: dict[str, Interval]  # benchmark -> (lo, hi) of the residual beta
    portfolio_beta: dict[str, float]  # benchmark -> portfolio beta before the overlay
    target: dict[str, float]
    nav: float
    betas_used: dict[str, dict[str, float]]  # symbol -> benchmark -> beta (assets and instruments)
    reachable: bool  # True when the target is met exactly (residual == target within tolerance)
    method: str  # "closed_form" | "bounded_lsq"
    notes: list[str] = field(default_factory=list)


def finite_beta(betas: Mapping[str, Mapping[str, float]], sym: str, bench: str, what: str) -> float:
    """The one beta lookup of the portfolio maths (hedge, stress): missing or non-finite is an
    error naming the pair, never a silent NaN in a notional."""
    try:
        value = float(betas[sym][bench])
    except KeyError:
        raise ValueError(f"{what}: no beta of {sym!r} to {bench!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"{what}: beta of {sym!r} to {bench!r} is not finite")
    return value


def _check_request(
    positions: Mapping[str, float], hedge_instruments: Sequence[str], target: Mapping[str, float]
) -> None:
    """Reject an empty book, no or repeated instruments, and an empty target, one sentence each."""
    if not positions:
        raise ValueError("positions: the portfolio is empty")
    if not hedge_instruments:
        raise ValueError("hedge_instruments: give at least one instrument for the overlay")
    if len(set(hedge_instruments)) != len(hedge_instruments):
        raise ValueError("hedge_instruments: an instrument is listed twice")
    if not target:
        raise ValueError("target: give a target beta for at least one benchmark")


def _nav_of(positions: Mapping[str, float], nav: float | None) -> float:
    """The NAV betas are measured against: the caller's, else the book's gross notional (must be > 0)."""
    gross = float(sum(abs(float(v)) for v in positions.values()))
    nav_value = float(nav) if nav is not None else gross
    if not np.isfinite(nav_value) or nav_value <= 0:
        raise ValueError(
            f"nav: must be a positive number (got {nav_value}); a portfolio of zero notional has no beta"
        )
    return nav_value


def _limit_bounds(
    hedge_instruments: Sequence[str], limits: Mapping[str, Interval] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) notional bounds per instrument (+-inf where unlimited); a limit on anything else is an error."""
    lo = np.full(len(hedge_instruments), -np.inf)
    hi = np.full(len(hedge_instruments), np.inf)
    for j, h in enumerate(hedge_instruments):
        if limits and h in limits:
            lo[j], hi[j] = float(limits[h][0]), float(limits[h][1])
            if lo[j] > hi[j]:
                raise ValueError(f"limits[{h!r}]: minimum {lo[j]} is above maximum {hi[j]}")
    for h in limits or {}:
        if h not in hedge_instruments:
            raise ValueError(f"limits[{h!r}]: not one of the hedge instruments {list(hedge_instruments)}")
    return lo, hi


def _solve_overlay(
    C: np.ndarray, rhs: np.ndarray, lo: np.ndarray, hi: np.ndarray, nav_value: float, tol: float
) -> tuple[np.ndarray, str, list[str]]:
    """(notionals, method, notes): the closed form, or bounded least squares if it breaks a limit.

    The closed form (minimum-norm least squares of C^T h = rhs) is exact and cheap, so the
    bounded solver (scipy, imported lazily) runs only when a limit is actually binding.
    """
    h_vec = np.linalg.pinv(C.T) @ rhs
    method = "closed_form"
    notes: list[str] = []
    if np.any(h_vec < lo - tol * max(1.0, nav_value)) or np.any(h_vec > hi + tol * max(1.0, nav_value)):
        from scipy.optimize import lsq_linear

        res = lsq_linear(C.T / nav_value, rhs / nav_value, bounds=(lo, hi), method="bvls")
        h_vec = res.x
        method = "bounded_lsq"
        notes.append("the unconstrained hedge broke an instrument limit; solved with bounds")
    return h_vec, method, notes


def _benchmark_interval(
    merged: Mapping[str, float],
    point_beta: Mapping[str, np.ndarray],
    k: int,
    b: str,
    beta_intervals: Mapping[str, Mapping[str, Interval]] | None,
    interval_method: str,
) -> Interval:
    """Interval of the residual beta to benchmark `b` (column k): worst case or independent errors.

    `merged` is weight (notional / NAV) per symbol, a symbol held and hedged counted once.
    """
    lo_sum, hi_sum, var = 0.0, 0.0, 0.0
    centre = 0.0
    for s, wi in merged.items():
        beta = float(point_beta[s][k])
        iv = (beta_intervals or {}).get(s, {}).get(b)
        blo, bhi = (beta, beta) if iv is None else (float(iv[0]), float(iv[1]))
        if blo > bhi:
            raise ValueError(f"beta_intervals[{s!r}][{b!r}]: lower bound {blo} is above upper bound {bhi}")
        centre += wi * beta
        if wi >= 0:
            lo_sum += wi * blo
            hi_sum += wi * bhi
        else:
            lo_sum += wi * bhi
            hi_sum += wi * blo
        var += (wi * (bhi - blo) / 2.0) ** 2
    if interval_method == "independent":
        half = float(np.sqrt(var))
        return (centre - half, centre + half)
    return (lo_sum, hi_sum)


def hedge_overlay(
    positions: Mapping[str, float],
    betas: Mapping[str, Mapping[str, float]],
    beta_intervals: Mapping[str, Mapping[str, Interval]] | None,
    hedge_instruments: Sequence[str],
    instrument_betas: Mapping[str, Mapping[str, float]] | None,
    target: Mapping[str, float],
    limits: Mapping[str, Interval] | None = None,
    nav: float | None = None,
    interval_method: Literal["worst_case", "independent"] = "worst_case",
    tol: float = 1e-9,
) -> HedgeResult:
    """Overlay orders per hedge instrument, residual beta and its interval; see the module docstring.

    betas: symbol -> benchmark -> forecast beta for every position; instrument_betas the same for
    the hedge instruments (None: look them up in `betas`).  beta_intervals: symbol -> benchmark ->
    (lo, hi) for positions and instruments (None or missing: a point, zero width).  target: benchmark
    -> target portfolio beta; the benchmarks hedged are exactly the keys of `target`.
    limits: instrument -> (min notional, max notional), either side may be +-inf.
    Steps: check the request, NAV, beta matrices, limit bounds, solve, residual and its interval.
    """
    _check_request(positions, hedge_instruments, target)
    benches = list(target)
    inst_betas = instrument_betas if instrument_betas is not None else betas
    nav_value = _nav_of(positions, nav)

    syms = list(positions)
    n = np.array([float(positions[s]) for s in syms])
    A = np.array([[finite_beta(betas, s, b, "betas") for b in benches] for s in syms])  # [N, K]
    C = np.array(
        [[finite_beta(inst_betas, h, b, "instrument_betas") for b in benches] for h in hedge_instruments]
    )  # [H, K]
    T = np.array([float(target[b]) for b in benches])
    D = n @ A  # dollar beta [K]
    rhs = T * nav_value - D  # what the overlay must add, in dollar beta
    lo, hi = _limit_bounds(hedge_instruments, limits)
    h_vec, method, notes = _solve_overlay(C, rhs, lo, hi, nav_value, tol)

    residual = (D + h_vec @ C) / nav_value
    reachable = bool(np.all(np.abs(residual - T) <= 1e-6))
    if not reachable:
        notes.append(
            "the target is not reachable with these instruments and limits; residual minimises the gap"
        )

    w = np.concatenate([n, h_vec]) / nav_value
    merged: dict[str, float] = {}
    for s, wi in zip(syms + list(hedge_instruments), w, strict=True):
        merged[s] = merged.get(s, 0.0) + wi
    point_beta = {
        **{s: A[i] for i, s in enumerate(syms)},
        **{h: C[j] for j, h in enumerate(hedge_instruments)},
    }
    intervals: dict[str, Interval] = {
        b: _benchmark_interval(merged, point_beta, k, b, beta_intervals, interval_method)
        for k, b in enumerate(benches)
    }
    return HedgeResult(
        orders={h: float(h_vec[j]) for j, h in enumerate(hedge_instruments)},
        residual_beta={b: float(residual[k]) for k, b in enumerate(benches)},
        residual_interval=intervals,
        portfolio_beta={b: float(D[k] / nav_value) for k, b in enumerate(benches)},
        target={b: float(T[k]) for k, b in enumerate(benches)},
        nav=nav_value,
        betas_used={s: {b: float(point_beta[s][k]) for k, b in enumerate(benches)} for s in point_beta},
        reachable=reachable,
        method=method,
        notes=notes,
    )
