"""`abeta predict`: forecasts for a whole universe offline, as of a bar, into a parquet file.

The numbers are the service's (`adaptive_beta.load_model(...).predict`, the same features,
windows and ONNX graph); the file is long, one row per (symbol, benchmark), with the columns the
trading client's DataFrame has (`serving/http_client.forecasts_frame`), so an offline back-fill
and a live feed can be concatenated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer

MAX_RETRIES = 20  # assets dropped one by one when their base beta is not finite at the as-of bar


def predict(
    model: str = typer.Option(..., "--model", help="models:/NAME@ALIAS, runs:/... or a bundle folder."),
    data: str = typer.Option(..., "--data", help="Dataset folder or manifest (.toml/.yaml)."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write (one row per symbol and benchmark)."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Forecast as of this bar (ISO time, UTC if naive); default the data's last bar."
    ),
    symbols: str | None = typer.Option(None, "--symbols", help="Comma-separated assets (default: all)."),
) -> None:
    """Forecast every asset of DATA as of a bar with MODEL and write betas, intervals and regimes."""
    from adaptive_beta.models.data.schema import DataError

    try:
        _predict(model, data, out, as_of, symbols)
    except DataError as exc:  # one line and exit 2, also when called in-process (CliRunner)
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _predict(model: str, data: str, out: Path, as_of: str | None, symbols: str | None) -> None:
    import adaptive_beta as ab
    from adaptive_beta.models.data.schema import DataError

    m = ab.load_model(model)
    panel = ab.load_dataset(data)
    if as_of is not None:
        try:
            end = pd.Timestamp(as_of)
        except ValueError as exc:
            raise DataError(f"--as-of {as_of!r} is not a time (use ISO 8601, e.g. 2024-06-30T16:00)") from exc
        end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
        if end < panel.index[0]:
            raise DataError(
                f"--as-of {end.isoformat()} is before the data's first bar {panel.index[0].isoformat()}"
            )
        panel = panel.slice(None, end)
    wanted = _symbols(panel, symbols)
    usable, skipped = _usable(panel, wanted, int(m.meta.required_history.min_periods))
    frame = None
    for _ in range(MAX_RETRIES):
        if not usable:
            break
        try:
            frame = m.predict(panel, symbols=usable)
            break
        except DataError as exc:
            if exc.column not in usable:
                raise
            usable.remove(exc.column)
            skipped[exc.column] = exc.message
    if frame is None:
        raise DataError(f"no asset can be forecast as of {panel.index[-1].isoformat()}: {skipped}")
    long = to_long(frame, list(m.meta.benchmarks), list(m.meta.regimes), str(m.meta.model_version))
    out.parent.mkdir(parents=True, exist_ok=True)
    long.to_parquet(out, index=False)
    typer.echo(
        f"wrote {out}: {long['symbol'].nunique()} assets x {len(m.meta.benchmarks)} benchmarks as of "
        f"{panel.index[-1].isoformat()} (model {m.meta.model_name} {m.meta.model_version})"
    )
    for sym, why in skipped.items():
        typer.echo(f"skipped {sym}: {why}")


def _symbols(panel, symbols: str | None) -> list[str]:
    from adaptive_beta.models.data.schema import DataError

    if not symbols:
        return list(panel.symbols)
    wanted = [s.strip() for s in symbols.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in panel.symbols]
    if unknown:
        raise DataError(
            f"--symbols: {', '.join(unknown)} not in the data (it has {', '.join(panel.symbols)})"
        )
    return wanted


def _usable(panel, wanted: list[str], min_periods: int) -> tuple[list[str], dict[str, str]]:
    """Assets with a close at the as-of bar and `min_periods` bars since their first close."""
    close = panel.close[wanted].to_numpy(dtype=float)
    finite = np.isfinite(close)
    first = np.where(finite.any(axis=0), finite.argmax(axis=0), len(close))
    usable, skipped = [], {}
    for j, sym in enumerate(wanted):
        have = len(close) - int(first[j])
        if not finite[-1, j]:
            skipped[sym] = "no close at the as-of bar"
        elif have < min_periods:
            skipped[sym] = f"{have} bars of history, the model needs {min_periods}"
        else:
            usable.append(sym)
    return usable, skipped


def to_long(frame: pd.DataFrame, benchmarks: list[str], regimes: list[str], version: str) -> pd.DataFrame:
    """`Model.predict`'s wide frame as one row per (symbol, benchmark): beta, lo, hi, p_<regime>, as_of."""
    rows = []
    for _, r in frame.iterrows():
        for b in benchmarks:
            rows.append(
                {
                    "symbol": r["symbol"],
                    "benchmark": b,
                    "beta": r[b],
                    "lo": r[f"{b}_lo"],
                    "hi": r[f"{b}_hi"],
                    **{f"p_{g}": r[f"regime_{g}"] for g in regimes},
                    "as_of": pd.to_datetime(r["as_of"], utc=True),
                    "model_version": version,
                }
            )
    return pd.DataFrame(rows)
