"""POST /backtest without BentoML: the overlay backtest of `abeta backtest` on the request's history.

The same engine as the CLI (src/adaptive_beta/cli/backtest.py): `adaptive_beta.models.estimators.baselines.baseline_forecasts` for
the classical betas, `adaptive_beta.models.portfolio.backtest.run_backtest` for the hedged book, `adaptive_beta.models.portfolio.metrics` for
the table.  Only where the data comes from differs: the panel is built from the request exactly
as /forecast builds it (`AppState.panel_from_request`), and the model's betas are the served
bundle's ONNX graph run causally on windows ending at each rebalance bar
(`adaptive_beta.models.portfolio.forecasts.bundle_forecasts`: features at row t use rows <= t only).

Work is bounded: the request limits cap assets and bars; at most MAX_REBALANCES rebalances and
MAX_MODEL_WINDOWS model windows (rebalances x assets) per call, else a 422 naming `rebalance`
or `include_model`.  Only the baselines asked for are computed (a reduced BaselineConfig), so
the default request (4 baselines + model, 4 assets x 700 daily bars) answers in about a second.

The model's forecasts are not dropped inside its training period (the client chose the history);
a note says when the backtest overlaps it, since a model sized on its own training data looks
better than it is.  The call is written to the audit log (endpoint `/backtest`, features = the
latest feature row of each asset, as /forecast logs) before the response is returned.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import DataError, btc_benchmark
from adaptive_beta.models.settings import settings_at_import
from adaptive_beta.serving.backtest_schemas import DEFAULT_ESTIMATORS, BacktestRequest
from adaptive_beta.serving.schemas import RequestError, history_columns

MAX_REBALANCES = settings_at_import().max_rebalances  # ABETA_MAX_REBALANCES
MAX_MODEL_WINDOWS = settings_at_import().max_model_windows  # ABETA_MAX_MODEL_WINDOWS
MODEL = "model"


def _label(duration: str) -> str:
    return str(duration).strip().lower().replace(" ", "")


def known_estimators() -> list[str]:
    """Names of the classical baselines `baseline_forecasts` computes with the default BaselineConfig."""
    from adaptive_beta.models.estimators.baselines import BaselineConfig

    cfg = BaselineConfig()
    shrink = _label(cfg.shrink_window)
    names = [f"rolling_ols_{_label(w)}" for w in cfg.rolling_windows]
    names += [f"ewma_hl{_label(h)}" for h in cfg.ewma_halflives]
    names += [f"welch_hl{_label(h)}" for h in cfg.welch_halflives]
    names += ["kalman_rw", "kalman_mf", f"vasicek_{shrink}", f"blume_{shrink}"]
    if cfg.multifactor_window is not None:
        names.append(f"multifactor_ols_{_label(cfg.multifactor_window)}")
    return names


def baseline_config_for(names: list[str]):
    """The default BaselineConfig reduced to what `names` need (same parameters, fewer estimators)."""
    from adaptive_beta.models.estimators.baselines import BaselineConfig

    base = BaselineConfig()
    want = set(names)
    return replace(
        base,
        rolling_windows=tuple(w for w in base.rolling_windows if f"rolling_ols_{_label(w)}" in want),
        ewma_halflives=tuple(h for h in base.ewma_halflives if f"ewma_hl{_label(h)}" in want),
        welch_halflives=tuple(h for h in base.welch_halflives if f"welch_hl{_label(h)}" in want),
        kalman="kalman_rw" in want,
        kalman_mf="kalman_mf" in want,
        multifactor_window=(
            base.multifactor_window
            if base.multifactor_window is not None
            and f"multifactor_ols_{_label(base.multifactor_window)}" in want
            else None
        ),
    )


def request_estimators(req: BacktestRequest) -> list[str]:
    """The requested baseline names, de-duplicated in order; 422 naming `estimators[i]` if unknown."""
    names = list(req.estimators or DEFAULT_ESTIMATORS)
    known = known_estimators()
    for i, n in enumerate(names):
        if n not in known:
            raise RequestError(f"unknown estimator {n!r}; known: {', '.join(known)}", f"estimators[{i}]")
    return list(dict.fromkeys(names))


def hedge_instruments(req: BacktestRequest) -> list[str]:
    from adaptive_beta.models.portfolio.book import default_hedges

    have = [a.symbol for a in req.assets]
    if req.hedge_instruments:
        for i, h in enumerate(req.hedge_instruments):
            if h not in have:
                raise RequestError(
                    f"hedge instrument {h}: no history for it in assets", f"hedge_instruments[{i}]"
                )
        return list(dict.fromkeys(req.hedge_instruments))
    found = default_hedges(have)
    if not found:
        raise RequestError(
            "no hedge instrument: send the BTC or ETH perp in assets, or give hedge_instruments",
            "hedge_instruments",
        )
    return found


def _finite(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def summary_rows(table: pd.DataFrame, benches: list[str], target: float) -> list[dict]:
    """The full-period rows of `adaptive_beta.models.portfolio.metrics.summary_table` as response objects."""
    full = table.xs("full", level="period")
    rows = []
    for est, r in full.iterrows():
        beta = {b: _finite(r.get(f"beta_{b}", np.nan)) for b in benches}
        rows.append(
            {
                "estimator": str(est),
                "n_bars": int(r["n_bars"]),
                "realised_beta": beta,
                "beta_error": {b: (None if v is None else abs(v - target)) for b, v in beta.items()},
                "rolling_beta_mad": {b: _finite(r.get(f"roll_mad_{b}", np.nan)) for b in benches},
                "hedged_vol": _finite(r["vol_ann"]),
                "max_drawdown": _finite(r["max_drawdown"]),
                "total_return": _finite(r["total_return"]),
                "turnover": _finite(r["turnover_ann"]),
                "fees": _finite(r["fees"]),
                "funding": _finite(r["funding"]),
                "costs": _finite(r["costs"]),
                "skipped_rebalances": int(r["skipped_rebalances"]),
            }
        )
    return rows


def _audit_inputs(state, req: BacktestRequest, include_model: bool):
    """(model inputs for the audit entry (the /forecast checks), the request's Panel or None);
    without the model a request the model cannot read is still backtested, and logged without
    feature rows."""
    try:
        return state._inputs_and_panel(req, None, req.benchmarks or ())
    except RequestError:
        if include_model:
            raise
        return SimpleNamespace(
            rows=pd.DataFrame(index=pd.Index([], name="symbol")),
            symbols=[a.symbol for a in req.assets],
            as_of=[pd.Timestamp(int(history_columns(a).us[-1]), unit="us", tz="UTC") for a in req.assets],
        ), None


def _check_portfolio(req: BacktestRequest) -> None:
    """422 naming `portfolio.<sym>` for a position without history in `assets`."""
    have = {a.symbol for a in req.assets}
    for sym in req.portfolio:
        if sym not in have:
            raise RequestError(f"portfolio.{sym}: no history for {sym} in assets", f"portfolio.{sym}")


def _request_benchmarks(req: BacktestRequest, panel, model_benches: list[str]) -> list[str]:
    """The hedged benchmarks: the request's, else the BTC benchmark; each in the data (and the model)."""
    default_bench = btc_benchmark(panel)
    benches = list(dict.fromkeys(req.benchmarks or ([default_bench] if default_bench else [])))
    if not benches:
        raise RequestError("no benchmark to hedge: send the BTC perp in assets or series", "benchmarks")
    for i, b in enumerate(benches):
        if b not in panel.benchmark_names:
            raise RequestError(
                f"benchmark {b!r} is not in the request (benchmarks: {panel.benchmark_names})",
                f"benchmarks[{i}]",
            )
        if req.include_model and b not in model_benches:
            raise RequestError(
                f"the model forecasts betas to {model_benches}, not {b!r}; drop it or set include_model false",
                f"benchmarks[{i}]",
            )
    return benches


def check_rebalance(rebalance: str, freq: pd.Timedelta) -> None:
    """422 on `rebalance` unless it is a positive whole number of the model's bars (never silently rounded)."""
    from adaptive_beta.models.durations import format_freq, parse_duration

    try:
        every = parse_duration(rebalance)
    except ValueError as exc:
        raise RequestError(str(exc), "rebalance") from exc
    if every < freq or every % freq != pd.Timedelta(0):
        bar = format_freq(freq)
        raise RequestError(
            f"rebalance {rebalance!r} is not a whole number of the model's {bar} bars: use {bar} or a "
            f"multiple of it (the book can only be rebalanced at a bar)",
            "rebalance",
        )


def _rebalance_rows(req: BacktestRequest, panel, forecasts, syms: list[str], benches, names) -> list:
    """Rebalance rows from the first bar every estimator has a beta for every asset; capped.

    The cap (MAX_REBALANCES) bounds the work one request can ask for.
    """
    from adaptive_beta.models.portfolio.backtest import first_common_row, rebalance_rows

    try:
        first = first_common_row(forecasts, syms, benches, len(panel.index))
    except ValueError as exc:
        raise RequestError(f"{exc} (estimators: {', '.join(names)})", "assets") from exc
    rows = rebalance_rows(panel.index, panel.freq, req.rebalance, first)
    if len(rows) > MAX_REBALANCES:
        raise RequestError(
            f"{len(rows)} rebalances, more than the limit {MAX_REBALANCES}: use a longer rebalance "
            "period or send less history",
            "rebalance",
        )
    return rows


def _model_forecasts(state, panel, rows, benches: list[str], syms: list[str]) -> tuple[dict, list[str]]:
    """(benchmark -> T x N model betas at the rebalance rows, notes); 422 on `include_model`.

    The model is the expensive part, so the window count is capped (MAX_MODEL_WINDOWS) before
    it runs; a note says when the backtest overlaps the model's own training period.
    """
    from adaptive_beta.models.portfolio.forecasts import bundle_forecasts

    if len(rows) * len(panel.symbols) > MAX_MODEL_WINDOWS:
        raise RequestError(
            f"{len(rows)} rebalances x {len(panel.symbols)} assets = {len(rows) * len(panel.symbols)} "
            f"model forecasts, more than the limit {MAX_MODEL_WINDOWS}: use a longer rebalance period, "
            "fewer assets or include_model false",
            "include_model",
        )
    try:
        fc = bundle_forecasts(panel, state.bundle, rows)
    except DataError as exc:
        raise RequestError(exc.message, "include_model") from exc
    ok = np.ones(len(panel.index), dtype=bool)
    for b in benches:
        ok &= np.isfinite(fc[b].reindex(columns=syms).to_numpy(dtype=float)).all(axis=1)
    if not ok.any():
        raise RequestError(
            "the model has no forecast for every portfolio and hedge asset at any rebalance bar: "
            f"each needs {state.required['min_periods']} bars of history; send more or set include_model false",
            "include_model",
        )
    notes: list[str] = []
    after = state.bundle.meta.training_end()
    if after is not None and panel.index[int(np.argmax(ok))] <= after:
        notes.append(
            f"model: the backtest overlaps the model's training/validation period (ends {after:%Y-%m-%d}); "
            "its forecasts there are in sample"
        )
    return {b: fc[b] for b in benches}, notes


def _run_overlay(
    req: BacktestRequest, panel, returns, bench_returns, forecasts, benches: list[str], instruments: list[str]
):
    """(BacktestResult, summary table): the CLI's engine on the request; its ValueError is a 422."""
    from adaptive_beta.models.portfolio.backtest import BacktestConfig, run_backtest
    from adaptive_beta.models.portfolio.metrics import summary_table

    cfg = BacktestConfig(
        target_beta=req.target_beta,
        benchmarks=tuple(benches),
        rebalance=req.rebalance,
        fee_bps=req.fee_bps,
        funding=req.funding,
    )
    try:
        with np.errstate(all="ignore"):
            result = run_backtest(
                returns,
                bench_returns,
                panel.funding_rate,
                req.portfolio,
                forecasts,
                panel.freq,
                cfg,
                instruments,
            )
            table = summary_table(result, panel.freq, None)
    except ValueError as exc:
        raise RequestError(str(exc), "portfolio") from exc
    return result, table


def _result_fields(req: BacktestRequest, result, table, benches, instruments, notes) -> dict:
    """The response body after request_id and model: period, settings, one row per estimator."""
    from adaptive_beta.models.portfolio.metrics import ratios_vs_reference

    ratios = ratios_vs_reference(table)
    n_rebal = int(next(iter(result.paths.values())).frame["rebalanced"].sum())
    return {
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "n_rebalances": n_rebal,
        "benchmarks": benches,
        "hedge_instruments": instruments,
        "portfolio": {k: float(v) for k, v in req.portfolio.items()},
        "target_beta": float(req.target_beta),
        "rebalance": req.rebalance,
        "fee_bps": float(req.fee_bps),
        "estimators": summary_rows(table, benches, float(req.target_beta)),
        "ratios_vs_rolling_ols_30d": {
            str(est): {str(c): _finite(v) for c, v in r.items()} for est, r in ratios.iterrows()
        },
        "notes": notes,
    }


def backtest(state, req: BacktestRequest, caller: str) -> dict:
    """The /backtest response body (also logged); raises RequestError (422) or AuditUnavailable (503).

    Steps: check the request, build its panel, pick benchmarks, baseline forecasts, rebalance
    rows, model forecasts, run the overlay, log and answer.
    """
    from adaptive_beta.models.estimators.baselines import baseline_forecasts

    request_id = state.new_request_id()
    _check_portfolio(req)
    check_rebalance(req.rebalance, state.freq)
    instruments = hedge_instruments(req)
    names = request_estimators(req)
    inputs, panel = _audit_inputs(state, req, req.include_model)
    if panel is None:  # the model could not read the request: build the panel for the baselines
        panel = state.panel_from_request(req, req.benchmarks or ())
    benches = _request_benchmarks(req, panel, list(state.bundle.meta.benchmarks))
    returns, bench_returns = panel.returns(), panel.benchmark_returns()
    forecasts = baseline_forecasts(
        returns, bench_returns, panel.factor_returns(), panel.freq, baseline_config_for(names)
    )
    forecasts = {n: forecasts[n] for n in names}
    syms = list(req.portfolio) + [h for h in instruments if h not in req.portfolio]
    rows = _rebalance_rows(req, panel, forecasts, syms, benches, names)
    notes: list[str] = []
    if req.include_model:
        forecasts[MODEL], notes = _model_forecasts(state, panel, rows, benches, syms)
    result, table = _run_overlay(req, panel, returns, bench_returns, forecasts, benches, instruments)
    body = {
        "request_id": request_id,
        "model": state.model_info(),
        **_result_fields(req, result, table, benches, instruments, notes),
    }
    output = {k: v for k, v in body.items() if k not in ("request_id", "model")}
    state.log_unique(body, "/backtest", caller, req, inputs, output, None)
    return body
