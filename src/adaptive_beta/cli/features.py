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
"""

from __future__ import annotations

import json
import os
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
    panel = load_dataset(data)
    t1 = time.perf_counter()
    frame, meta = build_feature_file(panel, feature_spec, horizon, regime_horizon)
    t2 = time.perf_counter()
    spec_path = out.with_name(out.stem + ".spec.json")
    meta_path = out.with_name(out.stem + ".meta.json")
    _atomic_write(
        [
            (out, lambda p: frame.to_parquet(p, index=False)),
            (
                spec_path,
                lambda p: p.write_text(json.dumps(feature_spec.to_dict(), indent=2, sort_keys=True) + "\n"),
            ),
            (meta_path, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n")),
        ]
    )
    t3 = time.perf_counter()
    n_feat = len(meta["feature_columns"])
    typer.echo(
        f"wrote {out}: {len(frame):,} rows x {frame.shape[1]} columns ({n_feat} features, "
        f"{len(meta['target_columns'])} targets) for {panel.describe()}"
    )
    typer.echo(
        f"spec {meta['spec_hash'][:12]} -> {spec_path.name}; load {t1 - t0:.2f} s, "
        f"features+targets {t2 - t1:.2f} s, write {t3 - t2:.2f} s, total {t3 - t0:.2f} s"
    )
