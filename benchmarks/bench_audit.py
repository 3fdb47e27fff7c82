"""Audit log append throughput and latency: group commit vs one commit per append.

Each configuration appends the same realistic entries (features, output, explanation, ~1.5 KB)
from 1, 8 and 32 threads to a fresh SQLite file (WAL, synchronous=FULL) and prints one table:
appends/s, p50/p99 latency of `append` as the caller sees it, and records per commit.

    python benchmarks/bench_audit.py [--total 1600] [--dir /path/on/the/disk/to/measure]

"commit per append" is the same writer with max_batch=1 (every entry its own fsynced
transaction), so the difference is batching alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from adaptive_beta.models.audit.log import AuditLog, verify_chain

MODES = {
    "group commit (2 ms window)": {"group_commit_window_ms": 2.0},
    "group commit (no window)": {"group_commit_window_ms": 0.0},
    "commit per append": {"group_commit_window_ms": 0.0, "max_batch": 1},
}


def make_entry(k: int, i: int) -> dict:
    return {
        "request_id": f"bench-{k}-{i}",
        "caller": "bench",
        "endpoint": "/predict",
        "symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
        "model_name": "beta-gru",
        "model_version": "7",
        "bundle_sha256": "b" * 64,
        "run_id": "r" * 32,
        "feature_spec_hash": "f" * 16,
        "input_sha256": "1" * 64,
        "features": {f"f{j}": 0.001 * j * (k + 1) + i for j in range(40)},
        "output": {"beta": [[1.1, 0.4], [0.9, 0.2], [1.3, 0.5]], "regime_prob": [0.7, 0.2, 0.1]},
        "explanation": {
            "groups": {g: 0.01 * n for n, g in enumerate(["crypto", "equity", "fx", "vol", "funding"])}
        },
    }


def run(folder: Path, mode: str, threads: int, total: int) -> dict:
    path = folder / f"{mode.split()[0]}-{len(list(folder.iterdir()))}.db"
    per_thread = max(1, total // threads)
    lat: list[float] = []
    lock = threading.Lock()
    with AuditLog(path, **MODES[mode]) as log:
        log.append(make_entry(-1, 0))  # schema and connection warm
        barrier = threading.Barrier(threads + 1)

        def worker(k: int) -> None:
            mine = []
            barrier.wait()
            for i in range(per_thread):
                t0 = time.perf_counter()
                log.append(make_entry(k, i))
                mine.append(time.perf_counter() - t0)
            with lock:
                lat.extend(mine)

        pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - t0
        stats = log.stats
    assert verify_chain(path).ok
    lat.sort()
    return {
        "n": len(lat),
        "rate": len(lat) / elapsed,
        "p50": statistics.median(lat) * 1e3,
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3,
        "per_commit": (stats.records - 1) / max(1, stats.commits - 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total", type=int, default=1600, help="appends per configuration")
    ap.add_argument("--dir", type=Path, default=None, help="folder for the databases (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"{'mode':<28} {'threads':>7} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'rec/commit':>10}")
        for threads in (1, 8, 32):
            for mode in MODES:
                r = run(folder, mode, threads, args.total)
                print(
                    f"{mode:<28} {threads:>7} {r['rate']:>10.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                    f"{r['per_commit']:>10.1f}"
                )


if __name__ == "__main__":
    main()
