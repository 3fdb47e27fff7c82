"""POST /stress without BentoML: the request's book through `adaptive_beta.models.portfolio.stress.run_scenarios`.

The same scenario engine as `abeta stress` (src/adaptive_beta/cli/stress.py); only where the betas come
from differs:

- benchmark betas (BTCUSDT, CRYPTO_EW): the model's forecasts for the request's histories, by the
  very code /forecast uses (`AppState.forecast_core`), so /stress and /forecast agree exactly;
- factor betas (SPY, ...; for shocks such as `SPY = -0.10`): rolling OLS over the last 90 days of
  the request's own history (half of it at least), as the CLI does on a dataset;
- `betas` in the request replace either for the (symbol, series) pairs they name.

Scenarios given in the request must all run: one that shocks a series without betas, or replays
a window the request's history does not cover, is a 422 naming `scenarios[i]`.  The documented
defaults (docs/scenarios/default.toml) are skipped with a reason instead, as the CLI does, since
the caller did not choose them.  The call is written to the audit log (endpoint `/stress`) before
the response is returned.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.portfolio.stress import FACTOR_BETA_WINDOW, factor_betas, replay_covered
from adaptive_beta.serving.schemas import RequestError
from adaptive_beta.serving.stress_schemas import StressRequest

_KINDS = ("benchmark_shock", "correlation_breakdown", "beta_shift", "historical")


@lru_cache(maxsize=1)
def default_scenarios() -> tuple:
    """docs/scenarios/default.toml, parsed once per process."""
    from adaptive_beta.models.portfolio.scenarios import default_scenarios_path, load_scenarios

    return tuple(load_scenarios(default_scenarios_path()))


def scenario_error_field(message: str) -> str:
    """`scenarios[i].<field>` from a `parse_scenarios` message (source 'scenarios')."""
    m = re.search(r"scenario\[(\d+)\](?: field '([^']*)')?", message)
    if not m:
        return "scenarios"
    where = f"scenarios[{m.group(1)}]"
    field = m.group(2)
    if field and field not in _KINDS:
        return f"{where}.{field}"
    if field is None and ("tag" in message or "discriminator" in message):
        return f"{where}.kind"
    return where


def parse_request_scenarios(items: list[dict]) -> list:
    from adaptive_beta.models.portfolio.scenarios import parse_scenarios

    try:
        return parse_scenarios(items, source="scenarios")
    except DataError as exc:
        field = scenario_error_field(exc.message)
        if exc.column == "name":
            field = "scenarios"
        raise RequestError(exc.message.removeprefix("scenarios: "), field) from exc


def _why_not(sc, betas: dict[str, dict[str, float]], symbols: list[str], index) -> str | None:
    """Why scenario `sc` cannot run on this request (None if it can)."""
    shocks = getattr(sc, "shocks", None)
    if shocks is not None:
        drv = sc.driver_name
        missing = [s for s in symbols if s not in shocks and not np.isfinite(betas[s].get(drv, np.nan))]
        if missing:
            return (
                f"no beta of {', '.join(missing)} to {drv!r}: send {drv} in series (at least half of "
                f"{FACTOR_BETA_WINDOW} of history) or give betas.<symbol>.{drv}"
            )
        return None
    if not replay_covered(index, sc.start, sc.end):
        return f"the request's history ({index[0]:%Y-%m-%d}..{index[-1]:%Y-%m-%d}) does not cover {sc.start}..{sc.end}"
    return None


def _instruments(req: StressRequest, benches: list[str]) -> list[str]:
    if req.hedge_instruments:
        return list(req.hedge_instruments)
    if req.hedge:
        return list(req.hedge)
    perps = [a.symbol for a in req.assets if a.symbol in benches]
    if not perps:
        raise RequestError(
            f"no hedge instrument: give hedge or hedge_instruments, or send a benchmark perp ({benches}) in assets",
            "hedge_instruments",
        )
    return perps[:1]


def _check_book(req: StressRequest, benches: list[str]) -> None:
    """422 for a target on a benchmark the model does not forecast, or notionals that overflow."""
    for b in req.target or {}:
        if b not in benches:
            raise RequestError(
                f"unknown benchmark {b!r}; the model forecasts betas to {benches}", f"target.{b}"
            )
    if not np.isfinite(sum(abs(v) for v in req.positions.values())):
        raise RequestError("the gross notional overflows a float: notionals are too large", "positions")


def _request_scenarios(req: StressRequest) -> tuple[list, bool]:
    """(scenarios, given): the request's own, or the documented defaults (given False).

    Whether the caller chose them decides later whether one that cannot run is a 422 or a skip.
    """
    if req.scenarios is not None:
        return parse_request_scenarios(req.scenarios), True
    try:
        return list(default_scenarios()), False
    except DataError as exc:  # a deployment without docs/scenarios: the caller can still send some
        raise RequestError(
            f"the server has no default scenarios ({exc}); send scenarios", "scenarios"
        ) from exc


def _apply_overrides(req: StressRequest, betas: dict[str, dict[str, float]]) -> dict[str, list[str]]:
    """Write the request's `betas` over the estimated ones (in place); series -> symbols overridden."""
    overrides: dict[str, list[str]] = {}
    for s, given_row in (req.betas or {}).items():
        if s not in betas:
            raise RequestError(f"betas.{s}: {s} is neither a position nor a hedge instrument", f"betas.{s}")
        for series, v in given_row.items():
            betas[s][series] = float(v)
            overrides.setdefault(series, []).append(s)
    return overrides


def _betas_and_sources(
    req: StressRequest, inputs, out, panel, symbols: list[str], benches: list[str]
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """(symbol -> series -> beta, series -> where its betas came from); see the module docstring.

    Model forecasts for benchmarks, rolling OLS for factors, then the request's overrides, then
    beta 1 of a benchmark or factor series to itself.
    """
    row = {s: i for i, s in enumerate(inputs.symbols)}
    betas = {s: {b: float(out["beta"][row[s], k]) for k, b in enumerate(benches)} for s in symbols}
    sources = {b: "model forecast" for b in benches}
    for s, fb in factor_betas(panel, symbols).items():
        betas[s].update(fb)
    for f in panel.factor_names:
        sources[f] = f"rolling OLS over the last {FACTOR_BETA_WINDOW} of the request's history"
    overrides = _apply_overrides(req, betas)
    for (
        s
    ) in symbols:  # a perp that is itself a benchmark has beta 1 to it (as models/portfolio/stress.py uses)
        if s in benches or s in panel.factor_names:
            betas[s][s] = 1.0
    for series, syms in overrides.items():
        base = sources.get(series, "")
        sources[series] = (base + "; " if base else "") + f"request for {', '.join(syms)}"
    return betas, sources


def _runnable(scenarios: list, given: bool, betas, symbols: list[str], index) -> tuple[list, list[dict]]:
    """(scenarios that can run, skipped defaults with a reason); a given one that cannot run is a 422."""
    runnable, skipped = [], []
    for i, sc in enumerate(scenarios):
        reason = _why_not(sc, betas, symbols, index)
        if reason is None:
            runnable.append(sc)
        elif given:
            raise RequestError(f"scenario {sc.name!r}: {reason}", f"scenarios[{i}]")
        else:
            skipped.append({"name": sc.name, "reason": reason})
    if not runnable:
        raise RequestError(
            "none of the default scenarios can run on this request; give scenarios", "scenarios"
        )
    return runnable, skipped


def _check_finite(report) -> None:
    """422 when any P&L, notional or residual beta overflowed (a JSON body cannot carry inf)."""
    totals = [
        x
        for sc in report.scenarios
        for part in (sc.hedge_after_shift, sc.residual_beta_after_shift, sc.position_pnl, sc.hedge_pnl)
        for x in (sc.pnl_unhedged, sc.pnl_hedged, *part.values())
    ]
    if not np.isfinite(totals).all():
        raise RequestError("the P&L overflows a float: notionals or betas are too large", "positions")


def stress(state, req: StressRequest, caller: str) -> dict:
    """The /stress response body (also logged); raises RequestError (422) or AuditUnavailable (503).

    Steps: check the book, pick scenarios and instruments, forecast, assemble betas, keep the
    runnable scenarios, run them, check the numbers, log and answer.
    """
    from adaptive_beta.models.portfolio.stress import run_scenarios

    request_id = state.new_request_id()
    benches = list(state.bundle.meta.benchmarks)
    _check_book(req, benches)
    scenarios, given = _request_scenarios(req)
    instruments = _instruments(req, benches)
    symbols = list(dict.fromkeys([*req.positions, *instruments]))

    shocked = {name for sc in scenarios for name in getattr(sc, "shocks", None) or {}}
    inputs, out, panel = state.forecast_core_with_panel(req, None, shocked)  # every asset, as /forecast
    betas, sources = _betas_and_sources(req, inputs, out, panel, symbols, benches)
    runnable, skipped = _runnable(scenarios, given, betas, symbols, panel.index)
    try:
        report = run_scenarios(
            req.positions,
            betas,
            req.hedge,
            runnable,
            panel,
            hedge_instruments=instruments,
            target=req.target,
            nav=req.nav,
        )
    except ValueError as exc:
        raise RequestError(str(exc), "positions") from exc
    _check_finite(report)
    finite = {s: {k: v for k, v in row_.items() if np.isfinite(v)} for s, row_ in betas.items()}
    body = {
        "request_id": request_id,
        "model": state.model_info(),
        **report.model_dump(mode="json"),
        "betas_used": finite,
        "beta_sources": sources,
        "skipped": skipped,
    }
    output = {k: v for k, v in body.items() if k not in ("request_id", "model")}
    state.log_unique(body, "/stress", caller, req, inputs, output, None)
    return body
