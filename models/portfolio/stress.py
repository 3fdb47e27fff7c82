"""Stress tests of a beta-hedged book: P&L per position, with and without the overlay, per scenario.

`run_scenarios` is the one entry point (the CLI and the service's POST /stress both call it).  It
is pure and torch-free; the report is a pydantic model (`StressReport.model_dump(mode="json")`).

For each scenario (see `adaptive_beta.models.portfolio.scenarios` for the kinds):

1. Asset moves: shock scenarios move a shocked series' own perp by the shock and every other
   symbol by beta(symbol, driver) x shock(driver) with the scenario's realised betas (the forecasts,
   or the shifted ones for `beta_shift`); a historical replay gives each symbol its compounded
   return over the window, from `history` closes.
2. P&L: position notional x move, per position; the overlay's P&L is hedge notional x move.
   `pnl_unhedged` is the book alone, `pnl_hedged` book + overlay.
3. The overlay held is `hedge` if given, else `hedge_overlay(positions, betas, target)` (sized with
   the forecasts, before any shift).  `hedge_after_shift` is what `hedge_overlay` would order with
   the scenario's realised betas, and `residual_beta_after_shift` the beta the held overlay leaves
   under them: the exposure a desk must re-hedge after the shift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from adaptive_beta.models.data.schema import Panel
from adaptive_beta.models.durations import to_periods
from adaptive_beta.models.estimators.rolling import rolling_ols_beta
from adaptive_beta.models.portfolio.book import is_core_default
from adaptive_beta.models.portfolio.hedge import finite_beta, hedge_overlay
from adaptive_beta.models.portfolio.scenarios import BetaShift, HistoricalReplay


class ScenarioResult(BaseModel):
    name: str
    kind: str
    description: str = ""
    asset_returns: dict[str, float]  # symbol -> scenario return (positions and hedge instruments)
    position_pnl: dict[str, float]  # symbol -> USD P&L of the core position
    hedge_pnl: dict[str, float]  # instrument -> USD P&L of the overlay leg
    pnl_unhedged: float
    pnl_hedged: float
    hedge: dict[str, float]  # overlay notionals held through the scenario
    hedge_after_shift: dict[str, float]  # overlay hedge_overlay would order with the scenario's betas
    residual_beta_after_shift: dict[str, float]  # benchmark -> beta of book + held overlay, scenario betas
    notes: list[str] = Field(default_factory=list)


class StressReport(BaseModel):
    nav: float
    target: dict[str, float]
    hedge_instruments: list[str]
    hedge_source: str  # "given" | "overlay"
    positions: dict[str, float]
    scenarios: list[ScenarioResult]

    def table(self) -> str:
        """Plain-text table: one line per scenario."""
        head = f"{'scenario':<34}{'kind':<24}{'unhedged':>14}{'hedged':>14}  hedge after shift"
        lines = [head, "-" * len(head)]
        for s in self.scenarios:
            after = ", ".join(f"{k} {v:,.0f}" for k, v in s.hedge_after_shift.items())
            lines.append(
                f"{s.name[:33]:<34}{s.kind:<24}{s.pnl_unhedged:>14,.0f}{s.pnl_hedged:>14,.0f}  {after}"
            )
        return "\n".join(lines)


def _symbols_for(rule_assets, positions: Sequence[str], everyone: Sequence[str]) -> list[str]:
    if rule_assets == "book":
        return list(positions)
    if rule_assets == "altcoins":
        return [s for s in everyone if is_core_default(s)]
    if rule_assets == "all":
        return list(everyone)
    unknown = [s for s in rule_assets if s not in everyone]
    if unknown:
        raise ValueError(f"beta multiplier names symbol(s) {unknown} that are neither positions nor hedges")
    return list(rule_assets)


def shifted_betas(
    betas: Mapping[str, Mapping[str, float]], scenario, positions: Sequence[str], everyone: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Betas after a scenario's multipliers (a copy; a symbol's beta to its own series is kept)."""
    out = {s: dict(v) for s, v in betas.items()}
    if not isinstance(scenario, BetaShift):
        return out
    for rule in scenario.multipliers:
        for sym in _symbols_for(rule.assets, positions, everyone):
            for b in list(out.get(sym, {})):
                if (rule.benchmark == "*" or rule.benchmark == b) and b != sym:
                    out[sym][b] = out[sym][b] * rule.factor
    return out


def _beta(betas, sym: str, series: str, scenario: str) -> float:
    """A series moves one-for-one with itself; otherwise the one finite-beta lookup."""
    if sym == series:
        return 1.0
    return finite_beta(betas, sym, series, f"scenario {scenario!r}")


FACTOR_BETA_WINDOW = "90d"  # the rolling OLS window of betas to cross-market factors


def factor_betas(
    panel: Panel, symbols: list[str], window: str = FACTOR_BETA_WINDOW
) -> dict[str, dict[str, float]]:
    """symbol -> factor -> latest rolling OLS beta of per-bar returns over `window` (at least half
    of it; NaN when too little history).  The factor betas of `abeta stress` and POST /stress."""
    n = to_periods(window, panel.freq)
    rets = panel.returns()[symbols]
    out: dict[str, dict[str, float]] = {s: {} for s in symbols}
    for f, series in panel.factor_returns().items():
        last = rolling_ols_beta(rets, series, n, n // 2).ffill()
        row = last.iloc[-1] if len(last) else pd.Series(np.nan, index=symbols)
        for s in symbols:
            out[s][f] = float(row[s])
    return out


def replay_covered(index: pd.DatetimeIndex, start, end) -> bool:
    """True if `index` has a bar before `start` and bars through `end` (inclusive dates): a
    historical replay over start..end can run on it."""
    if len(index) < 2:
        return False
    lo = pd.Timestamp(start).tz_localize("UTC")
    hi = pd.Timestamp(end).tz_localize("UTC") + pd.Timedelta("1D")
    return bool(index[0] < lo and index[-1] >= hi - (index[1] - index[0]))


def replay_returns(history: Panel, start, end, symbols: Sequence[str], scenario: str) -> dict[str, float]:
    """Compounded return of each symbol over the bars opening on start..end (inclusive dates).

    Last close in the window over the last close before it (so gaps inside the window still count).
    """
    lo = pd.Timestamp(start).tz_localize("UTC")
    hi = pd.Timestamp(end).tz_localize("UTC") + pd.Timedelta("1D")
    idx = history.index
    first = int(idx.searchsorted(lo))
    last = int(idx.searchsorted(hi)) - 1
    if last < first:
        raise ValueError(f"scenario {scenario!r}: the data has no bars in {start}..{end}")
    out = {}
    for sym in symbols:
        if sym in history.close.columns:
            close = history.close[sym]
        elif sym in history.benchmarks.columns:
            close = history.benchmarks[sym]
        else:
            raise ValueError(f"scenario {scenario!r}: symbol {sym!r} is not in the history panel")
        before = close.iloc[:first].dropna()
        inside = close.iloc[first : last + 1].dropna()
        if before.empty or inside.empty:
            raise ValueError(f"scenario {scenario!r}: {sym!r} has no closes around {start}..{end}")
        out[sym] = float(inside.iloc[-1] / before.iloc[-1] - 1.0)
    return out


def _default_instruments(betas: Mapping[str, Mapping[str, float]]) -> list[str]:
    benches = {b for v in betas.values() for b in v}
    found = [s for s in betas if s in benches]
    if not found:
        raise ValueError("no hedge instrument: give `hedge` or `hedge_instruments` (e.g. the BTC perp)")
    return found[:1]


def _with_identity(
    betas: Mapping[str, Mapping[str, float]],
    symbols: Sequence[str],
    target: Mapping[str, float],
    benches_all: Sequence[str],
) -> dict[str, dict[str, float]]:
    """A copy of `betas` with a row for every symbol, and beta 1 of a benchmark perp to itself.

    The BTC perp is both a position/instrument and a benchmark; the forecasts do not carry its
    (trivial) beta to itself, but the overlay and the shocks need it.
    """
    out = {s: dict(v) for s, v in betas.items()}
    for s in symbols:
        out.setdefault(s, {})
        if s in target or s in benches_all:
            out[s][s] = 1.0
    return out


def _scenario_moves(
    sc, eff: Mapping[str, Mapping[str, float]], everyone: Sequence[str], history: Panel | None
) -> dict[str, float]:
    """Step 1 of the module docstring: each symbol's return under scenario `sc` (replay or shock)."""
    if isinstance(sc, HistoricalReplay):
        if history is None:
            raise ValueError(f"scenario {sc.name!r}: a historical replay needs a history panel")
        return replay_returns(history, sc.start, sc.end, everyone, sc.name)
    drv = sc.driver_name
    moves = {}
    for s in everyone:
        moves[s] = sc.shocks[s] if s in sc.shocks else _beta(eff, s, drv, sc.name) * sc.shocks[drv]
    return moves


def _residual_betas(
    positions: Mapping[str, float],
    held: Mapping[str, float],
    eff: Mapping[str, Mapping[str, float]],
    target: Mapping[str, float],
    nav_value: float,
    scenario: str,
) -> dict[str, float]:
    """Beta of book + held overlay to each target benchmark under the scenario's betas (per NAV)."""
    resid = {}
    for b in target:
        dollar = sum(float(positions[s]) * _beta(eff, s, b, scenario) for s in positions)
        dollar += sum(float(v) * _beta(eff, h, b, scenario) for h, v in held.items())
        resid[b] = dollar / nav_value
    return resid


def _run_one(
    sc,
    positions: Mapping[str, float],
    base: Mapping[str, Mapping[str, float]],
    held: Mapping[str, float],
    everyone: Sequence[str],
    history: Panel | None,
    instruments: Sequence[str],
    target: Mapping[str, float],
    nav_value: float,
) -> ScenarioResult:
    """One scenario: realised betas, moves, P&L per leg, the re-hedge and the residual beta."""
    notes: list[str] = []
    eff = shifted_betas(base, sc, list(positions), everyone)
    moves = _scenario_moves(sc, eff, everyone, history)
    pos_pnl = {s: float(positions[s]) * moves[s] for s in positions}
    hedge_pnl = {h: float(v) * moves[h] for h, v in held.items()}
    unhedged = float(sum(pos_pnl.values()))
    after = hedge_overlay(positions, eff, None, instruments, None, target, nav=nav_value)
    resid = _residual_betas(positions, held, eff, target, nav_value, sc.name)
    notes += after.notes
    return ScenarioResult(
        name=sc.name,
        kind=sc.kind,
        description=sc.description,
        asset_returns={s: float(moves[s]) for s in everyone},
        position_pnl=pos_pnl,
        hedge_pnl=hedge_pnl,
        pnl_unhedged=unhedged,
        pnl_hedged=unhedged + float(sum(hedge_pnl.values())),
        hedge=dict(held),
        hedge_after_shift=dict(after.orders),
        residual_beta_after_shift=resid,
        notes=notes,
    )


def run_scenarios(
    positions: Mapping[str, float],
    betas: Mapping[str, Mapping[str, float]],
    hedge: Mapping[str, float] | None,
    scenarios: Sequence,
    history: Panel | None = None,
    *,
    hedge_instruments: Sequence[str] | None = None,
    target: Mapping[str, float] | None = None,
    nav: float | None = None,
) -> StressReport:
    """P&L of `positions` (USD notionals) and their overlay under each scenario; see the module docstring.

    betas: symbol -> benchmark/factor -> forecast beta, for positions and hedge instruments.
    hedge: instrument -> USD notional held (None: size it with `hedge_overlay` on `target`).
    hedge_instruments: default the keys of `hedge`, else the first symbol that is itself a benchmark
    (the BTC perp).  target: benchmark -> target beta (default 0 on each instrument's own benchmark,
    else on the first benchmark).  nav: default gross notional of the positions.
    Steps: defaults, the overlay held, then `_run_one` per scenario.
    """
    if not positions:
        raise ValueError("positions: the portfolio is empty")
    instruments = list(hedge_instruments or (list(hedge) if hedge else _default_instruments(betas)))
    benches_all = [b for b in next(iter(betas.values()))] if betas else []
    if target is None:
        own = [h for h in instruments if h in benches_all]
        target = {b: 0.0 for b in (own or benches_all[:1])}
    target = dict(target)
    gross = float(sum(abs(v) for v in positions.values()))
    nav_value = float(nav) if nav is not None else gross

    base = _with_identity(betas, list(positions) + instruments, target, benches_all)
    if hedge is not None:
        held = {h: float(v) for h, v in hedge.items()}
        source = "given"
    else:
        held = hedge_overlay(positions, base, None, instruments, None, target, nav=nav_value).orders
        source = "overlay"
    everyone = list(dict.fromkeys(list(positions) + list(held)))
    results = [
        _run_one(sc, positions, base, held, everyone, history, instruments, target, nav_value)
        for sc in scenarios
    ]
    return StressReport(
        nav=nav_value,
        target=target,
        hedge_instruments=instruments,
        hedge_source=source,
        positions={s: float(v) for s, v in positions.items()},
        scenarios=results,
    )
