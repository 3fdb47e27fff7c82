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
  features   load, then `compute_features` (time = features alone);
  baselines  load, then every classical baseline (`baseline_forecasts`; time = baselines alone;
             `--workers N`: asset blocks in a local process pool of N, whose peak is not counted).
Peak RSS of a child that also loads includes the loaded panel (the `load` row shows that part).

The goal (issue 14): 200 perps x 2 years hourly (`--sizes 200x730`), each step < 5 min and
< 2 GB peak on 2 cores.  `--md5` adds digests of the written folder and of every baseline
frame, to check that a change keeps the outputs bit-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
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
        from adaptive_beta.models.features.compute import compute_features

        t0, c0 = time.perf_counter(), _cpu_s()
        table = compute_features(panel)
        out["seconds"], out["cpu"] = time.perf_counter() - t0, _cpu_s() - c0
        if args.md5:
            out["md5"] = hashlib.md5(table.frame.to_numpy(dtype="float64").tobytes()).hexdigest()
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
    out["peak_mb"] = _peak_mb()
    return out


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
    cmd += ["--workers", str(args.workers)]
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
        help="baselines: asset blocks in a process pool of this size (default 1)",
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
    print(f"# baselines workers: {args.workers}; cpu s = CPU time of the step (its process and pool workers)")
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
                fine = r["seconds"] < GOAL_S and r["peak_mb"] < GOAL_MB
                ok = ok and fine
                note = ("" if fine else "over goal ") + note
                print(
                    f"{assets:>4}x{days:<4} {bars:>6} {step:>9} {r['seconds']:8.1f} {r['cpu']:8.1f} {r['peak_mb']:8.0f}  {note}"
                )
                sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
