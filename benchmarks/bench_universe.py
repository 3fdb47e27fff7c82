"""Time and peak memory of the universe-scale data path, one step per fresh process.

    python benchmarks/bench_universe.py                        # default sizes, ~10 min on 2 cores
    python benchmarks/bench_universe.py --sizes 200x730        # the issue-14 goal size alone
    python benchmarks/bench_universe.py --sizes 20x90 --md5    # digests of the outputs (bit-identity)

Why one process per step: peak resident memory (`ru_maxrss`) only grows within a process, so a
step measured after another would report the earlier step's peak.  Each step runs in a child
Python process (`--step NAME`, internal) that prints one JSON line: seconds and its peak RSS.

Steps per size (AxD = A assets x D days of `--freq` bars, simulated with `--seed`):
  simulate   `simulate(cfg)` in memory (peak = the child's peak after simulating);
  write      simulate, then `write_simulation` (time = the write alone; peak = the whole child);
  load       `load_dataset(folder)`;
  features   load, then the feature table (time = features alone): by default streamed to a
             parquet folder per block of assets (`write_feature_dataset`, the only form whose
             peak stays below 2 GB at the goal size); `--features memory`: `compute_features`
             in memory (one-shot unless `--feature-blocks N` or `--workers N`);
  baselines  load, then every classical baseline (`baseline_forecasts`; time = baselines alone;
             `--workers N`: asset blocks in a local process pool of N, for features too; the
             largest pool worker's peak is printed in the note and counts for the goal).
Peak RSS of a child that also loads includes the loaded panel (the `load` row shows that part).

The goal (issue 14): 200 perps x 2 years hourly (`--sizes 200x730`), each step < 5 min and
< 2 GB peak on 2 cores.  `--md5` adds digests of the written folder and of every baseline
frame, to check that a change keeps the outputs bit-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ("simulate", "write", "load", "features", "baselines")
DEFAULT_SIZES = "50x182,50x365,100x365"  # bars x2, then assets x2: growth in each
GOAL_MB = 2048.0
GOAL_S = 300.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (a process pool's workers): on a
    shared machine wall time depends on the neighbours, CPU time much less."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _config(args):
    from adaptive_beta.models.sim.config import SimConfig

    return SimConfig(n_assets=args.assets, days=args.days, freq=args.freq, seed=args.seed)


def _folder_md5(folder: Path) -> str:
    h = hashlib.md5()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _forecasts_md5(forecasts) -> str:
    h = hashlib.md5()
    for name in sorted(forecasts):
        for bench in sorted(forecasts[name]):
            frame = forecasts[name][bench]
            h.update(f"{name}/{bench}/{list(frame.columns)}".encode())
            h.update(frame.to_numpy(dtype="float64").tobytes())
    return h.hexdigest()


def _run_step(args) -> dict:
    """One step in this process; returns seconds, peak MB and (with --md5) a digest."""
    out: dict = {}
    folder = Path(args.dir)
    if args.step in ("simulate", "write"):
        from adaptive_beta.models.sim.simulator import simulate
        from adaptive_beta.models.sim.write import write_simulation

        t0, c0 = time.perf_counter(), _cpu_s()
        result = simulate(_config(args))
        out["seconds"], out["cpu"] = time.perf_counter() - t0, _cpu_s() - c0
        if args.step == "write":
            t0, c0 = time.perf_counter(), _cpu_s()
            write_simulation(result, folder, force=True)
            out["seconds"], out["cpu"] = time.perf_counter() - t0, _cpu_s() - c0
            if args.md5:
                out["md5"] = _folder_md5(folder)
        out["peak_mb"] = _peak_mb()
        return out
    from adaptive_beta.models.data.loaders import load_dataset

    t0, c0 = time.perf_counter(), _cpu_s()
    panel = load_dataset(folder)
    out["seconds"], out["cpu"] = time.perf_counter() - t0, _cpu_s() - c0
    if args.step == "features":
        out.update(_features_step(args, panel, folder))
    elif args.step == "baselines":
        from adaptive_beta.models.estimators.baselines import baseline_forecasts

        pool = {"workers": args.workers} if args.workers != 1 else {}  # also runs on code without the pool
        t0, c0 = time.perf_counter(), _cpu_s()
        fc = baseline_forecasts(
            panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq, **pool
        )
        out["seconds"], out["cpu"] = time.perf_counter() - t0, _cpu_s() - c0
        if args.md5:
            out["md5"] = _forecasts_md5(fc)
    out.setdefault("peak_mb", _peak_mb())
    out["pool_peak_mb"] = _children_peak_mb()
    return out


def _features_step(args, panel, folder: Path) -> dict:
    """`--features stream`: `write_feature_dataset` (parquet per asset block, the goal-size path);
    `memory`: `compute_features` (one-shot when `--feature-blocks 0` and `--workers 1`)."""
    out: dict = {}
    blocks = args.feature_blocks or None
    if args.features == "stream":
        from adaptive_beta.models.features.blocks import read_feature_dataset, write_feature_dataset

        target = Path(tempfile.mkdtemp(prefix="features.", dir=folder.parent)) / "features"
        t0, c0 = time.perf_counter(), _cpu_s()
        write_feature_dataset(panel, target, block_assets=blocks, workers=args.workers)
        out["seconds"], out["cpu"] = time.perf_counter() - t0, _cpu_s() - c0
        out["peak_mb"] = _peak_mb()  # before any read-back for the digest
        out["disk_mb"] = sum(f.stat().st_size for f in target.iterdir()) / 2**20
        if args.md5:  # reads the whole table back: small sizes only
            frame = read_feature_dataset(target)
            out["md5"] = hashlib.md5(frame.to_numpy(dtype="float64").tobytes()).hexdigest()
        shutil.rmtree(target.parent, ignore_errors=True)
        return out
    from adaptive_beta.models.features.compute import compute_features

    pool = {"block_assets": blocks, "workers": args.workers} if blocks or args.workers != 1 else {}
    t0, c0 = time.perf_counter(), _cpu_s()
    table = compute_features(panel, **pool)
    out["seconds"], out["cpu"] = time.perf_counter() - t0, _cpu_s() - c0
    if args.md5:
        out["md5"] = hashlib.md5(table.frame.to_numpy(dtype="float64").tobytes()).hexdigest()
    return out


def _children_peak_mb() -> float:
    """Peak RSS of the largest finished child (a pool worker), 0 without a pool."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            a, d = part.strip().lower().split("x")
            sizes.append((int(a), int(d)))
        except ValueError:
            raise SystemExit(f"--sizes: {part!r} is not ASSETSxDAYS (e.g. 200x730)") from None
    return sizes


def _child(step: str, assets: int, days: int, folder: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--step", step, "--dir", str(folder), "--assets", str(assets)]
    cmd += ["--days", str(days), "--freq", args.freq, "--seed", str(args.seed)]
    cmd += ["--workers", str(args.workers), "--features", args.features]
    cmd += ["--feature-blocks", str(args.feature_blocks)]
    if args.md5:
        cmd.append("--md5")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}", "wall": time.perf_counter() - t0}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help=f"ASSETSxDAYS,... (default {DEFAULT_SIZES})")
    ap.add_argument("--freq", default="1h", help="bar length (default 1h)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--steps", default=",".join(STEPS), help="subset of " + ",".join(STEPS))
    ap.add_argument(
        "--md5", action="store_true", help="print digests of the written folder and of the outputs"
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="features and baselines: asset blocks in a process pool of this size (default 1)",
    )
    ap.add_argument(
        "--features",
        choices=("stream", "memory"),
        default="stream",
        help="features step: stream parquet per asset block (default) or build the table in memory",
    )
    ap.add_argument(
        "--feature-blocks",
        type=int,
        default=0,
        help="features step: assets per block (default 0: sized by memory; memory mode: one-shot)",
    )
    ap.add_argument("--keep", default=None, help="write the simulated folders under this path (kept)")
    ap.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--assets", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--days", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step:
        print(json.dumps(_run_step(args)))
        return 0
    wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STEPS]
    steps = [s for s in STEPS if s in wanted]  # pipeline order: load needs the written folder
    if unknown:
        ap.error(f"--steps: unknown {unknown}; known: {', '.join(STEPS)}")
    sizes = _parse_sizes(args.sizes)
    print(f"# bench_universe: freq {args.freq}, seed {args.seed}, python {sys.version.split()[0]}")
    print(f"# goal per step: < {GOAL_S:.0f} s and < {GOAL_MB:.0f} MB peak RSS (issue 14, at 200x730 1h)")
    print(
        f"# workers (features, baselines): {args.workers}; features: {args.features}, "
        f"{args.feature_blocks or 'default'} assets per block; cpu s = CPU time of the step "
        "(its process and pool workers)"
    )
    print(f"# load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'size':>9} {'bars':>6} {'step':>9} {'seconds':>8} {'cpu s':>8} {'peak MB':>8}  note")
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench_universe.") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for assets, days in sizes:
            folder = root / f"sim-{assets}x{days}-{args.freq}"
            bars = _config(
                argparse.Namespace(assets=assets, days=days, freq=args.freq, seed=args.seed)
            ).n_bars
            for step in steps:
                r = _child(step, assets, days, folder, args)
                if "error" in r:
                    ok = False
                    print(
                        f"{assets:>4}x{days:<4} {bars:>6} {step:>9} {'-':>8} {'-':>8} {'-':>8}  FAILED {r['error']}"
                    )
                    continue
                note = r.get("md5", "")
                if r.get("pool_peak_mb"):
                    note = f"pool worker peak {r['pool_peak_mb']:.0f} MB " + note
                if "disk_mb" in r:
                    note = f"parquet {r['disk_mb']:.0f} MB " + note
                fine = r["seconds"] < GOAL_S and max(r["peak_mb"], r.get("pool_peak_mb", 0)) < GOAL_MB
                ok = ok and fine
                note = ("" if fine else "over goal ") + note
                print(
                    f"{assets:>4}x{days:<4} {bars:>6} {step:>9} {r['seconds']:8.1f} {r['cpu']:8.1f} {r['peak_mb']:8.0f}  {note}"
                )
                sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
