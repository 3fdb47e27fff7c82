"""`abeta stress`: P&L of today's book and its overlay under the scenarios of a TOML/YAML file.

Betas are the latest forecasts on the data: a classical baseline (`--estimator`, default
`welch_hl60d`) or a model bundle (`--model`, its latest window per asset); betas to cross-market
factors (for shocks such as `SPY = -0.10`) are the 90-day rolling OLS on the factor's returns.
Scenarios that shock a series the data lacks are skipped with a note.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from adaptive_beta.models.data.schema import DataError, btc_benchmark


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def latest_betas(panel, estimator: str, model: str | None, symbols: list[str]) -> tuple[dict, str]:
    """symbol -> series -> latest beta (benchmarks from the estimator or model, factors from
    `factor_betas`: the 90d rolling OLS, as POST /stress)."""
    import numpy as np

    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.models.portfolio.stress import factor_betas

    out: dict[str, dict[str, float]] = {s: {} for s in symbols}
    if model is not None:
        from adaptive_beta.models.bundle.folder import load_bundle
        from adaptive_beta.models.bundle.inference import make_inputs
        from adaptive_beta.models.bundle.predictor import Predictor
        from adaptive_beta.models.bundle.resolve import resolve_bundle

        bundle = load_bundle(resolve_bundle(model))
        inputs = make_inputs(panel, bundle, symbols, allow_stale=True)
        beta = Predictor(bundle).predict(inputs.x)["beta"]
        for i, s in enumerate(inputs.symbols):
            for k, b in enumerate(bundle.benchmarks):
                out[s][b] = float(beta[i, k])
        source = f"model {model} ({bundle.sha256[:12]})"
    else:
        fc = baseline_forecasts(
            panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq
        )
        if estimator not in fc:
            raise ValueError(f"option --estimator: unknown {estimator!r}; known: {sorted(fc)}")
        for b, frame in fc[estimator].items():
            last = frame.ffill().iloc[-1]
            for s in symbols:
                out[s][b] = float(last[s])
        source = f"baseline {estimator} at {panel.index[-1]:%Y-%m-%d %H:%M}"
    for s, fb in factor_betas(panel, symbols).items():
        out[s].update(fb)
    for s in symbols:
        for b, v in out[s].items():
            if not np.isfinite(v) and b in panel.benchmark_names:
                raise DataError(f"no finite {b} beta for {s} at the end of the data ({source})", column=s)
    return out, source


def stress(
    portfolio: Path | None = typer.Option(
        None,
        "--portfolio",
        help="TOML/YAML/CSV symbol -> weight or notional (default: equal-weight altcoins).",
    ),
    data: str = typer.Option(..., "--data", help="Dataset folder or manifest: betas and historical replays."),
    scenarios: Path | None = typer.Option(
        None, "--scenarios", help="Scenario file (default docs/scenarios/default.toml)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Bundle folder or models:/adaptive-beta@champion for the betas."
    ),
    estimator: str = typer.Option(
        "welch_hl60d", "--estimator", help="Baseline for the betas when --model is not given."
    ),
    nav: float = typer.Option(
        1_000_000.0, "--nav", help="USD NAV that turns portfolio weights into notionals."
    ),
    hedge: list[str] | None = typer.Option(
        None, "--hedge", help="Hedge perp (repeatable; default BTC and ETH)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the StressReport JSON here."),
) -> None:
    """Stress P&L per position, with and without the overlay, and the overlay needed after each shift."""
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.portfolio.book import default_hedges, default_portfolio, load_portfolio
    from adaptive_beta.models.portfolio.scenarios import default_scenarios_path, load_scenarios
    from adaptive_beta.models.portfolio.stress import replay_covered, run_scenarios

    try:
        scs = load_scenarios(scenarios or default_scenarios_path())
        panel = load_dataset(data)
        typer.secho(f"data: {panel.describe()}", err=True)
        book = load_portfolio(portfolio) if portfolio is not None else default_portfolio(panel.symbols)
        book.check_symbols(panel.symbols)
        hedges = list(hedge) if hedge else default_hedges(panel.symbols)
        for h in hedges:
            if h not in panel.symbols:
                raise DataError(
                    f"hedge instrument {h!r} is not in the data (assets: {', '.join(panel.symbols)})"
                )
        positions = book.notionals(nav)
        symbols = list(dict.fromkeys(list(positions) + hedges))
        betas, source = latest_betas(panel, estimator, model, symbols)
        known = set(panel.benchmark_names) | set(panel.factor_names)
        keep = []
        for sc in scs:
            missing = [k for k in getattr(sc, "shocks", {}) if k not in known]
            start = getattr(sc, "start", None)
            if missing:
                typer.secho(f"note: skipped scenario {sc.name!r}: the data has no series {missing}", err=True)
            elif start is not None and not replay_covered(panel.index, sc.start, sc.end):
                typer.secho(
                    f"note: skipped scenario {sc.name!r}: the data does not cover {sc.start}..{sc.end}",
                    err=True,
                )
            else:
                keep.append(sc)
        btc = btc_benchmark(panel)
        report = run_scenarios(
            positions, betas, None, keep, panel, hedge_instruments=hedges, target={btc: 0.0}, nav=None
        )
    except DataError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    typer.secho(f"betas: {source}; overlay sized on {btc} with {hedges}", err=True)
    typer.echo(report.table())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.model_dump(mode="json"), indent=1))
        typer.secho(f"wrote {out}", err=True)
