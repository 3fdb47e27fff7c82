"""Model vs classical baselines (walk-forward), and ONNX Runtime vs torch eager latency, side by side.

    python benchmarks/bench_model.py                         # simulator (default seed) + real 8h perps if present
    python benchmarks/bench_model.py --scorecard sim.json --scorecard real.json   # summarise existing scorecards
    python benchmarks/bench_model.py --latency-only

The scorecards are the ones `abeta train --scorecard-out` writes; without --scorecard this runs
`abeta train` (default config) on each dataset first, which takes minutes (progress on stderr).
The goals checked are the training issue's: on the simulator RMSE vs the TRUE forward beta at most
0.7 x the best classical estimator's; on real data MSE at most 0.90 x the best rolling OLS and below
the best classical estimator, excess hedge variance no worse than the best classical; 90 % interval
coverage in [0.85, 0.95]; regime log-loss below persistence and the HMM; ONNX batch-1 >= 3x faster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL_MANIFEST = ROOT / "docs" / "datasets" / "binance-perps-8h.toml"


def _val(records, est, bench, metric, split="pooled"):
    for r in records:
        if (r["estimator"], r["benchmark"], r["metric"], r["split"]) == (est, bench, metric, split):
            return r["value"]
    return None


def summarise(records: list[dict], label: str) -> list[str]:
    """Headline rows per benchmark: model vs best classical and best rolling OLS."""
    model = next(r["estimator"] for r in records if r["kind"] == "model" and r["benchmark"] != "regime")
    benches = sorted({r["benchmark"] for r in records if r["benchmark"] != "regime"})
    lines = []
    for b in benches:
        rm = {
            r["estimator"]: r["value"]
            for r in records
            if r["benchmark"] == b and r["metric"] == "rmse" and r["split"] == "pooled"
        }
        base = {e: v for e, v in rm.items() if e != model}
        best = min(base, key=base.get)
        ols = {e: v for e, v in base.items() if e.startswith("rolling_ols")}
        best_ols = min(ols, key=ols.get)
        mse_m, mse_best, mse_ols = rm[model] ** 2, base[best] ** 2, ols[best_ols] ** 2
        t = {
            r["estimator"]: r["value"]
            for r in records
            if r["benchmark"] == b and r["metric"] == "rmse_true" and r["split"] == "pooled"
        }
        true_ratio = None
        if t and model in t:
            best_t = min(v for e, v in t.items() if e != model)
            true_ratio = t[model] / best_t
        ehv_m = _val(records, model, b, "excess_hedge_var")
        ehv_best = min(
            r["value"]
            for r in records
            if r["benchmark"] == b
            and r["metric"] == "excess_hedge_var"
            and r["split"] == "pooled"
            and r["estimator"] != model
        )
        lo, hi = _val(records, model, b, "mse_ratio_lo"), _val(records, model, b, "mse_ratio_hi")
        cov = _val(records, model, b, "coverage90")
        tr_txt = f"{true_ratio:.3f}" if true_ratio else "-"
        lines.append(
            f"{label:<10} {b:<10} {mse_m / mse_ols:>8.3f} [{(lo or float('nan')):.3f},{(hi or float('nan')):.3f}]"
            f" {mse_m / mse_best:>9.3f} {best:<16} {tr_txt:>9}"
            f" {ehv_m / ehv_best:>8.3f} {cov if cov is None else f'{cov:.3f}':>7}"
        )
    reg = {
        r["estimator"]: r["value"]
        for r in records
        if r["benchmark"] == "regime" and r["metric"] == "logloss" and r["split"] == "pooled"
    }
    if reg:
        lines.append(
            f"{label:<10} regime log-loss: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(reg.items()))
        )
    return lines


def latency(n_features: int = 137, steps: int = 32, reps: int = 300) -> list[str]:
    """Batch-1 and batch-64 latency, ORT vs torch eager, both architectures (one thread each)."""
    import tempfile

    import onnxruntime as ort
    import torch

    from adaptive_beta.models.networks import BetaNet
    from adaptive_beta.training.export import _export_onnx

    torch.set_num_threads(1)
    rows = []
    for arch in ("gru", "transformer"):
        net = BetaNet(n_features, [0, 1], arch=arch, hidden=16, heads=4).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            _export_onnx(net, n_features, steps, path)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            for batch in (1, 64):
                x = np.random.default_rng(0).normal(size=(batch, steps, n_features)).astype(np.float32)
                xt = torch.as_tensor(x)
                for _ in range(20):
                    sess.run(None, {"x": x})
                    with torch.no_grad():
                        net(xt)
                t0 = time.perf_counter()
                for _ in range(reps):
                    sess.run(None, {"x": x})
                t_ort = (time.perf_counter() - t0) / reps
                t0 = time.perf_counter()
                with torch.no_grad():
                    for _ in range(reps):
                        net(xt)
                t_torch = (time.perf_counter() - t0) / reps
                rows.append(
                    f"{arch:<12} {batch:>5} {t_ort * 1e6:>10.0f} {t_torch * 1e6:>12.0f} {t_torch / t_ort:>8.1f}x"
                )
    return rows


def run_train(data: str | None, out: Path) -> Path:
    import subprocess

    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", "train", "--scorecard-out", str(out)]
    if data:
        cmd += ["--data", data]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(f"trained on {data or 'the simulator'} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--scorecard", action="append", default=[], help="existing scorecard JSON (label=path or path)"
    )
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--out", default="out/bench", help="where fresh scorecards go")
    args = ap.parse_args()
    cards: list[tuple[str, Path]] = []
    if not args.latency_only:
        if args.scorecard:
            for s in args.scorecard:
                label, _, path = s.rpartition("=")
                cards.append((label or Path(path).stem, Path(path)))
        else:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            cards.append(("simulator", run_train(None, out / "sim.json")))
            if (ROOT.parent / "shared" / "data" / "real").is_dir():
                cards.append(("real 8h", run_train(str(REAL_MANIFEST), out / "real.json")))
            else:
                print("real data absent (../shared/data/real): real-data rows skipped", file=sys.stderr)
    if cards:
        print(
            "\nModel vs classical estimators (walk-forward test folds, pooled; 90 % block-bootstrap interval)"
        )
        print(
            f"{'dataset':<10} {'benchmark':<10} {'MSE/bestOLS [90%]':>25} {'MSE/best':>9} {'best classical':<16}"
            f" {'RMSEtrue':>9} {'EHV/best':>8} {'cov90':>7}"
        )
        for label, path in cards:
            for line in summarise(json.loads(Path(path).read_text()), label):
                print(line)
    print("\nONNX Runtime vs torch eager (1 thread; per call, microseconds)")
    print(f"{'arch':<12} {'batch':>5} {'ORT us':>10} {'torch us':>12} {'speed-up':>9}")
    for line in latency():
        print(line)


if __name__ == "__main__":
    main()
