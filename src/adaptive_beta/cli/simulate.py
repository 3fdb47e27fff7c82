"""`abeta data simulate`: write the built-in simulated market (with its true betas) to a folder."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from adaptive_beta.models.sim.config import PRESETS, SUPPORTED_FREQS


def simulate(
    out: Path = typer.Option(..., "--out", help="Folder to create (assets/, factors/, truth/)."),
    seed: int = typer.Option(7, "--seed", help="Random seed: same seed, same files."),
    assets: int = typer.Option(12, "--assets", help="Number of perps (BTCUSDT first; at least 2)."),
    days: int = typer.Option(1460, "--days", help="Length of the sample in days."),
    freq: str = typer.Option("1d", "--freq", help="Bar length: 1d, 8h or 1h."),
    preset: str = typer.Option(
        "calibrated",
        "--preset",
        help="Dynamics: 'calibrated' (default; betas and vols move like the real perps') or 'legacy'"
        " (the simulator before the calibration, file for file).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
) -> None:
    """Simulate a regime-switching crypto perps market with known true betas and write it to --out."""
    if assets < 2:
        raise typer.BadParameter(
            f"need at least 2 assets (BTC and one more), got {assets}", param_hint="--assets"
        )
    if days < 2:
        raise typer.BadParameter(f"need at least 2 days, got {days}", param_hint="--days")
    if freq not in SUPPORTED_FREQS:
        raise typer.BadParameter(
            f"unknown bar length {freq!r}; use one of {', '.join(SUPPORTED_FREQS)}", param_hint="--freq"
        )
    if preset not in PRESETS:
        raise typer.BadParameter(
            f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}", param_hint="--preset"
        )
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise typer.BadParameter(
            f"{out} exists and is not empty; add --force to replace it", param_hint="--out"
        )

    from adaptive_beta.models.data.schema import COMPOSITE_NAME
    from adaptive_beta.models.sim.config import REGIME_NAMES, SimConfig
    from adaptive_beta.models.sim.simulator import simulate as run_simulation
    from adaptive_beta.models.sim.write import write_simulation

    cfg = SimConfig.from_preset(preset, seed=seed, n_assets=assets, days=days, freq=freq)
    t0 = time.perf_counter()
    typer.echo(f"simulating {assets} assets x {cfg.n_bars} bars of {freq} (seed {seed}, preset {preset}) ...")
    result = run_simulation(cfg)
    write_simulation(result, out, force=force)
    elapsed = time.perf_counter() - t0

    tm = result.truth_market
    shares = tm["regime_name"].value_counts(normalize=True).reindex(REGIME_NAMES, fill_value=0.0)
    btc = cfg.symbols[0]
    means = result.truth_betas.groupby(level="symbol", sort=False)[
        [f"beta_{btc}", f"beta_{COMPOSITE_NAME}"]
    ].mean()
    typer.echo(f"wrote {out} in {elapsed:.1f}s: {assets} assets, {len(result.factors)} factors, truth/")
    typer.echo("regime shares: " + ", ".join(f"{n} {shares[n]:.1%}" for n in REGIME_NAMES))
    typer.echo(f"{'symbol':<12} {'beta ' + btc:>14} {'beta ' + COMPOSITE_NAME:>16}")
    for sym, row in means.iterrows():
        typer.echo(f"{sym:<12} {row.iloc[0]:>14.3f} {row.iloc[1]:>16.3f}")
