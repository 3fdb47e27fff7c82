"""`abeta store load` and `abeta store info`: the service's market-data store from the shell.

`load` bulk-loads a dataset the project reads (a folder or a manifest) into the store that
POST /bars appends to, series by series with progress; a second run appends nothing (every bar is
a duplicate).  Exit codes: 0 ok, 2 an operator error (a dataset that does not load, named by
file/row/column; bars that contradict the stored ones, named by series and timestamp; a bad
--db), with nothing of the failing series stored.
"""

from __future__ import annotations

import time

import typer

DB_HELP = "Market-data store: a path, sqlite:///path or postgresql://... (default: ABETA_MARKET_DB)."


def _open(db: str | None):
    from adaptive_beta.models.market.store import open_market_store
    from adaptive_beta.models.settings import get_settings

    url = db or str(get_settings().market_db)
    try:
        return open_market_store(url)
    except (ValueError, ImportError) as exc:
        typer.secho(f"error: --db {url}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def load(
    data: str = typer.Option(
        ..., "--data", help="A dataset folder (assets/, factors/) or a .toml/.yaml manifest."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Load a dataset's assets, benchmarks and factor observations into the market-data store."""
    from adaptive_beta.models.market.bars import MarketDataError
    from adaptive_beta.models.market.dataset import dataset_series

    t0 = time.perf_counter()
    batch = dataset_series(data)  # DataError (file/row/column): `abeta` prints it and exits 2
    totals = {"appended": 0, "duplicate": 0}
    with _open(db) as store:
        typer.echo(f"loading {len(batch)} series from {data} into {store.description}")
        for i, bars in enumerate(batch, start=1):
            try:
                counts = store.append([bars]).counts[bars.name]
            except MarketDataError as exc:
                typer.secho(f"error: {data}: {exc.message}", fg=typer.colors.RED, err=True)
                raise typer.Exit(2) from None
            totals["appended"] += counts.appended
            totals["duplicate"] += counts.duplicate
            typer.echo(
                f"[{i}/{len(batch)}] {bars.kind:6} {bars.name:12} {counts.appended:7d} appended "
                f"{counts.duplicate:7d} duplicate  last {counts.as_dict()['last']}"
            )
    typer.echo(
        f"ok: {totals['appended']} bars appended, {totals['duplicate']} already stored, "
        f"in {time.perf_counter() - t0:.2f} s"
    )


def info(db: str | None = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Every stored series: kind, bar length, bar count, first and last bar."""
    from adaptive_beta.models.market.bars import freq_label, iso

    with _open(db) as store:
        rows = store.info()
        typer.echo(f"{store.description}: {len(rows)} series, {sum(r.n_bars for r in rows)} bars")
        for r in rows:
            typer.echo(
                f"{r.name:12} {r.kind:6} {freq_label(r.freq_us):24} {r.n_bars:7d}  {iso(r.first_us)} .. {iso(r.last_us)}"
            )
