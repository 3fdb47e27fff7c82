"""`abeta backtest`: the overlay backtest of every estimator side by side, with table, files and charts.

Model path: `--model` (a bundle folder or `models:/adaptive-beta@champion`) is run through ONNX
Runtime on windows ending at each rebalance date, only after the bundle's training period.
Walk-forward model forecasts (a network refitted per fold) are `abeta train`'s job, which takes
far longer than a backtest should: pass its test-fold predictions with `--forecasts`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from adaptive_beta.models.data.schema import DataError, btc_benchmark
from adaptive_beta.models.portfolio.report_text import format_tables


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def write_charts(result, table, out: Path, window_bars: int) -> list[Path]:
    """cum_pnl.png (cumulative net P&L per estimator) and rolling_beta.png (vs target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adaptive_beta.models.portfolio.metrics import rolling_beta

    paths = []
    fig, ax = plt.subplots(figsize=(11, 5))
    for name, path in result.paths.items():
        ax.plot(path.frame.index, path.frame["equity"] / result.config.nav - 1.0, label=name, lw=1)
    ax.set_title("cumulative net P&L (fraction of starting NAV)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    p = out / "cum_pnl.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)
    b = result.benchmarks[0]
    fig, ax = plt.subplots(figsize=(11, 5))
    for name, path in result.paths.items():
        if name == "unhedged":
            continue
        rb = rolling_beta(path.frame["ret_gross"], result.bench_returns[b], window_bars)
        ax.plot(rb.index, rb, label=name, lw=0.8)
    ax.axhline(result.config.target_beta, color="k", lw=1.5, ls="--", label="target")
    ax.set_title(f"rolling realised beta to {b} ({result.config.rolling_window})")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    p = out / "rolling_beta.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)
    return paths


def backtest(
    data: str = typer.Option(..., "--data", help="Dataset folder or manifest (.toml/.yaml)."),
    portfolio: Path | None = typer.Option(
        None,
        "--portfolio",
        help="TOML/YAML/CSV symbol -> weight or notional (default: equal-weight altcoins).",
    ),
    target_beta: float = typer.Option(
        0.0, "--target-beta", help="Target portfolio beta to each hedged benchmark."
    ),
    rebalance: str = typer.Option("1d", "--rebalance", help="Rebalance period: 1d, 1w, 8h, ..."),
    model: str | None = typer.Option(
        None, "--model", help="Bundle folder or models:/adaptive-beta@champion, run on each rebalance date."
    ),
    forecasts_file: Path | None = typer.Option(
        None,
        "--forecasts",
        help="Walk-forward model predictions (the .predictions.parquet that abeta train --scorecard-out writes).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for summary.json/csv, returns.csv and charts."
    ),
    fee_bps: float = typer.Option(4.0, "--fee-bps", help="Fee in bps of traded notional."),
    benchmark: list[str] | None = typer.Option(
        None, "--benchmark", help="Hedged benchmark (repeatable; default the BTC benchmark)."
    ),
    hedge: list[str] | None = typer.Option(
        None, "--hedge", help="Hedge perp (repeatable; default BTC and ETH)."
    ),
    estimators: str | None = typer.Option(
        None, "--estimators", help="Comma-separated baseline names (default: every classical baseline)."
    ),
    no_funding: bool = typer.Option(False, "--no-funding", help="Ignore perp funding."),
    start: str | None = typer.Option(None, "--start", help="First decision date (ISO)."),
    end: str | None = typer.Option(None, "--end", help="Last date (ISO)."),
    mlflow_flag: bool = typer.Option(False, "--mlflow", help="Log the table and charts to MLflow."),
) -> None:
    """Overlay backtest: core book + BTC/ETH perp hedge sized from each estimator; table, files, charts."""
    cfg = _config_from_options(target_beta, benchmark, rebalance, fee_bps, no_funding, start, end)
    try:
        result, table, ratios, notes = _run(data, portfolio, cfg, model, hedge, estimators, forecasts_file)
    except DataError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    for note in notes:
        typer.secho(f"note: {note}", err=True)
    typer.echo(format_tables(table, ratios, result.benchmarks))
    if out is not None or mlflow_flag:
        import tempfile

        folder = out or Path(tempfile.mkdtemp(prefix="abeta-backtest-"))
        _write_outputs(folder, data, cfg, result, table, notes)
        _log_mlflow(folder, mlflow_flag, table)


def _config_from_options(
    target_beta: float,
    benchmark: list[str] | None,
    rebalance: str,
    fee_bps: float,
    no_funding: bool,
    start: str | None,
    end: str | None,
):
    """The BacktestConfig the options describe; a bad option is one line and exit 2, not a traceback."""
    try:
        from adaptive_beta.models.portfolio.backtest import BacktestConfig

        return BacktestConfig(
            target_beta=target_beta,
            benchmarks=tuple(benchmark) if benchmark else None,
            rebalance=rebalance,
            fee_bps=fee_bps,
            funding=not no_funding,
            start=start,
            end=end,
        )
    except ValueError as exc:
        _fail(f"options: {exc}")


def _write_outputs(folder: Path, data: str, cfg, result, table, notes: list[str]) -> None:
    """summary.csv, summary.json (rows + run metadata), returns.csv and the charts, into `folder`.

    The files are what --out promises and what --mlflow logs, so both paths write them here.
    """
    import json

    import pandas as pd

    from adaptive_beta.models.durations import to_periods

    folder.mkdir(parents=True, exist_ok=True)
    table.reset_index().to_csv(folder / "summary.csv", index=False)
    records = table.reset_index().to_dict(orient="records")
    meta = {
        "data": data,
        "start": str(result.start),
        "end": str(result.end),
        "benchmarks": result.benchmarks,
        "config": cfg.__dict__,
        "notes": notes,
    }
    (folder / "summary.json").write_text(json.dumps({"meta": meta, "rows": records}, indent=1, default=str))
    pd.DataFrame({k: p.frame["ret"] for k, p in result.paths.items()}).to_csv(folder / "returns.csv")
    freq = next(iter(result.paths.values())).frame.index.to_series().diff().mode().iloc[0]
    charts = write_charts(result, table, folder, to_periods(cfg.rolling_window, freq))
    typer.secho(
        f"wrote summary.json, summary.csv, returns.csv and {len(charts)} charts to {folder}", err=True
    )


def _log_mlflow(folder: Path, force: bool, table) -> None:
    import mlflow

    active = mlflow.active_run() is not None
    if not (active or force):
        return
    from adaptive_beta.training.tracking import setup_mlflow

    if not active:
        setup_mlflow()
        mlflow.start_run(run_name="backtest")
    try:
        for f in ("summary.json", "summary.csv", "cum_pnl.png", "rolling_beta.png"):
            mlflow.log_artifact(str(folder / f), artifact_path="backtest")
        full = table.xs("full", level="period")
        for est, row in full.iterrows():
            for col in ("vol_ann", "max_drawdown"):
                mlflow.log_metric(f"bt_{est}_{col}", float(row[col]))
    finally:
        if not active:
            mlflow.end_run()


def walk_forward_forecasts(path: Path, panel) -> dict:
    """Model test-fold predictions (long: timestamp, symbol x benchmark) as benchmark -> T x N frames.

    Each row was forecast by the model refitted on data before that fold's test period, so the
    overlay sized from them is out of sample over every walk-forward test block.
    """
    import pandas as pd

    if not Path(path).is_file():
        raise DataError("walk-forward predictions file not found", file=str(path))
    long = pd.read_parquet(path)
    if not isinstance(long.index, pd.MultiIndex):
        long = long.set_index(["timestamp", "symbol"])
    out = {}
    for b in panel.benchmark_names:
        if b in long.columns:
            wide = long[b].unstack("symbol")
            wide.index = pd.DatetimeIndex(wide.index).tz_convert("UTC").as_unit("ns")
            out[b] = wide.reindex(index=panel.index, columns=panel.symbols)
    if not out:
        raise DataError(f"no benchmark column of {panel.benchmark_names} in the predictions", file=str(path))
    return out


def _book_and_hedges(panel, portfolio: Path | None, hedge) -> tuple:
    """(the core book, the hedge perps): the given ones or the defaults, each checked against the data."""
    from adaptive_beta.models.portfolio.book import default_hedges, default_portfolio, load_portfolio

    book = load_portfolio(portfolio) if portfolio is not None else default_portfolio(panel.symbols)
    book.check_symbols(panel.symbols)
    hedges = list(hedge) if hedge else default_hedges(panel.symbols)
    for h in hedges:
        if h not in panel.symbols:
            raise DataError(f"hedge instrument {h!r} is not in the data (assets: {', '.join(panel.symbols)})")
    return book, hedges


def _baselines(panel, estimators: str | None) -> dict:
    """Every classical baseline's forecasts, or only those --estimators names (unknown: ValueError)."""
    from adaptive_beta.models.estimators.baselines import baseline_forecasts

    forecasts = baseline_forecasts(
        panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq
    )
    if estimators:
        wanted = [e.strip() for e in estimators.split(",") if e.strip()]
        unknown = [e for e in wanted if e not in forecasts]
        if unknown:
            raise ValueError(f"option --estimators: unknown {unknown}; known: {sorted(forecasts)}")
        forecasts = {k: forecasts[k] for k in wanted}
    return forecasts


def _bundle_model(model: str, panel, benches: list[str]) -> tuple[dict, str]:
    """(benchmark -> model betas, note): the bundle run causally, only after its training period."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.resolve import resolve_bundle
    from adaptive_beta.models.portfolio.forecasts import bundle_forecasts

    bundle = load_bundle(resolve_bundle(model))
    after = bundle.meta.training_end()
    fc = bundle_forecasts(panel, bundle, None, out_of_sample_after=after)
    missing = [b for b in benches if b not in fc]
    if missing:
        raise DataError(f"model {model} forecasts {list(fc)}, not the hedged benchmark(s) {missing}")
    note = f"model {model} ({bundle.sha256[:12]}): forecasts only after its training period end {after}"
    return fc, note


def _add_model_forecasts(
    forecasts: dict, notes: list[str], panel, benches, model: str | None, forecasts_file: Path | None
) -> None:
    """Add the oracle (simulated data), and the model from one source: --forecasts or --model (in place)."""
    from adaptive_beta.models.portfolio.forecasts import ORACLE, truth_forecasts

    if "truth_betas" in panel.meta:
        forecasts[ORACLE] = truth_forecasts(panel)
        notes.append(f"{ORACLE}: true beta of the next bar (simulation only; looks one bar ahead by design)")
    if forecasts_file is not None and model is not None:
        raise ValueError("options --model and --forecasts: give one source of model forecasts, not both")
    if forecasts_file is not None:
        forecasts["model"] = walk_forward_forecasts(forecasts_file, panel)
        notes.append(
            f"model: walk-forward test-fold predictions from {forecasts_file} (out of sample per fold)"
        )
    if model is not None:
        forecasts["model"], note = _bundle_model(model, panel, benches)
        notes.append(note)


def _run(
    data: str,
    portfolio: Path | None,
    cfg,
    model: str | None,
    hedge,
    estimators: str | None,
    forecasts_file: Path | None = None,
):
    """Load, forecast, backtest, summarise; returns (result, table, ratios, notes).

    Steps: load the panel, book and hedges, benchmarks, baselines, oracle and model, run, summarise.
    """
    from dataclasses import replace

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.portfolio.backtest import run_backtest
    from adaptive_beta.models.portfolio.metrics import episodes_for, ratios_vs_reference, summary_table

    panel = load_dataset(data)
    typer.secho(f"data: {panel.describe()}", err=True)
    book, hedges = _book_and_hedges(panel, portfolio, hedge)
    benches = list(cfg.benchmarks or [btc_benchmark(panel)])
    cfg = replace(cfg, benchmarks=tuple(benches))
    notes: list[str] = []
    forecasts = _baselines(panel, estimators)
    _add_model_forecasts(forecasts, notes, panel, benches, model, forecasts_file)
    result = run_backtest(
        panel.returns(), panel.benchmark_returns(), panel.funding_rate, book.weights(), forecasts,
        panel.freq, cfg, hedges,
    )  # fmt: skip
    table = summary_table(result, panel.freq, episodes_for(panel.meta, panel.index))
    ratios = ratios_vs_reference(table)
    if "model" not in forecasts:
        notes.append("no model: pass --model to compare it with the rolling-OLS overlay")
    notes.append(
        f"backtest {result.start:%Y-%m-%d} .. {result.end:%Y-%m-%d}; hedges {hedges}; benchmarks {benches}"
    )
    return result, table, ratios, notes
