"""Time the data path (load -> features -> targets -> all baselines) on three dataset shapes.

    python benchmarks/bench_data.py [--only sim-daily,real-8h,sim-hourly] [--budget 60]

Datasets: (a) 20 simulated assets x 6 years of daily bars, (b) the real Binance perps at 8h via
docs/datasets/binance-perps-8h.toml (skipped with a message where the manifest or the data is
absent), (c) 10 simulated assets x 1 year of hourly bars.  Simulated folders are generated in a
temporary directory first (not timed).  Prints one table: seconds per stage, the total, and
pass/fail against the budget (60 s: the data path must stay interactive).  A stage whose module
is not available, or that fails, is reported in the table and the remaining stages are skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_MANIFEST = ROOT / "docs" / "datasets" / "binance-perps-8h.toml"
STAGES = ("load", "features", "targets", "baselines")


@dataclass
class Row:
    dataset: str
    shape: str = ""
    times: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def total(self) -> float | None:
        if len(self.times) < len(STAGES):
            return None
        return sum(self.times.values())


def _simulated(tmp: Path, name: str, n_assets: int, days: int, freq: str) -> Callable[[], Path]:
    def make() -> Path:
        from adaptive_beta.models.sim.config import SimConfig
        from adaptive_beta.models.sim.simulator import simulate
        from adaptive_beta.models.sim.write import write_simulation

        return write_simulation(
            simulate(SimConfig(n_assets=n_assets, days=days, freq=freq, seed=11)), tmp / name
        )

    return make


def _real() -> Path:
    if not REAL_MANIFEST.is_file():
        raise FileNotFoundError(f"skipped: no manifest at {REAL_MANIFEST.relative_to(ROOT)}")
    return REAL_MANIFEST


def run_one(name: str, source: Callable[[], Path]) -> Row:
    """Time each stage on one dataset; stop at the first stage that cannot run."""
    row = Row(name)
    try:
        path = source()
    except FileNotFoundError as exc:
        row.note = str(exc)
        return row
    except ImportError as exc:
        row.note = f"cannot build dataset: {exc}"
        return row
    state: dict = {}

    def load():
        from adaptive_beta.models.data.loaders import load_dataset

        state["panel"] = load_dataset(path)

    def features():
        from adaptive_beta.models.features.compute import FeatureSpec, compute_features

        compute_features(state["panel"], FeatureSpec())

    def targets():
        from adaptive_beta.models.features.targets import forward_betas, forward_moments, true_forward_betas

        panel = state["panel"]
        forward_betas(panel, "30d")
        forward_moments(panel, "30d")
        if "truth_betas" in panel.meta:
            true_forward_betas(panel, "30d")

    def baselines():
        import warnings

        from adaptive_beta.models.estimators.baselines import baseline_forecasts

        panel = state["panel"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            baseline_forecasts(panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq)

    for stage, fn in zip(STAGES, (load, features, targets, baselines), strict=True):
        t0 = time.perf_counter()
        try:
            fn()
        except ImportError as exc:
            row.note = f"{stage}: module not available ({exc})"
            break
        except Exception as exc:  # report and carry on with the next dataset
            row.note = f"{stage} failed: {type(exc).__name__}: {exc}"
            break
        row.times[stage] = time.perf_counter() - t0
        if stage == "load":
            p = state["panel"]
            row.shape = f"{len(p.symbols)}x{len(p.index)} {p.freq_label}"
    return row


def render(rows: list[Row], budget: float) -> str:
    head = ["dataset", "shape", *STAGES, "total", f"<{budget:g}s", "note"]
    body = []
    for r in rows:
        cells = [r.dataset, r.shape or "-"]
        cells += [f"{r.times[s]:.2f}" if s in r.times else "-" for s in STAGES]
        total = r.total
        cells.append("-" if total is None else f"{total:.2f}")
        cells.append("-" if total is None else ("pass" if total < budget else "FAIL"))
        cells.append(r.note)
        body.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*cells) for cells in body]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="sim-daily,real-8h,sim-hourly", help="comma-separated dataset names")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds allowed for the whole data path")
    args = ap.parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    with tempfile.TemporaryDirectory(prefix="abeta-bench-") as tmpdir:
        tmp = Path(tmpdir)
        sources = {
            "sim-daily": _simulated(tmp, "sim-daily", 20, 6 * 365, "1d"),
            "real-8h": _real,
            "sim-hourly": _simulated(tmp, "sim-hourly", 10, 365, "1h"),
        }
        unknown = [w for w in wanted if w not in sources]
        if unknown:
            ap.error(f"unknown dataset(s) {unknown}; choose from {list(sources)}")
        rows = []
        for name in wanted:
            print(f"... {name}", file=sys.stderr, flush=True)
            rows.append(run_one(name, sources[name]))
    print(render(rows, args.budget))
    failed = [r for r in rows if r.total is not None and r.total >= args.budget]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
