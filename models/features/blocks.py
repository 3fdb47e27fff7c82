"""Features of a large universe per block of assets: bounded memory, optionally in a process pool.

Why this works exactly: every feature of `compute_features` is a function of one asset's own
series plus series shared by all assets (benchmark levels, including the equal-weight composite
the panel builds at load time from every asset, and the factor levels).  No feature is
cross-sectional (no rank or mean across assets is taken inside the feature pipeline), and every
window statistic works column by column (cumulative sums and IIR filters along time), so the
features of a block of assets, computed on `panel.select(block)`, are bit-for-bit the columns
of the one-shot computation.  `tests/models/test_feature_blocks.py` checks this for several
block sizes and pool sizes.

Two ways out:

- `compute_features(panel, spec, block_assets=..., workers=...)` (in `compute.py`) returns the
  same in-memory `FeatureTable` as the one-shot call: each block's wide arrays are scattered
  straight into the one preallocated long table, so the peak is the table plus one block
  instead of the table plus all wide arrays.  Fine for panels whose table fits in memory
  (training uses it).
- `write_feature_dataset(panel, out_dir, spec, block_assets=..., workers=...)` streams: each
  block is written as its own parquet file (`block-00000.parquet`, ...) of a dataset folder,
  by the process that computed it, so neither the parent nor a worker ever holds more than one
  block.  At universe scale (200 perps x 2 years hourly: 3.5 M rows x 119 columns, 3.3 GB as
  float64) that is the only form that fits in 2 GB.  Rows within a file are sorted by
  (timestamp, symbol) and the files hold consecutive runs of the sorted symbols;
  `read_feature_dataset` returns the frame of `compute_features` (same index, order and bits).

Blocks run in a local process pool when `workers` > 1 (`adaptive_beta.models.pool.ordered_map`:
at most `workers` blocks in flight, each job's panel built when it is submitted), so memory
grows with the pool size, not with the universe.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import Panel
from adaptive_beta.models.features.compute import compute_feature_arrays
from adaptive_beta.models.features.partition import asset_blocks, block_panel, check_block_args
from adaptive_beta.models.features.spec import FeatureSpec
from adaptive_beta.models.pool import ordered_map

META_FILE = "_features.meta.json"


def _write_block(panel: Panel, path: str, spec: FeatureSpec) -> dict:
    """Compute one block's features and write them as one parquet file; returns its summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fa = compute_feature_arrays(panel, spec)
    ti, si = np.nonzero(fa.rows)
    cols = {
        "timestamp": pa.array(fa.index[ti]),
        "symbol": pa.array(np.asarray(fa.symbols, dtype=object)[si], type=pa.string()),
    }
    for name in list(fa.arrays):
        cols[name] = pa.array(np.ascontiguousarray(fa.arrays.pop(name))[ti, si])
    table = pa.table(cols)
    # dictionary-encode only the symbol: trying it on ~120 float columns of near-unique values
    # (pyarrow's default) costs 5x the rest of the write and makes the files larger
    with pq.ParquetWriter(path, table.schema, use_dictionary=["symbol"]) as writer:
        writer.write_table(table)
    return {
        "file": Path(path).name,
        "symbols": list(fa.symbols),
        "rows": int(len(ti)),
        "groups": fa.groups,
        "base_columns": fa.base_columns,
        "freq": str(fa.freq),
    }


def write_block_files(
    panel: Panel,
    out_dir: str | Path,
    job: Callable[..., dict],
    *,
    block_assets: int | None,
    workers: int,
    where: str,
    finish: Callable[[Path, list[dict]], None] | None = None,
    cut: Callable[[Panel, list[str]], Panel] = block_panel,
) -> tuple[Path, list[dict]]:
    """Run `job(cut(panel, symbols), path)` per asset block into a new folder; (folder, results).

    `job` computes and writes one block's parquet file at `path` (in the worker, so nothing
    large travels back) and returns a small summary; it must be picklable (a module-level
    function or a functools.partial of one) for `workers` > 1.  The folder appears atomically
    (a hidden sibling renamed into place after `finish(tmp, results)` wrote any sidecars); an
    existing `out_dir` is refused, so nothing already stored is overwritten.
    """
    check_block_args(block_assets, workers, where)
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{where}: {out} already exists; choose a new path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        symbols = sorted(panel.symbols)
        p = panel.select(symbols) if symbols != panel.symbols else panel
        blocks = asset_blocks(symbols, block_assets, len(p.index))
        paths = [str(tmp / f"block-{k:05d}.parquet") for k in range(len(blocks))]
        parts = list(ordered_map(len(blocks), lambda k: (cut(p, blocks[k]), paths[k]), job, workers))
        if finish is not None:
            finish(tmp, parts)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, parts


def write_feature_dataset(
    panel: Panel,
    out_dir: str | Path,
    spec: FeatureSpec | None = None,
    *,
    block_assets: int | None = None,
    workers: int = 1,
) -> Path:
    """Write the features of `panel` as a folder of parquet files, one per block of assets.

    Beside the block files, `_features.meta.json` (ignored by parquet dataset readers, as its
    name starts with "_") holds the spec hash, column groups, base columns, freq and which
    symbols each file holds; `pd.read_parquet(folder)` reads the blocks one after the other,
    `read_feature_dataset` in the one-shot order.  Peak memory: the panel plus one block per
    process.  The folder appears atomically; an existing `out_dir` is refused.
    """
    spec = spec or FeatureSpec()

    def finish(tmp: Path, parts: list[dict]) -> None:
        meta = {
            "spec_hash": spec.hash(),
            "freq": parts[0]["freq"] if parts else None,
            "groups": parts[0]["groups"] if parts else {},
            "base_columns": parts[0]["base_columns"] if parts else {},
            "rows": sum(x["rows"] for x in parts),
            "files": [{k: x[k] for k in ("file", "symbols", "rows")} for x in parts],
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    job = partial(_write_block, spec=spec)
    where = "write_feature_dataset"
    return write_block_files(
        panel, out_dir, job, block_assets=block_assets, workers=workers, where=where, finish=finish
    )[0]


def read_feature_dataset(path: str | Path) -> pd.DataFrame:
    """The frame of `compute_features` from a folder of `write_feature_dataset` (all in memory:
    for panels whose table fits; read one block file with pandas to stream)."""
    folder = Path(path)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a feature dataset: {META_FILE} is missing")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    frames = [pd.read_parquet(folder / f["file"]) for f in meta["files"]]
    frame = pd.concat(frames, ignore_index=True).set_index(["timestamp", "symbol"])
    return frame.sort_index(kind="stable")
