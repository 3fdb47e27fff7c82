"""`abeta data features --data DIR_OR_MANIFEST --out FILE.parquet`: the feature table with its targets.

Writes, atomically (temporary files renamed into place only once everything is computed and
written, so an error leaves nothing half-written):

- `FILE.parquet`: one row per (bar, asset with a close); columns `timestamp` (bar open, UTC),
  `symbol`, every feature of `compute_features`, then the targets
  `target_<BENCH>` (realised forward OLS beta over the next `--horizon`, `adaptive_beta.models.features.targets.forward_betas`),
  `target_true_<BENCH>` (simulated datasets only: variance-weighted true forward beta),
  `regime_current`, `regime_forward` (codes 0 calm, 1 volatile, 2 crash, -1 unknown, over
  `--regime-horizon`; the forward regime is the same for every asset of a bar).
- `FILE.spec.json`: the `FeatureSpec` (loadable with `FeatureSpec.from_json`).
- `FILE.meta.json`: spec hash, groups, base columns, target columns, horizon, freq, data fingerprint.

With `--block-assets N` (or `--workers W` > 1) the table is streamed for a universe whose table
does not fit in memory (200 perps x 2 years hourly: 3.3 GB of features): `FILE.parquet` is then
a folder of one parquet file per block of N assets (default: sized by memory), each computed
and written by one process (`adaptive_beta.models.features.blocks`), so memory is bounded by a
block; `pd.read_parquet(FILE.parquet)` reads it as one dataset (rows grouped by block, then
by time).  The numbers are the one-file numbers bit for bit; an existing FILE.parquet is
refused rather than replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import typer


def _read_spec(path: Path | None):
    from pydantic import ValidationError

    from adaptive_beta.models.data.schema import DataError
    from adaptive_beta.models.features.spec import FeatureSpec

    if path is None:
        return FeatureSpec()
    try:
        return FeatureSpec.from_json(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DataError("feature spec file not found", file=str(path)) from exc
    except json.JSONDecodeError as exc:
        raise DataError(
            f"feature spec is not valid JSON ({exc.msg})", file=str(path), row=exc.lineno
        ) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise DataError(f"invalid feature spec: {first['msg']}", file=str(path), column=field) from exc


def build_feature_file(panel, spec, horizon: str = "30d", regime_horizon: str = "7d"):
    """(frame with timestamp/symbol columns, meta dict) for `panel`: features + targets, in memory."""
    import pandas as pd

    from adaptive_beta.models.features.compute import compute_features
    from adaptive_beta.models.features.targets import forward_betas, regime_labels, true_forward_betas

    table = compute_features(panel, spec)
    frame = table.frame
    targets = forward_betas(panel, horizon).add_prefix("target_")
    parts = [frame, targets]
    if panel.meta.get("truth_betas") is not None and panel.meta.get("truth_market") is not None:
        parts.append(true_forward_betas(panel, horizon).add_prefix("target_true_"))
    out = pd.concat(parts, axis=1)
    regimes = regime_labels(panel, regime_horizon)
    ts = out.index.get_level_values("timestamp")
    out["regime_current"] = regimes["current"].reindex(ts).to_numpy()
    out["regime_forward"] = regimes["forward"].reindex(ts).to_numpy()
    target_cols = [c for c in out.columns if c not in frame.columns]
    meta = {
        "spec_hash": spec.hash(),
        "freq": panel.freq_label,
        "horizon": horizon,
        "regime_horizon": regime_horizon,
        "feature_columns": list(frame.columns),
        "groups": table.groups,
        "base_columns": table.base_columns,
        "target_columns": target_cols,
        "benchmarks": panel.benchmark_names,
        "data_fingerprint": panel.fingerprint(),
    }
    return out.reset_index(), meta


def _block_panel(panel, symbols: list[str]):
    """`panel.select(symbols)` with the simulated truth (for `target_true_*`) cut to those
    symbols too, so a pool worker receives one block's truth rather than the whole universe's."""
    block = panel.select(symbols)
    tb = block.meta.get("truth_betas")
    if tb is not None:
        block.meta["truth_betas"] = tb[tb.index.get_level_values("symbol").isin(symbols)]
    return block


def _write_block_file(block, path: str, spec, horizon: str, regime_horizon: str) -> dict:
    """One asset block's features + targets as one parquet file (runs in a pool worker)."""
    frame, meta = build_feature_file(block, spec, horizon, regime_horizon)
    frame.to_parquet(path, index=False)
    return {"rows": len(frame), "columns": frame.shape[1], "meta": meta}


def _check_stream_args(out: Path, block_assets: int, workers: int) -> None:
    """Operator errors of the streamed form, before anything is loaded."""
    from adaptive_beta.models.data.schema import DataError

    if block_assets < 0:
        raise DataError(f"--block-assets must be >= 0 (0: one table in memory), got {block_assets}")
    if workers < 1:
        raise DataError(f"--workers must be >= 1, got {workers}")
    if out.exists():
        raise DataError(
            f"{str(out)!r} already exists; streamed output needs a new path (nothing was changed)"
        )


def _write_streamed(panel, spec, out: Path, horizon, regime_horizon, block_assets: int, workers: int):
    """`--block-assets`/`--workers`: FILE.parquet as a folder of one parquet file per asset
    block (a parquet dataset: `pd.read_parquet(FILE.parquet)` reads it), peak memory one block
    per process; the sidecars as in the one-file form.  Returns (rows, columns, meta)."""
    from functools import partial

    from adaptive_beta.models.features.blocks import write_block_files

    job = partial(_write_block_file, spec=spec, horizon=horizon, regime_horizon=regime_horizon)
    folder, parts = write_block_files(
        panel,
        out,
        job,
        block_assets=block_assets or None,
        workers=workers,
        where="abeta data features",
        cut=_block_panel,
    )
    meta = dict(parts[0]["meta"], data_fingerprint=panel.fingerprint(), files=len(parts))
    try:
        _atomic_write(_sidecars(out, spec, meta))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return sum(x["rows"] for x in parts), parts[0]["columns"], meta


def _sidecars(out: Path, spec, meta: dict) -> list[tuple[Path, object]]:
    spec_text = json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n"
    return [
        (out.with_name(out.stem + ".spec.json"), lambda p: p.write_text(spec_text)),
        (out.with_name(out.stem + ".meta.json"), lambda p: p.write_text(json.dumps(meta, indent=2) + "\n")),
    ]


def _atomic_write(pairs: list[tuple[Path, object]]) -> None:
    """Write every (path, writer) to a temporary sibling, then rename them all into place."""
    tmps: list[tuple[Path, Path]] = []
    try:
        for path, write in pairs:
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmps.append((tmp, path))
            write(tmp)  # type: ignore[operator]
        for tmp, path in tmps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)


def features(
    data: str = typer.Option(..., "--data", help="A dataset folder or a .toml/.yaml manifest."),
    out: Path = typer.Option(
        ..., "--out", help="Output parquet file (FILE.spec.json and FILE.meta.json beside it)."
    ),
    horizon: str = typer.Option("30d", help="Forward-beta horizon of the target columns (a duration)."),
    spec: Path | None = typer.Option(None, help="FeatureSpec JSON; default: the shipped spec."),
    regime_horizon: str = typer.Option("7d", help="Window of the regime labels (a duration)."),
    block_assets: int = typer.Option(
        0,
        "--block-assets",
        help="Stream: compute and write per block of this many assets (FILE.parquet becomes a "
        "folder of parquet files; memory bounded by a block). 0: one table in memory, unless --workers > 1.",
    ),
    workers: int = typer.Option(
        1, "--workers", help="Stream asset blocks through a local process pool of this size."
    ),
) -> None:
    """Compute causal features and forward targets of a dataset into one parquet file."""
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.data.schema import DataError
    from adaptive_beta.models.durations import parse_duration

    t0 = time.perf_counter()
    for name, value in (("--horizon", horizon), ("--regime-horizon", regime_horizon)):
        try:
            parse_duration(value)
        except ValueError as exc:
            raise DataError(f"{name}: {exc}") from exc
    feature_spec = _read_spec(spec)
    out = Path(out)
    if out.suffix != ".parquet":
        raise DataError(f"--out must be a .parquet file, got {str(out)!r}")
    if not out.parent.exists():
        raise DataError(f"output folder {str(out.parent)!r} does not exist")
    if block_assets != 0 or workers != 1:
        _check_stream_args(out, block_assets, workers)
        panel = load_dataset(data)
        t1 = time.perf_counter()
        rows, n_cols, meta = _write_streamed(
            panel, feature_spec, out, horizon, regime_horizon, block_assets, workers
        )
        t2 = t3 = time.perf_counter()
        where = f"{meta['files']} block files"
    else:
        panel = load_dataset(data)
        t1 = time.perf_counter()
        frame, meta = build_feature_file(panel, feature_spec, horizon, regime_horizon)
        t2 = time.perf_counter()
        _atomic_write(
            [(out, lambda p: frame.to_parquet(p, index=False)), *_sidecars(out, feature_spec, meta)]
        )
        t3 = time.perf_counter()
        rows, n_cols, where = len(frame), frame.shape[1], "one file"
    n_feat = len(meta["feature_columns"])
    typer.echo(
        f"wrote {out} ({where}): {rows:,} rows x {n_cols} columns ({n_feat} features, "
        f"{len(meta['target_columns'])} targets) for {panel.describe()}"
    )
    typer.echo(
        f"spec {meta['spec_hash'][:12]} -> {out.stem}.spec.json; load {t1 - t0:.2f} s, "
        f"features+targets {t2 - t1:.2f} s, write {t3 - t2:.2f} s, total {t3 - t0:.2f} s"
    )
