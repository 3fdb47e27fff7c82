"""Writing audit records to parquet, CSV or JSON Lines, atomically (temporary file + rename).

Every format keeps the stored text of each record, so an export can be re-verified offline:
JSON Lines hold the stored record itself (``record_hash(line without "hash") == line["hash"]``);
parquet and CSV hold `symbols` and `payload` as their canonical JSON text.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from adaptive_beta.models.audit.chain import COLUMNS, canonical_json
from adaptive_beta.models.audit.store import to_row

FORMATS = ("parquet", "csv", "jsonl")
_BATCH = 2000


def _batches(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_parquet(records: Iterable[dict[str, Any]], tmp: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.int64() if c == "seq" else pa.string()) for c in COLUMNS])
    n = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for batch in _batches(records, _BATCH):
            rows = [to_row(r) for r in batch]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            n += len(rows)
    return n


def _write_csv(records: Iterable[dict[str, Any]], tmp: Path) -> int:
    n = 0
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        for rec in records:
            writer.writerow(to_row(rec))
            n += 1
    return n


def _write_jsonl(records: Iterable[dict[str, Any]], tmp: Path) -> int:
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(canonical_json({k: rec[k] for k in COLUMNS}))
            fh.write("\n")
            n += 1
    return n


_WRITERS = {"parquet": _write_parquet, "csv": _write_csv, "jsonl": _write_jsonl}


def write_export(records: Iterable[dict[str, Any]], path: str | os.PathLike[str], fmt: str) -> int:
    """Write stored-form `records` (oldest first) to `path` in `fmt`; returns the row count.

    The file appears complete or not at all: it is written next to `path`, fsynced, then renamed.
    """
    if fmt not in _WRITERS:
        raise ValueError(f"audit export: format {fmt!r} is not one of {', '.join(FORMATS)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        n = _WRITERS[fmt](records, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
